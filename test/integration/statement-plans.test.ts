import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { createDb, type Db } from '../../src/infra/db.ts';
import { migrateLatest } from '../../src/infra/migrate.ts';
import { findMany, writeHeld, writeMany } from '../../src/repos/payload-statements.ts';
import { ANALYZE_AFTER_ROWS, createOidcPayloadsRepo } from '../../src/repos/oidc-payloads.ts';
import { createTestStore, onPostgres, type TestStore } from '../helpers/server.ts';

/**
 * The token path's statements are prepared once per connection (infra/db.ts runStatement), and
 * PostgreSQL caches a generic plan for each after its fifth run, made from the table as it is
 * then: on a fresh install nearly empty, where scanning the whole table is the cheapest plan. That
 * plan stays while the table grows until the table is analyzed; with autovacuum off, never (every
 * token write read the whole table: 0.5 ms a write at 2,000 rows, 2.5 ms at 18,000). The server
 * analyzes the table once it has written enough rows to it (repos/growth-analyzer.ts). This test
 * grows the table, with autovacuum off, under a connection that ran the statements while it was
 * nearly empty, and asks for the plans it would use now.
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
      await payloads.writeHeld({ upserts: [], deletes: [{ model: 'Interaction', key: `gone-${i}` }] });
    }
    await payloads.upsert('RefreshToken', 'to-consume', { kind: 'RefreshToken', clientId: 'c' }, expiresAt, {});
    await payloads.consume('RefreshToken', 'to-consume');

    // Tokens issued as a server issues them, many at a time, until the server looks at the table.
    await Promise.all(
      Array.from({ length: ANALYZE_AFTER_ROWS }, (_, i) =>
        payloads.upsert('ClientCredentials', `issued-${i}`, { kind: 'ClientCredentials', clientId: 'c' }, expiresAt, {}),
      ),
    );
    if (onPostgres) {
      const deadline = Date.now() + 20_000;
      const reltuples = async () =>
        Number(((await db.raw(`select reltuples from pg_class where oid = 'oidc_payloads'::regclass`)) as { rows: Array<{ reltuples: number }> }).rows[0]!.reltuples);
      while ((await reltuples()) < ANALYZE_AFTER_ROWS / 2) {
        assert.ok(Date.now() < deadline, `the table was not analyzed: reltuples ${await reltuples()}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    // Then it grows on, and is not analyzed again.
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
      "a request's held writes": await planOf(writeHeld, [lit(row), 'null', 'null', lit('{Interaction}'), lit('{gone}')]),
    };
    for (const [what, plan] of Object.entries(plans)) {
      assert.match(plan, /oidc_payloads/, `${what}: the plan names the table`);
      assert.doesNotMatch(plan, /"Node Type":\s*"Seq Scan"[^}]*"Relation Name":\s*"oidc_payloads"/, `${what} scans the whole table: ${plan}`);
    }
  });
});
