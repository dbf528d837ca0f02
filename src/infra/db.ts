import { mkdirSync } from 'node:fs';
import path from 'node:path';
import knexFactory, { type Knex } from 'knex';
import ClientPgLite from 'knex-pglite';
import type { PGlite } from '@electric-sql/pglite';
import { runPgliteStatement } from './pglite-statements.ts';
import pg from 'pg';
import type { Logger } from './logger.ts';
import { activeTracing } from './tracing.ts';
import { isDeadDatabase, describeDatabaseFailure, outageAwarePgClient, type NamedStatementClient } from './pg-outages.ts';
import { createStoreBreaker } from './store-outage.ts';

// Postgres returns bigint counts and numerics as strings; counts here always fit in a JS number.
pg.types.setTypeParser(20, (v) => Number.parseInt(v, 10));

export interface DbSettings {
  databaseUrl?: string | undefined;
  dataDir: string;
  poolMax: number;
  /** PostgreSQL only: the deadline of every statement (DB_STATEMENT_TIMEOUT_MS). */
  statementTimeoutMs?: number;
  /** PostgreSQL only: how long a query waits for a pooled connection (DB_ACQUIRE_TIMEOUT_MS). */
  acquireTimeoutMs?: number;
  /** Where the circuit breaker logs its transitions; without one they are not logged. */
  logger?: Logger;
}

export type Db = Knex & { kind: 'postgres' | 'pglite' };

/**
 * PostgreSQL through pg when DATABASE_URL is set, else the embedded PGlite under DATA_DIR/pgdata.
 *
 * On PostgreSQL every call has a deadline: statement_timeout per connection (the server cancels a
 * statement that runs or waits on a lock too long), the same plus a second on the client (for a
 * server that does not answer at all), idle_in_transaction_session_timeout (a hung instance cannot
 * keep its locks), and an acquire timeout for a pooled connection. PGlite runs in this process:
 * nothing there can hang without the process itself.
 */
export function createDb(settings: DbSettings): Db {
  if (settings.databaseUrl) {
    const statementTimeout = settings.statementTimeoutMs ?? 5000;
    const acquireTimeout = settings.acquireTimeoutMs ?? 5000;
    const logger = settings.logger ?? silentLogger;
    const breaker = createStoreBreaker('database', logger, isDeadDatabase, describeDatabaseFailure);
    const db = knexFactory({
      client: outageAwarePgClient(breaker),
      connection: {
        connectionString: settings.databaseUrl,
        statement_timeout: statementTimeout,
        query_timeout: statementTimeout + 1000,
        idle_in_transaction_session_timeout: statementTimeout * 2,
        connectionTimeoutMillis: acquireTimeout,
      },
      pool: { min: 0, max: settings.poolMax, createTimeoutMillis: acquireTimeout },
      acquireConnectionTimeout: acquireTimeout,
      // Knex writes its warnings (a failed acquire, a lost connection) to the console, with stack
      // traces; they go to our log instead, below the breaker's one line per transition.
      log: {
        warn: (message: unknown) => logger.debug({ knex: String(message).slice(0, 300) }, 'knex warning'),
        error: (message: unknown) => logger.warn({ knex: String(message).slice(0, 300) }, 'knex error'),
        deprecate: (method: unknown, alternative: unknown) => logger.warn({ method, alternative }, 'knex deprecation'),
        debug: () => {},
      },
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

/**
 * A statement of the hot token path: fixed text (batches pass arrays or one JSON document, never a
 * varying number of placeholders), so PostgreSQL parses and plans it once per connection, by name.
 */
export interface Statement {
  name: string;
  text: string;
}

export interface StatementResult {
  rows: Array<Record<string, unknown>>;
  rowCount: number;
}

interface RawClient extends NamedStatementClient {
  acquireConnection(): Promise<unknown>;
  releaseConnection(connection: unknown): Promise<void>;
}

/**
 * Runs `statement` on a connection of knex's pool without the query builder (whose SQL compiling
 * cost CPU on every token request). On PostgreSQL it runs straight on a connection of knex's pool
 * (pg-outages.ts runNamed), with the circuit breaker, the deadlines and the 503 mapping of any
 * query; on PGlite the one connection is taken from the pool, so the statement never runs inside
 * another caller's open transaction, and it runs as a prepared statement too
 * (infra/pglite-statements.ts).
 */
export async function runStatement(db: Db, statement: Statement, values: unknown[]): Promise<StatementResult> {
  const tracing = activeTracing();
  return tracing ? tracing.querySpan(statement.text, () => runUntraced(db, statement, values)) : runUntraced(db, statement, values);
}

async function runUntraced(db: Db, statement: Statement, values: unknown[]): Promise<StatementResult> {
  const client = db.client as unknown as RawClient;
  if (db.kind === 'postgres') {
    const result = await client.runNamed(statement, values);
    return { rows: result.rows, rowCount: result.rowCount ?? 0 };
  }
  const connection = await client.acquireConnection();
  try {
    (db.client as unknown as NodeJS.EventEmitter).emit('query', { sql: statement.text, bindings: values, name: statement.name });
    return await runPgliteStatement(connection as PGlite, statement, values);
  } finally {
    await client.releaseConnection(connection);
  }
}

const silentLogger = { error() {}, warn() {}, info() {}, debug() {} } as unknown as Logger;

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
