// pino JSON logs to stdout. One line per admission, bound to a child logger with the request's identity.
// Bodies are never logged; the redaction paths below are a second line of defence for fields that could
// carry an object or a ConfigMap value if someone logs carelessly in the future.

import pino, { type Logger } from 'pino';

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
