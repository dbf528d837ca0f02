import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

// Fields that must never reach a log line even if some code passes them along by mistake.
const redact = [
  'password', '*.password', 'secret', '*.secret', 'client_secret', '*.client_secret', 'token', '*.token',
  'code', '*.code', 'authorization', '*.authorization', 'req.headers.authorization', 'req.headers.cookie',
  'headers.cookie', 'headers.authorization', 'refresh_token', '*.refresh_token', 'access_token', '*.access_token',
];

/** JSON lines on stdout, or on `destination` (tests read what was logged). */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino({ level, redact: { paths: redact, censor: '[redacted]' }, base: { service: 'idp' } }, destination);
}

/**
 * The logger of the one line per request, whose fields are fixed (ids, method, path without the
 * query, status, duration, address) and none of them a redacted name: the redaction above, which
 * walks every wildcard path, costs about ten times the rest of writing a line, on every request.
 * Same destination and level; every other line keeps the redaction.
 */
export function requestLineLogger(logger: Logger): Logger {
  return logger.child({}, { redact: { paths: [] } });
}
