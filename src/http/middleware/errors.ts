import type { Context, Middleware } from 'koa';
import { AppError, type ErrorCode } from '../../domain/errors.ts';
import { StoreUnavailable } from '../../infra/store-outage.ts';
import type { Logger } from '../../infra/logger.ts';
import type { RenderPage } from '../render.ts';

interface HttpLikeError {
  status?: number;
  statusCode?: number;
  expose?: boolean;
  code?: string;
  error?: string;
  message?: string;
}

function wantsJson(ctx: Context): boolean {
  return ctx.path.startsWith('/api/') || (!ctx.accepts('html') && Boolean(ctx.accepts('json')));
}

/**
 * Our routes' errors: client errors answer 4xx with the error envelope (API) or the error page
 * (browser); anything unexpected is logged and answered 500 without details.
 */
export function errorHandler(logger: Logger, renderPage: RenderPage): Middleware {
  return async (ctx, next) => {
    try {
      await next();
      // Unmatched routes (404) and router answers without a body (405) get the envelope or the page.
      if (ctx.body == null && ctx.status >= 400 && (ctx.status === 404 || wantsJson(ctx))) {
        if (wantsJson(ctx)) {
          const status = ctx.status;
          ctx.body = envelope(ctx, codeFor(status), status === 404 ? 'no such resource' : 'method not allowed here');
          ctx.status = status;
        } else {
          renderPage(ctx, 'error', { title: 'notfound.title', code: 'not_found' }, 404);
        }
      }
    } catch (raw) {
      // A store that is down, too slow or full (it refuses new security records rather than forget
      // old ones): the request is refused (503) and may be retried; nothing about it is unexpected.
      const unavailable = raw instanceof StoreUnavailable;
      const err = (unavailable ? new AppError('IDENT_UNAVAILABLE') : raw) as HttpLikeError & Error;
      let status = err instanceof AppError ? err.status : (err.status ?? err.statusCode ?? 500);
      if (status < 400 || status > 599) status = 500;
      const exposed = unavailable || (status < 500 && (err instanceof AppError || err.expose !== false));
      const code = err instanceof AppError ? err.code : status < 500 ? codeFor(status) : 'IDENT_INTERNAL';
      const message = exposed ? err.message : 'internal error';
      if (unavailable) {
        ctx.set('Retry-After', String(raw.retryAfterSeconds));
        logger.warn({ requestId: ctx.state.requestId, store: raw.store, reason: raw.reason }, 'request refused: store unavailable');
      } else if (status >= 500) logger.error({ err, requestId: ctx.state.requestId }, 'unhandled error');
      else if (status === 429 && err instanceof AppError) {
        // A limit that says when it frees up (the per-tenant user creations, an OTP cooldown).
        const wait = (err.detail as { retryAfterSeconds?: unknown } | undefined)?.retryAfterSeconds;
        if (typeof wait === 'number' && Number.isFinite(wait)) ctx.set('Retry-After', String(Math.max(1, Math.ceil(wait))));
      }
      if (wantsJson(ctx)) {
        ctx.status = status;
        ctx.body = { ...envelope(ctx, code, message), ...publicDetail(err) };
      } else {
        renderPage(ctx, 'error', { title: 'errorpage.title', code: exposed ? code : 'server_error' }, status);
      }
    }
  };
}

/** Errors raised outside our code (body parser, router, ctx.throw) mapped onto the catalogue. */
function codeFor(status: number): ErrorCode {
  if (status === 401) return 'IDENT_UNAUTHENTICATED';
  if (status === 403) return 'IDENT_FORBIDDEN';
  if (status === 404) return 'IDENT_NOT_FOUND';
  if (status === 405 || status === 501) return 'IDENT_METHOD_NOT_ALLOWED';
  if (status === 413) return 'IDENT_PAYLOAD_TOO_LARGE';
  if (status === 415) return 'IDENT_UNSUPPORTED_MEDIA_TYPE';
  if (status === 429) return 'IDENT_RATE_LIMITED';
  return 'IDENT_VALIDATION';
}

/** Detail an API caller may see: a refused password's reasons (codes), as the pages show them. */
function publicDetail(err: unknown): { reasons?: string[] } {
  if (!(err instanceof AppError) || err.code !== 'IDENT_PASSWORD_POLICY') return {};
  const reasons = (err.detail as { reasons?: unknown } | undefined)?.reasons;
  return Array.isArray(reasons) ? { reasons: reasons.map(String) } : {};
}

export function envelope(ctx: Context, error: ErrorCode, message: string) {
  return { error, message, requestId: ctx.state.requestId as string, timestamp: new Date().toISOString() };
}
