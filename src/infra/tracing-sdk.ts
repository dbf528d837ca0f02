import diagnostics from 'node:diagnostics_channel';
import { context, diag, DiagLogLevel, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Span } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { defaultResource, resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BasicTracerProvider,
  BatchSpanProcessor,
  ParentBasedSampler,
  RandomIdGenerator,
  TraceIdRatioBasedSampler,
  type IdGenerator,
  type Sampler,
} from '@opentelemetry/sdk-trace-base';
import {
  ATTR_DB_COLLECTION_NAME,
  ATTR_DB_OPERATION_NAME,
  ATTR_DB_SYSTEM_NAME,
  ATTR_ERROR_TYPE,
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_HTTP_ROUTE,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
  ATTR_SERVICE_NAME,
} from '@opentelemetry/semantic-conventions';
import type { Knex } from 'knex';
import type { Logger } from './logger.ts';
import type { ServerSpan, Tracing, TracingSettings } from './tracing.ts';

/**
 * The OpenTelemetry SDK, loaded only when tracing is on (./tracing.ts imports this module then).
 *
 * What a span may carry is decided here, once: route templates, methods, status codes, host names,
 * SQL operation and table names. Never a raw path or query string (ids, codes, tokens), a header,
 * a body, SQL text or its bindings, or an error message (PostgreSQL's repeat the values).
 */
export function createSdkTracing(settings: TracingSettings, logger: Logger): Tracing {
  // The SDK's own complaints (a collector that does not answer) go to our log, one line each.
  diag.setLogger(
    {
      error: (message: string) => logger.warn({ otel: String(message).slice(0, 300) }, 'tracing'),
      warn: (message: string) => logger.warn({ otel: String(message).slice(0, 300) }, 'tracing'),
      info: () => {},
      debug: () => {},
      verbose: () => {},
    },
    DiagLogLevel.WARN,
  );
  const contextManager = new AsyncLocalStorageContextManager().enable();
  if (!context.setGlobalContextManager(contextManager)) logger.warn('tracing: another context manager is registered; spans may lose their parents');

  const ids = new RequestIds();
  const provider = new BasicTracerProvider({
    resource: defaultResource().merge(resourceFromAttributes({ ...settings.resourceAttributes, [ATTR_SERVICE_NAME]: settings.serviceName })),
    sampler: samplerFor(settings),
    idGenerator: ids,
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: settings.tracesUrl, headers: settings.headers }))],
  });
  const tracer = provider.getTracer('idp');

  /** The span work is running under, when there is one: children are only made inside a trace. */
  const currentParent = (): Context | undefined => {
    const active = context.active();
    const span = trace.getSpan(active);
    return span && trace.isSpanContextValid(span.spanContext()) ? active : undefined;
  };

  const outgoing = traceOutgoingFetch(tracer, currentParent);

  /** A database CLIENT span named by operation and table: never the SQL text or its values. */
  const startQuerySpan = (sql: string | undefined, parent: Context): Span => {
    const { operation, table } = describeSql(sql);
    const attributes: Attributes = { [ATTR_DB_SYSTEM_NAME]: 'postgresql', 'db.system': 'postgresql', [ATTR_DB_OPERATION_NAME]: operation };
    if (table) attributes[ATTR_DB_COLLECTION_NAME] = table;
    return tracer.startSpan(table ? `${operation} ${table}` : operation, { kind: SpanKind.CLIENT, attributes }, parent);
  };
  const endFailedQuerySpan = (span: Span, err: unknown) => {
    // The SQLSTATE, not the message: "Key (email)=(…) already exists" carries the values.
    const code = (err as { code?: unknown })?.code;
    span.setAttribute(ATTR_ERROR_TYPE, typeof code === 'string' ? code : 'error');
    span.setStatus({ code: SpanStatusCode.ERROR });
    span.end();
  };

  return {
    startServerSpan(request): ServerSpan {
      const parent = request.parentSpanId
        ? trace.setSpanContext(ROOT_CONTEXT, {
            traceId: request.traceId,
            spanId: request.parentSpanId,
            traceFlags: Number.parseInt(request.flags, 16) & 1,
            isRemote: true,
          })
        : ROOT_CONTEXT;
      // The span takes the ids the request already answered with, so traces and logs join.
      ids.next = { traceId: request.traceId, spanId: request.spanId };
      let span: Span;
      try {
        span = tracer.startSpan(request.method, { kind: SpanKind.SERVER, attributes: request.attributes }, parent);
      } finally {
        ids.next = undefined;
      }
      const inside = trace.setSpan(parent, span);
      return {
        sampled: span.isRecording(),
        run: (work) => context.with(inside, work),
        end({ method, route, status, error }) {
          if (route) {
            span.updateName(`${method} ${route}`);
            // http.route is a path template; the provider's own routes are named (oidc:token).
            if (route.startsWith('/')) span.setAttribute(ATTR_HTTP_ROUTE, route);
            else span.setAttribute('idp.route', route);
          }
          span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, status);
          if (status >= 500 || error) {
            span.setAttribute(ATTR_ERROR_TYPE, error instanceof Error ? error.name : String(status));
            span.setStatus({ code: SpanStatusCode.ERROR });
          }
          span.end();
        },
      };
    },

    traceQueries(db: Knex) {
      const open = new Map<string, Span>();
      db.on('query', (query: KnexQuery) => {
        const parent = currentParent();
        if (!parent || !query.__knexQueryUid) return;
        open.set(query.__knexQueryUid, startQuerySpan(query.sql, parent));
      });
      db.on('query-response', (_response: unknown, query: KnexQuery) => {
        const span = query.__knexQueryUid ? open.get(query.__knexQueryUid) : undefined;
        if (!span) return;
        open.delete(query.__knexQueryUid!);
        span.end();
      });
      db.on('query-error', (err: unknown, query: KnexQuery) => {
        const span = query?.__knexQueryUid ? open.get(query.__knexQueryUid) : undefined;
        if (!span) return;
        open.delete(query.__knexQueryUid!);
        endFailedQuerySpan(span, err);
      });
    },

    querySpan(sql, work) {
      const parent = currentParent();
      if (!parent) return work();
      const span = startQuerySpan(sql, parent);
      return work().then(
        (result) => {
          span.end();
          return result;
        },
        (err: unknown) => {
          endFailedQuerySpan(span, err);
          throw err;
        },
      );
    },

    inSpan(name, work) {
      const parent = currentParent();
      if (!parent) return work();
      return tracer.startActiveSpan(name, { kind: SpanKind.INTERNAL }, parent, async (span) => {
        try {
          return await work();
        } catch (err) {
          span.setAttribute(ATTR_ERROR_TYPE, err instanceof Error ? err.name : 'error');
          span.setStatus({ code: SpanStatusCode.ERROR });
          throw err;
        } finally {
          span.end();
        }
      });
    },

    async shutdown() {
      // Nothing new is started from here on (the listener is closed, requests are done); the
      // context manager goes at once, so a tracing started after this one is not undone by it.
      outgoing.stop();
      context.disable();
      try {
        await provider.shutdown();
      } finally {
        diag.disable();
      }
    },
  };
}

/** Random ids, except for the one span whose ids were chosen before it began (the request's). */
class RequestIds implements IdGenerator {
  next: { traceId: string; spanId: string } | undefined;
  private readonly random = new RandomIdGenerator();
  generateTraceId(): string {
    return this.next?.traceId ?? this.random.generateTraceId();
  }
  generateSpanId(): string {
    return this.next?.spanId ?? this.random.generateSpanId();
  }
}

function samplerFor(settings: TracingSettings): Sampler {
  const ratio = () => new TraceIdRatioBasedSampler(settings.samplerRatio);
  switch (settings.sampler) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return ratio();
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: ratio() });
    default:
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
  }
}

interface KnexQuery {
  __knexQueryUid?: string;
  sql?: string;
}

const SQL_OPERATIONS = new Set(['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'WITH', 'BEGIN', 'COMMIT', 'ROLLBACK', 'SAVEPOINT', 'RELEASE', 'CREATE', 'ALTER', 'DROP', 'LOCK', 'SET', 'SHOW', 'TRUNCATE']);
// The identifier after FROM / INTO / UPDATE: the table the statement is about. Only an
// identifier can match, never a literal.
const SQL_TABLE = /\b(?:from|into|update)\s+"?([A-Za-z_][A-Za-z0-9_]*)"?(?:\s*\.\s*"?([A-Za-z_][A-Za-z0-9_]*)"?)?/i;

/** The statement's operation and main table, for the span name; nothing else of the SQL. */
export function describeSql(sql: string | undefined): { operation: string; table: string | undefined } {
  const keyword = /^\s*\(?\s*([A-Za-z]+)/.exec(sql ?? '')?.[1]?.toUpperCase() ?? '';
  const operation = SQL_OPERATIONS.has(keyword) ? keyword : 'OTHER';
  const m = SQL_TABLE.exec(sql ?? '');
  return { operation, table: m ? (m[2] ?? m[1]) : undefined };
}

interface UndiciRequest {
  method: string;
  origin: string;
  addHeader(name: string, value: string): unknown;
}

/**
 * CLIENT spans for the server's own fetch() calls (upstream identity providers through
 * openid-client, the SMS webhook, captcha and breached-password checks, the account console's
 * back channel), through undici's diagnostics channels, so no call site has to know about tracing;
 * each carries a traceparent onward. Only calls made inside a trace are recorded. The URL's path
 * and query are not recorded: the method, host and port, and the status.
 */
function traceOutgoingFetch(tracer: ReturnType<BasicTracerProvider['getTracer']>, currentParent: () => Context | undefined) {
  const open = new WeakMap<object, Span>();
  const onCreate = (message: unknown) => {
    const { request } = message as { request: UndiciRequest };
    const parent = currentParent();
    if (!parent) return;
    let origin: URL;
    try {
      origin = new URL(request.origin);
    } catch {
      return;
    }
    const method = request.method.toUpperCase();
    const span = tracer.startSpan(
      method,
      {
        kind: SpanKind.CLIENT,
        attributes: {
          [ATTR_HTTP_REQUEST_METHOD]: method,
          [ATTR_SERVER_ADDRESS]: origin.hostname,
          [ATTR_SERVER_PORT]: Number(origin.port || (origin.protocol === 'https:' ? 443 : 80)),
        },
      },
      parent,
    );
    const { traceId, spanId, traceFlags } = span.spanContext();
    request.addHeader('traceparent', `00-${traceId}-${spanId}-${traceFlags & 1 ? '01' : '00'}`);
    open.set(request, span);
  };
  const onHeaders = (message: unknown) => {
    const { request, response } = message as { request: object; response: { statusCode: number } };
    const span = open.get(request);
    if (!span) return;
    span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, response.statusCode);
    if (response.statusCode >= 400) {
      span.setAttribute(ATTR_ERROR_TYPE, String(response.statusCode));
      span.setStatus({ code: SpanStatusCode.ERROR });
    }
  };
  const onDone = (message: unknown) => {
    const { request } = message as { request: object };
    open.get(request)?.end();
    open.delete(request);
  };
  const onError = (message: unknown) => {
    const { request, error } = message as { request: object; error: unknown };
    const span = open.get(request);
    if (!span) return;
    span.setAttribute(ATTR_ERROR_TYPE, error instanceof Error ? ((error as { code?: string }).code ?? error.name) : 'error');
    span.setStatus({ code: SpanStatusCode.ERROR });
    span.end();
    open.delete(request);
  };
  const channels: Array<[string, (message: unknown) => void]> = [
    ['undici:request:create', onCreate],
    ['undici:request:headers', onHeaders],
    ['undici:request:trailers', onDone],
    ['undici:request:error', onError],
  ];
  for (const [name, listener] of channels) diagnostics.subscribe(name, listener);
  return {
    stop() {
      for (const [name, listener] of channels) diagnostics.unsubscribe(name, listener);
    },
  };
}
