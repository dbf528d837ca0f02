/**
 * node bench/statement-cost.ts [--in-flight=1,10] [--rounds=8] [--per-round=1000]
 *
 * What one named statement of the hot paths costs this process in CPU, on PostgreSQL (DATABASE_URL,
 * default the local one), through the path the server uses (infra/db.ts runStatement: knex's pool,
 * the circuit breaker, the connection) against two plainer ones measured in the same run, in turns:
 * pg's own Pool, and connections held for the whole run, one a caller (no pool at all: the floor).
 * Pinned to CPU 0 like the server; it prints the medians of the rounds and each one's ratio to the
 * held connections'. With one statement in flight every round trip wakes the database's backend;
 * with ten they overlap.
 */
import { parseArgs } from 'node:util';
import pg from 'pg';
import { createDb, runStatement, type Statement } from '../src/infra/db.ts';
import { pinSelf } from './proc.ts';
import { median } from './rounds.ts';
import { DEFAULT_DATABASE_URL } from './store.ts';

const { values } = parseArgs({
  options: { 'in-flight': { type: 'string', default: '1,10' }, rounds: { type: 'string', default: '8' }, 'per-round': { type: 'string', default: '1000' } },
});
const inFlightList = values['in-flight'].split(',').map(Number);
const rounds = Number(values.rounds);
const perRound = Number(values['per-round']);
if (![...inFlightList, rounds, perRound].every((n) => Number.isInteger(n) && n > 0)) {
  process.stderr.write('usage: node bench/statement-cost.ts [--in-flight=1,10] [--rounds=8] [--per-round=1000]\n');
  process.exit(2);
}
const url = process.env.DATABASE_URL || DEFAULT_DATABASE_URL;

// A read of the shape of the token path's (a few columns, one row, a timestamp to parse).
const STATEMENT: Statement = { name: 'bench_statement_cost', text: 'select $1::text as id, $2::int as n, now() as at' };
const VALUES = ['abc', 1];

const pinned = pinSelf(0);
const db = createDb({ databaseUrl: url, dataDir: '.', poolMax: 10 });
const pool = new pg.Pool({ connectionString: url, max: 10 + Math.max(...inFlightList) });
const held = await Promise.all(Array.from({ length: Math.max(...inFlightList) }, () => pool.connect()));
/** Each path runs one statement for caller number `caller`. */
const paths: Record<string, (caller: number) => Promise<unknown>> = {
  'ours (runStatement)': () => runStatement(db, STATEMENT, VALUES),
  'pg.Pool': () => pool.query({ ...STATEMENT, values: VALUES }),
  'held connection': (caller) => held[caller]!.query({ ...STATEMENT, values: VALUES }),
};

/** CPU µs (user + system) of this process per statement, `inFlight` callers at a time. */
async function cpuPerStatement(run: (caller: number) => Promise<unknown>, inFlight: number, count: number): Promise<number> {
  let left = count;
  const start = process.cpuUsage();
  await Promise.all(Array.from({ length: inFlight }, async (_, caller) => {
    while (left-- > 0) await run(caller);
  }));
  const used = process.cpuUsage(start);
  return (used.user + used.system) / count;
}

try {
  process.stdout.write(`${pinned ? 'pinned to CPU 0' : 'not pinned (no taskset)'}; ${rounds} rounds of ${perRound} statements a path, in turns\n`);
  for (const inFlight of inFlightList) {
    for (const run of Object.values(paths)) await cpuPerStatement(run, inFlight, perRound); // warm-up: connections, plans, JIT
    const samples = new Map<string, number[]>(Object.keys(paths).map((name) => [name, []]));
    for (let round = 0; round < rounds; round++) {
      // The order turns every round, so no path always runs after the same one.
      const order = Object.entries(paths);
      if (round % 2) order.reverse();
      for (const [name, run] of order) samples.get(name)!.push(await cpuPerStatement(run, inFlight, perRound));
    }
    const floor = median(samples.get('held connection')!);
    process.stdout.write(`\n${inFlight} in flight: CPU µs per statement (median), ratio to a held connection\n`);
    for (const [name, xs] of samples) process.stdout.write(`  ${name.padEnd(20)} ${median(xs).toFixed(1).padStart(6)}  ×${(median(xs) / floor).toFixed(2)}\n`);
  }
} finally {
  for (const connection of held) connection.release();
  await pool.end();
  await db.destroy();
}
