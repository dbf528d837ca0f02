/**
 * node bench/ab.ts [--rounds=6] [--duration=3] [--connections=64] [--scenarios=jwt,opaque,intro,refresh]
 *                  [--store=postgres|embedded] [--baseline] DIST...
 *
 * Compares builds of our server (each DIST a built tree's `dist` directory, e.g. a git worktree's)
 * in interleaved rounds: every build (and with --baseline the bare provider) serves each scenario
 * for a few seconds, one after the other, all pinned to CPU 0; the order flips every round. On
 * PostgreSQL + Redis the builds share one seeded store; on the embedded store each has its own.
 * Per round it takes each build's server CPU time per request against the first build's, and
 * prints the median of those ratios: a machine whose speed drifts by ±25% within minutes (seen on
 * shared hosts) moves both sides of a pair together, so differences of a few percent show, which
 * two `npm run bench` runs minutes apart cannot.
 *
 * `refresh` runs `--connections` chains per build, each signed in once before the rounds and then
 * presenting the refresh token its previous refresh returned; the bare provider has no sign-in, so
 * it sits that scenario out.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { Browser, basicAuth, codeFlow, rotateRefreshToken, type FlowTarget } from './flows.ts';
import { freePort, MemoryWindow, pinSelf, startNode, waitReady, type ServerProcess } from './proc.ts';
import { childEnv, FORM, ROOT, seedStore, startCommand, TOKEN_BODY as BODY } from './servers.ts';
import { createStore, type BenchStore } from './store.ts';

// npm start's Node flags, as bench/run.ts uses them (childEnv adds its environment).
const NODE_FLAGS = startCommand().nodeFlags;

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    rounds: { type: 'string', default: '6' },
    duration: { type: 'string', default: '3' },
    connections: { type: 'string', default: '64' },
    scenarios: { type: 'string', default: 'jwt,opaque,intro' },
    store: { type: 'string', default: 'postgres' },
    baseline: { type: 'boolean', default: false },
  },
});
const rounds = Number(values.rounds);
const duration = Number(values.duration);
const connections = Number(values.connections);
const SCENARIOS = ['jwt', 'opaque', 'intro', 'refresh'] as const;
type Scenario = (typeof SCENARIOS)[number];
const scenarios = values.scenarios.split(',') as Scenario[];
const storeKind = values.store as 'postgres' | 'embedded';
if (
  !positionals.length ||
  scenarios.some((s) => !SCENARIOS.includes(s)) ||
  !['postgres', 'embedded'].includes(storeKind) ||
  ![rounds, duration, connections].every((n) => n > 0)
) {
  process.stderr.write(
    'usage: node bench/ab.ts [--rounds=N] [--duration=S] [--connections=N] [--scenarios=jwt,opaque,intro,refresh] [--store=postgres|embedded] [--baseline] DIST...\n',
  );
  process.exit(2);
}

interface Target {
  name: string;
  issuer: string;
  auth: string;
  proc: ServerProcess;
  opaqueToken?: string;
  /** The refresh scenario's chains: each one's latest refresh token. */
  chains?: string[];
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** One refresh per chain, all chains side by side, until `until`: the refreshes answered. */
async function runChains(t: Target, until: number): Promise<number> {
  let answered = 0;
  await Promise.all(
    t.chains!.map(async (_, i) => {
      while (performance.now() < until) {
        t.chains![i] = await rotateRefreshToken(t.issuer, t.auth, t.chains![i]!);
        answered++;
      }
    }),
  );
  return answered;
}

pinSelf(1);
const stores: BenchStore[] = [];
const targets: Target[] = [];
try {
  // PostgreSQL: one store for all; embedded: PGlite runs inside each server, so one store each.
  const shared = storeKind === 'postgres' ? await createStore('postgres') : undefined;
  if (shared) stores.push(shared);
  const seededShared = shared && (await seedStore(shared.env));
  if (values.baseline) {
    const port = await freePort();
    const secret = randomBytes(24).toString('base64url');
    const proc = startNode({ name: 'baseline', script: path.join(ROOT, 'bench', 'baseline.ts'), env: childEnv({ PORT: String(port), BASELINE_CLIENT_ID: 'baseline', BASELINE_CLIENT_SECRET: secret }), cwd: ROOT, logFile: '/dev/null', cpu: 0, nodeFlags: NODE_FLAGS });
    targets.push({ name: 'baseline', issuer: `http://127.0.0.1:${port}`, auth: basicAuth('baseline', secret), proc });
    await waitReady(proc, `http://127.0.0.1:${port}/.well-known/openid-configuration`);
  }
  for (const [i, dist] of positionals.entries()) {
    const store = shared ?? (await createStore('embedded'));
    if (!shared) stores.push(store);
    const seeded = seededShared ?? (await seedStore(store.env));
    const port = await freePort();
    const issuer = `http://127.0.0.1:${port}`;
    const proc = startNode({ name: `build${i}`, script: path.join(path.resolve(dist), 'src', 'main.js'), env: childEnv({ ...store.env, PORT: String(port), ISSUER: issuer }), cwd: ROOT, logFile: '/dev/null', cpu: 0, nodeFlags: NODE_FLAGS });
    const target: Target = { name: `${i}:${dist}`, issuer, auth: basicAuth(seeded.clientId, seeded.clientSecret), proc };
    targets.push(target);
    await waitReady(proc, `${issuer}/readyz`);
    if (scenarios.includes('refresh')) {
      const flow: FlowTarget = { issuer, clientId: seeded.clientId, clientSecret: seeded.clientSecret, redirectUri: seeded.redirectUri };
      target.chains = [];
      for (let c = 0; c < connections; c++) {
        const { tokens } = await codeFlow(new Browser(), flow, { scope: 'openid offline_access', prompt: 'consent', user: seeded.user });
        target.chains.push(tokens.refresh_token!);
      }
    }
  }
  for (const t of targets) {
    const res = await fetch(`${t.issuer}/token`, { method: 'POST', headers: { 'content-type': FORM, authorization: t.auth }, body: BODY.opaque });
    t.opaqueToken = ((await res.json()) as { access_token: string }).access_token;
    await autocannon({ url: `${t.issuer}/token`, method: 'POST', headers: { 'content-type': FORM, authorization: t.auth }, body: BODY.jwt, connections, duration: 2 });
  }

  const cpu = new Map<string, number[]>();
  const rate = new Map<string, number[]>();
  for (let round = 0; round < rounds; round++) {
    for (const scenario of scenarios) {
      for (const t of round % 2 ? [...targets].reverse() : targets) {
        const key = `${scenario} ${t.name}`;
        if (scenario === 'refresh') {
          if (!t.chains) continue;
          const window = new MemoryWindow(t.proc.pid);
          const started = performance.now();
          const answered = await runChains(t, started + duration * 1000);
          const seconds = (performance.now() - started) / 1000;
          const used = window.end();
          cpu.set(key, [...(cpu.get(key) ?? []), Math.round(((used.cpu ?? 0) * seconds * 1e6) / answered)]);
          rate.set(key, [...(rate.get(key) ?? []), answered / seconds]);
          continue;
        }
        const intro = scenario === 'intro';
        const window = new MemoryWindow(t.proc.pid);
        const r = await autocannon({
          url: `${t.issuer}${intro ? '/token/introspection' : '/token'}`,
          method: 'POST',
          headers: { 'content-type': FORM, authorization: t.auth },
          body: intro ? `token=${encodeURIComponent(t.opaqueToken!)}` : BODY[scenario],
          connections,
          duration,
          timeout: 10,
        });
        const used = window.end();
        const answered = r['2xx'] + r.non2xx;
        if (r.non2xx) process.stderr.write(`warning: ${t.name} ${scenario}: ${r.non2xx} answers were not 2xx\n`);
        cpu.set(key, [...(cpu.get(key) ?? []), Math.round(((used.cpu ?? 0) * r.duration * 1e6) / answered)]);
        rate.set(key, [...(rate.get(key) ?? []), r.requests.average]);
      }
    }
    process.stderr.write(`round ${round + 1}/${rounds} done\n`);
  }

  const builds = targets.filter((t) => t.name !== 'baseline');
  const reference = builds[0]!.name;
  console.log(`${rounds} interleaved rounds of ${duration} s, ${connections} connections, ${storeKind} store; server CPU µs per request (median; per round)`);
  for (const scenario of scenarios) {
    for (const t of targets) {
      const us = cpu.get(`${scenario} ${t.name}`);
      if (!us) continue;
      console.log(`${scenario.padEnd(7)} ${t.name.padEnd(40)} ${String(Math.round(median(rate.get(`${scenario} ${t.name}`)!))).padStart(6)} req/s ${String(median(us)).padStart(5)} µs/req  [${us.join(' ')}]`);
    }
    const ref = cpu.get(`${scenario} ${reference}`)!;
    for (const t of builds.slice(1)) {
      const ratios = cpu.get(`${scenario} ${t.name}`)!.map((v, i) => v / ref[i]!);
      console.log(`${scenario.padEnd(7)} ${t.name} ÷ ${reference}: CPU per request ×${median(ratios).toFixed(3)} [${ratios.map((x) => x.toFixed(2)).join(' ')}]`);
    }
    if (values.baseline && scenario !== 'refresh') {
      const base = cpu.get(`${scenario} baseline`)!;
      const baseRate = rate.get(`${scenario} baseline`)!;
      for (const t of builds) {
        const cpuRatio = median(cpu.get(`${scenario} ${t.name}`)!.map((v, i) => base[i]! / v));
        const rateRatio = median(rate.get(`${scenario} ${t.name}`)!.map((v, i) => v / baseRate[i]!));
        console.log(`${scenario.padEnd(7)} ${t.name} vs baseline: rate ratio ${rateRatio.toFixed(2)}, CPU ratio ${cpuRatio.toFixed(2)}`);
      }
    }
  }
} finally {
  for (const t of targets) await t.proc.stop();
  for (const store of stores) await store.destroy();
}
