/**
 * The bench's scale mode (`npm run bench -- --store=postgres --scale=10000000`; bench/README.md "Scale").
 *
 * One store, one run: seed oidc_payloads to the small size (--scale-base, 10 k), measure introspection
 * and refresh; grow the same table to --scale rows (bench/seed-scale.ts), VACUUM ANALYZE, measure
 * again; EXPLAIN (ANALYZE, BUFFERS) the hot statements at that size (bench/plans.ts); then restart
 * the server with the sweeper on (--sweep-interval) and measure what it deletes per second while
 * introspection and refresh run, next to the same scenarios without it. The server runs with
 * SWEEP_INTERVAL_SECONDS=86400 (no pass within the run) until the sweeper phase.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { familiesFor, seedFamilies } from './seed-scale.ts';
import { compareSweepStatements, explainHotQueries, formatPlans, formatSweepComparison, keyLines } from './plans.ts';
import { startNode, waitReady, freePort, type ServerProcess } from './proc.ts';
import type { BenchStore } from './store.ts';

export interface ScaleSettings {
  scale: number;
  scaleBase: number;
  scaleExpired: number;
  sweepInterval: number;
  duration: number;
  connections: number;
}

/** What scale mode borrows from bench/run.ts (which owns the scenarios and the server's flags). */
export interface ScaleTools {
  root: string;
  serverNodeFlags: string[];
  serverCpu: number;
  log(msg: string): void;
  childEnv(extra: Record<string, string>): NodeJS.ProcessEnv;
  /** Introspection of one fresh opaque token at `connections`, for the run's duration. */
  introspection(issuer: string, proc: ServerProcess): Promise<Measured>;
  /** Refresh tokens minted through code flows (as the main bench does), within its time budget. */
  mintRefreshTokens(issuer: string, proc: ServerProcess, want: number): Promise<string[]>;
  /** Refresh-token rotation presenting each of `tokens` once, for at most the run's duration. */
  refresh(issuer: string, proc: ServerProcess, tokens: string[]): Promise<Measured>;
}

export interface Measured {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  peakRssMb: number;
  ok: number;
  non2xx: number;
  seconds: number;
}

const NO_SWEEP = '86400';
// The sweeper leaves rows for this long past expiry (src/oidc/sweeper.ts); the backlog is counted the same way.
const SWEEP_GRACE_SECONDS = 60;
// The catch-up is measured for at most this long: its rate is the figure, not its end.
const CATCH_UP_LIMIT_SECONDS = 300;

const round = (x: number, digits = 1) => Math.round(x * 10 ** digits) / 10 ** digits;

interface DbStats {
  rows: number;
  /** Rows the sweeper may delete now (expired more than the grace ago). */
  sweepable: number;
  deletedTotal: number;
}

async function dbStats(client: pg.Client): Promise<DbStats> {
  // The statistics' live-row count is enough for the table size (it follows the rows the runs
  // themselves write, which reltuples, as of the last ANALYZE, does not); the sweepable count goes
  // through the expires index.
  await client.query('select pg_stat_clear_snapshot()');
  const { rows } = await client.query<{ rows: string; sweepable: string; deleted: string }>(
    `select (select n_live_tup from pg_stat_user_tables where relname = 'oidc_payloads') as rows,
            (select count(*) from oidc_payloads where expires_at < now() - make_interval(secs => $1)) as sweepable,
            (select n_tup_del from pg_stat_user_tables where relname = 'oidc_payloads') as deleted`,
    [SWEEP_GRACE_SECONDS],
  );
  return { rows: Number(rows[0]!.rows), sweepable: Number(rows[0]!.sweepable), deletedTotal: Number(rows[0]!.deleted) };
}

export async function runScale(store: BenchStore, seeded: { clientId: string; clientSecret: string }, s: ScaleSettings, t: ScaleTools, base: string) {
  if (!store.env.DATABASE_URL) throw new Error('--scale needs --store=postgres');
  const client = new pg.Client({ connectionString: store.env.DATABASE_URL });
  // An interrupted run drops the database under this connection; the cleanup reports what matters.
  client.on('error', () => {});
  await client.connect();
  const tag = randomBytes(4).toString('hex');
  let nextFamily = 1_000_000_000; // far past the rows the seed and the runs write through the server
  let server: { proc: ServerProcess; issuer: string } | undefined;
  const report: Record<string, unknown> = { settings: s };

  const start = async (sweepInterval: string, label: string) => {
    const port = await freePort();
    const issuer = `http://127.0.0.1:${port}`;
    const proc = startNode({
      name: 'server',
      script: path.join(t.root, 'dist', 'src', 'main.js'),
      env: t.childEnv({ ...store.env, PORT: String(port), ISSUER: issuer, SWEEP_INTERVAL_SECONDS: sweepInterval }),
      cwd: t.root,
      logFile: `${base}.${label}.server.log`,
      cpu: t.serverCpu,
      nodeFlags: t.serverNodeFlags,
    });
    await waitReady(proc, `${issuer}/readyz`);
    t.log(`scale: server pid ${proc.pid} (${label}, SWEEP_INTERVAL_SECONDS=${sweepInterval})`);
    return { proc, issuer };
  };

  const grow = async (target: number) => {
    const { rows: [row] } = await client.query<{ n: string }>('select count(*) as n from oidc_payloads');
    const families = familiesFor(target, Number(row!.n));
    const t0 = performance.now();
    let lastLog = 0;
    const inserted = await seedFamilies(client, {
      fromFamily: nextFamily,
      families,
      expiredPercent: s.scaleExpired,
      tag,
      onProgress: (done, total) => {
        if (performance.now() - lastLog > 15_000) {
          lastLog = performance.now();
          t.log(`scale: seeding ${done} / ${total} rows`);
        }
      },
    });
    nextFamily += families;
    const insertSeconds = (performance.now() - t0) / 1000;
    const t1 = performance.now();
    await client.query('vacuum (analyze) oidc_payloads');
    // The bulk insert's dirty pages would otherwise be written out during the next measurement.
    await client.query('checkpoint');
    const vacuumSeconds = (performance.now() - t1) / 1000;
    const { rows: [size] } = await client.query<{ table: string; total: string }>(
      `select pg_size_pretty(pg_relation_size('oidc_payloads')) as table, pg_size_pretty(pg_total_relation_size('oidc_payloads')) as total`,
    );
    t.log(`scale: ${inserted} rows in ${round(insertSeconds)} s, vacuum analyze and checkpoint ${round(vacuumSeconds)} s; table ${size!.table}, with indexes ${size!.total}`);
    return { inserted, insertSeconds: round(insertSeconds), vacuumSeconds: round(vacuumSeconds), rowsPerSecond: Math.round(inserted / insertSeconds), tableSize: size!.table, totalSize: size!.total };
  };

  // Refresh tokens for the three refresh runs, minted once at the start, a third for each: minting
  // (sign-ins and code flows) is slow next to refreshing, and the same tokens make the runs comparable.
  const refreshTokens: string[][] = [];
  const measure = async (label: string) => {
    const stats = await dbStats(client);
    t.log(`scale: ${label}: ~${stats.rows} rows; introspection`);
    const introspection = await t.introspection(server!.issuer, server!.proc);
    t.log(`scale: ${label}: refresh`);
    const refresh = await t.refresh(server!.issuer, server!.proc, refreshTokens.shift()!);
    return { rows: stats.rows, introspection, refresh };
  };

  try {
    // 1. the small table
    report.seedBase = await grow(s.scaleBase);
    server = await start(NO_SWEEP, 'scale');
    const minted = await t.mintRefreshTokens(server.issuer, server.proc, 3 * Math.ceil(s.duration * 1500));
    const third = Math.floor(minted.length / 3);
    for (let i = 0; i < 3; i++) refreshTokens.push(minted.slice(i * third, (i + 1) * third));
    report.refreshTokensPerRun = third;
    const small = await measure(`${s.scaleBase} rows`);

    // 2. the same table grown to --scale
    t.log(`scale: growing oidc_payloads to ${s.scale} rows`);
    report.seedScale = await grow(s.scale);
    const large = await measure(`${s.scale} rows`);

    // 3. plans at that size
    const plans = await explainHotQueries(client, SWEEP_GRACE_SECONDS);
    const sweepBatches = await compareSweepStatements(client, SWEEP_GRACE_SECONDS);
    writeFileSync(`${base}.plans.txt`, `${formatPlans(plans)}\n${formatSweepComparison(sweepBatches)}\n`);
    report.plans = plans.map((p) => ({ name: p.name, keyLines: keyLines(p.plan) }));
    report.sweepStatements = sweepBatches;

    // 4. the sweeper on, while the token path runs
    await server.proc.stop();
    const expiring = await client.query<{ n: string }>(
      `select count(*) as n from oidc_payloads where expires_at between now() and now() + interval '10 minutes'`,
    );
    const expiringPerSecond = round(Number(expiring.rows[0]!.n) / 600);
    const backlogBefore = await dbStats(client);
    server = await start(String(s.sweepInterval), 'sweeper');
    // Catch-up: the backlog of expired rows the seed left, until one pass' worth remains.
    const t0 = performance.now();
    const steady = Math.max(10_000, expiringPerSecond * (s.sweepInterval + SWEEP_GRACE_SECONDS) * 2);
    let now = backlogBefore;
    while (now.sweepable > steady && (performance.now() - t0) / 1000 < CATCH_UP_LIMIT_SECONDS) {
      await new Promise((r) => setTimeout(r, 2000));
      now = await dbStats(client);
      t.log(`scale: sweeper catching up: ${now.sweepable} rows past their grace left`);
    }
    const catchUpSeconds = (performance.now() - t0) / 1000;
    const catchUp = {
      backlogBefore: backlogBefore.sweepable,
      backlogAfter: now.sweepable,
      seconds: round(catchUpSeconds),
      deleted: now.deletedTotal - backlogBefore.deletedTotal,
      deletedPerSecond: Math.round((now.deletedTotal - backlogBefore.deletedTotal) / catchUpSeconds),
      finished: now.sweepable <= steady,
    };
    t.log(`scale: catch-up ${JSON.stringify(catchUp)}`);
    const w0 = await dbStats(client);
    const wt0 = performance.now();
    const withSweeper = await measure(`${s.scale} rows, sweeper every ${s.sweepInterval}s`);
    const w1 = await dbStats(client);
    const windowSeconds = (performance.now() - wt0) / 1000;
    const sweeper = {
      intervalSeconds: s.sweepInterval,
      expiringPerSecond,
      catchUp,
      underLoad: {
        seconds: round(windowSeconds),
        deleted: w1.deletedTotal - w0.deletedTotal,
        deletedPerSecond: Math.round((w1.deletedTotal - w0.deletedTotal) / windowSeconds),
        backlogBefore: w0.sweepable,
        backlogAfter: w1.sweepable,
      },
    };
    await server.proc.stop();
    server = undefined;

    const ratio = (a: number, b: number) => (b ? round(a / b, 3) : undefined);
    Object.assign(report, {
      small,
      large,
      withSweeper,
      sweeper,
      ratios: {
        introspection: ratio(large.introspection.rps, small.introspection.rps),
        refresh: ratio(large.refresh.rps, small.refresh.rps),
        introspectionWithSweeper: ratio(withSweeper.introspection.rps, large.introspection.rps),
        refreshWithSweeper: ratio(withSweeper.refresh.rps, large.refresh.rps),
      },
    });
    return report;
  } finally {
    await server?.proc.stop();
    await client.end();
  }
}

/** The scale report as text, and how many of its targets were missed. */
export function printScale(report: Record<string, any>, plansFile: string): { text: string; missed: number } {
  const out: string[] = [];
  const { small, large, withSweeper, sweeper, ratios, settings } = report;
  const row = (label: string, m: Measured, r?: number) =>
    `| ${label.padEnd(34)} | ${String(m.rps).padStart(6)} | ${r === undefined ? '     –' : r.toFixed(2).padStart(6)} | ${String(m.p50Ms).padStart(6)} | ${String(m.p99Ms).padStart(6)} | ${String(Math.round(m.peakRssMb)).padStart(7)} |`;
  out.push('');
  out.push(`scale: oidc_payloads at ${settings.scaleBase} and ${settings.scale} rows (${settings.scaleExpired}% of families expired), ${settings.duration}s per scenario, ${settings.connections} connections`);
  out.push(`seeding: ${report.seedScale.inserted} rows in ${report.seedScale.insertSeconds} s (${report.seedScale.rowsPerSecond}/s), vacuum analyze and checkpoint ${report.seedScale.vacuumSeconds} s; table ${report.seedScale.tableSize}, with indexes ${report.seedScale.totalSize}`);
  out.push('| scenario                           |  req/s |  ratio | p50 ms | p99 ms | RSS MB |');
  out.push('|------------------------------------|-------:|-------:|-------:|-------:|-------:|');
  out.push(row(`introspection, ${small.rows} rows`, small.introspection));
  out.push(row(`introspection, ${large.rows} rows`, large.introspection, ratios.introspection));
  out.push(row(`introspection, + sweeper`, withSweeper.introspection, ratios.introspectionWithSweeper));
  out.push(row(`refresh, ${small.rows} rows`, small.refresh));
  out.push(row(`refresh, ${large.rows} rows`, large.refresh, ratios.refresh));
  out.push(row(`refresh, + sweeper`, withSweeper.refresh, ratios.refreshWithSweeper));
  out.push('(ratios: large vs small table; "+ sweeper": with the sweeper running vs without, both at the large size)');
  out.push(
    `sweeper (every ${sweeper.intervalSeconds}s): rows expiring now ${sweeper.expiringPerSecond}/s; catch-up of ${sweeper.catchUp.backlogBefore} expired rows: ` +
      `${sweeper.catchUp.deletedPerSecond} deleted/s over ${sweeper.catchUp.seconds}s${sweeper.catchUp.finished ? '' : ' (NOT finished)'}; ` +
      `under load: ${sweeper.underLoad.deletedPerSecond} deleted/s over ${sweeper.underLoad.seconds}s, sweepable backlog ${sweeper.underLoad.backlogBefore} → ${sweeper.underLoad.backlogAfter}`,
  );
  out.push('');
  out.push('targets:');
  const within = (r: number | undefined) => (r ?? 0) >= 0.9;
  const keepsUp = sweeper.underLoad.backlogAfter <= Math.max(sweeper.underLoad.backlogBefore, sweeper.expiringPerSecond * (sweeper.intervalSeconds + 60) * 2);
  const targets: Array<[boolean, string]> = [
    [within(ratios.introspection), `introspection at ${settings.scale} rows within 10% of ${settings.scaleBase}: ${ratios.introspection}`],
    [within(ratios.refresh), `refresh at ${settings.scale} rows within 10% of ${settings.scaleBase}: ${ratios.refresh}`],
    [keepsUp && sweeper.catchUp.finished, `the sweeper keeps up with ${sweeper.expiringPerSecond} expiring rows/s (backlog bounded under load, catch-up finished)`],
  ];
  for (const [pass, text] of targets) out.push(`  ${pass ? 'PASS' : 'FAIL'}  ${text}`);
  out.push(`\nthe sweeper's delete at ${large.rows} rows, 100,000 rows' worth of batches: before = the old statement, all in one transaction (rolled back); after = the new one, each batch committed:`);
  out.push(formatSweepComparison(report.sweepStatements).replace(/^/gm, '  '));
  out.push(`\nplans (EXPLAIN ANALYZE, BUFFERS) at ${large.rows} rows: ${plansFile}`);
  for (const p of report.plans as Array<{ name: string; keyLines: string[] }>) {
    out.push(`  ${p.name}`);
    for (const l of p.keyLines.slice(0, 6)) out.push(`    ${l.trim()}`);
  }
  return { text: out.join('\n'), missed: targets.filter(([pass]) => !pass).length };
}
