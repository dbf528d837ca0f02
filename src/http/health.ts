import Router from '@koa/router';
import type { Knex } from 'knex';
import type { EphemeralStore } from '../infra/ephemeral/index.ts';

async function check(name: string, probe: () => Promise<unknown>, timeoutMs = 2000): Promise<[string, string]> {
  try {
    await Promise.race([
      probe(),
      new Promise((_, reject) => setTimeout(() => reject(new Error('timeout')), timeoutMs).unref()),
    ]);
    return [name, 'ok'];
  } catch {
    return [name, 'unavailable'];
  }
}

/** /healthz: the process answers. /readyz: the database and the ephemeral store answer too. */
export function healthRoutes(deps: { db: Knex; ephemeral: EphemeralStore }) {
  const router = new Router();
  router.get('/healthz', (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    ctx.body = { status: 'ok' };
  });
  router.get('/readyz', async (ctx) => {
    const checks = Object.fromEntries(
      await Promise.all([
        check('database', () => deps.db.raw('select 1')),
        check(deps.ephemeral.kind === 'redis' ? 'redis' : 'ephemeral', () => deps.ephemeral.ping()),
      ]),
    );
    const ok = Object.values(checks).every((v) => v === 'ok');
    ctx.set('Cache-Control', 'no-store');
    ctx.status = ok ? 200 : 503;
    ctx.body = { status: ok ? 'ok' : 'unavailable', checks, ephemeral: deps.ephemeral.kind };
  });
  return router;
}
