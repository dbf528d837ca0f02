import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { decodeProtectedHeader } from 'jose';
import * as oidc from 'openid-client';
import pg from 'pg';
import { ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, AdminApi, adminToken, assertError, marker, tokenRequest } from '../helpers/admin.ts';
import { solveCaptcha } from '../helpers/captcha.ts';
import { createUser, registerClient, rpConfig, signIn, uniqueEmail } from '../helpers/rp.ts';
import { createDb } from '../../src/infra/db.ts';
import { createLogger } from '../../src/infra/logger.ts';
import { migrateLatest } from '../../src/infra/migrate.ts';
import { createSweeper } from '../../src/oidc/sweeper.ts';
import { createTestStore, onPostgres, startTestServer, stopAndDestroy, type TestServer, type TestStore } from '../helpers/server.ts';
import { waitFor } from '../helpers/wait.ts';
import { DEFAULT_SCOPE } from '../../src/domain/tenants/tenant-scope.ts';

/** Instances share PostgreSQL and Redis and nothing else: without both there is nothing to test. */
const shared = onPostgres && Boolean(process.env.REDIS_URL);

// Several instances share PostgreSQL and Redis and nothing else; the embedded store is single-instance.
describe('two instances behind one load balancer', { skip: !shared && 'needs PostgreSQL + Redis (DATABASE_URL, REDIS_URL)' }, () => {
  let a: TestServer;
  let b: TestServer;
  before(async () => {
    const settings = {
      KEY_PROPAGATION_SECONDS: '1',
      KEY_RELOAD_INTERVAL_SECONDS: '1',
      BOOTSTRAP_ADMIN_CLIENT_ID: ADMIN_CLIENT_ID,
      BOOTSTRAP_ADMIN_CLIENT_SECRET: ADMIN_CLIENT_SECRET,
      CAPTCHA_ALTCHA_MAX_NUMBER: '1000',
    };
    a = await startTestServer(settings);
    b = await startTestServer({ ...settings, ISSUER: a.issuer }, { store: a.store });
  });
  /** The same relying party, talking to instance B: A's metadata with B's address in every endpoint. */
  async function viaB(client: { clientId: string; clientSecret?: string }) {
    const viaA = await rpConfig(a, client);
    const metadata = JSON.parse(JSON.stringify(viaA.serverMetadata()).replaceAll(`127.0.0.1:${a.port}/`, `127.0.0.1:${b.port}/`));
    const auth = client.clientSecret ? oidc.ClientSecretBasic(client.clientSecret) : oidc.None();
    const config = new oidc.Configuration(metadata, client.clientId, undefined, auth);
    oidc.allowInsecureRequests(config);
    return config;
  }

  after(async () => {
    await b?.stop();
    await stopAndDestroy(a);
  });

  it('a session, code and refresh token from one instance work on the other', async () => {
    const user = await createUser(a);
    const client = await registerClient(a, {}, true);
    const configA = await rpConfig(a, client);
    const { tokens, browser } = await signIn(a, configA, user, { scope: 'openid offline_access', prompt: 'consent' });
    // Same issuer, other instance: tokens, refresh and the browser session carry over.
    const configB = await viaB(client);
    const info = await oidc.tokenIntrospection(configB, tokens.access_token);
    assert.equal(info.active, true);
    const refreshed = await oidc.refreshTokenGrant(configB, tokens.refresh_token!);
    assert.ok(refreshed.access_token);
    await assert.rejects(oidc.refreshTokenGrant(configA, tokens.refresh_token!), (e: oidc.ResponseBodyError) =>
      e.error === 'invalid_grant');
    // The browser's session cookie, presented to B, is a signed-in session there too.
    browser.cookies.set(`127.0.0.1:${b.port}`, new Map(browser.cookies.get(`127.0.0.1:${a.port}`)));
    const again = await signIn(b, configB, { email: user.email, password: 'session-reused-no-password' }, { browser });
    assert.equal(again.tokens.claims()!.sub, user.id);
  });

  it('one refresh token presented to both instances at once: exactly one wins, and the reuse revokes the grant everywhere', async () => {
    const user = await createUser(a);
    const client = await registerClient(a, {}, true);
    const configA = await rpConfig(a, client);
    const configB = await viaB(client);
    const { tokens } = await signIn(a, configA, user, { scope: 'openid offline_access', prompt: 'consent' });
    const outcomes = await Promise.allSettled([
      oidc.refreshTokenGrant(configA, tokens.refresh_token!),
      oidc.refreshTokenGrant(configB, tokens.refresh_token!),
    ]);
    const won = outcomes.filter((o) => o.status === 'fulfilled');
    const lost = outcomes.filter((o) => o.status === 'rejected');
    assert.equal(won.length, 1, 'exactly one redemption wins');
    assert.equal(((lost[0] as PromiseRejectedResult).reason as oidc.ResponseBodyError).error, 'invalid_grant');
    // The loser was a reuse: the winner's new tokens are revoked with the grant, on both instances.
    const winner = (won[0] as PromiseFulfilledResult<oidc.TokenEndpointResponse>).value;
    for (const config of [configA, configB]) {
      assert.equal((await oidc.tokenIntrospection(config, winner.access_token)).active, false);
      await assert.rejects(oidc.refreshTokenGrant(config, winner.refresh_token!), (e: oidc.ResponseBodyError) => e.error === 'invalid_grant');
    }
  });

  it('a revocation on A is effective on B at once; an account suspended in the database stops refreshes on B at once', async () => {
    const user = await createUser(a);
    const client = await registerClient(a, {}, true);
    const configA = await rpConfig(a, client);
    const configB = await viaB(client);
    const { tokens } = await signIn(a, configA, user, { scope: 'openid offline_access', prompt: 'consent' });
    // B reads the token (and with it its grant and account) right before A revokes it.
    assert.equal((await oidc.tokenIntrospection(configB, tokens.access_token)).active, true);
    await oidc.tokenRevocation(configA, tokens.access_token);
    assert.equal((await oidc.tokenIntrospection(configB, tokens.access_token)).active, false);
    // Revoking an access token revokes its grant (oidc-provider), so the refresh token is dead on B too.
    await assert.rejects(oidc.refreshTokenGrant(configB, tokens.refresh_token!), (e: oidc.ResponseBodyError) => e.error === 'invalid_grant');

    // No token is revoked here: only the account's status changes, behind both instances' backs.
    const { tokens: fresh } = await signIn(a, configA, user, { scope: 'openid offline_access', prompt: 'consent' });
    const rotated = await oidc.refreshTokenGrant(configB, fresh.refresh_token!);
    await a.server.services.db('users').where({ id: user.id }).update({ status: 'suspended' });
    await assert.rejects(oidc.refreshTokenGrant(configB, rotated.refresh_token!), (e: oidc.ResponseBodyError) => e.error === 'invalid_grant');
    await assert.rejects(oidc.refreshTokenGrant(configA, rotated.refresh_token!), (e: oidc.ResponseBodyError) => e.error === 'invalid_grant');
  });

  it('a client change on one instance takes effect on the other at once', async () => {
    const client = await registerClient(a, { grant_types: ['client_credentials'], redirect_uris: [], response_types: [] });
    const configB = await viaB(client);
    assert.ok((await oidc.clientCredentialsGrant(configB)).access_token, 'B has read and cached the client');

    // Instance A replaces the secret; B must refuse the old one now, not after its cache expires.
    await a.server.services.clients.register(DEFAULT_SCOPE,
      {
        metadata: { client_id: client.clientId, client_secret: 'a-brand-new-secret-of-sufficient-length-123', grant_types: ['client_credentials'], redirect_uris: [], response_types: [] },
      },
      { upsert: true },
    );
    // The change reaches B through Redis pub/sub: poll (with a deadline) until B refuses the old secret.
    await waitFor('B refuses the old secret', () =>
      oidc.clientCredentialsGrant(configB).then(
        () => false,
        (e: oidc.WWWAuthenticateChallengeError) => e.status === 401 || Promise.reject(e),
      ));
    const fresh = await viaB({ clientId: client.clientId, clientSecret: 'a-brand-new-secret-of-sufficient-length-123' });
    assert.ok((await oidc.clientCredentialsGrant(fresh)).access_token);
  });

  it('a resource grant removed through the admin API on A: B refuses the next client_credentials request for it', async () => {
    const api = new AdminApi(a, await adminToken(a));
    const resource = `https://grant-${marker()}.example.test`;
    assert.equal((await api.post('/resource-servers', { identifier: resource, scopes: ['read', 'write'] })).status, 201);
    const created = await api.post('/clients', {
      grant_types: ['client_credentials'], redirect_uris: [], response_types: [], resource_scopes: { [resource]: 'read write' },
    });
    assert.equal(created.status, 201, created.text);
    const configB = await viaB({ clientId: created.body.client_id, clientSecret: created.body.client_secret });
    assert.equal((await oidc.clientCredentialsGrant(configB, { resource, scope: 'read write' })).scope, 'read write', 'B has cached the client');

    const refusedOnB = (params: Record<string, string>, error: string) => oidc.clientCredentialsGrant(configB, params).then(
      () => false,
      (e: oidc.ResponseBodyError) => e.error === error || Promise.reject(e),
    );
    assert.equal((await api.patch(`/clients/${created.body.client_id}`, { resource_scopes: { [resource]: 'read' } })).status, 200);
    await waitFor('B refuses the scope taken away', () => refusedOnB({ resource, scope: 'write' }, 'invalid_scope'));
    assert.equal((await api.patch(`/clients/${created.body.client_id}`, { resource_scopes: {} })).status, 200);
    await waitFor('B refuses the resource', () => refusedOnB({ resource, scope: 'read' }, 'invalid_target'));
  });

  it('a key rotation on A: B publishes the new keys, then signs with them, and no request on B fails meanwhile', async () => {
    const API = `https://api.multi-${marker()}.test`;
    await a.server.services.resourceServers.create(DEFAULT_SCOPE, { identifier: API, scopes: ['read'] });
    const client = await registerClient(a, { grant_types: ['authorization_code', 'client_credentials'], resource_scopes: { [API]: 'read' } }, true);
    const user = await createUser(a);
    const configB = await viaB(client);
    const jwks = async (ts: TestServer) => {
      const res = await fetch(new URL('/jwks', ts.issuer));
      assert.equal(res.status, 200, `GET /jwks on ${ts === a ? 'A' : 'B'}`);
      return (await res.json()) as { keys: Array<{ kid: string; alg: string }> };
    };
    const kid = (jwt: string) => decodeProtectedHeader(jwt).kid!;
    const fromB = { id: client.clientId, secret: client.clientSecret! };
    const jwtFromB = async () => {
      const { status, body } = await tokenRequest(b, fromB, { grant_type: 'client_credentials', resource: API, scope: 'read' });
      return { status, kid: status === 200 ? kid(body.access_token as string) : undefined, error: status === 200 ? undefined : body };
    };
    const before = await jwks(b);
    const oldKid = (await jwtFromB()).kid;
    const oldIdKid = kid((await signIn(b, configB, user)).tokens.id_token!);
    assert.ok(before.keys.some((k) => k.kid === oldKid));

    // A stream of token requests on B, three at a time, from before the rotation until B signs with the new key.
    const answers: Array<Awaited<ReturnType<typeof jwtFromB>>> = [];
    let streaming = true;
    const streams = Array.from({ length: 3 }, async () => {
      while (streaming) answers.push(await jwtFromB());
    });
    try {
      await a.server.services.keys.rotate();
      // B notices within KEY_RELOAD_INTERVAL_SECONDS and publishes the new keys before they sign.
      const published = await waitFor('B publishes the rotated-in keys', async () => {
        const now = await jwks(b);
        return now.keys.length === before.keys.length * 2 ? now : undefined;
      });
      assert.ok(before.keys.every((k) => published.keys.some((p) => p.kid === k.kid)), 'the old keys stay published');
      // After KEY_PROPAGATION_SECONDS B signs with the new key.
      const newKid = await waitFor('B signs with the new key', async () => {
        const latest = answers.at(-1);
        return latest?.kid && latest.kid !== oldKid ? latest.kid : undefined;
      });
      assert.ok(published.keys.some((k) => k.kid === newKid), 'the new signing key was published before it signed');
      assert.ok(!before.keys.some((k) => k.kid === newKid), 'it is a rotated-in key');
    } finally {
      streaming = false;
      await Promise.all(streams);
    }
    assert.deepEqual(answers.filter((r) => r.status !== 200), [], 'every token request on B succeeded during the reload');
    assert.ok(answers.some((r) => r.kid === oldKid), 'the stream began before the switch');
    // ID tokens minted on B are signed by the new RS256 key as well.
    const idKid = kid((await signIn(b, configB, user)).tokens.id_token!);
    assert.notEqual(idKid, oldIdKid);
    assert.ok((await jwks(b)).keys.some((k) => k.kid === idKid && k.alg === 'RS256') && !before.keys.some((k) => k.kid === idKid));
    // Both instances end with the same key set.
    await waitFor('A and B publish the same key set', async () => JSON.stringify(await jwks(a)) === JSON.stringify(await jwks(b)));
  });

  it('Idempotency-Key across instances: B replays A’s answer, another body is 409, and after 24 h the key is free again', async () => {
    const token = await adminToken(a);
    const viaA = new AdminApi(a, token);
    const onB = new AdminApi(b, token);
    const key = marker('idem');
    const headers = { 'idempotency-key': key };
    const body = { email: uniqueEmail('idem') };

    const first = await viaA.post('/users', body, { headers });
    assert.equal(first.status, 201, first.text);
    assert.equal(first.headers.get('idempotent-replayed'), null);
    const replayed = await onB.post('/users', body, { headers });
    assert.equal(replayed.status, 201, replayed.text);
    assert.equal(replayed.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(replayed.body, first.body, 'B answers what A answered');
    const other = { email: uniqueEmail('idem-other') };
    assertError(await onB.post('/users', other, { headers }), 409, 'IDENT_IDEMPOTENCY_MISMATCH', 'same key, another body, other instance');
    assert.equal((await viaA.get(`/users?search=${encodeURIComponent(body.email)}`)).body.total, 1, 'one user, not two');
    assert.equal((await viaA.get(`/users?search=${encodeURIComponent(other.email)}`)).body.total, 0);

    // The kept answer lives 24 hours. Move time by moving the stored row, not by waiting.
    const { db } = a.server.services;
    const row = () => db('idempotency_keys').where({ key });
    const stored = await row().first();
    assert.equal(new Date(stored.expires_at).getTime() - new Date(stored.created_at).getTime(), 24 * 3600_000, 'a 24 h window');
    const age = (interval: string) =>
      row().update({ created_at: db.raw(`created_at - interval '${interval}'`), expires_at: db.raw(`expires_at - interval '${interval}'`) });
    await age('23 hours 59 minutes');
    const late = await onB.post('/users', body, { headers });
    assert.equal(late.headers.get('idempotent-replayed'), 'true', 'a minute before the 24 h are up the key still replays');
    assertError(await onB.post('/users', other, { headers }), 409, 'IDENT_IDEMPOTENCY_MISMATCH');
    await age('2 minutes');
    const fresh = await onB.post('/users', other, { headers });
    assert.equal(fresh.status, 201, `after 24 h the key is free again: ${fresh.text}`);
    assert.equal(fresh.headers.get('idempotent-replayed'), null);
    assert.notEqual(fresh.body.id, first.body.id, 'a new user');
    const again = await viaA.post('/users', other, { headers });
    assert.equal(again.headers.get('idempotent-replayed'), 'true', 'and the key now keeps the new answer');
    assert.deepEqual(again.body, fresh.body);
  });

  it('a CAPTCHA solved once is refused on the other instance; the replay marker lives in Redis', async () => {
    const register = async (ts: TestServer, captcha: string) => {
      const res = await fetch(new URL('/api/v1/auth/register', ts.issuer), {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify({ email: uniqueEmail('captcha'), password: `Reg-${randomBytes(12).toString('base64url')}-9`, captcha }),
      });
      return { status: res.status, body: (await res.json()) as { error?: string } };
    };
    // B accepts a challenge A handed out (one signing key): a refusal below is the replay marker's doing.
    assert.equal((await register(b, await solveCaptcha(a))).status, 202);

    const payload = await solveCaptcha(a);
    assert.equal((await register(a, payload)).status, 202, 'first use, on A');
    const onB = await register(b, payload);
    assert.equal(onB.status, 400, 'the same solution on B');
    assert.equal(onB.body.error, 'IDENT_CAPTCHA_INVALID');
    assert.equal((await register(a, payload)).body.error, 'IDENT_CAPTCHA_INVALID', 'and on A again');

    const signature = (JSON.parse(Buffer.from(payload, 'base64').toString('utf8')) as { challenge: { signature: string } }).challenge.signature;
    const redis = new Redis(process.env.REDIS_URL!);
    try {
      const marker = `${a.store.env.REDIS_KEY_PREFIX}captcha:used:${signature}`;
      assert.equal(await redis.exists(marker), 1, 'the replay marker is in Redis');
      assert.ok((await redis.ttl(marker)) > 0, 'and expires');
    } finally {
      redis.disconnect();
    }
  });

  it('the sweeper: while A sweeps, B skips (advisory lock); A commits batch by batch; once A is done, B sweeps', async () => {
    const logger = createLogger('silent');
    // Batches of two, so five rows take three batches.
    const sweeperOf = (ts: TestServer) =>
      createSweeper({ db: ts.server.services.db, payloads: ts.server.services.repos.payloads, keys: ts.server.services.keys, logger, batchSize: 2 });
    const sweepA = sweeperOf(a);
    const sweepB = sweeperOf(b);
    const { db } = a.server.services;
    const tag = `sweep-${marker()}`;
    const expire = async (n: number) => {
      const ids = Array.from({ length: n }, (_, i) => `${tag}-${n}-${i}-${randomBytes(4).toString('hex')}`);
      // Expired an hour ago, one second apart: the sweeper takes the oldest first, so ids[n - 1] goes last.
      await db('oidc_payloads').insert(ids.map((id, i) => ({ model: 'Interaction', id, payload: '{}', expires_at: new Date(Date.now() - 3600_000 + i * 1000) })));
      return ids;
    };
    const left = async () => Number((await db('oidc_payloads').where('id', 'like', `${tag}-%`).count<{ n: string }[]>({ n: '*' }))[0]!.n);
    const sweepLocks = async () =>
      Number(((await db.raw("select count(*) as n from pg_locks where locktype = 'advisory' and granted and database = (select oid from pg_database where datname = current_database())")) as { rows: Array<{ n: string }> }).rows[0]!.n);
    /** B's sweep, or 'still waiting' if it has not returned by a generous deadline (it should return at once). */
    const sweepOnBWithDeadline = async () => {
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<'still waiting'>((resolve) => (timer = setTimeout(() => resolve('still waiting'), 10_000)));
      try {
        return await Promise.race([sweepB.sweepOnce(), deadline]);
      } finally {
        clearTimeout(timer);
      }
    };

    const ids = await expire(5);
    // Hold A mid-sweep: another session locks the last expired row, so A's third batch waits on it, lock held.
    const blocker = new pg.Client({ connectionString: a.store.env.DATABASE_URL });
    await blocker.connect();
    let sweptByA: Promise<number> | undefined;
    try {
      await blocker.query('begin');
      await blocker.query('select id from oidc_payloads where model = $1 and id = $2 for update', ['Interaction', ids[4]]);
      assert.equal(await sweepLocks(), 0);
      sweptByA = sweepA.sweepOnce();
      await waitFor('A holds the sweep lock', async () => (await sweepLocks()) === 1);
      // The first two batches are committed while the third waits: no transaction spans the whole sweep.
      // The lock is taken per batch, so right after the second commit it is briefly free: wait for the
      // third batch to hold it (waiting on the blocked row) rather than read it in that gap.
      await waitFor('the first two batches committed, the third holding the lock', async () => (await left()) === 1 && (await sweepLocks()) === 1);
      assert.equal(await sweepLocks(), 1, 'A still holds the lock, for its third batch');
      assert.equal(await sweepOnBWithDeadline(), 0, 'B does not sweep (nor wait) while A does');
    } finally {
      await blocker.query('commit');
      await blocker.end();
    }
    assert.equal(await sweptByA, 5, 'A sweeps every expired row');
    assert.equal(await left(), 0);
    assert.equal(await sweepLocks(), 0, 'the lock ends with the sweep');
    // The lock is free: B sweeps the next expired rows itself.
    await expire(3);
    assert.equal(await sweepOnBWithDeadline(), 3);
    assert.equal(await left(), 0);
  });
});

describe('two instances booting together on one empty database', {
  skip: !onPostgres && 'two processes cannot share the embedded store (PGlite files); needs DATABASE_URL',
}, () => {
  /** Boots two instances at once on `store`; both must come up and publish one and the same key set. */
  async function bootTogether(store: TestStore) {
    const booted = await Promise.allSettled([startTestServer({}, { store }), startTestServer({}, { store })]);
    try {
      for (const b of booted) if (b.status === 'rejected') throw b.reason;
      const [a, b] = booted.map((r) => (r as PromiseFulfilledResult<TestServer>).value);
      const jwks = async (ts: TestServer) => (await (await fetch(new URL('/jwks', ts.issuer))).json()) as { keys: unknown[] };
      const fromA = await jwks(a!);
      assert.equal(fromA.keys.length, 2, 'one RS256 and one ES256 key');
      assert.deepEqual(await jwks(b!), fromA);
      const stored = await a!.server.services.db('server_keys').count<{ n: string }[]>({ n: '*' });
      assert.equal(Number(stored[0]!.n), 3, 'two signing keys and one cookie key, not two sets');
    } finally {
      for (const b of booted) if (b.status === 'fulfilled') await b.value.stop();
      await store.destroy();
    }
  }

  it('a fresh database: both migrate in turn and make one key set', async () => {
    await bootTogether(await createTestStore());
  });

  it('a database migrated beforehand (`idp migrate`), without keys yet: one key set', async () => {
    const store = await createTestStore();
    const db = createDb({ databaseUrl: store.env.DATABASE_URL, dataDir: store.dataDir, poolMax: 1 });
    try {
      await migrateLatest(db);
    } finally {
      await db.destroy();
    }
    await bootTogether(store);
  });
});
