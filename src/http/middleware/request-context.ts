import { randomUUID } from 'node:crypto';
import type { Middleware } from 'koa';
import { requestLineLogger, type Logger } from '../../infra/logger.ts';
import type { Metrics } from '../../infra/metrics.ts';
import { requestDurations } from './request-metrics.ts';
import { runInRequestScope } from '../../infra/request-scope.ts';
import { formatTraceparent, traceContextFrom } from './trace-context.ts';

const VALID_REQUEST_ID = /^[\w.:-]{1,128}$/;

/**
 * Accepts or assigns X-Request-Id, echoes it, and writes one log line per request. Only the path
 * is logged, never the query string, which carries codes and tokens. A W3C traceparent is
 * continued: its trace id goes into the log line and the request scope, and the answer's
 * traceresponse names the trace and this request's span, so a caller's trace and our logs join.
 * With `metrics`, the request's duration is recorded as well (request-metrics.ts).
 */
export function requestContext(logger: Logger, metrics?: Metrics): Middleware {
  const lines = requestLineLogger(logger);
  const recordDuration = metrics && requestDurations(metrics);
  return async (ctx, next) => {
    const started = performance.now();
    const incoming = ctx.req.headers['x-request-id'];
    const requestId = typeof incoming === 'string' && VALID_REQUEST_ID.test(incoming) ? incoming : randomUUID();
    ctx.state.requestId = requestId;
    // Straight to the response: koa's ctx.set allocates arrays and closures for each header.
    ctx.res.setHeader('X-Request-Id', requestId);
    const traceparent = ctx.req.headers.traceparent;
    const trace = traceContextFrom(typeof traceparent === 'string' ? traceparent : undefined);
    ctx.state.trace = trace;
    ctx.res.setHeader('traceresponse', formatTraceparent(trace));
    try {
      // The session adapter records the device (user agent, address) of the request that saved it.
      await runInRequestScope({ userAgent: (ctx.req.headers['user-agent'] ?? '').slice(0, 512), ip: ctx.ip, requestId, trace }, next);
    } finally {
      const elapsedMs = performance.now() - started;
      recordDuration?.(ctx, elapsedMs / 1000);
      const level = ctx.status >= 500 ? 'error' : 'info';
      // The line's object is built only when it is written (LOG_LEVEL=warn skips every one).
      if (lines.isLevelEnabled(level)) {
        const ms = Math.round(elapsedMs * 10) / 10;
        lines[level]({ requestId, traceId: trace.traceId, spanId: trace.spanId, method: ctx.method, path: ctx.path, status: ctx.status, ms, ip: ctx.ip }, 'request');
      }
    }
  };
}
