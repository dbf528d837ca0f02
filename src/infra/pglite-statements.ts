import { parse, protocol, type PGlite } from '@electric-sql/pglite';
import type { Statement, StatementResult } from './db.ts';

/**
 * Named prepared statements on PGlite, which its query() API does not offer: query() parses and
 * describes every statement again, in this process, in six calls into the database. Here a
 * statement is parsed once per database (Parse + Describe), and each run is one call carrying
 * Bind, Describe, Execute and Sync. Values are serialized and rows parsed with PGlite's own
 * serializers and parsers, as query() does.
 *
 * Every run is still planned for its values, as query() planned it: before its first statement
 * the connection is set to plan_cache_mode force_custom_plan (a session setting; knex-pglite takes
 * no pool hooks), so only the parsing and the calls are saved and the plans stay those measured.
 * The first round of this change (reverted in d4d4a7e) let PostgreSQL switch to generic plans and
 * was measured 2.5 times slower on refreshes. The reason, found later: a generic plan is made once,
 * from the table as it is then (a nearly empty token table: a whole-table scan), and kept as the
 * table grows (test/integration/statement-plans.test.ts). On PostgreSQL, where planning every run
 * would cost more than running, the server analyzes the grown table instead (repos/growth-analyzer.ts).
 */

const preparedOn = new WeakMap<PGlite, Map<string, number[]>>();

type WithTypes = PGlite & {
  serializers: Record<number, (value: unknown) => string>;
  parsers: Parameters<typeof parse.parseResults>[1];
};

async function parameterTypes(pg: PGlite, statement: Statement): Promise<number[]> {
  let prepared = preparedOn.get(pg);
  if (!prepared) {
    await pg.execProtocol(protocol.serialize.query('set plan_cache_mode = force_custom_plan'));
    preparedOn.set(pg, (prepared = new Map()));
  }
  let types = prepared.get(statement.name);
  if (!types) {
    const { messages } = await pg.execProtocol(
      Buffer.concat([
        protocol.serialize.parse({ name: statement.name, text: statement.text }),
        protocol.serialize.describe({ type: 'S', name: statement.name }),
        protocol.serialize.sync(),
      ]),
    );
    types = parse.parseDescribeStatementResults(messages);
    prepared.set(statement.name, types);
  }
  return types;
}

/**
 * Runs a statement on `pg`. The caller holds it exclusively (knex's one pooled connection); the
 * query lock is taken as well, as query() does, so nothing else talking to the instance can
 * interleave its messages with these.
 */
export function runPgliteStatement(pg: PGlite, statement: Statement, values: unknown[]): Promise<StatementResult> {
  return pg._runExclusiveQuery(async () => {
    const types = await parameterTypes(pg, statement);
    const { serializers, parsers } = pg as WithTypes;
    const serialized = values.map((value, i) => {
      if (value == null) return null;
      const serialize = serializers[types[i]!];
      return serialize ? serialize(value) : String(value);
    });
    const { messages } = await pg.execProtocol(
      Buffer.concat([
        protocol.serialize.bind({ statement: statement.name, values: serialized }),
        protocol.serialize.describe({ type: 'P' }),
        protocol.serialize.execute({}),
        protocol.serialize.sync(),
      ]),
    );
    const [result] = parse.parseResults(messages, parsers);
    return { rows: (result?.rows ?? []) as Array<Record<string, unknown>>, rowCount: result?.affectedRows ?? 0 };
  });
}
