import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Logger } from './logger.ts';

/** What the scrape-time gauges read from the stores; wired by services.ts (infra knows no repos). */
export interface MetricSources {
  /** Mail waiting in the outbox: how many, and how long the oldest has waited. */
  outbox(): Promise<{ pending: number; oldestPendingSeconds: number }>;
  /** The newest activated key of each use and algorithm, with its age. */
  keys(): Promise<Array<{ use: string; alg: string; ageSeconds: number }>>;
  /** The database connection pool, when there is one. */
  pool(): { used: number; free: number; pending: number; max: number } | undefined;
}

/**
 * The process's Prometheus metrics, in a registry of its own (no global state: tests run several
 * servers in one process). Labels are bounded sets only: route templates, grant types, outcomes,
 * never a raw path, a client id or a user.
 */
export function createMetrics() {
  const registry = new Registry();
  let sources: MetricSources | undefined;
  let logger: Logger | undefined;

  const httpDuration = new Histogram({
    name: 'idp_http_request_duration_seconds',
    help: 'HTTP requests by method, route template and status: the _count is the request rate, the buckets the latency',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const tokensIssued = new Counter({
    name: 'idp_tokens_issued_total',
    help: 'Successful token endpoint responses by grant type',
    labelNames: ['grant_type'] as const,
    registers: [registry],
  });
  const signIns = new Counter({
    name: 'idp_sign_ins_total',
    help: 'Sign-in attempts by outcome (success, invalid_credentials, locked, inactive, invalid_second_factor)',
    labelNames: ['outcome'] as const,
    registers: [registry],
  });
  const lockouts = new Counter({
    name: 'idp_lockouts_total',
    help: 'Sign-in addresses that reached LOCKOUT_THRESHOLD failures and were locked',
    registers: [registry],
  });

  // Scrape-time gauges: a store that does not answer leaves the last value (and a debug line)
  // rather than failing the whole scrape.
  const guarded = async (what: string, read: () => Promise<void>) => {
    try {
      await read();
    } catch (err) {
      logger?.debug({ err: (err as Error).message, metric: what }, 'metric collection failed');
    }
  };
  new Gauge({
    name: 'idp_outbox_pending',
    help: 'Mails in the outbox not yet sent (the mail queue depth)',
    registers: [registry],
    async collect() {
      await guarded('outbox', async () => this.set((await sources!.outbox()).pending));
    },
  });
  new Gauge({
    name: 'idp_outbox_oldest_pending_seconds',
    help: 'Age of the oldest mail not yet sent (0 when none)',
    registers: [registry],
    async collect() {
      await guarded('outbox', async () => this.set((await sources!.outbox()).oldestPendingSeconds));
    },
  });
  new Gauge({
    name: 'idp_key_age_seconds',
    help: 'Age of the newest activated key of each use (sig, cookie) and algorithm: alert when rotation is overdue',
    labelNames: ['use', 'alg'] as const,
    registers: [registry],
    async collect() {
      await guarded('keys', async () => {
        const keys = await sources!.keys();
        this.reset();
        for (const k of keys) this.set({ use: k.use, alg: k.alg }, k.ageSeconds);
      });
    },
  });
  new Gauge({
    name: 'idp_db_pool_connections',
    help: 'Database pool connections by state (used, free, pending acquires, max)',
    labelNames: ['state'] as const,
    registers: [registry],
    collect() {
      const pool = sources?.pool();
      if (!pool) return;
      this.set({ state: 'used' }, pool.used);
      this.set({ state: 'free' }, pool.free);
      this.set({ state: 'pending' }, pool.pending);
      this.set({ state: 'max' }, pool.max);
    },
  });

  let defaultsOn = false;
  return {
    registry,
    httpDuration,
    tokensIssued,
    lockouts,
    signIns,
    /** Connects the scrape-time gauges to the stores, and turns on Node's process metrics. */
    serve(from: MetricSources, log: Logger) {
      sources = from;
      logger = log;
      if (!defaultsOn) collectDefaultMetrics({ register: registry });
      defaultsOn = true;
    },
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
