import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { decodeProtectedHeader } from 'jose';
import * as oidc from 'openid-client';
import { createUser, registerClient, rpConfig, signIn } from '../helpers/rp.ts';
import { createDb } from '../../src/infra/db.ts';
import { migrateLatest } from '../../src/infra/migrate.ts';
import { createTestStore, onPostgres, startTestServer, stopAndDestroy, type TestServer, type TestStore } from '../helpers/server.ts';

// Several instances share PostgreSQL and Redis and nothing else; the embedded store is single-instance.
describe('two instances behind one load balancer', { skip: !onPostgres && 'needs PostgreSQL + Redis (DATABASE_URL, REDIS_URL)' }, () => {
  let a: TestServer;
  let b: TestServer;
  before(async () => {
    a = await startTestServer({ KEY_PROPAGATION_SECONDS: '1', KEY_RELOAD_INTERVAL_SECONDS: '1' });
    b = await startTestServer({ KEY_PROPAGATION_SECONDS: '1', KEY_RELOAD_INTERVAL_SECONDS: '1', ISSUER: a.issuer }, { store: a.store });
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

  it('a client change on one instance takes effect on the other at once', async () => {
    const client = await registerClient(a, { grant_types: ['client_credentials'], redirect_uris: [], response_types: [] });
    const configB = await viaB(client);
    assert.ok((await oidc.clientCredentialsGrant(configB)).access_token, 'B has read and cached the client');

    // Instance A replaces the secret; B must refuse the old one now, not after its cache expires.
    await a.server.services.clients.register(
      {
        metadata: { client_id: client.clientId, client_secret: 'a-brand-new-secret-of-sufficient-length-123', grant_types: ['client_credentials'], redirect_uris: [], response_types: [] },
      },
      { upsert: true },
    );
    await new Promise((r) => setTimeout(r, 200));
    await assert.rejects(oidc.clientCredentialsGrant(configB), (e: oidc.WWWAuthenticateChallengeError) => e.status === 401);
    const fresh = await viaB({ clientId: client.clientId, clientSecret: 'a-brand-new-secret-of-sufficient-length-123' });
    assert.ok((await oidc.clientCredentialsGrant(fresh)).access_token);
  });

  it('a key rotation reaches both instances without a restart', async () => {
    const client = await registerClient(a, { grant_types: ['authorization_code', 'client_credentials'] }, true);
    const user = await createUser(a);
    const config = await rpConfig(a, client);
    const before = (await signIn(a, config, user)).tokens.id_token!;
    await a.server.services.keys.rotate();
    await new Promise((r) => setTimeout(r, 3000));
    const jwksA = await (await fetch(`http://127.0.0.1:${a.port}/jwks`)).json();
    const jwksB = await (await fetch(`http://127.0.0.1:${b.port}/jwks`)).json();
    assert.deepEqual(jwksA, jwksB, 'both instances publish the same key set');
    assert.equal(jwksA.keys.length, 4, 'old and new keys published');
    const afterA = decodeProtectedHeader((await signIn(a, config, user)).tokens.id_token!).kid;
    assert.notEqual(afterA, decodeProtectedHeader(before).kid, 'the new key signs');
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
