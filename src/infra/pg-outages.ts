import type { Knex } from 'knex';
import ClientPg from 'knex/lib/dialects/postgres/index.js';
import { StoreUnavailable, type StoreBreaker } from './store-outage.ts';

/**
 * How a PostgreSQL failure is read: a dead or silent database (it opens the circuit), a database
 * that cannot do this work now (this request ends with 503), or an ordinary error.
 */

// SQLSTATEs of a database that is going away or cannot take the work now. 57014 is a statement
// cancelled by statement_timeout, 55P03 a lock not granted in time.
const UNAVAILABLE_SQLSTATES = new Set(['57P01', '57P02', '57P03', '57014', '55P03', '53000', '53100', '53200', '53300', '53400']);
// The driver's own failures: no connection, a connection lost, no answer in time.
const CLIENT_SIDE_FAILURES = /^(Query read timeout|Connection terminated|Client was closed|Client has encountered a connection error|timeout exceeded when trying to connect)/;
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

function sqlState(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** The database is gone or hung, as seen from here: no connection in time, or one lost or silent. */
export function isDeadDatabase(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (err.name === 'KnexTimeoutError') return true;
  const code = sqlState(err);
  if (code && (NETWORK_CODES.has(code) || code.startsWith('08') || code === '57P03' || code === '53300')) return true;
  return CLIENT_SIDE_FAILURES.test(err.message) || CLIENT_SIDE_FAILURES.test(err.message.split(' - ').pop() ?? '');
}

/** A failure that ends the request with 503: the database is dead, or it could not do this work in time. */
function isDatabaseUnavailable(err: unknown): boolean {
  return isDeadDatabase(err) || UNAVAILABLE_SQLSTATES.has(sqlState(err) ?? '');
}

export function describeDatabaseFailure(err: unknown): string {
  const code = sqlState(err);
  if (code === '57014') return 'statement timeout';
  if (code === '55P03') return 'lock timeout';
  if (code === '57P01') return 'connection terminated by the server';
  if ((err as Error | undefined)?.name === 'KnexTimeoutError') return 'no pooled connection in time';
  const message = err instanceof Error ? (err.message.split(' - ').pop() ?? err.message) : String(err);
  return code ? `${code}: ${message.slice(0, 160)}` : message.slice(0, 160);
}

/** A pooled connection as knex hands it out: a pg client, marked when it must not be reused. */
interface PooledPgConnection {
  __knex__disposed?: unknown;
  __knexUid?: string;
  query(config: { name: string; text: string; values: unknown[] }, callback: (err: Error | null, result: PgResult) => void): void;
}

interface PgResult {
  rows: Array<Record<string, unknown>>;
  rowCount: number | null;
}

/** What the outage-aware client adds to knex's: a named statement run straight on a pooled connection. */
export interface NamedStatementClient {
  runNamed(statement: { name: string; text: string }, values: unknown[]): Promise<PgResult>;
}

/**
 * Knex's PostgreSQL client with every connection acquisition and query run through a circuit
 * breaker. Knex builds transactions' clients from this prototype, so they are covered too. Only a
 * dead or silent database opens the circuit; a statement cancelled at its deadline (a locked table)
 * ends its own request with 503 but says nothing about the others.
 */
export function outageAwarePgClient(breaker: StoreBreaker): typeof Knex.Client {
  const guarded = <T>(work: () => Promise<T>): Promise<T> =>
    breaker.run(work).catch((err: unknown) => {
      if (err instanceof StoreUnavailable) throw err;
      // The database answered, but cannot do this work now (a statement deadline, a lock, its
      // own shutdown of this connection): this request ends with 503; the circuit is not told.
      if (isDatabaseUnavailable(err)) throw new StoreUnavailable('database', describeDatabaseFailure(err), { cause: err });
      throw err;
    });
  // A connection whose query got no answer may still get one later: never hand it out again.
  // isDeadDatabase is also what the database's breaker counts as an outage (infra/db.ts).
  const disposeIfSilent = (connection: PooledPgConnection, err: unknown) => {
    if (isDeadDatabase(err)) connection.__knex__disposed ??= err;
  };

  return class OutageAwarePg extends ClientPg implements NamedStatementClient {
    override acquireConnection() {
      return breaker.run(() => super.acquireConnection() as Promise<unknown>);
    }
    override query(connection: PooledPgConnection, obj: unknown) {
      return guarded(() =>
        (super.query(connection, obj) as Promise<unknown>).catch((err: unknown) => {
          disposeIfSilent(connection, err);
          throw err;
        }),
      );
    }
    /**
     * A statement of the hot paths (infra/db.ts runStatement) on a connection of this pool, past
     * knex's query wrapper: its placeholders are already $n, and knex would rewrite its text twice
     * (a regex for `?`, another for its debug output) and spell its values into any error's
     * message. Taking the connection, the statement and giving the connection back are one call
     * through the breaker; the connection's deadlines and the 503 mapping are those of every other
     * query, and the `query` event still tells listeners (statement counts in tests).
     */
    runNamed(statement: { name: string; text: string }, values: unknown[]): Promise<PgResult> {
      return guarded(async () => {
        const connection = (await super.acquireConnection()) as PooledPgConnection;
        try {
          // knex forwards its client's `query` events to the knex object's listeners.
          this.emit('query', { __knexUid: connection.__knexUid, sql: statement.text, bindings: values, method: 'raw', options: { name: statement.name } });
          return await new Promise<PgResult>((resolve, reject) =>
            connection.query({ name: statement.name, text: statement.text, values }, (err, result) => (err ? reject(err) : resolve(result))),
          );
        } catch (err) {
          disposeIfSilent(connection, err);
          throw err;
        } finally {
          await this.releaseConnection(connection);
        }
      });
    }
  };
}

/**
 * Why a boot could not use the database at DATABASE_URL, in one line naming the host (never the
 * password), or undefined when the failure is not about reaching it (a migration's own error).
 * 28xxx is a refused login, 3D000 a database that does not exist.
 */
export function describeUnreachableDatabase(err: unknown, databaseUrl: string): string | undefined {
  const code = sqlState(err) ?? '';
  if (!isDeadDatabase(err) && !code.startsWith('28') && code !== '3D000') return undefined;
  let where = 'DATABASE_URL';
  try {
    const url = new URL(databaseUrl);
    where = `${url.host}${url.pathname}`;
  } catch {
    // The schema checked its shape; a URL that still does not parse is named by the setting alone.
  }
  const reason = code && !NETWORK_CODES.has(code) ? describeDatabaseFailure(err) : (err instanceof Error ? err.message : String(err)).slice(0, 160);
  return `PostgreSQL at ${where} cannot be used: ${reason}`;
}
