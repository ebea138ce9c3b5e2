// The one error type whose message may be logged as it is (see telemetry/logger.ts loggableError).

/**
 * An error whose message this project wrote from names, paths and status codes only: safe to log as it
 * is. Other errors may quote what they failed on (a JSON.parse error quotes the body), so only their
 * name, code and stack frames are logged.
 */
export class OperationalError extends Error {
  override readonly name: string = 'OperationalError';
}
