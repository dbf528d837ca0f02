/**
 * EXPLAIN (ANALYZE, BUFFERS) of the hot oidc_payloads statements, in the shapes src/repos/oidc-payloads.ts
 * sends them (Knex's SQL for find, consume, upsert, revokeByGrantId, findByUid and the sweeper's
 * delete), against rows picked at random from the table. Writes run inside a transaction that is
 * rolled back, so the table is left as it was. Used by the bench's scale mode (bench/scale.ts).
 */
import type pg from 'pg';
import { SWEEP_BATCH_SQL } from '../src/repos/oidc-payloads.ts';

export interface Plan {
  name: string;
  sql: string;
  params: unknown[];
  plan: string[];
}

/** The lines of a plan worth quoting: node types with their index, timings, buffers, row counts. */
export function keyLines(plan: string[]): string[] {
  return plan.filter((l) => /Scan|Update on|Delete on|Insert on|Conflict|Limit|Buffers: shared|Execution Time|Semi Join|Nested Loop|Sort|Hash/.test(l));
}

// One sample of each kind of row the hot paths read, chosen at random (about 0.01% of the pages).
const SAMPLE = `
  select model, id, grant_id, uid from oidc_payloads tablesample system (0.05)
  where model = $1 and (expires_at is null or expires_at > now()) and ($2::boolean or consumed_at is null)
  limit 1`;

async function sample(client: pg.ClientBase, model: string, consumedOk = true) {
  for (let tries = 0; tries < 20; tries++) {
    const { rows } = await client.query<{ model: string; id: string; grant_id: string | null; uid: string | null }>(SAMPLE, [model, consumedOk]);
    if (rows[0]) return rows[0];
  }
  throw new Error(`plans: no live ${model} row found to explain with`);
}

export async function explainHotQueries(client: pg.ClientBase, sweepGraceSeconds = 60, sweepBatch = 1000): Promise<Plan[]> {
  const at = await sample(client, 'AccessToken');
  const rt = await sample(client, 'RefreshToken', false);
  const session = await sample(client, 'Session');
  const grantId = rt.grant_id!;
  const statements: Array<Omit<Plan, 'plan'>> = [
    {
      name: 'find by model+id (AccessToken: introspection, findMany of one key)',
      sql: `select "model", "id", "payload", "consumed_at" from "oidc_payloads" where ("model", "id") in (($1, $2)) and (expires_at is null or expires_at > now())`,
      params: ['AccessToken', at.id],
    },
    {
      name: 'consume (RefreshToken: refresh)',
      sql: `update "oidc_payloads" set "consumed_at" = CURRENT_TIMESTAMP where "model" = $1 and "id" = $2 and "consumed_at" is null returning "id"`,
      params: ['RefreshToken', rt.id],
    },
    {
      name: 'upsert (a new AccessToken: every token grant)',
      sql:
        `insert into "oidc_payloads" ("account_id", "expires_at", "grant_id", "id", "model", "payload", "uid", "user_code") ` +
        `values ($1, $2, $3, $4, $5, $6, $7, $8) on conflict ("model", "id") do update set ` +
        `"payload" = excluded."payload", "grant_id" = excluded."grant_id", "uid" = excluded."uid", "user_code" = excluded."user_code", ` +
        `"account_id" = excluded."account_id", "expires_at" = excluded."expires_at"`,
      params: [null, new Date(Date.now() + 3_600_000), grantId, `plan-${Date.now()}-0123456789abcdefghijklmnopq`, 'AccessToken', '{"kind":"AccessToken"}', null, null],
    },
    {
      name: 'revokeByGrantId, one model (the provider revokes model by model)',
      sql: `delete from "oidc_payloads" where ("model", "id") in (select "model", "id" from "oidc_payloads" where "grant_id" = $1 and "model" = $2 limit $3)`,
      params: [grantId, 'RefreshToken', 500],
    },
    {
      name: 'revokeByGrantId, every model (reuse detection, session end)',
      sql: `delete from "oidc_payloads" where ("model", "id") in (select "model", "id" from "oidc_payloads" where "grant_id" = $1 limit $2)`,
      params: [grantId, 500],
    },
    {
      name: 'findByUid (Session: every request with a session cookie)',
      sql: `select "payload", "consumed_at" from "oidc_payloads" where "model" = $1 and "uid" = $2 and (expires_at is null or expires_at > now()) limit $3`,
      params: ['Session', session.uid, 1],
    },
    {
      name: `sweeper as it was (repos sweepExpired): one batch (${sweepBatch} rows expired over ${sweepGraceSeconds} s ago)`,
      sql:
        `delete from "oidc_payloads" where ("model", "id") in (select "model", "id" from "oidc_payloads" ` +
        `where expires_at < now() - make_interval(secs => $1) limit $2)`,
      params: [sweepGraceSeconds, sweepBatch],
    },
    {
      name: `sweeper (src/oidc/sweeper.ts): its first batch, ${SWEEP_STATEMENTS.after.batch} rows, oldest expiry first`,
      sql: SWEEP_STATEMENTS.after.sql,
      params: [sweepGraceSeconds, SWEEP_STATEMENTS.after.batch, '-infinity'],
    },
  ];
  const plans: Plan[] = [];
  for (const st of statements) {
    await client.query('begin');
    try {
      const { rows } = await client.query<{ 'QUERY PLAN': string }>(`explain (analyze, buffers) ${st.sql}`, st.params);
      plans.push({ ...st, plan: rows.map((r) => r['QUERY PLAN']) });
    } finally {
      await client.query('rollback');
    }
  }
  return plans;
}

export function formatPlans(plans: Plan[]): string {
  return plans
    .map((p) => `-- ${p.name}\n-- ${p.sql}\n-- params: ${JSON.stringify(p.params)}\n${p.plan.join('\n')}\n`)
    .join('\n');
}

/**
 * The sweeper's delete as it was (src/repos/oidc-payloads.ts sweepExpired: unordered LIMIT, rows found
 * again by primary key, 1,000 a batch, every batch in one transaction; run here in one transaction
 * and rolled back) and as src/oidc/sweeper.ts sends it now (from where the last batch stopped,
 * oldest expiry first through oidc_payloads_expires, by ctid, 2,000 a batch, each batch committed:
 * these rows are gone for good, part of the backlog the sweeper phase then has less to do), the
 * same number of rows each, with each batch's time.
 */
export const SWEEP_STATEMENTS = {
  before: {
    batch: 1000,
    sql: `delete from "oidc_payloads" where ("model", "id") in (select "model", "id" from "oidc_payloads" where expires_at < now() - make_interval(secs => $1) limit $2)`,
  },
  after: {
    batch: 2000,
    sql: SWEEP_BATCH_SQL,
  },
};

export interface SweepComparison {
  name: string;
  batch: number;
  batchMs: number[];
  rowsPerSecond: number;
  /** The old statement only: one batch's time once most of the backlog is gone in the same pass. */
  lateBatch?: { afterRows: number; ms: number; projectedPassSeconds: number };
}

/**
 * The old statement late in a pass: in one transaction (rolled back), the new statement deletes
 * `share` of the sweepable backlog (as the old sweeper's earlier batches would have, in its one
 * transaction), then one batch of the old statement is timed: its sequential scan starts again at
 * the first page and walks past every row deleted so far. The pass' projected time is the average
 * of the first and this batch times the number of batches (the scan grows linearly).
 */
async function lateOldBatch(client: pg.ClientBase, graceSeconds: number, firstMs: number, share = 0.9) {
  const { rows: [c] } = await client.query<{ n: string }>(
    `select count(*) as n from oidc_payloads where expires_at < now() - make_interval(secs => $1)`,
    [graceSeconds],
  );
  const backlog = Number(c!.n);
  const target = Math.floor(backlog * share);
  await client.query('begin');
  try {
    let done = 0;
    let from = '-infinity';
    while (done < target) {
      const { rows: [r] } = await client.query<{ deleted: number; last: Date | null }>(SWEEP_STATEMENTS.after.sql, [
        graceSeconds,
        Math.min(50_000, target - done),
        from,
      ]);
      if (!r?.deleted) break;
      done += r.deleted;
      if (r.last) from = r.last.toISOString();
    }
    const t0 = performance.now();
    await client.query(SWEEP_STATEMENTS.before.sql, [graceSeconds, SWEEP_STATEMENTS.before.batch]);
    const ms = Math.round((performance.now() - t0) * 10) / 10;
    const batches = backlog / SWEEP_STATEMENTS.before.batch;
    return { afterRows: done, ms, projectedPassSeconds: Math.round((batches * (firstMs + ms)) / 2 / 1000) };
  } finally {
    await client.query('rollback');
  }
}

export async function compareSweepStatements(client: pg.ClientBase, graceSeconds: number, rows = 100_000): Promise<SweepComparison[]> {
  const out: SweepComparison[] = [];
  const timed = async (run: () => Promise<number>, batch: number) => {
    const batchMs: number[] = [];
    let done = 0;
    while (done < rows) {
      const t0 = performance.now();
      const n = await run();
      batchMs.push(Math.round((performance.now() - t0) * 10) / 10);
      done += n;
      if (n < batch) break;
    }
    return { batchMs, rowsPerSecond: Math.round(done / (batchMs.reduce((a, b) => a + b, 0) / 1000)) };
  };
  const before = SWEEP_STATEMENTS.before;
  await client.query('begin');
  let old: SweepComparison;
  try {
    old = { name: 'before', batch: before.batch, ...(await timed(async () => (await client.query(before.sql, [graceSeconds, before.batch])).rowCount ?? 0, before.batch)) };
  } finally {
    await client.query('rollback');
  }
  old.lateBatch = await lateOldBatch(client, graceSeconds, old.batchMs[0] ?? 0);
  out.push(old);
  const after = SWEEP_STATEMENTS.after;
  let from = '-infinity';
  out.push({
    name: 'after',
    batch: after.batch,
    ...(await timed(async () => {
      const { rows: [r] } = await client.query<{ deleted: number; last: Date | null }>(after.sql, [graceSeconds, after.batch, from]);
      if (r?.last) from = r.last.toISOString();
      return r?.deleted ?? 0;
    }, after.batch)),
  });
  return out;
}

export function formatSweepComparison(c: SweepComparison[]): string {
  return c
    .map((x) => {
      const ms = x.batchMs;
      const every = Math.max(1, Math.floor(ms.length / 10));
      const sampled = ms.filter((_, i) => i % every === 0);
      const late = x.lateBatch
        ? `; one batch after ${x.lateBatch.afterRows} rows deleted in the same pass: ${x.lateBatch.ms} ms (the whole backlog in one pass: about ${x.lateBatch.projectedPassSeconds} s)`
        : '';
      return `${x.name}: ${x.batch} rows a batch, ${ms.length} batches, first ${ms[0]} ms, last ${ms[ms.length - 1]} ms, ${x.rowsPerSecond} rows/s (ms, every ${every}th batch: ${sampled.join(' ')})${late}`;
    })
    .join('\n');
}
