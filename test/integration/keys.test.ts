import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import * as oidc from 'openid-client';
import { HttpBrowser } from '../helpers/browser-http.ts';
import { createUser, registerClient, rpConfig, signIn } from '../helpers/rp.ts';
import { startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';
import { waitFor } from '../helpers/wait.ts';
import { DEFAULT_SCOPE } from '../../src/domain/tenants/tenant-scope.ts';

const API = 'https://api.keys.test';

async function publicKeys(ts: TestServer) {
  return (await (await fetch(new URL('/jwks', ts.issuer))).json()) as { keys: Array<Record<string, string>> };
}

describe('signing keys', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer({ KEY_PROPAGATION_SECONDS: '2', KEY_RELOAD_INTERVAL_SECONDS: '1' });
    await ts.server.services.resourceServers.create(DEFAULT_SCOPE, { identifier: API, scopes: ['read'] });
  });
  after(() => stopAndDestroy(ts));

  it('publishes only public parts, at jwks_uri and /.well-known/jwks.json', async () => {
    const jwks = await publicKeys(ts);
    const wellKnown = await (await fetch(new URL('/.well-known/jwks.json', ts.issuer))).json();
    assert.deepEqual(wellKnown, jwks);
    assert.deepEqual(jwks.keys.map((k) => k.alg).sort(), ['ES256', 'RS256']);
    for (const key of jwks.keys) {
      for (const priv of ['d', 'p', 'q', 'dp', 'dq', 'qi']) assert.equal(key[priv], undefined, `no ${priv} in JWKS`);
    }
    const discovery = await (await fetch(new URL('/.well-known/openid-configuration', ts.issuer))).json();
    assert.equal(discovery.jwks_uri, `${ts.issuer}/jwks`);
    assert.deepEqual(discovery.code_challenge_methods_supported, ['S256']);
  });

  it('stores private keys encrypted', async () => {
    const rows = await ts.server.services.db('server_keys').select('private_sealed', 'public_jwk');
    for (const row of rows) {
      assert.match(row.private_sealed, /^v1\./);
      assert.doesNotMatch(row.private_sealed, /"d"/);
    }
  });

  it('rotation publishes the new key before it signs and keeps the old one published', async () => {
    const user = await createUser(ts);
    const client = await registerClient(ts, { grant_types: ['authorization_code', 'client_credentials'], resource_scopes: { [API]: 'read' } }, true);
    const config = await rpConfig(ts, client);
    const before = await publicKeys(ts);
    const oldToken = (await oidc.clientCredentialsGrant(config, { resource: API })).access_token;
    const oldKid = decodeProtectedHeader(oldToken).kid;

    await ts.server.services.keys.rotate();
    await ts.server.reloadKeys();
    const during = await publicKeys(ts);
    assert.equal(during.keys.length, before.keys.length * 2, 'new keys are published at once');
    const pending = await oidc.clientCredentialsGrant(config, { resource: API });
    assert.equal(decodeProtectedHeader(pending.access_token).kid, oldKid, 'the old key signs until the new one is active');

    // After the propagation delay every instance's periodic reload switches to the new key: poll
    // (with a deadline) until a token is signed by another key.
    const fresh = await waitFor('the new key to sign', async () => {
      const token = (await oidc.clientCredentialsGrant(config, { resource: API })).access_token;
      return decodeProtectedHeader(token).kid !== oldKid ? token : undefined;
    });
    const after = await publicKeys(ts);
    const newKid = decodeProtectedHeader(fresh).kid;
    assert.ok(during.keys.some((k) => k.kid === newKid), 'the key that signs now was published before it signed');
    assert.ok(!before.keys.some((k) => k.kid === newKid), 'a rotated-in key signs after the delay');
    assert.ok(after.keys.some((k) => k.kid === oldKid), 'the old key stays published');
    const jwks = createLocalJWKSet(after as never);
    await jwtVerify(oldToken, jwks, { audience: API });
    await jwtVerify(fresh, jwks, { audience: API });

    // Sessions signed with the old cookie key survive; ID tokens are signed with the new RS256 key.
    const { tokens } = await signIn(ts, config, user);
    const idKid = decodeProtectedHeader(tokens.id_token!).kid;
    assert.ok(after.keys.find((k) => k.kid === idKid && k.alg === 'RS256'));
    assert.ok(!before.keys.some((k) => k.kid === idKid), 'ID token signed by the rotated-in key');
  });

  it('a session signed with the cookie key rotated out still signs in without a password, re-signed with the new key; an altered signature does not', async () => {
    const user = await createUser(ts);
    const client = await registerClient(ts, { grant_types: ['authorization_code', 'client_credentials'], resource_scopes: { [API]: 'read' } }, true);
    const config = await rpConfig(ts, client);
    const browser = new HttpBrowser();
    assert.equal((await signIn(ts, config, user, { browser })).logins, 1);
    const jar = browser.cookies.get(new URL(ts.issuer).host)!;
    const signedBefore = jar.get('_session.sig');
    assert.ok(signedBefore && jar.get('_session'), 'the session cookie is signed');

    const before = decodeProtectedHeader((await oidc.clientCredentialsGrant(config, { resource: API })).access_token).kid;
    await ts.server.services.keys.rotate();
    await ts.server.reloadKeys();
    // The cookie key of a rotation signs from the same moment as its signing key.
    await waitFor('the rotated-in keys to sign', async () =>
      decodeProtectedHeader((await oidc.clientCredentialsGrant(config, { resource: API })).access_token).kid !== before ? true : undefined,
    );

    const again = await signIn(ts, config, user, { browser });
    assert.equal(again.logins, 0, 'the session signed with the old cookie key is still the session');
    assert.equal(again.tokens.claims()!.sub, user.id);
    const signedAfter = jar.get('_session.sig');
    assert.ok(signedAfter && signedAfter !== signedBefore, 'and its signature was renewed with the new key');

    const last = signedAfter.at(-1) === 'A' ? 'B' : 'A';
    jar.set('_session.sig', `${signedAfter.slice(0, -1)}${last}`);
    assert.equal((await signIn(ts, config, user, { browser })).logins, 1, 'an altered signature is no session: the password is asked');
  });
});
