/**
 * npm run bench:enumeration [-- --store=embedded|postgres --samples=150 --gap-ms=30]
 *
 * Does an answer's timing tell whether an address has an account? For each anonymous account
 * endpoint this sends requests for known and unknown addresses, interleaved one by one (so drift
 * hits both alike), to our server (dist/src/main.js, default argon2 cost) pinned to CPU 0 while this
 * process runs on CPU 1, and prints the median and p90 latency of each side and their ratio.
 * A ratio near 1.00 (and overlapping spreads) means the timing gives nothing away.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { loadConfig } from '../src/config/load.ts';
import { createServices } from '../src/services.ts';
import { freePort, pinSelf, startNode, waitReady } from './proc.ts';
import { createStore, type StoreKind } from './store.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const { values } = parseArgs({
  options: {
    store: { type: 'string', default: 'embedded' },
    samples: { type: 'string', default: '150' },
    // A pause between requests, so work a known address starts after its answer (the mail) is done
    // before the next request and does not slow the other side's answer.
    'gap-ms': { type: 'string', default: '30' },
  },
});
const storeKind = values.store as StoreKind;
if (storeKind !== 'embedded' && storeKind !== 'postgres') throw new Error('--store must be embedded or postgres');
const samples = Number(values.samples);
const gapMs = Number(values['gap-ms']);

const PASSWORD = 'sturdy lantern orchard 8841';

/** Known users, made through the same services the server uses, before it starts. */
async function seed(env: Record<string, string>, count: number): Promise<string[]> {
  const config = loadConfig(env);
  const services = await createServices(config, pino({ level: 'warn' }, pino.destination(2)));
  try {
    const emails: string[] = [];
    for (let i = 0; i < count; i++) {
      const email = `known.${i}.${randomBytes(3).toString('hex')}@example.test`;
      await services.accounts.create({ email, password: PASSWORD, emailVerified: i % 2 === 0 ? true : false, givenName: 'Known' });
      emails.push(email);
    }
    return emails;
  } finally {
    await services.close();
  }
}

const median = (xs: number[]) => quantile(xs, 0.5);
function quantile(xs: number[], q: number): number {
  const sorted = [...xs].sort((a, b) => a - b);
  const i = (sorted.length - 1) * q;
  const lo = Math.floor(i);
  return sorted[lo]! + (sorted[Math.ceil(i)]! - sorted[lo]!) * (i - lo);
}

let ipCounter = 1;
/** One POST; every request comes from another client address so the per-IP limits stay out of the way. */
async function timedPost(base: string, pathname: string, body: unknown): Promise<{ ms: number; status: number }> {
  const ip = `10.${(ipCounter >> 16) & 255}.${(ipCounter >> 8) & 255}.${ipCounter++ & 255}`;
  const started = process.hrtime.bigint();
  const res = await fetch(`${base}${pathname}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-forwarded-for': ip },
    body: JSON.stringify(body),
  });
  await res.arrayBuffer();
  return { ms: Number(process.hrtime.bigint() - started) / 1e6, status: res.status };
}

interface Probe {
  name: string;
  request: (email: string) => [string, unknown];
  known: string[];
}

async function main() {
  const pinned = pinSelf(1);
  const store = await createStore(storeKind);
  const port = await freePort();
  const env = {
    ...store.env,
    PORT: String(port),
    ISSUER: `http://127.0.0.1:${port}`,
    TRUST_PROXY: 'true',
    CAPTCHA_PROVIDER: 'none',
    AUTH_API_RATE_LIMIT_PER_IP: '100000',
    PASSWORD_RESET_LIMIT_PER_HOUR: '10000',
  };
  // Each known address is used once per probe: no cooldown or notice throttle meets a repeat.
  const known = await seed(env, samples * 3);
  const server = startNode({
    name: 'idp',
    script: path.join(ROOT, 'dist', 'src', 'main.js'),
    env: { ...process.env, ...env, PATH: process.env.PATH ?? '' },
    cwd: ROOT,
    logFile: path.join(store.env.DATA_DIR!, 'server.log'),
    cpu: 0,
  });
  const base = `http://127.0.0.1:${port}`;
  try {
    await waitReady(server, `${base}/healthz`);
    const probes: Probe[] = [
      { name: 'password-reset/request', known: known.slice(0, samples), request: (email) => ['/api/v1/auth/password-reset/request', { email }] },
      { name: 'verify-email/resend', known: known.slice(samples, 2 * samples), request: (email) => ['/api/v1/auth/verify-email/resend', { email }] },
      {
        name: 'register (taken vs new address)',
        known: known.slice(2 * samples, 3 * samples),
        request: (email) => ['/api/v1/auth/register', { email, password: PASSWORD }],
      },
    ];
    const rows = [];
    for (const probe of probes) {
      // Warm-up: a few of each, not counted.
      for (let i = 0; i < 5; i++) await timedPost(base, ...probe.request(`warm.${i}.${randomBytes(4).toString('hex')}@example.test`));
      const knownMs: number[] = [];
      const unknownMs: number[] = [];
      const statuses = new Set<string>();
      for (let i = 0; i < samples; i++) {
        const order = i % 2 === 0 ? ['known', 'unknown'] : ['unknown', 'known'];
        for (const side of order) {
          const email = side === 'known' ? probe.known[i]! : `nobody.${i}.${randomBytes(4).toString('hex')}@example.test`;
          await new Promise((r) => setTimeout(r, gapMs));
          const { ms, status } = await timedPost(base, ...probe.request(email));
          statuses.add(`${side}:${status}`);
          (side === 'known' ? knownMs : unknownMs).push(ms);
        }
      }
      rows.push({
        endpoint: probe.name,
        statuses: [...statuses].sort().join(' '),
        knownMedian: median(knownMs),
        unknownMedian: median(unknownMs),
        knownP90: quantile(knownMs, 0.9),
        unknownP90: quantile(unknownMs, 0.9),
        ratio: median(knownMs) / median(unknownMs),
      });
    }
    const f = (x: number) => x.toFixed(2);
    console.log(`store: ${store.description}; ${samples} requests per side; bench ${pinned ? 'pinned to CPU 1' : 'not pinned'}, server ${server.pinned ? 'pinned to CPU 0' : 'not pinned'}`);
    console.log('endpoint                          | statuses                     | known p50 / p90 ms | unknown p50 / p90 ms | known/unknown p50');
    for (const r of rows) {
      console.log(
        `${r.endpoint.padEnd(33)} | ${r.statuses.padEnd(28)} | ${f(r.knownMedian).padStart(7)} / ${f(r.knownP90).padStart(7)} | ${f(r.unknownMedian).padStart(8)} / ${f(r.unknownP90).padStart(8)} | ${f(r.ratio)}`,
      );
    }
  } finally {
    await server.stop();
    await store.destroy();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
