import type { Knex } from 'knex';
import type { Logger } from '../infra/logger.ts';
import { StoreUnavailable } from '../infra/store-outage.ts';
import type { OidcPayloadsRepo } from '../repos/oidc-payloads.ts';
import type { KeyService } from '../domain/keys/keys.ts';

// Any constant shared by every instance: only the holder of the lock sweeps.
const SWEEP_LOCK = 0x1d9_5eed;
// Rows stay this long past their expiry, so a request that read one just before can still finish.
const GRACE_SECONDS = 60;
// Measured at 10 M rows (bench/README.md "Scale"): 2,000 rows take tens of milliseconds, short
// enough for its row locks and WAL burst to go unnoticed by the token path.
const DEFAULT_BATCH = 2000;

/**
 * Deletes expired provider rows (and retired keys) in batches. Consumed refresh tokens stay until
 * they expire, so reuse detection keeps working. Several instances take turns through an advisory
 * lock, taken per batch: each batch is a short transaction of its own, so a large backlog never
 * holds one transaction open (which would keep vacuum from cleaning the hot rows meanwhile), and a
 * stopping instance leaves between two batches.
 */
export function createSweeper(deps: {
  db: Knex;
  payloads: Pick<OidcPayloadsRepo, 'sweepBatch'>;
  keys: KeyService;
  logger: Logger;
  /** Other expiring rows to delete on the same schedule (idempotency keys...). */
  others?: Array<() => Promise<number>>;
  /** Rows per batch (default 2000). */
  batchSize?: number;
  /** Run after each pass's deletes (the embedded store's vacuum); answers what it did, for the log. */
  afterSweep?: () => Promise<string[]>;
}) {
  const batchSize = deps.batchSize ?? DEFAULT_BATCH;
  let stopping = false;

  /**
   * One batch under the lock, from expiry `from` on: the rows deleted and the last expiry among
   * them, or undefined when another instance holds the lock.
   */
  async function sweepBatch(from: string): Promise<{ deleted: number; last: string | null } | undefined> {
    return deps.db.transaction(async (trx) => {
      const { rows } = (await trx.raw('select pg_try_advisory_xact_lock(?) as locked', [SWEEP_LOCK])) as {
        rows: Array<{ locked: boolean }>;
      };
      if (!rows[0]?.locked) return undefined;
      return deps.payloads.sweepBatch(trx, GRACE_SECONDS, from, batchSize);
    });
  }

  /** Sweeps until fewer than a batch of expired rows is left (or the sweeper stops); returns how many went. */
  async function sweepOnce(): Promise<number> {
    let total = 0;
    let from = '-infinity';
    while (!stopping) {
      const batch = await sweepBatch(from);
      if (batch === undefined) return total;
      total += batch.deleted;
      if (batch.deleted < batchSize || !batch.last) return total;
      // Rows expiring at exactly `last` may be left over; >= finds them again.
      from = batch.last;
    }
    return total;
  }

  /** One scheduled pass: expired provider rows, retired keys and the others, then afterSweep. */
  async function runPass(): Promise<void> {
    const [rows, keys, ...others] = await Promise.all([sweepOnce(), deps.keys.purgeRetired(), ...(deps.others ?? []).map((sweep) => sweep())]);
    if (rows || keys || others.some(Boolean)) deps.logger.info({ rows, keys, others }, 'swept expired rows');
    const started = performance.now();
    const vacuumed = deps.afterSweep && !stopping ? await deps.afterSweep() : [];
    if (vacuumed.length) deps.logger.info({ tables: vacuumed, ms: Math.round(performance.now() - started) }, 'vacuumed');
  }

  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> | undefined;
  return {
    sweepOnce,
    runPass,
    start(intervalSeconds: number) {
      timer = setInterval(() => {
        if (running) return;
        running = runPass()
          .catch((err: unknown) => deps.logger[err instanceof StoreUnavailable ? 'debug' : 'warn']({ err }, 'sweep failed'))
          .finally(() => {
            running = undefined;
          });
      }, intervalSeconds * 1000);
      timer.unref();
    },
    async stop() {
      stopping = true;
      if (timer) clearInterval(timer);
      await running;
    },
  };
}
