import { randomUUID } from 'node:crypto';
import type { Middleware } from 'koa';
import type { Logger } from '../../infra/logger.ts';
import { runInRequestScope } from '../../infra/request-scope.ts';

const VALID_REQUEST_ID = /^[\w.:-]{1,128}$/;

/**
 * Accepts or assigns X-Request-Id, echoes it, and writes one log line per request. Only the path
 * is logged, never the query string, which carries codes and tokens.
 */
export function requestContext(logger: Logger): Middleware {
  return async (ctx, next) => {
    const started = process.hrtime.bigint();
    const incoming = ctx.get('x-request-id');
    const requestId = VALID_REQUEST_ID.test(incoming) ? incoming : randomUUID();
    ctx.state.requestId = requestId;
    ctx.set('X-Request-Id', requestId);
    try {
      // The session adapter records the device (user agent, address) of the request that saved it.
      await runInRequestScope({ userAgent: ctx.get('user-agent').slice(0, 512), ip: ctx.ip }, next);
    } finally {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      const level = ctx.status >= 500 ? 'error' : 'info';
      logger[level]({ requestId, method: ctx.method, path: ctx.path, status: ctx.status, ms: Math.round(ms * 10) / 10, ip: ctx.ip }, 'request');
    }
  };
}
