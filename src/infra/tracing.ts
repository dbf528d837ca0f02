import type { AppConfig } from '../config/schema.ts';
import type { Knex } from 'knex';
import type { Logger } from './logger.ts';

/**
 * OpenTelemetry tracing, off unless an OTLP endpoint is configured. This module loads nothing of
 * the SDK: when tracing is on, ./tracing-sdk.ts is imported at boot; when off, every hook below is
 * a check of one variable, and no middleware, listener or wrapper is installed at all.
 */

/** The standard OTEL_* settings, resolved. */
export interface TracingSettings {
  /** The full URL spans are posted to (…/v1/traces). */
  tracesUrl: string;
  headers: Record<string, string>;
  serviceName: string;
  resourceAttributes: Record<string, string>;
  sampler: NonNullable<AppConfig['OTEL_TRACES_SAMPLER']>;
  /** The ratio for the traceidratio samplers. */
  samplerRatio: number;
}

/** A request's SERVER span, begun by the trace-context middleware. */
export interface ServerSpan {
  /** Recorded and exported (the sampler's decision; a caller's unsampled traceparent says no). */
  readonly sampled: boolean;
  /** Runs `work` with this span as the parent of whatever it starts (queries, outgoing calls). */
  run<T>(work: () => T): T;
  end(outcome: { method: string; route: string | undefined; status: number; error?: unknown }): void;
}

export interface Tracing {
  /**
   * Begins the SERVER span with the ids the request already has (the ones in its traceresponse
   * header and log line), under the caller's span when a traceparent came in.
   */
  startServerSpan(request: {
    method: string;
    traceId: string;
    spanId: string;
    parentSpanId?: string | undefined;
    flags: string;
    attributes: Record<string, string | number>;
  }): ServerSpan;
  /** CLIENT spans for the queries of `db` (operation and table only, never SQL values). */
  traceQueries(db: Knex): void;
  /**
   * A CLIENT span around a statement run outside knex's query builder (the prepared token-path
   * statements of infra/db.ts runStatement), named like traceQueries' spans: operation and table.
   */
  querySpan<T>(sql: string, work: () => Promise<T>): Promise<T>;
  /** An INTERNAL span around `work`, when there is a trace to add it to. */
  inSpan<T>(name: string, work: () => Promise<T>): Promise<T>;
  /** Exports what is buffered and stops. */
  shutdown(): Promise<void>;
}

/** The settings when tracing is on (an endpoint is set and the SDK is not disabled), else undefined. */
export function tracingSettings(config: AppConfig): TracingSettings | undefined {
  if (config.OTEL_SDK_DISABLED) return undefined;
  // The signal-specific endpoint is used as is; the general one gets the signal's path (OTLP spec).
  const tracesUrl =
    config.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ??
    (config.OTEL_EXPORTER_OTLP_ENDPOINT ? `${config.OTEL_EXPORTER_OTLP_ENDPOINT.replace(/\/+$/, '')}/v1/traces` : undefined);
  if (!tracesUrl) return undefined;
  const resourceAttributes = parseKeyValues(config.OTEL_RESOURCE_ATTRIBUTES ?? '');
  return {
    tracesUrl,
    headers: parseKeyValues(config.OTEL_EXPORTER_OTLP_HEADERS ?? ''),
    // OTEL_SERVICE_NAME wins over a service.name in OTEL_RESOURCE_ATTRIBUTES (SDK spec).
    serviceName: config.OTEL_SERVICE_NAME ?? resourceAttributes['service.name'] ?? 'idp',
    resourceAttributes,
    sampler: config.OTEL_TRACES_SAMPLER,
    samplerRatio: config.OTEL_TRACES_SAMPLER_ARG ?? 1,
  };
}

/** `key1=value1,key2=value2`, values percent-encoded (OTEL_RESOURCE_ATTRIBUTES, OTEL_EXPORTER_OTLP_HEADERS). */
export function parseKeyValues(list: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of list.split(',')) {
    const eq = pair.indexOf('=');
    if (eq <= 0) continue;
    const key = pair.slice(0, eq).trim();
    const raw = pair.slice(eq + 1).trim();
    let value = raw;
    try {
      value = decodeURIComponent(raw);
    } catch {
      // Not percent-encoded after all: kept as written.
    }
    if (key) out[key] = value;
  }
  return out;
}

// One SDK per process however many servers a process runs (tests run several): the API's global
// tracer provider and context manager are process-wide.
let active: { tracing: Tracing; users: number } | undefined;

/** How long a shutdown waits for the last spans to reach the collector. */
const SHUTDOWN_FLUSH_MS = 5000;

/** The running tracing, or undefined when it is off. */
export function activeTracing(): Tracing | undefined {
  return active?.tracing;
}

/**
 * Starts tracing when the settings ask for it (loading the SDK only then) and returns what stops
 * it: a flush of buffered spans, awaited at shutdown. Off: nothing is loaded and stop does nothing.
 */
export async function startTracing(config: AppConfig, logger: Logger): Promise<() => Promise<void>> {
  const settings = tracingSettings(config);
  if (!settings) return async () => {};
  if (!active) {
    const { createSdkTracing } = await import('./tracing-sdk.ts');
    active ??= { tracing: createSdkTracing(settings, logger), users: 0 };
    logger.info({ endpoint: new URL(settings.tracesUrl).origin, service: settings.serviceName, sampler: settings.sampler }, 'tracing: spans exported over OTLP/HTTP');
  }
  active.users++;
  let stopped = false;
  return async () => {
    if (stopped || !active) return;
    stopped = true;
    if (--active.users > 0) return;
    const { tracing } = active;
    active = undefined;
    // A collector that is down is retried with backoff; the shutdown does not wait for it long.
    let timer: NodeJS.Timeout | undefined;
    const gaveUp = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), SHUTDOWN_FLUSH_MS);
    });
    const outcome = await Promise.race([tracing.shutdown().then(() => 'flushed' as const), gaveUp]).catch((err: unknown) => err as Error);
    clearTimeout(timer);
    if (outcome instanceof Error) logger.warn({ err: outcome.message }, 'tracing: final export failed');
    else if (outcome === 'timeout') logger.warn({ waitedMs: SHUTDOWN_FLUSH_MS }, 'tracing: the collector did not take the last spans in time; they are dropped');
  };
}

/**
 * `target` with the named async methods each run in a span of the given name (argon2 hashing):
 * `target` itself when tracing is off, so the hot path is untouched.
 */
export function traceMethods<T extends object>(target: T, spanNames: Partial<Record<keyof T, string>>): T {
  const tracing = activeTracing();
  if (!tracing) return target;
  const traced = { ...target };
  for (const [method, name] of Object.entries(spanNames) as Array<[keyof T, string]>) {
    const original = target[method];
    if (typeof original !== 'function') continue;
    traced[method] = ((...args: unknown[]) => tracing.inSpan(name, () => (original as (...a: unknown[]) => Promise<unknown>).apply(target, args))) as T[keyof T];
  }
  return traced;
}
