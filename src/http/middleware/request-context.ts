import { randomUUID } from 'node:crypto';
import type { Middleware } from 'koa';
import type { Logger } from '../../infra/logger.ts';
import { runInRequestScope } from '../../infra/request-scope.ts';
import { formatTraceparent, traceContextFrom } from './trace-context.ts';

const VALID_REQUEST_ID = /^[\w.:-]{1,128}$/;

/**
 * Accepts or assigns X-Request-Id, echoes it, and writes one log line per request. Only the path
 * is logged, never the query string, which carries codes and tokens. A W3C traceparent is
 * continued: its trace id goes into the log line and the request scope, and the answer's
 * traceresponse names the trace and this request's span, so a caller's trace and our logs join.
 */
export function requestContext(logger: Logger): Middleware {
  return async (ctx, next) => {
    const started = process.hrtime.bigint();
    const incoming = ctx.get('x-request-id');
    const requestId = VALID_REQUEST_ID.test(incoming) ? incoming : randomUUID();
    ctx.state.requestId = requestId;
    ctx.set('X-Request-Id', requestId);
    const trace = traceContextFrom(ctx.get('traceparent'));
    ctx.state.trace = trace;
    ctx.set('traceresponse', formatTraceparent(trace));
    try {
      // The session adapter records the device (user agent, address) of the request that saved it.
      await runInRequestScope({ userAgent: ctx.get('user-agent').slice(0, 512), ip: ctx.ip, trace }, next);
    } finally {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      const level = ctx.status >= 500 ? 'error' : 'info';
      logger[level]({ requestId, traceId: trace.traceId, spanId: trace.spanId, method: ctx.method, path: ctx.path, status: ctx.status, ms: Math.round(ms * 10) / 10, ip: ctx.ip }, 'request');
    }
  };
}
