/**
 * A failure the caller can act on. `code` is both the stable API code and the message-catalogue
 * key; `status` is the HTTP status it maps to. Anything else that is thrown is a 500.
 */
export class AppError extends Error {
  readonly code: string;
  readonly status: number;
  readonly detail: unknown;

  constructor(code: string, status: number, message?: string, detail?: unknown) {
    super(message ?? code);
    this.code = code;
    this.status = status;
    this.detail = detail;
  }
}
