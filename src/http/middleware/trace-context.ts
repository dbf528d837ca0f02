import { randomHex } from './random-ids.ts';
import { knownMethod, routeTemplate } from './route-template.ts';
import type { Middleware } from 'koa';
import type { Tracing } from '../../infra/tracing.ts';

// Stable HTTP semantic convention names (@opentelemetry/semantic-conventions), written out so this
// module loads nothing of OpenTelemetry when tracing is off.
const ATTR_HTTP_REQUEST_METHOD = 'http.request.method';
const ATTR_URL_SCHEME = 'url.scheme';
const ATTR_NETWORK_PROTOCOL_VERSION = 'network.protocol.version';

/**
 * W3C Trace Context (https://www.w3.org/TR/trace-context/): the trace a request belongs to. An
 * incoming `traceparent` is continued (its trace id kept, this request a new span under it);
 * without one, or with one that is malformed, a new trace starts here.
 */
export interface TraceContext {
  traceId: string;
  /** This request's span. */
  spanId: string;
  /** The caller's span, when a valid traceparent came in. */
  parentSpanId?: string;
  /** trace-flags, two hex digits; 01 = sampled. */
  flags: string;
}

// version-traceid-parentid-flags. Version ff is invalid; a later version may append fields.
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
const ALL_ZEROS = /^0+$/;

export function traceContextFrom(header: string | undefined): TraceContext {
  const spanId = randomHex(8);
  const m = TRACEPARENT.exec((header ?? '').trim());
  if (m) {
    const [, version, traceId, parentSpanId, flags, rest] = m as unknown as [string, string, string, string, string, string | undefined];
    const valid = version !== 'ff' && (version !== '00' || rest === undefined) && !ALL_ZEROS.test(traceId) && !ALL_ZEROS.test(parentSpanId);
    if (valid) return { traceId, spanId, parentSpanId, flags };
  }
  return { traceId: randomHex(16), spanId, flags: '00' };
}

/** The header value naming this request's span, for the answer (traceresponse) or a call onward (traceparent). */
export function formatTraceparent(trace: TraceContext): string {
  return `00-${trace.traceId}-${trace.spanId}-${trace.flags}`;
}

/**
 * With tracing on (OTEL_EXPORTER_OTLP_ENDPOINT), the request's SERVER span: mounted after
 * requestContext, it takes the request's trace and span ids (so the span is the one the
 * traceresponse header and the log line name) and the caller's span as parent. Named after the
 * route template ("GET /api/v1/users/:id", "POST /token", the same names as the metrics),
 * never the raw path; the query string, headers and bodies are not recorded.
 */
export function traceRequests(tracing: Tracing): Middleware {
  return async (ctx, next) => {
    const trace = ctx.state.trace as TraceContext;
    const method = knownMethod(ctx.method, '_OTHER');
    const span = tracing.startServerSpan({
      method,
      traceId: trace.traceId,
      spanId: trace.spanId,
      parentSpanId: trace.parentSpanId,
      flags: trace.flags,
      attributes: {
        [ATTR_HTTP_REQUEST_METHOD]: method,
        [ATTR_URL_SCHEME]: ctx.protocol,
        [ATTR_NETWORK_PROTOCOL_VERSION]: ctx.req.httpVersion,
      },
    });
    // The flags now say whether this trace is recorded, for the caller and for calls onward.
    trace.flags = span.sampled ? '01' : '00';
    ctx.set('traceresponse', formatTraceparent(trace));
    let error: unknown;
    try {
      await span.run(next);
    } catch (err) {
      error = err;
      throw err;
    } finally {
      span.end({ method, route: routeTemplate(ctx), status: error ? 500 : ctx.status, error });
    }
  };
}

