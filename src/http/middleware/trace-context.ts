import { randomHex } from './random-ids.ts';

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
