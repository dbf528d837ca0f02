/**
 * npm run bench [-- --store=embedded|postgres|both --duration=10 --connections=10,64]
 *
 * Starts our server (dist/src/main.js) on a fresh store and a bare oidc-provider (bench/baseline.ts),
 * each pinned to CPU 0, while this process, the load generator, is pinned to CPU 1. Measures
 * client_credentials (JWT and opaque), introspection, refresh-token rotation and complete sign-ins,
 * and on PostgreSQL runs the bare provider persisting to a database of its own as well
 * (bench/baseline-pg-adapter.ts); prints one table with the baseline ratios and the targets check,
 * and writes the figures to bench/results/<store>-<timestamp>.json (server logs next to it). See
 * bench/README.md.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import argon2 from 'argon2';
import autocannon, { type Options as CannonOptions, type RequestSpec, type Result } from 'autocannon';
import { configSchema } from '../src/config/schema.ts';
import { ANALYZE_AFTER_ROWS } from '../src/repos/oidc-payloads.ts';
import { Browser, basicAuth, codeFlow, FlowError, type FlowTarget } from './flows.ts';
import { profileFile, summarize } from './profile-summary.ts';
import { connectionSettings } from './options.ts';
import { median, roundRatios, type Turn } from './rounds.ts';
import { printScale, runScale } from './scale.ts';
import { autovacuumOf, createStore, DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL, type StoreKind } from './store.ts';
import { childEnv, FORM, RESOURCE, ROOT, seedStore, startCommand, TOKEN_BODY as BODY } from './servers.ts';
import {
  MemoryWindow,
  cpuBusySeconds,
  cpuSeconds,
  freePort,
  hasTaskset,
  lifetimePeakMb,
  logExcerpt,
  pinSelf,
  startNode,
  waitReady,
  type ServerProcess,
} from './proc.ts';

// Both servers run with the Node flags and the environment of `npm start`, so the bench measures what ships.
const { nodeFlags: SERVER_NODE_FLAGS, env: START_ENV } = startCommand();
const RESULTS_DIR = path.join(ROOT, 'bench', 'results');
const SERVER_CPU = 0;
const BENCH_CPU = 1;
const BASELINE_CLIENT = { id: 'baseline-client', secret: randomBytes(24).toString('base64url') };
/** The redirect_uri of bench/baseline.ts's relying party. */
const BASELINE_REDIRECT_URI = 'https://rp.bench.test/cb';

// ---------------------------------------------------------------------------------------------
// settings

interface Settings {
  stores: StoreKind[];
  duration: number;
  /** Seconds of one turn of a server in the interleaved token scenarios. */
  slice: number;
  /** Connection counts the token scenarios run at, ours and the baseline alike; the first also drives refresh. */
  connectionsList: number[];
  connections: number;
  warmup: number;
  signinWorkers: number;
  refreshCap: number;
  refreshGenSeconds: number;
  genConcurrency: number;
  check: boolean;
  profile: boolean;
  /** Scale mode (bench/scale.ts) when set: rows to grow oidc_payloads to. */
  scale: number | undefined;
  scaleBase: number;
  scaleExpired: number;
  sweepInterval: number;
}

const HELP = `npm run bench -- [options]   (or: node bench/run.ts [options] after npm run build)

  --store=embedded|postgres|both   store of our server (default embedded; env BENCH_STORE)
                                   postgres uses DATABASE_URL (admin connection; default
                                   ${DEFAULT_DATABASE_URL}) and REDIS_URL (default ${DEFAULT_REDIS_URL})
  --duration=SECONDS               per scenario (default 10; env BENCH_DURATION)
  --connections=N[,N...]           autocannon connections (default 10,64; env BENCH_CONNECTIONS):
                                   the token scenarios (client_credentials JWT and opaque, introspection)
                                   run at each, against ours and the baseline; refresh runs at the first
  --slice=SECONDS                  the token scenarios interleave ours and the baselines in turns of
                                   about this long, the order reversed every round (default 2)
  --warmup=SECONDS                 discarded warm-up load per server (default 2)
  --signin-workers=N               concurrent complete sign-ins (default 4)
  --refresh-cap=N                  most refresh tokens to pre-generate (default 30000)
  --refresh-gen-seconds=SECONDS    time budget for generating them (default 60)
  --gen-concurrency=N              browsers generating refresh tokens in parallel (default 8)
  --check                          exit 1 when a target is missed
  --profile                        write our server's CPU profile (node --cpu-prof) next to the results
                                   and print where its time went (bench/profile-summary.ts)

scale mode (instead of the scenarios above; postgres only; see bench/README.md "Scale"):
  --scale=ROWS                     grow oidc_payloads to ROWS realistic rows (bench/seed-scale.ts) and
                                   measure introspection and refresh there and at --scale-base, explain
                                   the hot queries, then the sweeper under load (e.g. --scale=10000000)
  --scale-base=ROWS                the small table measured first (default 10000)
  --scale-expired=PERCENT          families of rows seeded past every expiry (default 10)
  --sweep-interval=SECONDS         SWEEP_INTERVAL_SECONDS of the sweeper phase (default 10)
`;

function settingsFromArgs(): Settings {
  const { values } = parseArgs({
    options: {
      store: { type: 'string' },
      duration: { type: 'string' },
      slice: { type: 'string' },
      connections: { type: 'string' },
      warmup: { type: 'string' },
      'signin-workers': { type: 'string' },
      'refresh-cap': { type: 'string' },
      'refresh-gen-seconds': { type: 'string' },
      'gen-concurrency': { type: 'string' },
      check: { type: 'boolean' },
      profile: { type: 'boolean' },
      scale: { type: 'string' },
      'scale-base': { type: 'string' },
      'scale-expired': { type: 'string' },
      'sweep-interval': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    process.exit(0);
  }
  const num = (name: string, raw: string | undefined, fallback: number, min: number) => {
    const v = raw === undefined || raw === '' ? fallback : Number(raw);
    if (!Number.isFinite(v) || v < min) throw new Error(`--${name} must be a number ≥ ${min}`);
    return v;
  };
  const store = values.store ?? process.env.BENCH_STORE ?? 'embedded';
  if (!['embedded', 'postgres', 'both'].includes(store)) throw new Error('--store must be embedded, postgres or both');
  return {
    stores: store === 'both' ? ['embedded', 'postgres'] : [store as StoreKind],
    duration: num('duration', values.duration ?? process.env.BENCH_DURATION, 10, 1),
    slice: num('slice', values.slice, 2, 1),
    ...connectionSettings(values.connections ?? process.env.BENCH_CONNECTIONS),
    warmup: num('warmup', values.warmup, 2, 0),
    signinWorkers: Math.floor(num('signin-workers', values['signin-workers'], 4, 1)),
    refreshCap: Math.floor(num('refresh-cap', values['refresh-cap'], 30000, 100)),
    refreshGenSeconds: num('refresh-gen-seconds', values['refresh-gen-seconds'], 60, 5),
    genConcurrency: Math.floor(num('gen-concurrency', values['gen-concurrency'], 8, 1)),
    check: values.check ?? false,
    profile: values.profile ?? false,
    scale: values.scale === undefined ? undefined : Math.floor(num('scale', values.scale, 0, 1000)),
    scaleBase: Math.floor(num('scale-base', values['scale-base'], 10_000, 100)),
    scaleExpired: Math.min(100, Math.floor(num('scale-expired', values['scale-expired'], 10, 0))),
    sweepInterval: Math.floor(num('sweep-interval', values['sweep-interval'], 10, 5)),
  };
}

// ---------------------------------------------------------------------------------------------
// helpers


const percentile = (xs: number[], p: number) => {
  if (!xs.length) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
};

const round = (x: number, digits = 1) => Math.round(x * 10 ** digits) / 10 ** digits;

function log(msg: string) {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

// ---------------------------------------------------------------------------------------------
// measurements

interface ScenarioResult {
  rps: number;
  rpsMean: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  ok: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
  seconds: number;
  peakRssMb: number;
  /** CPU use of the server and of this load generator over the scenario (1 = one core busy). */
  serverCpu: number | undefined;
  benchCpu?: number;
  /** CPU time other processes (PostgreSQL and Redis included) took on the server's CPU. */
  othersOnServerCpu?: number | undefined;
  /** The server's CPU time (all its threads) per answered request, in µs: its own cost, whether or not it waited. */
  serverUsPerRequest?: number | undefined;
  /** Interleaved token scenarios: each slice's rate and the server's CPU µs per request in it, round by round. */
  slices?: Turn[];
  note?: string;
}

type Window = { peakRssMb: number; cpu: number | undefined; othersOnCpu: number | undefined };
const cpuShare = (x: number | undefined) => (x === undefined ? undefined : round(x, 2));
/** CPU µs per request from a CPU share over `seconds` and the requests answered in them. */
const usPerRequest = (share: number | undefined, seconds: number, requests: number) =>
  share === undefined || requests <= 0 ? undefined : Math.round((share * seconds * 1e6) / requests);

function fromCannon(r: Result, win: Window): ScenarioResult {
  return {
    rps: r.requests.p50,
    rpsMean: round(r.requests.average),
    p50Ms: r.latency.p50,
    p99Ms: r.latency.p99,
    maxMs: r.latency.max,
    ok: r['2xx'],
    non2xx: r.non2xx,
    errors: r.errors,
    timeouts: r.timeouts,
    statusCodes: Object.fromEntries(Object.entries(r.statusCodeStats).map(([k, v]) => [k, v.count])),
    seconds: r.duration,
    peakRssMb: round(win.peakRssMb),
    serverCpu: cpuShare(win.cpu),
    othersOnServerCpu: cpuShare(win.othersOnCpu),
    serverUsPerRequest: usPerRequest(win.cpu, r.duration, r['2xx'] + r.non2xx),
  };
}

/** CPU use of this process since `from` (a process.cpuUsage() and performance.now() pair). */
function benchCpuSince(from: { cpu: NodeJS.CpuUsage; t: number }): number {
  const d = process.cpuUsage(from.cpu);
  return round((d.user + d.system) / 1000 / (performance.now() - from.t), 2);
}

async function cannon(opts: CannonOptions, proc: ServerProcess): Promise<ScenarioResult> {
  const from = { cpu: process.cpuUsage(), t: performance.now() };
  const win = new MemoryWindow(proc.pid);
  const result = await autocannon({ timeout: 10, ...opts });
  return { ...fromCannon(result, win.end()), benchCpu: benchCpuSince(from) };
}

async function postForm(url: string, auth: string, body: string) {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': FORM, authorization: auth, accept: 'application/json' }, body });
  const text = await res.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // reported below
  }
  if (res.status !== 200) throw new Error(`POST ${new URL(url).pathname} → ${res.status} ${text.slice(0, 300)}`);
  return json;
}

/** One server the token scenarios run against: ours, the in-memory baseline, or the baseline on PostgreSQL. */
interface TokenSide {
  name: string;
  issuer: string;
  auth: string;
  proc: ServerProcess;
  /** Whether it issues JWT access tokens for RESOURCE (the baseline on PostgreSQL is not asked: a JWT is not stored). */
  withJwt: boolean;
}

/** One request of each kind: the answers must be what the scenarios claim to measure. Answers the opaque token introspection presents. */
async function checkTokenAnswers(side: TokenSide): Promise<string> {
  const tokenUrl = `${side.issuer}/token`;
  if (side.withJwt) {
    const jwt = await postForm(tokenUrl, side.auth, BODY.jwt);
    if (String(jwt.access_token).split('.').length !== 3) throw new Error(`${side.name}: resource=${RESOURCE} did not yield a JWT`);
  }
  const opaque = await postForm(tokenUrl, side.auth, BODY.opaque);
  const opaqueToken = String(opaque.access_token);
  if (opaqueToken.split('.').length === 3) throw new Error(`${side.name}: client_credentials without resource yielded a JWT`);
  const introspected = await postForm(`${side.issuer}/token/introspection`, side.auth, `token=${encodeURIComponent(opaqueToken)}`);
  if (introspected.active !== true) throw new Error(`${side.name}: introspection of a fresh token: ${JSON.stringify(introspected)}`);
  return opaqueToken;
}

/** One slice of a scenario against one server: autocannon's result and the server's window. */
interface Slice {
  result: Result;
  win: Window;
  benchCpu: number;
}

/**
 * A scenario's slices against one server as one result. req/s is the median of the slices' rates;
 * p50 and p99 the medians of the slices' own; CPU, requests and errors are summed over the
 * slices; `slices` keeps each slice's rate and CPU per request, so the report can pair them with
 * the baseline's slices of the same moment.
 */
function fromSlices(slices: Slice[]): ScenarioResult {
  const answered = (r: Result) => r['2xx'] + r.non2xx;
  const seconds = slices.reduce((sum, x) => sum + x.result.duration, 0);
  const requests = slices.reduce((sum, x) => sum + answered(x.result), 0);
  const weighted = (f: (x: Slice) => number | undefined) =>
    slices.some((x) => f(x) === undefined) ? undefined : slices.reduce((sum, x) => sum + f(x)! * x.result.duration, 0) / seconds;
  const statusCodes: Record<string, number> = {};
  for (const { result } of slices) for (const [code, v] of Object.entries(result.statusCodeStats)) statusCodes[code] = (statusCodes[code] ?? 0) + v.count;
  const cpu = weighted((x) => x.win.cpu);
  const sum = (f: (r: Result) => number) => slices.reduce((total, x) => total + f(x.result), 0);
  return {
    rps: Math.round(median(slices.map((x) => answered(x.result) / x.result.duration))),
    rpsMean: round(requests / seconds),
    p50Ms: median(slices.map((x) => x.result.latency.p50)),
    p99Ms: median(slices.map((x) => x.result.latency.p99)),
    maxMs: Math.max(...slices.map((x) => x.result.latency.max)),
    ok: sum((r) => r['2xx']),
    non2xx: sum((r) => r.non2xx),
    errors: sum((r) => r.errors),
    timeouts: sum((r) => r.timeouts),
    statusCodes,
    seconds: round(seconds),
    peakRssMb: round(Math.max(...slices.map((x) => x.win.peakRssMb))),
    serverCpu: cpuShare(cpu),
    othersOnServerCpu: cpuShare(weighted((x) => x.win.othersOnCpu)),
    serverUsPerRequest: usPerRequest(cpu, seconds, requests),
    benchCpu: cpuShare(weighted((x) => x.benchCpu)),
    slices: slices.map((x) => ({
      rps: round(answered(x.result) / x.result.duration),
      us: usPerRequest(x.win.cpu, x.result.duration, answered(x.result)),
    })),
  };
}

/**
 * The token scenarios (client_credentials JWT and opaque, introspection) against every side at
 * every connection count, interleaved: each scenario's duration is cut into slices of about
 * `s.slice` seconds and the servers take turns, the order reversed every round, all pinned to
 * CPU 0 and idle while another serves. This machine's speed drifts by ±25% within minutes; a drift
 * moves the sides of a round together, so the ratio of two servers' slices of one round is
 * measured at one speed (bench/ab.ts compares builds the same way). Answers each side's runs, in
 * the order of `sides`.
 */
async function interleavedTokenRuns(sides: TokenSide[], s: Settings): Promise<Array<Array<StoredTokenRun & { ccJwt?: ScenarioResult }>>> {
  const opaqueTokens = new Map<TokenSide, string>();
  for (const side of sides) opaqueTokens.set(side, await checkTokenAnswers(side));
  const headersOf = (side: TokenSide) => ({ 'content-type': FORM, authorization: side.auth, accept: 'application/json' });
  if (s.warmup > 0) {
    for (const side of sides) {
      log(`${side.name}: warm-up ${s.warmup}s`);
      const body = side.withJwt ? BODY.jwt : BODY.opaque;
      await autocannon({ url: `${side.issuer}/token`, method: 'POST', headers: headersOf(side), connections: s.connections, body, duration: s.warmup });
    }
  }
  const rounds = Math.max(1, Math.round(s.duration / s.slice));
  const sliceSeconds = s.duration / rounds;
  const scenarios = [
    { key: 'ccJwt', label: 'client_credentials JWT', jwtOnly: true },
    { key: 'ccOpaque', label: 'client_credentials opaque', jwtOnly: false },
    { key: 'introspection', label: 'introspection', jwtOnly: false },
  ] as const;
  const runs = sides.map(() => [] as Array<StoredTokenRun & { ccJwt?: ScenarioResult }>);
  for (const connections of s.connectionsList) {
    const results = sides.map(() => ({}) as Partial<Record<(typeof scenarios)[number]['key'], ScenarioResult>>);
    for (const scenario of scenarios) {
      const taking = sides.filter((side) => side.withJwt || !scenario.jwtOnly);
      log(`${scenario.label}, ${connections} connections: ${rounds} rounds of ${round(sliceSeconds)}s each, ${taking.map((x) => x.name).join(' / ')} in turn`);
      const slices = new Map<TokenSide, Slice[]>(taking.map((side) => [side, []]));
      for (let i = 0; i < rounds; i++) {
        for (const side of i % 2 ? [...taking].reverse() : taking) {
          const opts: { url: string; body: string } = scenario.key === 'introspection'
            ? { url: `${side.issuer}/token/introspection`, body: `token=${encodeURIComponent(opaqueTokens.get(side)!)}` }
            : { url: `${side.issuer}/token`, body: scenario.key === 'ccJwt' ? BODY.jwt : BODY.opaque };
          const from = { cpu: process.cpuUsage(), t: performance.now() };
          const win = new MemoryWindow(side.proc.pid);
          const result = await autocannon({ timeout: 10, method: 'POST', headers: headersOf(side), connections, duration: sliceSeconds, ...opts });
          slices.get(side)!.push({ result, win: win.end(), benchCpu: benchCpuSince(from) });
        }
      }
      for (const side of taking) results[sides.indexOf(side)]![scenario.key] = fromSlices(slices.get(side)!);
    }
    results.forEach((r, i) => runs[i]!.push({ connections, ...(r.ccJwt ? { ccJwt: r.ccJwt } : {}), ccOpaque: r.ccOpaque!, introspection: r.introspection! }));
  }
  return runs;
}

interface StoredTokenRun {
  connections: number;
  ccOpaque: ScenarioResult;
  introspection: ScenarioResult;
}

interface TokenRun extends StoredTokenRun {
  ccJwt: ScenarioResult;
}

/** Mints refresh tokens: each browser signs in once, then every code flow on its session yields one. */
class RefreshTokenMinter {
  readonly target: FlowTarget;
  readonly user: { email: string; password: string };
  readonly browsers: Browser[];
  readonly tokens: string[] = [];
  minted = 0;
  seconds = 0;
  errors = 0;
  readonly errorSamples: string[] = [];
  readonly pages = new Map<string, number>();

  constructor(target: FlowTarget, user: { email: string; password: string }, concurrency: number) {
    this.target = target;
    this.user = user;
    this.browsers = Array.from({ length: concurrency }, () => new Browser());
  }

  /** Mints until `want` tokens are held or the deadline passes. */
  async fill(want: number, deadline: number): Promise<void> {
    const t0 = performance.now();
    let inflight = 0;
    await Promise.all(
      this.browsers.map(async (browser) => {
        while (this.tokens.length + inflight < want && performance.now() < deadline && this.errors < 50) {
          inflight++;
          try {
            const { tokens, pages } = await codeFlow(browser, this.target, {
              scope: 'openid offline_access',
              prompt: 'consent',
              user: this.user,
            });
            const key = pages.join('+') || 'none';
            this.pages.set(key, (this.pages.get(key) ?? 0) + 1);
            if (!tokens.refresh_token) throw new FlowError('token', 200, 'no refresh_token issued');
            this.tokens.push(tokens.refresh_token);
            this.minted++;
          } catch (err) {
            this.errors++;
            if (this.errorSamples.length < 5) this.errorSamples.push((err as Error).message);
          } finally {
            inflight--;
          }
        }
      }),
    );
    this.seconds += (performance.now() - t0) / 1000;
    if (this.errors >= 50) throw new Error(`refresh token generation failing: ${this.errorSamples.join(' | ')}`);
  }
}

/** Refresh-token rotation: every request presents one of `tokens`, each used once. */
async function refreshRun(issuer: string, auth: string, tokens: string[], s: Settings, proc: ServerProcess, maxSeconds: number) {
  let next = 0;
  const t0 = performance.now();
  const buckets: number[] = [];
  const request: RequestSpec = {
    method: 'POST',
    path: '/token',
    headers: { 'content-type': FORM, authorization: auth, accept: 'application/json' },
    setupRequest: (req) => ({
      ...req,
      // Past the end (not sent: `amount` is the number of tokens), an unknown token, which is
      // refused without touching any grant.
      body: `grant_type=refresh_token&refresh_token=${encodeURIComponent(tokens[next++] ?? 'exhausted')}`,
    }),
    onResponse: (status) => {
      if (status !== 200) return;
      const sec = Math.floor((performance.now() - t0) / 1000);
      buckets[sec] = (buckets[sec] ?? 0) + 1;
    },
  };
  const from = { cpu: process.cpuUsage(), t: performance.now() };
  const win = new MemoryWindow(proc.pid);
  const instance = autocannon({
    url: issuer,
    connections: Math.min(s.connections, tokens.length),
    amount: tokens.length,
    timeout: 10,
    requests: [request],
  });
  const timer = setTimeout(() => instance.stop(), maxSeconds * 1000);
  const result = await instance;
  clearTimeout(timer);
  const elapsed = (performance.now() - t0) / 1000;
  const out: ScenarioResult = { ...fromCannon(result, win.end()), benchCpu: benchCpuSince(from) };
  // Per-second completions (2xx only) over the whole seconds of the run.
  const full = Array.from({ length: Math.floor(elapsed) }, (_, i) => buckets[i] ?? 0);
  out.rps = full.length ? median(full) : round(out.ok / elapsed);
  out.rpsMean = round(out.ok / elapsed);
  out.seconds = round(elapsed, 2);
  return out;
}

/**
 * Refresh: tokens are generated first (within a time budget), then presented once each. A refresh
 * does strictly more work than an opaque client_credentials request, so `upperRate` (the measured
 * client_credentials rate) × duration tokens are always enough for the whole duration.
 */
async function refreshScenario(
  issuer: string,
  target: FlowTarget,
  user: { email: string; password: string },
  proc: ServerProcess,
  s: Settings,
  upperRate: number,
) {
  const auth = basicAuth(target.clientId, target.clientSecret);
  const minter = new RefreshTokenMinter(target, user, s.genConcurrency);
  const want = Math.max(s.connections * 10, Math.min(s.refreshCap, Math.ceil(upperRate * s.duration * 1.1)));
  log(`refresh: generating up to ${want} tokens (≈ ${upperRate}/s × ${s.duration}s × 1.1, cap ${s.refreshCap}; budget ${s.refreshGenSeconds}s)`);
  const genFrom = { cpu: process.cpuUsage(), t: performance.now() };
  const genWin = new MemoryWindow(proc.pid);
  await minter.fill(want, performance.now() + s.refreshGenSeconds * 1000);
  const gen = genWin.end();
  const genRate = round(minter.minted / minter.seconds);
  const available = minter.tokens.length;
  if (available < s.connections) throw new Error(`refresh: only ${available} tokens generated: ${minter.errorSamples.join(' | ')}`);
  log(`refresh: ${available} tokens in ${round(minter.seconds)}s (${genRate}/s); running`);

  const result = { ...(await refreshRun(issuer, auth, minter.tokens.splice(0), s, proc, s.duration)), tokensAvailable: available };
  const shortened = result.seconds < s.duration * 0.95;
  if (shortened) {
    result.note =
      `ran ${result.seconds}s instead of ${s.duration}s: ${available} tokens were generated within the ` +
      `${s.refreshGenSeconds}s budget (${genRate}/s, ${want} wanted)`;
  }
  return {
    ...result,
    generation: {
      minted: minter.minted,
      wanted: want,
      seconds: round(minter.seconds),
      perSecond: genRate,
      concurrency: s.genConcurrency,
      pages: Object.fromEntries(minter.pages),
      errors: minter.errors,
      errorSamples: minter.errorSamples,
      peakRssMb: round(gen.peakRssMb),
      serverCpu: cpuShare(gen.cpu),
      othersOnServerCpu: cpuShare(gen.othersOnCpu),
      benchCpu: benchCpuSince(genFrom),
    },
    shortened,
  };
}

/**
 * The bare provider (bench/baseline.ts) pinned like ours, with the benchmark's client, once it
 * answers; `env` selects its refresh or sign-in mode.
 */
async function startBaseline(name: string, logFile: string, env: Record<string, string> = {}): Promise<{ proc: ServerProcess; issuer: string }> {
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const proc = startNode({
    name,
    script: path.join(ROOT, 'bench', 'baseline.ts'),
    env: childEnv({ PORT: String(port), BASELINE_CLIENT_ID: BASELINE_CLIENT.id, BASELINE_CLIENT_SECRET: BASELINE_CLIENT.secret, ...env }),
    cwd: ROOT,
    logFile,
    cpu: SERVER_CPU,
    nodeFlags: SERVER_NODE_FLAGS,
  });
  try {
    await waitReady(proc, `${issuer}/.well-known/openid-configuration`);
  } catch (err) {
    await proc.stop();
    throw err;
  }
  return { proc, issuer };
}

/**
 * Runs `body` with the bare provider persisting to a PostgreSQL database of its own when `stored`
 * (bench/baseline-pg-adapter.ts; the database dropped after), else in memory: its environment
 * setting and the name its files and log lines take.
 */
async function withBaselineStore<T>(stored: boolean, body: (env: Record<string, string>, suffix: string) => Promise<T>): Promise<T> {
  if (!stored) return body({}, '');
  const store = await createStore('postgres');
  try {
    return await body({ BASELINE_DATABASE_URL: store.env.DATABASE_URL! }, '-postgres');
  } finally {
    await store.destroy();
  }
}

/**
 * The bare provider rotating refresh tokens it minted beforehand, on its own; `stored`, persisting
 * them to PostgreSQL (what rotation costs the provider itself when its tokens survive a restart).
 */
async function baselineRefreshRun(s: Settings, base: string, stored = false): Promise<ScenarioResult> {
  return withBaselineStore(stored, async (env, suffix) => {
    const file = `${base}.baseline-refresh${suffix}.txt`;
    const { proc, issuer } = await startBaseline(`baseline-refresh${suffix}`, `${base}.baseline-refresh${suffix}.log`, {
      BASELINE_REFRESH_TOKENS: String(s.refreshCap),
      BASELINE_REFRESH_FILE: file,
      ...env,
    });
    try {
      const tokens = readFileSync(file, 'utf8').split('\n').filter(Boolean);
      log(`baseline: refresh, ${tokens.length} tokens minted ${stored ? 'into PostgreSQL' : 'in memory'}`);
      return await refreshRun(issuer, basicAuth(`${BASELINE_CLIENT.id}-rp`, BASELINE_CLIENT.secret), tokens, s, proc, s.duration);
    } finally {
      await proc.stop();
      rmSync(file, { force: true });
    }
  });
}

/**
 * The bare provider's own complete sign-ins (BASELINE_SIGNINS=1: its development login, no
 * password hash), on its own, at the same concurrency as ours: what a sign-in costs the provider
 * itself, with its sessions, interactions, grants, codes and tokens in memory, or (`stored`) in
 * PostgreSQL as ours keeps them.
 */
async function baselineSigninRun(s: Settings, base: string, stored = false) {
  return withBaselineStore(stored, async (env, suffix) => {
    const { proc, issuer } = await startBaseline(`baseline-signins${suffix}`, `${base}.baseline-signins${suffix}.log`, { BASELINE_SIGNINS: '1', ...env });
    try {
      log(`baseline: complete sign-ins (development login, no password hash${stored ? ', persisting to PostgreSQL' : ''}), ${s.signinWorkers} workers, ${s.duration}s`);
      const target: FlowTarget = { issuer, clientId: `${BASELINE_CLIENT.id}-rp`, clientSecret: BASELINE_CLIENT.secret, redirectUri: BASELINE_REDIRECT_URI };
      // With the probe too, so the ceiling's two figures are of one moment.
      const probe = await startArgon2Probe(SERVER_CPU);
      try {
        return await signinScenario(target, { email: 'bench-user', password: 'unchecked' }, proc, s, probe);
      } finally {
        probe.stop();
      }
    } finally {
      await proc.stop();
    }
  });
}

/**
 * The bare provider keeping its models in a PostgreSQL database of its own through the plainest
 * adapter (bench/baseline-pg-adapter.ts): what persisting a token costs the provider itself on
 * this machine, beside the in-memory baseline the targets are set against. It takes its turns in
 * the opaque token and introspection scenarios with the other servers.
 */
async function startStoredBaseline(base: string, cleanups: Cleanup[]): Promise<TokenSide> {
  const store = await createStore('postgres');
  cleanups.push(() => store.destroy());
  const { proc, issuer } = await startBaseline('baseline-postgres', `${base}.baseline-postgres.log`, { BASELINE_DATABASE_URL: store.env.DATABASE_URL! });
  cleanups.push(() => proc.stop());
  return { name: 'baseline on PostgreSQL', issuer, auth: basicAuth(BASELINE_CLIENT.id, BASELINE_CLIENT.secret), proc, withJwt: false };
}

/**
 * The argon2 bound measured beside the sign-ins: before each round of sign-ins, a probe process
 * pinned to the server's CPU (bench/argon2-probe.ts) times a few verifications there while the
 * server is idle. The bound and the sign-ins are then measured on one core at the same moments,
 * as the token scenarios take turns with their baseline; measured once at the start, on the load
 * generator's CPU, the bound swung by a third between runs and the sign-in ratio with it.
 */
interface Argon2Probe {
  /** `n` verifications' milliseconds. */
  verify(n: number): Promise<number[]>;
  stop(): void;
}

async function startArgon2Probe(cpu: number): Promise<Argon2Probe> {
  const script = path.join(ROOT, 'bench', 'argon2-probe.ts');
  const [cmd, args] = hasTaskset() ? ['taskset', ['-c', String(cpu), process.execPath, script]] : [process.execPath, [script]];
  const child = spawn(cmd, args as string[], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  const next = () =>
    new Promise<unknown>((resolve, reject) => {
      const onExit = (code: number | null) => reject(new Error(`the argon2 probe exited with ${code}`));
      child.once('exit', onExit);
      child.once('message', (m) => {
        child.off('exit', onExit);
        resolve(m);
      });
    });
  await next();
  return {
    async verify(n) {
      const answer = next();
      child.send(n);
      return (await answer) as number[];
    },
    stop: () => child.kill(),
  };
}

/**
 * Complete sign-ins at fixed concurrency, each worker a browser of its own with fresh cookies per
 * sign-in. With `probe`, in rounds of about `s.slice` seconds, each preceded by 5 argon2
 * verifications on the server's CPU; a round's rate counts the sign-ins completed within it, and
 * the server's CPU figures are of the rounds only.
 */
async function signinScenario(target: FlowTarget, user: { email: string; password: string }, proc: ServerProcess, s: Settings, probe?: Argon2Probe) {
  let from = { cpu: process.cpuUsage(), t: performance.now() };
  let win = new MemoryWindow(proc.pid);
  let t0 = performance.now();
  const latencies: number[] = [];
  const buckets: number[] = [];
  const errors: Record<string, number> = {};
  const errorSamples: string[] = [];
  const rounds: Array<{ rate: number; argon2Ms: number }> = [];
  let usage: { cpu: number; othersOnCpu: number; seconds: number } | undefined;
  const argon2Samples: number[] = [];
  const signInUntil = (end: number) =>
    Promise.all(
      Array.from({ length: s.signinWorkers }, async () => {
        const browser = new Browser();
        let completed = 0;
        while (performance.now() < end) {
          browser.reset();
          const started = performance.now();
          try {
            const { pages, tokens } = await codeFlow(browser, target, { scope: 'openid', user });
            if (!pages.includes('login')) throw new FlowError('login', 0, 'the login page was not shown');
            if (!tokens.id_token) throw new FlowError('token', 200, 'no id_token');
            const done = performance.now();
            latencies.push(done - started);
            const sec = Math.floor((done - t0) / 1000);
            buckets[sec] = (buckets[sec] ?? 0) + 1;
            if (done <= end) completed++;
          } catch (err) {
            const key = err instanceof FlowError ? `${err.step} ${err.status}` : 'error';
            errors[key] = (errors[key] ?? 0) + 1;
            if (errorSamples.length < 5) errorSamples.push((err as Error).message);
          }
        }
        return completed;
      }),
    );
  if (probe) {
    // The sign-in pages' code compiled first: the compiler's threads share the core with the probe.
    if (s.warmup > 0) {
      await signInUntil(performance.now() + s.warmup * 1000);
      latencies.length = 0;
      for (const key of Object.keys(errors)) delete errors[key];
      win.end();
      [from, win, t0] = [{ cpu: process.cpuUsage(), t: performance.now() }, new MemoryWindow(proc.pid), performance.now()];
    }
    const count = Math.max(1, Math.round(s.duration / s.slice));
    // The server's and its CPU's use over the rounds only, without the pauses and the probe's turns.
    const inRounds = { wall: 0, cpu: 0, busy: 0, known: true };
    for (let i = 0; i < count; i++) {
      // Right after a round something else (not the server) keeps CPU 0 busy for about 0.2 s: the
      // first verifications then took 70-100 ms instead of 25.
      await new Promise((resolve) => setTimeout(resolve, 500));
      const samples = await probe.verify(5);
      argon2Samples.push(...samples);
      const start = performance.now();
      const [cpu0, busy0] = [cpuSeconds(proc.pid), cpuBusySeconds(SERVER_CPU)];
      const completed = (await signInUntil(start + (s.duration / count) * 1000)).reduce((a, b) => a + b, 0);
      const [cpu1, busy1] = [cpuSeconds(proc.pid), cpuBusySeconds(SERVER_CPU)];
      inRounds.wall += (performance.now() - start) / 1000;
      if (cpu0 === undefined || cpu1 === undefined || busy0 === undefined || busy1 === undefined) inRounds.known = false;
      else [inRounds.cpu, inRounds.busy] = [inRounds.cpu + cpu1 - cpu0, inRounds.busy + busy1 - busy0];
      rounds.push({ rate: round(completed / (s.duration / count), 2), argon2Ms: round(median(samples), 2) });
    }
    usage = inRounds.known
      ? { cpu: inRounds.cpu / inRounds.wall, othersOnCpu: Math.max(0, inRounds.busy - inRounds.cpu) / inRounds.wall, seconds: inRounds.wall }
      : undefined;
  } else {
    await signInUntil(t0 + s.duration * 1000);
  }
  const elapsed = (performance.now() - t0) / 1000;
  const m = { ...win.end(), ...usage };
  const full = Array.from({ length: Math.floor(s.duration) }, (_, i) => buckets[i] ?? 0);
  const failed = Object.values(errors).reduce((a, b) => a + b, 0);
  return {
    rps: probe ? round(median(rounds.map((r) => r.rate)), 1) : median(full),
    rpsMean: round(latencies.length / elapsed, 2),
    p50Ms: round(percentile(latencies, 50)),
    p99Ms: round(percentile(latencies, 99)),
    maxMs: round(Math.max(0, ...latencies)),
    slowerThan1s: latencies.filter((l) => l > 1000).length,
    ok: latencies.length,
    non2xx: failed,
    errors: failed,
    timeouts: 0,
    statusCodes: errors,
    seconds: round(elapsed, 2),
    peakRssMb: round(m.peakRssMb),
    serverCpu: cpuShare(m.cpu),
    benchCpu: benchCpuSince(from),
    othersOnServerCpu: cpuShare(m.othersOnCpu),
    serverUsPerRequest: usPerRequest(m.cpu, usage?.seconds ?? elapsed, latencies.length + failed),
    workers: s.signinWorkers,
    errorSamples,
    ...(probe ? { rounds, argon2Ms: round(median(argon2Samples), 2) } : {}),
  };
}

async function measureArgon2() {
  const defaults = configSchema.parse({});
  const cost = { memoryCost: defaults.ARGON2_MEMORY_KIB, timeCost: defaults.ARGON2_ITERATIONS, parallelism: defaults.ARGON2_PARALLELISM };
  const password = 'correct horse battery staple';
  const hash = await argon2.hash(password, { type: argon2.argon2id, ...cost });
  for (let i = 0; i < 3; i++) await argon2.verify(hash, password);
  const samples: number[] = [];
  for (let i = 0; i < 20; i++) {
    const t0 = performance.now();
    if (!(await argon2.verify(hash, password))) throw new Error('argon2 verify failed');
    samples.push(performance.now() - t0);
  }
  const ms = median(samples);
  return { cost, samples: 20, medianMs: round(ms, 2), boundPerSecond: round(1000 / ms, 1) };
}

// ---------------------------------------------------------------------------------------------
// one store

type Cleanup = () => Promise<void>;
type TokenResults = TokenRun[];
type SigninResult = Awaited<ReturnType<typeof signinScenario>>;
type OurResults = {
  token: TokenResults;
  refresh: Awaited<ReturnType<typeof refreshScenario>>;
  signins: Awaited<ReturnType<typeof signinScenario>>;
};

async function runStore(kind: StoreKind, s: Settings, argon: Awaited<ReturnType<typeof measureArgon2>>, machine: Record<string, unknown>) {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  mkdirSync(RESULTS_DIR, { recursive: true });
  const base = path.join(RESULTS_DIR, `${kind}-${stamp}`);
  const cleanups: Cleanup[] = [];
  const warnings: string[] = [];
  const startedAt = new Date();
  const loadBefore = os.loadavg();
  let baseline: TokenResults | undefined;
  let baselineRefresh: ScenarioResult | undefined;
  let baselineSignins: SigninResult | undefined;
  let baselineRefreshStored: ScenarioResult | undefined;
  let baselineSigninsStored: SigninResult | undefined;
  let baselineStored: StoredTokenRun[] | undefined;
  let ours: OurResults | undefined;
  let storeDescription = '';
  let bootPeakMb: number | undefined;
  let ourLog = '';

  const runCleanups = async () => {
    while (cleanups.length) {
      try {
        await cleanups.pop()!();
      } catch (err) {
        warnings.push(`cleanup: ${(err as Error).message}`);
      }
    }
  };
  activeCleanup = runCleanups;

  try {
    // The baselines of refresh and sign-ins first, each alone on CPU 0 (a process of its own).
    baselineRefresh = await baselineRefreshRun(s, base);
    baselineSignins = await baselineSigninRun(s, base);
    if (kind === 'postgres') {
      // The same two persisting to PostgreSQL: the floor of any server that keeps them there.
      baselineRefreshStored = await baselineRefreshRun(s, base, true);
      baselineSigninsStored = await baselineSigninRun(s, base, true);
    }

    // Our server on a fresh store, seeded before it starts.
    log(`ours: creating a fresh ${kind} store`);
    const store = await createStore(kind);
    cleanups.push(() => store.destroy());
    storeDescription = store.description;
    if (kind === 'postgres' && (await autovacuumOf(store.env.DATABASE_URL!)) === 'off') {
      warnings.push(`PostgreSQL runs with autovacuum off: dead rows are never reclaimed during the run, and the token table is analyzed only once, by the server, after its first ${ANALYZE_AFTER_ROWS} rows`);
    }
    const seeded = await seedStore(store.env);
    const port = await freePort();
    const issuer = `http://127.0.0.1:${port}`;
    ourLog = `${base}.server.log`;
    const proc = startNode({
      name: 'server',
      script: path.join(ROOT, 'dist', 'src', 'main.js'),
      env: childEnv({ ...store.env, PORT: String(port), ISSUER: issuer }),
      cwd: ROOT,
      logFile: ourLog,
      cpu: SERVER_CPU,
      nodeFlags: s.profile ? [...SERVER_NODE_FLAGS, '--cpu-prof', `--cpu-prof-dir=${base}.profile`] : SERVER_NODE_FLAGS,
    });
    cleanups.push(() => proc.stop());
    await waitReady(proc, `${issuer}/readyz`);
    bootPeakMb = lifetimePeakMb(proc.pid);
    log(`ours: pid ${proc.pid} on ${issuer}${proc.pinned ? ` (CPU ${SERVER_CPU})` : ' (not pinned)'}, ${store.description}`);

    const auth = basicAuth(seeded.clientId, seeded.clientSecret);
    const target: FlowTarget = { issuer, clientId: seeded.clientId, clientSecret: seeded.clientSecret, redirectUri: seeded.redirectUri };
    // The token scenarios: ours and the baselines in turns (interleavedTokenRuns), all on CPU 0.
    const { proc: bproc, issuer: bissuer } = await startBaseline('baseline', `${base}.baseline.log`);
    cleanups.push(() => bproc.stop());
    log(`baseline: pid ${bproc.pid} on ${bissuer}${bproc.pinned ? ` (CPU ${SERVER_CPU})` : ' (not pinned)'}`);
    const sides: TokenSide[] = [
      { name: 'baseline', issuer: bissuer, auth: basicAuth(BASELINE_CLIENT.id, BASELINE_CLIENT.secret), proc: bproc, withJwt: true },
      { name: 'ours', issuer, auth, proc, withJwt: true },
    ];
    if (kind === 'postgres') sides.push(await startStoredBaseline(base, cleanups));
    const [baselineRuns, oursRuns, storedRuns] = await interleavedTokenRuns(sides, s);
    baseline = baselineRuns as TokenRun[];
    baselineStored = storedRuns;
    const token = oursRuns as TokenRun[];
    // Ours alone on CPU 0 from here.
    for (const side of sides) if (side.proc !== proc) await side.proc.stop();
    log(`ours: refresh`);
    // The token runs at the refresh scenario's connection count bound its rate (see refreshScenario).
    const first = token[0]!;
    const refresh = await refreshScenario(issuer, target, seeded.user, proc, s, Math.max(first.ccJwt.rps, first.ccOpaque.rps));
    log(`ours: complete sign-ins, ${s.signinWorkers} workers, ${s.duration}s`);
    const probe = await startArgon2Probe(SERVER_CPU);
    cleanups.push(async () => probe.stop());
    const signins = await signinScenario(target, seeded.user, proc, s, probe);
    probe.stop();
    ours = { token, refresh, signins };
    if (proc.child.exitCode !== null) warnings.push(`our server exited with ${proc.child.exitCode} during the run`);
  } catch (err) {
    for (const file of [ourLog, `${base}.baseline.log`]) {
      const excerpt = file ? logExcerpt(file, 15) : [];
      if (excerpt.length) process.stderr.write(`\n${path.relative(ROOT, file)} (warn and above):\n  ${excerpt.join('\n  ')}\n`);
    }
    throw err;
  } finally {
    await runCleanups();
    activeCleanup = undefined;
  }

  if (!baseline || !ours) throw new Error('unreachable: scenarios did not run');
  const report = buildReport({
    kind,
    s,
    argon,
    machine,
    baseline,
    baselineRefresh,
    baselineSignins,
    baselineStored,
    baselineRefreshStored,
    baselineSigninsStored,
    ours,
    bootPeakMb,
    warnings,
  });
  Object.assign(report, {
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    store: kind,
    storeDescription,
    loadAverage: { before: loadBefore.map((x) => round(x, 2)), after: os.loadavg().map((x) => round(x, 2)) },
    logs: { server: path.relative(ROOT, ourLog), baseline: path.relative(ROOT, `${base}.baseline.log`) },
    serverLogExcerpt: logExcerpt(ourLog).filter((l) => !/ephemeral store: memory|KEY_ENCRYPTION_KEY not set/.test(l)),
  });
  printReport(report);
  if (s.profile) {
    const file = profileFile(`${base}.profile`);
    if (file) process.stdout.write(`\nour server's CPU profile (all scenarios): ${path.relative(ROOT, file)}\n${summarize(JSON.parse(readFileSync(file, 'utf8')))}\n`);
    else warnings.push('--profile: the server wrote no CPU profile');
  }
  const file = `${base}.json`;
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(`\nresults: ${path.relative(ROOT, file)}\n`);
  return report;
}

// ---------------------------------------------------------------------------------------------
// scale mode (bench/scale.ts)

async function runScaleStore(kind: StoreKind, s: Settings) {
  if (kind !== 'postgres') throw new Error('--scale runs on --store=postgres only (see bench/README.md "Scale")');
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  mkdirSync(RESULTS_DIR, { recursive: true });
  const base = path.join(RESULTS_DIR, `scale-${kind}-${stamp}`);
  const store = await createStore(kind);
  activeCleanup = () => store.destroy();
  try {
    const seeded = await seedStore(store.env);
    const auth = basicAuth(seeded.clientId, seeded.clientSecret);
    const startedAt = new Date();
    const report = await runScale(
      store,
      seeded,
      { scale: s.scale!, scaleBase: s.scaleBase, scaleExpired: s.scaleExpired, sweepInterval: s.sweepInterval, duration: s.duration, connections: s.connections },
      {
        root: ROOT,
        serverNodeFlags: SERVER_NODE_FLAGS,
        serverCpu: SERVER_CPU,
        log,
        childEnv,
        async introspection(issuer, proc) {
          const opaque = String((await postForm(`${issuer}/token`, auth, BODY.opaque)).access_token);
          const headers = { 'content-type': FORM, authorization: auth, accept: 'application/json' };
          return cannon(
            { url: `${issuer}/token/introspection`, method: 'POST', headers, connections: s.connections, body: `token=${encodeURIComponent(opaque)}`, duration: s.duration },
            proc,
          );
        },
        async mintRefreshTokens(issuer, _proc, want) {
          const target: FlowTarget = { issuer, clientId: seeded.clientId, clientSecret: seeded.clientSecret, redirectUri: seeded.redirectUri };
          const minter = new RefreshTokenMinter(target, seeded.user, s.genConcurrency);
          const cap = Math.min(want, 3 * s.refreshCap);
          log(`scale: minting up to ${cap} refresh tokens (budget ${s.refreshGenSeconds}s)`);
          await minter.fill(cap, performance.now() + s.refreshGenSeconds * 1000);
          log(`scale: ${minter.tokens.length} refresh tokens in ${round(minter.seconds)}s`);
          if (minter.tokens.length < 3 * s.connections) throw new Error(`scale: only ${minter.tokens.length} refresh tokens minted: ${minter.errorSamples.join(' | ')}`);
          return minter.tokens.splice(0);
        },
        refresh: (issuer, proc, tokens) => refreshRun(issuer, auth, tokens, s, proc, s.duration),
      },
      base,
    );
    Object.assign(report, { startedAt: startedAt.toISOString(), finishedAt: new Date().toISOString(), store: kind, storeDescription: store.description });
    const printed = printScale(report, path.relative(ROOT, `${base}.plans.txt`));
    process.stdout.write(`${printed.text}\n`);
    if (s.check && printed.missed) process.exitCode = 1;
    writeFileSync(`${base}.json`, `${JSON.stringify(report, null, 2)}\n`);
    process.stdout.write(`\nresults: ${path.relative(ROOT, `${base}.json`)}\n`);
  } finally {
    await store.destroy();
    activeCleanup = undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// report

interface Row {
  scenario: string;
  ours: number;
  baseline: number | undefined;
  baselineLabel?: string;
  ratio: number | undefined;
  /** Server CPU µs per request, ours and the baseline's (sign-ins: one argon2 verification), and baseline ÷ ours. */
  oursUs: number | undefined;
  baselineUs: number | undefined;
  cpuRatio: number | undefined;
  p50Ms: number;
  p99Ms: number;
  peakRssMb: number;
}

interface Target {
  target: string;
  measured: string;
  applies: boolean;
  pass: boolean;
}

function buildReport(input: {
  kind: StoreKind;
  s: Settings;
  argon: Awaited<ReturnType<typeof measureArgon2>>;
  machine: Record<string, unknown>;
  baseline: TokenResults;
  /** The bare provider rotating refresh tokens it minted in memory (bench/baseline.ts). */
  baselineRefresh: ScenarioResult | undefined;
  /** The bare provider's own sign-ins (development login, no password hash, in memory). */
  baselineSignins: SigninResult | undefined;
  /** The bare provider persisting to PostgreSQL (bench/baseline-pg-adapter.ts); PostgreSQL runs only. */
  baselineStored: StoredTokenRun[] | undefined;
  /** The same bare provider's refresh and sign-ins persisting to PostgreSQL; PostgreSQL runs only. */
  baselineRefreshStored: ScenarioResult | undefined;
  baselineSigninsStored: SigninResult | undefined;
  ours: OurResults;
  bootPeakMb: number | undefined;
  warnings: string[];
}) {
  const { kind, s, argon, baseline, baselineRefresh, baselineSignins, baselineStored, baselineRefreshStored, baselineSigninsStored, ours, bootPeakMb, warnings } = input;
  const rows: Row[] = [];
  const ratio = (a: number, b: number | undefined) => (b ? round(a / b, 3) : undefined);
  const cpu = (oursUs: number | undefined, baselineUs: number | undefined) => ({
    oursUs,
    baselineUs,
    cpuRatio: oursUs && baselineUs ? round(baselineUs / oursUs, 3) : undefined,
  });
  const ratios = (r: ScenarioResult, b?: ScenarioResult) => {
    const rounds = roundRatios(r.slices, b?.slices);
    return { ratio: rounds?.ratio ?? ratio(r.rps, b?.rps), ...cpu(r.serverUsPerRequest, b?.serverUsPerRequest), ...(rounds ? { cpuRatio: rounds.cpuRatio } : {}) };
  };
  const add = (scenario: string, r: ScenarioResult, b?: ScenarioResult) =>
    rows.push({ scenario, ours: r.rps, baseline: b?.rps, ...ratios(r, b), p50Ms: r.p50Ms, p99Ms: r.p99Ms, peakRssMb: r.peakRssMb });
  const at = (c: number) => (s.connectionsList.length > 1 ? `, c=${c}` : '');
  const pct = (x: number | undefined) => (x === undefined ? 'n/a' : `${round(x * 100)}%`);
  const onPg = kind === 'postgres';
  const targets: Target[] = [];
  ours.token.forEach((run, i) => {
    const b = baseline[i]!;
    const stored = baselineStored?.[i];
    const c = run.connections;
    const jwt = ratios(run.ccJwt, b.ccJwt).ratio;
    const opaque = ratios(run.ccOpaque, b.ccOpaque).ratio;
    const storedNote = (x: string) => (stored ? `; the bare provider on PostgreSQL: ${x}` : '');
    add(`client_credentials JWT${at(c)}`, run.ccJwt, b.ccJwt);
    add(`client_credentials opaque${at(c)}`, run.ccOpaque, b.ccOpaque);
    add(`introspection${at(c)}`, run.introspection, b.introspection);
    targets.push(
      { target: `JWT client_credentials ≥ 95% of baseline${at(c)}`, measured: pct(jwt), applies: true, pass: (jwt ?? 0) >= 0.95 },
      {
        target: `opaque client_credentials ≥ 75% of baseline (postgres)${at(c)}`,
        measured: `${pct(opaque)}${storedNote(pct(stored ? ratios(stored.ccOpaque, b.ccOpaque).ratio : undefined))}`,
        applies: onPg,
        pass: (opaque ?? 0) >= 0.75,
      },
      {
        target: `introspection ≥ 5000/s (postgres)${at(c)}`,
        measured: `${run.introspection.rps}/s${storedNote(`${stored?.introspection.rps}/s`)}`,
        applies: onPg,
        pass: run.introspection.rps >= 5000,
      },
    );
  });
  add(`refresh (rotation${at(s.connections)})${ours.refresh.shortened ? ' *' : ''}`, ours.refresh, baselineRefresh);
  // The bound measured in turns with the sign-ins on the server's CPU (signinScenario), else the
  // one measured at the start on the load generator's.
  const argonMs = ours.signins.argon2Ms ?? argon.medianMs;
  const bound = round(1000 / argonMs, 1);
  const signinRounds = ours.signins.rounds;
  rows.push({
    scenario: `sign-ins (${s.signinWorkers} workers)`,
    ours: ours.signins.rps,
    baseline: bound,
    baselineLabel: `${bound} argon2 bound`,
    ratio: signinRounds?.length ? round(median(signinRounds.map((r) => (r.rate * r.argon2Ms) / 1000)), 3) : ratio(ours.signins.rps, bound),
    ...cpu(ours.signins.serverUsPerRequest, Math.round(argonMs * 1000)),
    p50Ms: ours.signins.p50Ms,
    p99Ms: ours.signins.p99Ms,
    peakRssMb: ours.signins.peakRssMb,
  });

  const signinRow = rows[rows.length - 1]!;
  // The best any server built on the provider could do: one argon2 verification on top of the
  // provider's own sign-in, with nothing stored and (persisted) with its models in PostgreSQL.
  const argonUs = Math.round(argonMs * 1000);
  const ceilingOf = (bare: SigninResult | undefined) => {
    if (bare?.serverUsPerRequest === undefined) return undefined;
    // The bare provider's sign-ins ran with a probe of their own: its bound of that moment.
    const bareArgonUs = Math.round((bare.argon2Ms ?? argonMs) * 1000);
    return { bareSigninsPerSecond: bare.rps, bareUsPerSignin: bare.serverUsPerRequest, ratio: round(bareArgonUs / (bareArgonUs + bare.serverUsPerRequest), 3) };
  };
  const bareCeiling = ceilingOf(baselineSignins);
  const signinCeiling = bareCeiling
    ? {
        ...bareCeiling,
        oursUsApartFromArgon2: ours.signins.serverUsPerRequest === undefined ? undefined : ours.signins.serverUsPerRequest - argonUs,
        persisted: ceilingOf(baselineSigninsStored),
      }
    : undefined;
  const tokenResults = ours.token.flatMap((r) => [r.ccJwt, r.ccOpaque, r.introspection]);
  const peakRss = Math.max(
    ...[...tokenResults, ours.refresh, ours.signins].map((r) => r.peakRssMb),
    ours.refresh.generation.peakRssMb,
    bootPeakMb ?? 0,
  );
  targets.push(
    {
      target: 'sign-ins ≥ 80% of argon2 bound',
      measured:
        `${pct(signinRow.ratio)} (${ours.signins.rps}/s of ${bound}/s)${signinCeiling ? `; the bare provider's ceiling ${pct(signinCeiling.ratio)}` : ''}` +
        (signinCeiling?.persisted ? `, ${pct(signinCeiling.persisted.ratio)} persisting to PostgreSQL` : ''),
      applies: true,
      pass: (signinRow.ratio ?? 0) >= 0.8,
    },
    {
      target: 'refresh ≥ 1200/s (postgres)',
      measured: `${ours.refresh.rps}/s${baselineRefreshStored ? `; the bare provider on PostgreSQL: ${baselineRefreshStored.rps}/s` : ''}`,
      applies: onPg,
      pass: ours.refresh.rps >= 1200,
    },
    { target: 'peak RSS ≤ 200 MB', measured: `${round(peakRss)} MB`, applies: true, pass: peakRss <= 200 },
  );

  const all: Record<string, ScenarioResult> = {
    refresh: ours.refresh,
    signins: ours.signins,
    ...(baselineSignins ? { 'baseline.signins': baselineSignins } : {}),
    ...(baselineRefreshStored ? { 'baseline-postgres.refresh': baselineRefreshStored } : {}),
    ...(baselineSigninsStored ? { 'baseline-postgres.signins': baselineSigninsStored } : {}),
  };
  for (const [who, runs] of [['', ours.token], ['baseline.', baseline], ['baseline-postgres.', baselineStored ?? []]] as const) {
    for (const run of runs as Array<StoredTokenRun & { ccJwt?: ScenarioResult }>) {
      for (const k of ['ccJwt', 'ccOpaque', 'introspection'] as const) if (run[k]) all[`${who}${k}@c${run.connections}`] = run[k];
    }
  }
  for (const [name, sr] of Object.entries(all)) {
    if (sr.non2xx || sr.errors || sr.timeouts) {
      warnings.push(`${name}: ${sr.ok} ok, ${sr.non2xx} non-2xx/failed, ${sr.errors} errors, ${sr.timeouts} timeouts ${JSON.stringify(sr.statusCodes)}`);
    }
    const pctOf = (x: number | undefined) => `${Math.round((x ?? 0) * 100)}%`;
    if ((sr.othersOnServerCpu ?? 0) > 0.1) {
      warnings.push(
        `${name}: other processes took ${pctOf(sr.othersOnServerCpu)} of CPU ${SERVER_CPU} (the server got ${pctOf(sr.serverCpu)})` +
          (kind === 'postgres' ? ', PostgreSQL and Redis included' : ''),
      );
    } else if (sr.serverCpu !== undefined && sr.serverCpu < 0.85) {
      warnings.push(
        `${name}: the server used only ${pctOf(sr.serverCpu)} of CPU ${SERVER_CPU} (load generator ${pctOf(sr.benchCpu)}): it waited on something else`,
      );
    }
    if ((sr.benchCpu ?? 0) > 0.9) warnings.push(`${name}: the load generator used ${Math.round(sr.benchCpu! * 100)}% of CPU ${BENCH_CPU}: it may have been the limit`);
  }
  if (ours.refresh.note) warnings.push(`refresh: ${ours.refresh.note}`);

  return {
    settings: { ...s, stores: undefined, serverCpu: SERVER_CPU, benchCpu: BENCH_CPU },
    machine: input.machine,
    argon2: argon,
    table: rows,
    signinCeiling,
    targets,
    peakRssMb: round(peakRss),
    bootPeakRssMb: bootPeakMb === undefined ? undefined : round(bootPeakMb),
    baseline,
    baselineSignins,
    baselineStored,
    baselineRefreshStored,
    baselineSigninsStored,
    ours,
    warnings,
  };
}

function printReport(report: ReturnType<typeof buildReport> & Record<string, unknown>) {
  const header = ['scenario', 'ours req/s', 'baseline req/s', 'ratio', 'ours µs/req', 'baseline µs/req', 'CPU ratio', 'p50 ms', 'p99 ms', 'peak RSS MB'];
  const orDash = (x: number | undefined, f: (x: number) => string = String) => (x === undefined ? '–' : f(x));
  const lines = report.table.map((r) => [
    r.scenario,
    String(r.ours),
    r.baselineLabel ?? orDash(r.baseline),
    orDash(r.ratio, (x) => x.toFixed(2)),
    orDash(r.oursUs),
    orDash(r.baselineUs),
    orDash(r.cpuRatio, (x) => x.toFixed(2)),
    String(r.p50Ms),
    String(r.p99Ms),
    String(Math.round(r.peakRssMb)),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const fmt = (cells: string[]) => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  const out: string[] = [];
  out.push('');
  out.push(`store: ${report.store} — ${report.storeDescription}`);
  out.push(
    `duration ${report.settings.duration}s per scenario, ${report.settings.connectionsList.join(' and ')} connections (refresh ${report.settings.connections}); server on CPU ${SERVER_CPU}, load generator on CPU ${BENCH_CPU}; ` +
      `token scenarios: the servers in turns of ${report.settings.slice}s or so, req/s = median of the turns' rates, ratio = median of each round's ratio; sign-ins: in rounds as long, each after 5 argon2 verifications on the server's CPU, req/s and ratio = medians of the rounds'; refresh: req/s = median of per-second samples; µs/req = the server's CPU time per answered request (CPU ratio = baseline's ÷ ours: the ratio both would show if neither waited); argon2id ${report.argon2.cost.memoryCost} KiB/t=${report.argon2.cost.timeCost}/p=${report.argon2.cost.parallelism}: ${report.argon2.medianMs} ms median at the start on the load generator's CPU, ${report.ours.signins.argon2Ms ?? '–'} ms beside the sign-ins on the server's`,
  );
  out.push(fmt(header));
  out.push(`|${widths.map((w, i) => (i === 0 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`);
  for (const l of lines) out.push(fmt(l));
  const refresh = report.ours.refresh;
  out.push(
    `refresh: ${refresh.ok + refresh.non2xx} of ${refresh.tokensAvailable} tokens presented in ${refresh.seconds}s; ${refresh.generation.minted} generated beforehand in ${refresh.generation.seconds}s ` +
      `(${refresh.generation.perSecond}/s, one code flow each on ${refresh.generation.concurrency} reused sessions)` +
      (refresh.shortened ? `\n* ${refresh.note}` : ''),
  );
  const ceiling = report.signinCeiling;
  if (ceiling) {
    out.push(
      `sign-ins: the bare provider's own (development login, no password hash, nothing stored) take ${ceiling.bareUsPerSignin} µs of its CPU each ` +
        `(${ceiling.bareSigninsPerSecond}/s); with one argon2 verification added that is ${round(ceiling.ratio * 100)}% of the argon2 bound, ` +
        `the ceiling of any server built on it; ours spend ${ceiling.oursUsApartFromArgon2 ?? '–'} µs apart from the verification`,
    );
    if (ceiling.persisted) {
      out.push(
        `sign-ins: the same persisting its sessions, interactions, grants, codes and tokens to PostgreSQL (bench/baseline-pg-adapter.ts) take ` +
          `${ceiling.persisted.bareUsPerSignin} µs each (${ceiling.persisted.bareSigninsPerSecond}/s): a ceiling of ${round(ceiling.persisted.ratio * 100)}% for a server that keeps them there`,
      );
    }
  }
  const refreshStored = report.baselineRefreshStored;
  if (refreshStored) {
    out.push(
      `refresh: the bare provider persisting to PostgreSQL rotates ${refreshStored.rps}/s (${refreshStored.serverUsPerRequest ?? '–'} µs/req), ` +
        `in memory ${report.table.find((r) => r.scenario.startsWith('refresh'))?.baseline ?? '–'}/s`,
    );
  }
  if (report.baselineStored) {
    const parts = report.baselineStored.map((run, i) => {
      const memory = report.baseline[i]!;
      const share = (x: ScenarioResult, of: ScenarioResult) => `${round((roundRatios(x.slices, of.slices)?.ratio ?? x.rps / of.rps) * 100)}%`;
      return (
        `c=${run.connections}: opaque ${run.ccOpaque.rps}/s (${run.ccOpaque.serverUsPerRequest ?? '–'} µs/req, ${share(run.ccOpaque, memory.ccOpaque)} of it in memory), ` +
        `introspection ${run.introspection.rps}/s (${run.introspection.serverUsPerRequest ?? '–'} µs/req, ${share(run.introspection, memory.introspection)})`
      );
    });
    out.push(`the bare provider persisting to PostgreSQL (one plain statement per adapter call, bench/baseline-pg-adapter.ts): ${parts.join('; ')}`);
  }
  out.push('');
  out.push('targets:');
  for (const t of report.targets) {
    const verdict = t.applies ? (t.pass ? 'PASS' : 'FAIL') : 'info';
    out.push(`  ${verdict}  ${t.target}: ${t.measured}${t.applies ? '' : ' (applies on postgres only)'}`);
  }
  if (report.warnings.length) {
    out.push('\nwarnings:');
    for (const w of report.warnings) out.push(`  - ${w}`);
  }
  const excerpt = report.serverLogExcerpt as string[];
  if (excerpt.length) {
    out.push(`\nserver log (warn and above, ${(report.logs as { server: string }).server}):`);
    for (const l of excerpt) out.push(`  ${l}`);
  }
  process.stdout.write(`${out.join('\n')}\n`);
}

// ---------------------------------------------------------------------------------------------
// main

let activeCleanup: (() => Promise<void>) | undefined;

async function main() {
  const s = settingsFromArgs();
  if (!existsSync(path.join(ROOT, 'dist', 'src', 'main.js'))) {
    throw new Error('dist/src/main.js is missing: run `npm run build` (npm run bench does it)');
  }
  const cpus = os.availableParallelism();
  const pinned = cpus >= 2 && pinSelf(BENCH_CPU);
  if (!hasTaskset()) log('taskset not found: server and load generator are not pinned');
  else if (!pinned) log('could not pin the load generator (fewer than 2 CPUs?)');
  const machine = {
    cpus, cpuModel: os.cpus()[0]?.model, node: process.version, taskset: hasTaskset(), benchPinned: pinned,
    serverNodeFlags: SERVER_NODE_FLAGS, serverEnv: START_ENV,
  };

  log(`argon2id: measuring 20 verifications at the server's default cost`);
  const argon = await measureArgon2();
  log(`argon2id: ${argon.medianMs} ms median → bound ${argon.boundPerSecond} sign-ins/s per core`);

  if (s.scale !== undefined) {
    // Scale mode sets the exit code itself (--check).
    for (const kind of s.stores) await runScaleStore(kind, s);
    return;
  }
  const reports = [];
  for (const kind of s.stores) reports.push(await runStore(kind, s, argon, machine));
  const missed = reports.flatMap((r) => r.targets.filter((t) => t.applies && !t.pass));
  process.exitCode = s.check && missed.length ? 1 : 0;
}

let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    log(`${signal}: stopping servers and dropping the temporary store`);
    void (activeCleanup?.() ?? Promise.resolve()).finally(() => process.exit(130));
  });
}

main().then(
  () => process.exit(),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
