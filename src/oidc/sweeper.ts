import type { Knex } from 'knex';
import type { Logger } from '../infra/logger.ts';
import { StoreUnavailable } from '../infra/store-outage.ts';
import type { OidcPayloadsRepo } from '../repos/oidc-payloads.ts';
import type { KeyService } from '../domain/keys/keys.ts';

// Any constant shared by every instance: only the holder of the lock sweeps.
const SWEEP_LOCK = 0x1d9_5eed;

/**
 * Deletes expired provider rows (and retired keys) in batches. Consumed refresh tokens stay until
 * they expire, so reuse detection keeps working. Several instances take turns through an advisory lock.
 */
export function createSweeper(deps: {
  db: Knex;
  payloads: OidcPayloadsRepo;
  keys: KeyService;
  logger: Logger;
  /** Other expiring rows to delete on the same schedule (idempotency keys...). */
  others?: Array<() => Promise<number>>;
}) {
  async function sweepOnce(): Promise<number> {
    return deps.db.transaction(async (trx) => {
      const { rows } = (await trx.raw('select pg_try_advisory_xact_lock(?) as locked', [SWEEP_LOCK])) as {
        rows: Array<{ locked: boolean }>;
      };
      if (!rows[0]?.locked) return 0;
      return deps.payloads.sweepExpired(trx, 60);
    });
  }

  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> | undefined;
  return {
    sweepOnce,
    start(intervalSeconds: number) {
      timer = setInterval(() => {
        if (running) return;
        running = Promise.all([sweepOnce(), deps.keys.purgeRetired(), ...(deps.others ?? []).map((sweep) => sweep())])
          .then(([rows, keys, ...others]) => {
            if (rows || keys || others.some(Boolean)) deps.logger.info({ rows, keys, others }, 'swept expired rows');
          })
          .catch((err: unknown) => deps.logger[err instanceof StoreUnavailable ? 'debug' : 'warn']({ err }, 'sweep failed'))
          .finally(() => {
            running = undefined;
          });
      }, intervalSeconds * 1000);
      timer.unref();
    },
    async stop() {
      if (timer) clearInterval(timer);
      await running;
    },
  };
}
