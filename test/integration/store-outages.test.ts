import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { generate } from 'otplib';
import pg from 'pg';
import { createLogger } from '../../src/infra/logger.ts';
import { ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, AdminApi, adminToken, assertError, tokenRequest } from '../helpers/admin.ts';
import { solveCaptcha } from '../helpers/captcha.ts';
import { logCapture } from '../helpers/log-capture.ts';
import { authorizationUrl, openLoginPage, postLogin } from '../helpers/login-page.ts';
import { hasRedisServer, startOwnRedis, type OwnRedis } from '../helpers/own-redis.ts';
import { createUser, REDIRECT_URI, registerClient, uniqueEmail } from '../helpers/rp.ts';
import { createTestStore, onPostgres, startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';
import { startTcpProxy } from '../helpers/tcp-proxy.ts';
import { waitFor } from '../helpers/wait.ts';

/**
 * What a store outage costs (README, "When a store fails"), tried on PostgreSQL + Redis: a Redis of
 * the test's own, paused (SIGSTOP), resumed, stopped and started again; the shared PostgreSQL with
 * its connections terminated and a table locked by another session. Every request answers within
 * its deadlines plus a margin, with the documented outcome, and everything works again after.
 */

const REDIS_DEADLINE_MS = 300;
const DB_DEADLINE_MS = 1000;
// A request may wait one deadline per store call until the circuit opens, and a trial call's
// deadline when it is half-open; the margin covers the work itself on a loaded CI machine.
const MARGIN_MS = 1500;
const REDIS_BUDGET_MS = 3 * REDIS_DEADLINE_MS + MARGIN_MS;
const DB_BUDGET_MS = 2 * DB_DEADLINE_MS + MARGIN_MS;

const skip = !onPostgres
  ? 'store outages are tried on PostgreSQL + Redis (the CI pass with DATABASE_URL and REDIS_URL)'
  : !hasRedisServer && !process.env.CI
    ? 'no redis-server binary to start a Redis of our own'
    : false;

const measured: string[] = [];
after(() => {
  // What the deadlines cost, for the record (node --test prints it with the results).
  if (measured.length) console.log(`measured answer times:\n${measured.join('\n')}`);
});

/** Asserts that an answer came within `budgetMs`, and keeps the figure. */
function within(ms: number, budgetMs: number, what: string) {
  measured.push(`  ${what}: ${Math.round(ms)} ms (budget ${budgetMs} ms)`);
  assert.ok(ms < budgetMs, `${what}: answered in ${Math.round(ms)} ms, over ${budgetMs} ms`);
}

/** Runs `request` and answers its result with how long it took. */
async function timed<T>(request: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now();
  const value = await request();
  return { value, ms: performance.now() - started };
}

const clientCredentials = (ts: TestServer, client: { id: string; secret: string }) =>
  tokenRequest(ts, client, { grant_type: 'client_credentials' });

async function machineClient(ts: TestServer) {
  const registered = await registerClient(ts, {
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    post_logout_redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
  });
  return { id: registered.clientId, secret: registered.clientSecret! };
}

describe('a Redis that hangs or stops', { skip }, () => {
  let redis: OwnRedis;
  let ts: TestServer;
  let admin: AdminApi;
  let webClientId: string;
  let machine: { id: string; secret: string };
  let user: { email: string; password: string };
  const logs = logCapture();

  before(async () => {
    redis = await startOwnRedis();
    ts = await startTestServer(
      {
        REDIS_URL: redis.url,
        REDIS_COMMAND_TIMEOUT_MS: String(REDIS_DEADLINE_MS),
        BOOTSTRAP_ADMIN_CLIENT_ID: ADMIN_CLIENT_ID,
        BOOTSTRAP_ADMIN_CLIENT_SECRET: ADMIN_CLIENT_SECRET,
        TRUST_PROXY: 'true',
      },
      { logger: createLogger('info', logs.stream) },
    );
    admin = new AdminApi(ts, await adminToken(ts));
    webClientId = (await registerClient(ts, { token_endpoint_auth_method: 'none' }, true)).clientId;
    machine = await machineClient(ts);
    user = await createUser(ts);
  });
  after(async () => {
    redis?.resume();
    await stopAndDestroy(ts);
    await redis?.stop();
  });

  /** A correct sign-in on the login page: 303 onwards when Redis answers. */
  const signInAnswer = async () => postLogin(await openLoginPage(ts, webClientId), { email: user.email, password: user.password });

  /** Each way in answers within the budget with its documented outcome while Redis does not answer. */
  async function assertOutageOutcomes(label: string) {
    const signIn = await timed(signInAnswer);
    assert.equal(signIn.value.status, 503, `${label}: a sign-in cannot check the lockout, so it is refused`);
    assert.equal(signIn.value.location, null, `${label}: nobody is signed in`);
    assert.match(signIn.value.html, /IDENT_UNAVAILABLE/, `${label}: the error page names the cause`);
    assert.equal(signIn.value.res.headers.get('retry-after'), '5');
    within(signIn.ms, REDIS_BUDGET_MS, `${label}: sign-in`);

    const json = await timed(async () => postLogin(await openLoginPage(ts, webClientId), { email: user.email, password: user.password }, { accept: 'application/json' }));
    assert.equal(json.value.status, 503);
    assert.equal((JSON.parse(json.value.html) as { error: string }).error, 'IDENT_UNAVAILABLE');

    const token = await timed(() => clientCredentials(ts, machine));
    assert.equal(token.value.status, 200, `${label}: client_credentials does not need Redis: ${JSON.stringify(token.value.body)}`);
    within(token.ms, REDIS_BUDGET_MS, `${label}: token`);

    const email = uniqueEmail('outage');
    const created = await timed(() => admin.post('/users', { email, password: 'a long enough passphrase 123' }));
    assert.equal(created.value.status, 201, `${label}: the admin API does not need Redis: ${created.value.text}`);
    within(created.ms, REDIS_BUDGET_MS, `${label}: admin API`);

    // The CAPTCHA challenge is stateless (signed); its single use is a replay marker in Redis.
    const registrant = uniqueEmail('registrant');
    const captcha = await solveCaptcha(ts);
    const registered = await timed(() =>
      admin.post('/auth/register', { email: registrant, password: 'a long enough passphrase 456', captcha }, { token: null }),
    );
    assertError(registered.value, 503, 'IDENT_UNAVAILABLE', `${label}: registration cannot mark its CAPTCHA used`);
    within(registered.ms, REDIS_BUDGET_MS, `${label}: registration`);
    const found = await admin.get(`/users?search=${encodeURIComponent(registrant)}`);
    assert.equal(found.status, 200);
    assert.equal(found.body.total, 0, `${label}: a refused registration created nothing`);

    const ready = await timed(() => fetch(new URL('/readyz', ts.issuer)));
    assert.equal(ready.value.status, 503, `${label}: /readyz takes the instance out`);
    assert.deepEqual(((await ready.value.json()) as { checks: unknown }).checks, { database: 'ok', redis: 'unavailable' });
    within(ready.ms, 2000 + MARGIN_MS, `${label}: /readyz`);
    assert.equal((await fetch(new URL('/healthz', ts.issuer))).status, 200, `${label}: /healthz is about the process`);
  }

  async function assertRecovered(label: string) {
    await waitFor(`${label}: /readyz back to 200`, async () => (await fetch(new URL('/readyz', ts.issuer))).status === 200, 10_000);
    const signIn = await signInAnswer();
    assert.equal(signIn.status, 303, `${label}: sign-in works again`);
    assert.equal((await clientCredentials(ts, machine)).status, 200);
  }

  it('works before the outage (the baseline the outage is compared with)', async () => {
    assert.equal((await signInAnswer()).status, 303);
    assert.equal((await fetch(new URL('/readyz', ts.issuer))).status, 200);
  });

  it('paused (SIGSTOP): requests answer within the deadline, security state fails closed, the rest works; SIGCONT restores it', async () => {
    redis.pause();
    try {
      await assertOutageOutcomes('paused');
      assert.ok(logs.messages().includes('redis unavailable: circuit opened, calls fail at once for 2000 ms'), 'the breaker logged that it opened');
      const opened = logs.lines.find((l) => String(l.msg).startsWith('redis unavailable'));
      assert.equal(opened?.reason, 'command timed out');
    } finally {
      redis.resume();
    }
    await assertRecovered('resumed');
    assert.ok(logs.messages().includes('redis available again: circuit closed'), 'the breaker logged that it closed');
  });

  it('paused: rate limits keep counting in memory instead of refusing everyone', async () => {
    redis.pause();
    try {
      // The default AUTH_API_RATE_LIMIT_PER_IP (30 a minute), from an address of this test's own:
      // every request within it reaches the handler (which answers the same for every address and
      // sends in the background); the next is over the limit the instance now counts on its own.
      const headers = { 'x-forwarded-for': '198.51.100.7' };
      const statuses: number[] = [];
      for (let i = 0; i < 31; i++) {
        const res = await admin.post('/auth/verify-email/resend', { email: uniqueEmail('limit') }, { token: null, headers });
        statuses.push(res.status);
        if (i === 30) assertError(res, 429, 'IDENT_RATE_LIMITED');
      }
      assert.deepEqual(statuses, [...Array<number>(30).fill(202), 429]);
    } finally {
      redis.resume();
    }
    await waitFor('/readyz back to 200', async () => (await fetch(new URL('/readyz', ts.issuer))).status === 200, 10_000);
  });

  it('paused: the help-desk MFA reset refuses (503) before it changes anything', async () => {
    const helped = await createUser(ts);
    const { mfa } = ts.server.services;
    const { factorId, secret } = await mfa.enrollTotp(helped.id);
    await mfa.confirmTotp(helped.id, factorId, await generate({ secret }), undefined);
    redis.pause();
    try {
      assertError(await admin.post(`/users/${helped.id}/mfa/reset`), 503, 'IDENT_UNAVAILABLE');
    } finally {
      redis.resume();
    }
    assert.deepEqual((await mfa.enrolledFactors(helped.id)).map((f) => f.type), ['totp'], 'the factor is still there');
    await waitFor('/readyz back to 200', async () => (await fetch(new URL('/readyz', ts.issuer))).status === 200, 10_000);
  });

  it('stopped: the same outcomes at once, and service returns when it is started again', async () => {
    await redis.stop();
    try {
      await assertOutageOutcomes('stopped');
    } finally {
      await redis.start();
    }
    await assertRecovered('restarted');
  });

  it('never answered 500 and logged no unexpected error', () => {
    const unexpected = logs.lines.filter((l) => l.msg === 'unhandled error' || l.msg === 'provider server_error');
    assert.deepEqual(unexpected, []);
  });
});

describe('a PostgreSQL that drops connections or holds a lock', { skip }, () => {
  let ts: TestServer;
  let admin: AdminApi;
  let machine: { id: string; secret: string };
  let webClientId: string;
  let dbName: string;
  const logs = logCapture();

  before(async () => {
    ts = await startTestServer(
      {
        DB_STATEMENT_TIMEOUT_MS: String(DB_DEADLINE_MS),
        DB_ACQUIRE_TIMEOUT_MS: String(DB_DEADLINE_MS),
        BOOTSTRAP_ADMIN_CLIENT_ID: ADMIN_CLIENT_ID,
        BOOTSTRAP_ADMIN_CLIENT_SECRET: ADMIN_CLIENT_SECRET,
      },
      { logger: createLogger('info', logs.stream) },
    );
    dbName = new URL(ts.store.env.DATABASE_URL!).pathname.slice(1);
    admin = new AdminApi(ts, await adminToken(ts));
    machine = await machineClient(ts);
    webClientId = (await registerClient(ts, { token_endpoint_auth_method: 'none' }, true)).clientId;
  });
  after(() => stopAndDestroy(ts));

  /** A session of its own on the test database, outside the server's pool. */
  async function otherSession() {
    const url = new URL(process.env.DATABASE_URL!);
    url.pathname = `/${dbName}`;
    const client = new pg.Client({ connectionString: url.toString() });
    await client.connect();
    return client;
  }

  it('every server connection terminated (pg_terminate_backend): answers without a 500 or a hang, and works again within a second', async () => {
    const killer = await otherSession();
    try {
      // Keep the pool busy so some connections are in use when they are killed.
      const inFlight = Array.from({ length: 6 }, () => timed(() => clientCredentials(ts, machine)));
      const { rows } = await killer.query(
        'select count(pg_terminate_backend(pid))::int as n from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()',
        [dbName],
      );
      assert.ok((rows[0] as { n: number }).n > 0, 'the server had connections to terminate');
      for (const { value, ms } of await Promise.all(inFlight)) {
        assert.ok(value.status === 200 || value.status === 503, `answered ${value.status}: ${JSON.stringify(value.body)}`);
        if (value.status === 503) assert.equal(value.body.error, 'temporarily_unavailable');
        within(ms, DB_BUDGET_MS, 'a token request while its connection is terminated');
      }
    } finally {
      await killer.end();
    }
    const back = await timed(() =>
      waitFor('a token request that succeeds', async () => ((await clientCredentials(ts, machine)).status === 200 ? true : undefined), 5000),
    );
    within(back.ms, 1000, 'connections terminated: until a token request succeeds again');
    assert.equal((await admin.get('/users')).status, 200);
  });

  it('a table locked by another session: requests on it end at the statement deadline with 503, the rest works, the lock lifted restores it', async () => {
    const locker = await otherSession();
    try {
      await locker.query('begin');
      await locker.query('lock table oidc_payloads in access exclusive mode');

      const token = await timed(() => clientCredentials(ts, machine));
      assert.equal(token.value.status, 503, JSON.stringify(token.value.body));
      assert.equal(token.value.body.error, 'temporarily_unavailable', 'the token endpoint answers the OAuth code');
      assert.ok(token.ms >= DB_DEADLINE_MS - 50, 'the token request waited for the statement deadline');
      within(token.ms, DB_BUDGET_MS, 'locked oidc_payloads: token request');

      // The authorization endpoint saves an interaction there: the error goes back to the client.
      const authorize = await timed(() => fetch(authorizationUrl(ts, webClientId), { redirect: 'manual' }));
      assert.equal(authorize.value.status, 303);
      const location = new URL(authorize.value.headers.get('location')!);
      assert.equal(`${location.origin}${location.pathname}`, REDIRECT_URI);
      assert.equal(location.searchParams.get('error'), 'temporarily_unavailable');
      assert.equal(location.searchParams.get('state'), 'st');
      within(authorize.ms, DB_BUDGET_MS, 'locked oidc_payloads: /auth');

      // Other tables answer: the admin API reads users.
      const users = await timed(() => admin.get('/users'));
      assert.equal(users.value.status, 200);
      within(users.ms, DB_BUDGET_MS, 'admin API on another table while oidc_payloads is locked');

      await locker.query('lock table users in access exclusive mode');
      const locked = await timed(() => admin.get('/users'));
      assertError(locked.value, 503, 'IDENT_UNAVAILABLE', 'admin API on a locked table');
      assert.equal(locked.value.headers.get('retry-after'), '5');
      within(locked.ms, DB_BUDGET_MS, 'locked users: admin API');
    } finally {
      await locker.query('rollback').catch(() => {});
      await locker.end();
    }
    // Lock timeouts are not a dead database: the circuit stayed closed, so this works at once.
    assert.equal((await clientCredentials(ts, machine)).status, 200);
    assert.equal((await admin.get('/users')).status, 200);
    assert.ok(!logs.messages().some((m) => m.startsWith('database unavailable')), 'the database circuit never opened');
    const refused = logs.lines.filter((l) => l.msg === 'request refused: store unavailable');
    assert.ok(refused.some((l) => l.store === 'database' && l.reason === 'statement timeout'), 'the refusal is logged with its reason');
  });

  it('the signed-in browser flow gets a 503 page, not a 500, when its interaction cannot be read', async () => {
    const page = await openLoginPage(ts, webClientId);
    const locker = await otherSession();
    try {
      await locker.query('begin');
      await locker.query('lock table oidc_payloads in access exclusive mode');
      const answer = await timed(() => postLogin(page, { email: 'someone@example.com', password: 'whatever it is' }));
      assert.equal(answer.value.status, 503);
      assert.match(answer.value.html, /IDENT_UNAVAILABLE/);
      within(answer.ms, DB_BUDGET_MS, 'locked oidc_payloads: login form post');
    } finally {
      await locker.query('rollback').catch(() => {});
      await locker.end();
    }
  });

  it('never answered 500 and logged no unexpected error', () => {
    const unexpected = logs.lines.filter((l) => l.msg === 'unhandled error' || l.msg === 'provider server_error');
    assert.deepEqual(unexpected, []);
  });

});

describe('a PostgreSQL that stops answering (a partition: the connections stay open, nothing comes back)', { skip: !onPostgres && 'tried on PostgreSQL' }, () => {
  let proxy: Awaited<ReturnType<typeof startTcpProxy>>;
  let ts: TestServer;
  let machine: { id: string; secret: string };
  const logs = logCapture();

  before(async () => {
    const store = await createTestStore();
    const direct = new URL(store.env.DATABASE_URL!);
    proxy = await startTcpProxy({ host: direct.hostname, port: Number(direct.port || 5432) });
    const proxied = new URL(direct);
    proxied.port = String(proxy.port);
    ts = await startTestServer(
      { DATABASE_URL: proxied.toString(), DB_STATEMENT_TIMEOUT_MS: String(DB_DEADLINE_MS), DB_ACQUIRE_TIMEOUT_MS: String(DB_DEADLINE_MS) },
      { store, logger: createLogger('info', logs.stream) },
    );
    machine = await machineClient(ts);
  });
  after(async () => {
    proxy?.resume();
    await stopAndDestroy(ts);
    await proxy?.close();
  });

  it('requests end at the client-side deadline with 503, the circuit opens so later ones answer at once, and service returns when the network does', async () => {
    assert.equal((await clientCredentials(ts, machine)).status, 200);
    proxy.pause();
    try {
      // The statement deadline cannot fire on a server that hears nothing: the client's, a second
      // later, does. Three such failures open the circuit.
      const first = await Promise.all(Array.from({ length: 3 }, () => timed(() => clientCredentials(ts, machine))));
      for (const { value, ms } of first) {
        assert.equal(value.status, 503, JSON.stringify(value.body));
        assert.equal(value.body.error, 'temporarily_unavailable');
        within(ms, DB_DEADLINE_MS + 1000 + DB_BUDGET_MS, 'silent database: token request before the circuit opens');
      }
      const opened = logs.lines.find((l) => String(l.msg).startsWith('database unavailable: circuit opened'));
      assert.ok(opened, 'the breaker logged that it opened');

      const fast = await timed(() => clientCredentials(ts, machine));
      assert.equal(fast.value.status, 503);
      within(fast.ms, 500, 'silent database: token request with the circuit open');

      const ready = await timed(() => fetch(new URL('/readyz', ts.issuer)));
      assert.equal(ready.value.status, 503);
      assert.equal(((await ready.value.json()) as { checks: Record<string, string> }).checks.database, 'unavailable');
      within(ready.ms, 2000 + MARGIN_MS, 'silent database: /readyz');
    } finally {
      proxy.resume();
    }
    await waitFor('/readyz back to 200', async () => (await fetch(new URL('/readyz', ts.issuer))).status === 200, 10_000);
    assert.equal((await clientCredentials(ts, machine)).status, 200);
    assert.ok(logs.messages().includes('database available again: circuit closed'));
    const unexpected = logs.lines.filter((l) => l.msg === 'unhandled error' || l.msg === 'provider server_error');
    assert.deepEqual(unexpected, []);
  });
});
