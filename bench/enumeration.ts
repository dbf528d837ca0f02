/**
 * npm run bench:enumeration [-- --store=embedded|postgres --samples=150 --gap-ms=30]
 *
 * Does an answer's timing tell whether an address has an account? For each anonymous account
 * endpoint this sends requests for known and unknown addresses, interleaved one by one (so drift
 * hits both alike), to our server (dist/src/main.js, default argon2 cost) pinned to CPU 0 while this
 * process runs on CPU 1, and prints the median and p90 latency of each side and their ratio.
 * A ratio near 1.00 (and overlapping spreads) means the timing gives nothing away. It fails (exit
 * code 1, naming the endpoints) when a ratio falls outside 1 ± --tolerance (0.1: 0.9 to 1.1), or when
 * known and unknown addresses get different status codes.
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
import { DEFAULT_SCOPE } from '../src/domain/tenants/tenant-scope.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const { values } = parseArgs({
  options: {
    store: { type: 'string', default: 'embedded' },
    samples: { type: 'string', default: '150' },
    // A pause between requests, so work a known address starts after its answer (the mail) is done
    // before the next request and does not slow the other side's answer.
    'gap-ms': { type: 'string', default: '30' },
    // How far from 1.00 the known/unknown ratio of medians may be before the run fails.
    tolerance: { type: 'string', default: '0.1' },
  },
});
const storeKind = values.store as StoreKind;
if (storeKind !== 'embedded' && storeKind !== 'postgres') throw new Error('--store must be embedded or postgres');
const samples = Number(values.samples);
const gapMs = Number(values['gap-ms']);
const tolerance = Number(values.tolerance);
if (!(tolerance > 0 && tolerance < 1)) throw new Error('--tolerance must be a number between 0 and 1');

const PASSWORD = 'sturdy lantern orchard 8841';

const REDIRECT_URI = 'http://127.0.0.1:9/cb';

/**
 * Known users and the relying parties of the sign-in and register pages, made through the same
 * services the server uses, before it starts. `noVerification` lets new accounts sign in before
 * they verify (REGISTRATION_REQUIRE_EMAIL_VERIFICATION off for that client).
 */
async function seed(env: Record<string, string>, count: number) {
  const config = loadConfig(env);
  const services = await createServices(config, pino({ level: 'warn' }, pino.destination(2)));
  try {
    const emails: string[] = [];
    for (let i = 0; i < count; i++) {
      const email = `known.${i}.${randomBytes(3).toString('hex')}@example.test`;
      await services.accounts.create({ email, password: PASSWORD, emailVerified: i % 2 === 0 ? true : false, givenName: 'Known' });
      emails.push(email);
    }
    const client = async (extra: Record<string, unknown>) =>
      (await services.clients.register(DEFAULT_SCOPE, {
        metadata: { redirect_uris: [REDIRECT_URI], grant_types: ['authorization_code'], response_types: ['code'], token_endpoint_auth_method: 'none', ...extra },
        firstParty: true,
      })).client_id;
    return { emails, signInClient: await client({}), noVerification: await client({ registration_require_email_verification: false }) };
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

/** known.<i>.<6 hex>@example.test with another random suffix: an address of the same shape with no account. */
function twin(email: string): string {
  for (;;) {
    const other = email.replace(/\.[0-9a-f]{6}@/, `.${randomBytes(3).toString('hex')}@`);
    if (other !== email) return other;
  }
}

let ipCounter = 1;
/** Every request comes from another client address so the per-IP limits stay out of the way. */
const nextIp = () => `10.${(ipCounter >> 16) & 255}.${(ipCounter >> 8) & 255}.${ipCounter++ & 255}`;

/** One POST (JSON, or a form with the interaction's cookies), timed from send to the last byte. */
async function timedPost(base: string, pathname: string, body: unknown, form?: { cookie: string }): Promise<{ ms: number; status: number }> {
  const headers: Record<string, string> = form
    ? { 'content-type': 'application/x-www-form-urlencoded', cookie: form.cookie, 'x-forwarded-for': nextIp() }
    : { 'content-type': 'application/json', 'x-forwarded-for': nextIp() };
  const payload = form ? new URLSearchParams(body as Record<string, string>).toString() : JSON.stringify(body);
  const started = process.hrtime.bigint();
  const res = await fetch(`${base}${pathname}`, { method: 'POST', headers, body: payload, redirect: 'manual' });
  await res.arrayBuffer();
  return { ms: Number(process.hrtime.bigint() - started) / 1e6, status: res.status };
}

/** A pending authorization of `clientId` up to its login page (not timed): its uid, cookies and CSRF token. */
async function openInteraction(base: string, clientId: string) {
  const query = new URLSearchParams({
    client_id: clientId, response_type: 'code', scope: 'openid', redirect_uri: REDIRECT_URI,
    code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256', state: 'st',
  });
  const auth = await fetch(`${base}/auth?${query}`, { redirect: 'manual' });
  await auth.arrayBuffer();
  const cookie = auth.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
  const location = new URL(auth.headers.get('location')!, base);
  const page = await fetch(location, { headers: { cookie } });
  const csrf = /name="csrf" value="([^"]+)"/.exec(await page.text())?.[1];
  if (page.status !== 200 || !csrf) throw new Error(`no login page for ${clientId}: ${page.status}`);
  return { uid: location.pathname.split('/')[2]!, cookie, csrf };
}

interface Probe {
  name: string;
  known: string[];
  /** Sends one request for `email`; setup (an interaction to post to) is not timed. */
  send: (email: string) => Promise<{ ms: number; status: number }>;
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
  // Each known address is used by one probe, once: no cooldown, notice throttle or lockout meets a repeat.
  const PROBES = 7;
  const { emails: known, signInClient, noVerification } = await seed(env, samples * PROBES);
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
    const slice = (n: number) => known.slice(n * samples, (n + 1) * samples);
    const json = (pathname: string, body: (email: string) => unknown) => (email: string) => timedPost(base, pathname, body(email));
    /** A form post inside a fresh interaction of `clientId` (the interaction is opened untimed). */
    const page = (clientId: string, step: string, fields: (email: string) => Record<string, string>) => async (email: string) => {
      const { uid, cookie, csrf } = await openInteraction(base, clientId);
      return timedPost(base, `/interaction/${uid}/${step}`, { csrf, ...fields(email) }, { cookie });
    };
    const probes: Probe[] = [
      { name: 'password-reset/request', known: slice(0), send: json('/api/v1/auth/password-reset/request', (email) => ({ email })) },
      { name: 'verify-email/resend', known: slice(1), send: json('/api/v1/auth/verify-email/resend', (email) => ({ email })) },
      { name: 'register API (taken vs new)', known: slice(2), send: json('/api/v1/auth/register', (email) => ({ email, password: PASSWORD })) },
      {
        name: 'register API, no verification',
        known: slice(3),
        send: json('/api/v1/auth/register', (email) => ({ email, password: PASSWORD, client_id: noVerification })),
      },
      { name: 'register page, no verification', known: slice(4), send: page(noVerification, 'register', (email) => ({ email, password: PASSWORD })) },
      { name: 'sign-in, wrong password', known: slice(5), send: page(signInClient, 'login', (email) => ({ email, password: 'wrong lantern orchard 1' })) },
      {
        name: 'password-reset/confirm, bad code',
        known: slice(6),
        send: json('/api/v1/auth/password-reset/confirm', (email) => ({ email, code: '000000', password: 'Knownorchardlantern' })),
      },
    ];
    const rows = [];
    for (const probe of probes) {
      // Warm-up: a few of each, not counted.
      for (let i = 0; i < 5; i++) await probe.send(`warm.${i}.${randomBytes(4).toString('hex')}@example.test`);
      const knownMs: number[] = [];
      const unknownMs: number[] = [];
      const statuses = new Set<string>();
      const statusesOf = { known: new Set<number>(), unknown: new Set<number>() };
      for (let i = 0; i < samples; i++) {
        const order = i % 2 === 0 ? ['known', 'unknown'] : ['unknown', 'known'];
        for (const side of order) {
          // The unknown address is the known one's twin (another random suffix, same length and
          // words): anything that costs by the address's text (the password policy penalises words
          // of the email) costs the same on both sides, and only the account's existence differs.
          const email = side === 'known' ? probe.known[i]! : twin(probe.known[i]!);
          await new Promise((r) => setTimeout(r, gapMs));
          const { ms, status } = await probe.send(email);
          statuses.add(`${side}:${status}`);
          statusesOf[side as 'known' | 'unknown'].add(status);
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
        sameStatuses: [...statusesOf.known].sort().join() === [...statusesOf.unknown].sort().join(),
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
    // The check: timing or status that tells known from unknown addresses fails the run.
    const failures = [
      ...rows.filter((r) => !(r.ratio >= 1 - tolerance && r.ratio <= 1 + tolerance)).map((r) => `${r.endpoint}: known/unknown p50 ratio ${f(r.ratio)} is outside ${f(1 - tolerance)}–${f(1 + tolerance)}`),
      ...rows.filter((r) => !r.sameStatuses).map((r) => `${r.endpoint}: known and unknown addresses get different statuses (${r.statuses})`),
    ];
    if (failures.length) {
      console.error(`FAIL: the answers tell known from unknown addresses:\n${failures.map((l) => `  ${l}`).join('\n')}`);
      process.exitCode = 1;
    } else {
      console.log(`OK: every ratio within ${f(1 - tolerance)}–${f(1 + tolerance)}, same statuses for known and unknown addresses`);
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
