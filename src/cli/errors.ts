/**
 * Failures the CLI reports as one line on stderr, never as a stack trace. The exit status tells
 * scripts which kind it was: 2 for a wrong invocation, 1 for anything that went wrong running it.
 */
export class CliError extends Error {
  readonly exitCode: number = 1;
}

/** A wrong invocation: unknown command or option, bad or missing value, missing credentials. */
export class UsageError extends CliError {
  override readonly exitCode: number = 2;
}

/** An admin API error envelope {error, message, requestId}, or an OAuth error from /token. */
export class ApiError extends CliError {
  readonly code: string;
  /** The server's own message, without the code and status around it. */
  readonly description: string;
  readonly status: number;
  readonly requestId: string | undefined;

  constructor(code: string, description: string, status: number, requestId?: string) {
    super(`${code}: ${description} (HTTP ${status}${requestId ? `, request ${requestId}` : ''})`);
    this.code = code;
    this.description = description;
    this.status = status;
    this.requestId = requestId;
  }
}
