import type { Knex } from 'knex';

/**
 * PGlite runs PostgreSQL in single-user mode, where autovacuum never runs: rows deleted (the
 * sweeper's expired tokens) or updated (every consumed code and refresh token) stay dead, their
 * space is never reused and the indexes keep pointing at them, so the data files only grow; and the
 * planner's statistics are never refreshed. This does what autovacuum would, with its default
 * thresholds: VACUUM (ANALYZE) each table with more dead rows than 50 + 20% of its live ones, or
 * more rows changed since its last analyze than 50 + 10%. Answers the tables it vacuumed.
 */
export async function vacuumWhereDue(db: Knex): Promise<string[]> {
  // A backend's own counters reach pg_stat_user_tables when it flushes them, at most once a second.
  await db.raw('select pg_stat_force_next_flush()');
  const { rows } = (await db.raw(
    `select relname from pg_stat_user_tables
     where schemaname = current_schema()
       and (n_dead_tup > 50 + 0.2 * n_live_tup or n_mod_since_analyze > 50 + 0.1 * n_live_tup)
     order by relname`,
  )) as { rows: Array<{ relname: string }> };
  for (const { relname } of rows) await db.raw('vacuum (analyze) ??', [relname]);
  return rows.map((row) => row.relname);
}
