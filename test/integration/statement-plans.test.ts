import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { createDb, type Db } from '../../src/infra/db.ts';
import { migrateLatest } from '../../src/infra/migrate.ts';
import { findMany, writeMany } from '../../src/repos/payload-statements.ts';
import { createOidcPayloadsRepo } from '../../src/repos/oidc-payloads.ts';
import { createTestStore, onPostgres, type TestStore } from '../helpers/server.ts';

/**
 * The token path's statements are prepared once per connection (infra/db.ts runStatement). If
 * PostgreSQL were left to cache a generic plan for them, it would make it from the table as it
 * was after a statement's first five runs: on a fresh install, nearly empty, where scanning the
 * whole table is the cheapest plan. That plan stays while the table grows (until an ANALYZE), so
 * every token write then read the whole table: measured at 0.5 ms a write with 2,000 rows and
 * 2.5 ms with 18,000. The statements are planned for every run instead; this test grows the
 * table under a connection that already ran them and asks for the plan it would use now.
 */
describe('the token path as the token table grows', () => {
  let store: TestStore;
  let db: Db;

  before(async () => {
    store = await createTestStore();
    // One connection: the one that ran the statements is the one asked for their plan.
    db = createDb({ databaseUrl: store.env.DATABASE_URL, dataDir: store.dataDir, poolMax: 1 });
    await migrateLatest(db);
    // No ANALYZE of its own may replan in between (PGlite has no autovacuum).
    if (onPostgres) await db.raw('alter table oidc_payloads set (autovacuum_enabled = false)');
  });
  after(async () => {
    await db?.destroy();
    await store?.destroy();
  });

  /** The plan `statement` would run with now on the pool's one connection, as JSON text. */
  async function planOf(statement: { name: string }, args: string[]): Promise<string> {
    const result = (await db.raw(`explain (format json) execute ${statement.name}(${args.join(', ')})`)) as { rows: Array<Record<string, unknown>> };
    return JSON.stringify(result.rows);
  }

  it('reads and writes tokens through the primary key, not by scanning the table, once it holds 20,000 rows', async () => {
    const payloads = createOidcPayloadsRepo(db);
    const expiresAt = new Date(Date.now() + 600_000);
    // Twelve runs each on the nearly empty table: past the five after which a generic plan is made.
    for (let i = 0; i < 12; i++) {
      await payloads.upsert('ClientCredentials', `small-${i}`, { kind: 'ClientCredentials', clientId: 'c' }, expiresAt, {});
      await payloads.findMany([['ClientCredentials', `small-${i}`]], [], [], []);
    }
    await payloads.upsert('RefreshToken', 'to-consume', { kind: 'RefreshToken', clientId: 'c' }, expiresAt, {});
    await payloads.consume('RefreshToken', 'to-consume');

    await db.raw(
      `insert into oidc_payloads (model, id, payload, expires_at)
       select 'ClientCredentials', md5(i::text), '{"kind":"ClientCredentials"}'::jsonb, now() + interval '1 hour'
       from generate_series(1, 20000) as i`,
    );

    const lit = (value: string) => pg.escapeLiteral(value);
    const row = JSON.stringify([
      { model: 'ClientCredentials', id: 'new', payload: {}, grant_id: null, uid: null, user_code: null, account_id: null, expires_at: null },
    ]);
    const plans = {
      'a write': await planOf(writeMany, [lit(row), `'{}'`, `'{}'`]),
      'a write with a consume': await planOf(writeMany, [lit(row), lit('{RefreshToken}'), lit('{to-consume}')]),
      'a lookup': await planOf(findMany, [lit('{ClientCredentials}'), lit(`{${'a'.repeat(43)}}`), `'{}'`, `'{}'`, `'{}'`]),
    };
    for (const [what, plan] of Object.entries(plans)) {
      assert.match(plan, /oidc_payloads/, `${what}: the plan names the table`);
      assert.doesNotMatch(plan, /"Node Type":\s*"Seq Scan"[^}]*"Relation Name":\s*"oidc_payloads"/, `${what} scans the whole table: ${plan}`);
    }
  });
});
