// pino JSON logs to stdout. One line per admission, bound to a child logger with the request's identity.
// Bodies are never logged; the redaction paths below are a second line of defence for fields that could
// carry an object or a ConfigMap value if someone logs carelessly in the future.

import pino, { type Logger } from 'pino';
import { OperationalError } from '../util/errors.ts';

export type { Logger };

export const REDACT_PATHS = ['object', 'oldObject', 'request.object', 'request.oldObject', 'data', 'binaryData', 'body', 'req.headers.authorization'];

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'config-checksum-webhook' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}

export interface LoggableError {
  readonly name: string;
  readonly code?: string;
  readonly message?: string;
  readonly stack?: string;
}

export function loggableError(error: unknown): LoggableError {
  if (!(error instanceof Error)) return { name: typeof error };
  const code = (error as { code?: unknown }).code;
  // Node's system errors (ECONNREFUSED, ETIMEDOUT, ...) describe a connection, not data.
  const trusted = error instanceof OperationalError || typeof code === 'string';
  const frames = error.stack?.split('\n').slice(1).join('\n');
  return {
    name: error.name,
    ...(typeof code === 'string' ? { code } : {}),
    ...(trusted ? { message: error.message } : {}),
    ...(frames ? { stack: frames } : {}),
  };
}
