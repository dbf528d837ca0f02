import { mkdirSync } from 'node:fs';
import path from 'node:path';
import knexFactory, { type Knex } from 'knex';
import ClientPgLite from 'knex-pglite';
import pg from 'pg';

// Postgres returns bigint counts and numerics as strings; counts here always fit in a JS number.
pg.types.setTypeParser(20, (v) => Number.parseInt(v, 10));

export interface DbSettings {
  databaseUrl?: string | undefined;
  dataDir: string;
  poolMax: number;
}

export type Db = Knex & { kind: 'postgres' | 'pglite' };

/** PostgreSQL through pg when DATABASE_URL is set, else the embedded PGlite under DATA_DIR/pgdata. */
export function createDb(settings: DbSettings): Db {
  if (settings.databaseUrl) {
    const db = knexFactory({
      client: 'pg',
      connection: settings.databaseUrl,
      pool: { min: 0, max: settings.poolMax },
      acquireConnectionTimeout: 10_000,
    });
    return Object.assign(db, { kind: 'postgres' as const });
  }
  const dir = path.resolve(settings.dataDir, 'pgdata');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const db = knexFactory({
    client: ClientPgLite as unknown as typeof Knex.Client,
    dialect: 'postgres',
    connection: { filename: dir } as Knex.StaticConnectionConfig,
    acquireConnectionTimeout: 60_000,
  });
  return Object.assign(db, { kind: 'pglite' as const });
}

/** Rows affected by a delete/update: a number from pg, a result object from knex-pglite. */
export function affectedRows(result: unknown): number {
  if (typeof result === 'number') return result;
  const r = result as { rowCount?: number; affectedRows?: number } | undefined;
  return r?.rowCount ?? r?.affectedRows ?? 0;
}

/** PostgreSQL text cannot hold NUL: a key containing one cannot exist, so lookups skip the query. */
export function hasNul(value: string): boolean {
  return value.includes('\0');
}

/** One page of a query, oldest first (ties broken by `idColumn`), with the total for the same filter. */
export async function paged<T>(
  query: () => Knex.QueryBuilder,
  idColumn: string,
  offset: number,
  limit: number,
): Promise<{ rows: T[]; total: number }> {
  const [rows, counted] = await Promise.all([
    query().orderBy([{ column: 'created_at' }, { column: idColumn }]).offset(offset).limit(limit),
    query().count({ count: '*' }),
  ]);
  return { rows: rows as T[], total: Number((counted as Array<{ count: number | string }>)[0]?.count ?? 0) };
}
