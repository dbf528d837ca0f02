import type { Db } from '../infra/db.ts';

/**
 * PostgreSQL caches a generic plan for a named statement (runStatement) after its fifth run on a
 * connection, made from the table's size at that moment, and keeps it until the table is analyzed
 * again. Made while the token table was nearly empty (a fresh install), the cheapest plan of the
 * token path's lookups and writes scans the whole table, and it stays as the table grows:
 * autovacuum's next analyze remakes it, within a minute or so, but with autovacuum off nothing
 * would (2.5 ms a token write at 18,000 rows, and growing). Planning every run instead
 * (plan_cache_mode=force_custom_plan) would cost PostgreSQL 0.1–0.3 ms per statement against the
 * 0.03 ms of running one.
 *
 * So once this instance has written `afterRows` rows to the table, if its statistics still count
 * fewer than half that, it is analyzed once: every connection's cached plans are remade from its
 * real size, and a plan made at that size keeps using the indexes as the table grows. On PGlite,
 * whose statements are planned every run and whose tables the server vacuums itself
 * (infra/pglite-statements.ts, infra/pglite-maintenance.ts), it does nothing.
 */
export function createGrowthAnalyzer(db: Db, table: string, afterRows: number) {
  let written = 0;
  let settled = db.kind !== 'postgres';

  async function analyzeIfStale() {
    const { rows } = (await db.raw('select reltuples from pg_class where oid = ?::regclass', [table])) as { rows: Array<{ reltuples: number }> };
    // -1: never analyzed.
    if (Number(rows[0]?.reltuples ?? -1) < afterRows / 2) await db.raw('analyze ??', [table]);
  }

  return {
    /** Counts rows this instance wrote; the analyze runs on its own, never in the writer's way. */
    wrote(rows: number) {
      if (settled) return;
      written += rows;
      if (written < afterRows) return;
      settled = true;
      analyzeIfStale().catch(() => {
        // The database is away: try again after as many rows more.
        written = 0;
        settled = false;
      });
    },
  };
}
