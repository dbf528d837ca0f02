import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createLocalJWKSet, decodeJwt, generateKeyPair, jwtVerify, SignJWT } from 'jose';
import * as oidc from 'openid-client';
import { adminAudience } from '../../src/domain/clients/admin-scopes.ts';
import { AdminApi, adminToken, assertError, marker, startAdminServer } from '../helpers/admin.ts';
import { REDIRECT_URI, registerClient, rpConfig, uniqueEmail } from '../helpers/rp.ts';
import { listenOn, portOf, stopAndDestroy, type TestServer } from '../helpers/server.ts';
import { federate, startUpstreamOp, type UpstreamOp } from '../helpers/upstream-op.ts';

/**
 * Broker token exchange (RFC 8693, Keycloak's "external to internal"): an upstream OpenID Connect
 * provider's ID token, exchanged at our /token by a client allowed to, for a token of the local
 * account linked to the upstream subject. The upstream is a second oidc-provider; its ID tokens are
 * real ones from a sign-in there (openid-client as its client), hand-made only for the refusals.
 */

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
const AT_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const API = 'https://broker-api.example.test'; // opaque tokens, so introspection tells when one ends
const JWT_API = 'https://broker-jwt.example.test'; // RFC 9068 JWTs
const now = () => Math.floor(Date.now() / 1000);

describe('broker token exchange: an upstream provider\'s ID token for our tokens', () => {
  let ts: TestServer;
  let api: AdminApi;
  let upstream: UpstreamOp;
  let rp: oidc.Configuration;
  let jwks: ReturnType<typeof createLocalJWKSet>;
  const alias = 'acme';
  const displayName = 'Acme SSO';
  let providerId: string;
  const clientSecret = `upstream-secret-${marker()}`;
  // Exchanging clients: allowed for acme; without the metadata; allowed for another provider only.
  let broker: oidc.Configuration;
  let noList: oidc.Configuration;
  let otherOnly: oidc.Configuration;

  /** A confidential machine client registered through the admin API. */
  async function registerExchanger(metadata: Record<string, unknown>): Promise<{ clientId: string; clientSecret: string }> {
    const created = await api.post('/clients', {
      grant_types: ['client_credentials', TOKEN_EXCHANGE], redirect_uris: [], post_logout_redirect_uris: [], response_types: [],
      ...metadata,
    });
    assert.equal(created.status, 201, created.text);
    return { clientId: created.body.client_id, clientSecret: created.body.client_secret };
  }
  /** The same, as openid-client sees it. */
  const exchanger = async (metadata: Record<string, unknown>) => rpConfig(ts, await registerExchanger(metadata));

  before(async () => {
    ts = await startAdminServer();
    api = new AdminApi(ts, await adminToken(ts));
    upstream = await startUpstreamOp({ clientId: 'our-broker', clientSecret, redirectUri: `${ts.issuer}/api/v1/auth/oidc/${alias}/callback` });
    const created = await api.post('/identity-providers', {
      alias, type: 'oidc', displayName, issuer: upstream.issuer, clientId: 'our-broker', clientSecret, allowedDomains: ['acme.test'],
    });
    assert.equal(created.status, 201, created.text);
    providerId = created.body.id;
    const other = await api.post('/identity-providers', { alias: 'other', type: 'oidc', displayName: 'Other', issuer: 'https://other.example.test', clientId: 'us', clientSecret });
    assert.equal(other.status, 201, other.text);
    for (const [identifier, accessTokenFormat] of [[API, 'opaque'], [JWT_API, 'jwt']] as const) {
      const rs = await api.post('/resource-servers', { identifier, scopes: ['read', 'write'], accessTokenFormat, accessTokenTtl: 3600 });
      assert.equal(rs.status, 201, rs.text);
    }
    jwks = createLocalJWKSet(await (await fetch(new URL('/.well-known/jwks.json', ts.issuer))).json());
    rp = await rpConfig(ts, await registerClient(ts, { token_endpoint_auth_method: 'none' }, true));
    broker = await exchanger({ token_exchange_providers: [alias] });
    noList = await exchanger({});
    otherOnly = await exchanger({ token_exchange_providers: ['other'] });
  });

  after(async () => {
    await upstream?.stop();
    await stopAndDestroy(ts);
  });

  const exchange = (subjectToken: string, params: Record<string, string>, config = broker) =>
    oidc.genericGrantRequest(config, TOKEN_EXCHANGE, { subject_token: subjectToken, subject_token_type: JWT_TYPE, ...params });
  const refusedWith = (code: string) => (e: oidc.ResponseBodyError) => {
    assert.equal(e.error, code, e.error_description);
    assert.equal(e.status, 400);
    return true;
  };
  const active = async (token: string) => (await oidc.tokenIntrospection(broker, token)).active;

  /** An upstream account at acme, linked to a local account by a federated sign-in (JIT). */
  async function linkedUser() {
    const sub = marker('up');
    upstream.accounts.set(sub, { email: uniqueEmail('broker').replace(/@.*/, '@acme.test'), email_verified: true });
    const { step, request } = await federate(rp, { alias, displayName, issuer: upstream.issuer }, sub);
    assert.ok(step.url.href.startsWith(REDIRECT_URI), `signed in, at ${step.url.href}`);
    const tokens = await request.redeem(step.url);
    return { sub, userId: tokens.claims()!.sub, ownToken: tokens.access_token };
  }

  /** Claims of a token the upstream would issue to us for `sub`, changed by `claims`. */
  const upstreamClaims = (sub: string, claims: Record<string, unknown> = {}) =>
    ({ iss: upstream.issuer, aud: 'our-broker', sub, iat: now(), exp: now() + 300, ...claims });

  /** What the account holds at our side: grants and access tokens (nothing issued by a refusal). */
  async function issuedFor(userId: string) {
    const rows = await ts.server.services.db('oidc_payloads').where({ account_id: userId }).whereIn('model', ['Grant', 'AccessToken']);
    return rows.length;
  }

  it('the linked user\'s upstream ID token, exchanged by an allowed client: a token for the local user, the sign-in recorded', async () => {
    const { sub, userId } = await linkedUser();
    const idToken = await upstream.idToken(sub);
    const upstreamExp = decodeJwt(idToken).exp!;

    // Taken before the request: the server's clock can only be later, so its remaining life is at most this.
    const asked = now();
    const exchanged = await exchange(idToken, { resource: API, scope: 'read' });
    assert.equal(exchanged.issued_token_type, AT_TYPE);
    assert.equal(exchanged.scope, 'read');
    assert.ok(exchanged.expires_in! <= upstreamExp - asked, 'no longer than the upstream token');
    const info = await oidc.tokenIntrospection(broker, exchanged.access_token);
    assert.equal(info.active, true);
    assert.equal(info.sub, userId, 'the local user, not the upstream subject');
    assert.equal(info.client_id, broker.clientMetadata().client_id);
    assert.equal(info.aud, API);
    assert.equal(info.scope, 'read');
    assert.ok(info.exp! <= upstreamExp);

    // Without scope: every scope of the resource. As a JWT, verifiable.
    const asJwt = await exchange(idToken, { resource: JWT_API });
    const { payload } = await jwtVerify(asJwt.access_token, jwks, { issuer: ts.issuer, audience: JWT_API, typ: 'at+jwt' });
    assert.equal(payload.sub, userId);
    assert.equal(payload.scope, 'read write');
    assert.equal(payload.client_id, broker.clientMetadata().client_id);
    await assert.rejects(exchange(idToken, { resource: API, scope: 'read delete' }), refusedWith('invalid_scope'), 'a scope the resource does not define');

    const signIns = await ts.server.services.db('events').where({ subject_id: userId, type: 'user.signed_in' }).orderBy('occurred_at', 'asc');
    const viaExchange = signIns.filter((e: { payload: { gty?: string } }) => e.payload.gty === 'token_exchange');
    assert.equal(viaExchange.length, 2, 'one per exchange');
    assert.equal(viaExchange[0].payload.provider, alias);
    assert.deepEqual(viaExchange[0].payload.amr, ['fed']);
    assert.deepEqual({ type: viaExchange[0].actor_type, id: viaExchange[0].actor_id }, { type: 'user', id: userId }, 'the user signs in');
    assert.equal(viaExchange[0].payload.clientId, broker.clientMetadata().client_id, 'through the exchanging client');
    assert.ok(!JSON.stringify(viaExchange).includes(idToken.split('.')[2]!), 'the token never reaches the event');
    const link = await ts.server.services.db('federated_identities').where({ provider_id: providerId, subject: sub }).first();
    assert.equal(link.user_id, userId);
  });

  it('refuses with the RFC codes and issues nothing: clients not allowed, unlinked or suspended users, bad tokens, iam.* scopes', async () => {
    const { sub, userId } = await linkedUser();
    const idToken = await upstream.idToken(sub);
    const before = await issuedFor(userId);
    const params = { resource: API, scope: 'read' };

    // Clients not registered for the provider (RFC 6749 5.2).
    await assert.rejects(exchange(idToken, params, noList), refusedWith('unauthorized_client'), 'no token_exchange_providers');
    await assert.rejects(exchange(idToken, params, otherOnly), refusedWith('unauthorized_client'), 'another provider only');
    // Tokens that do not verify (RFC 8693 2.2.2).
    const { privateKey: stranger } = await generateKeyPair('RS256');
    for (const kid of ['upstream', 'elsewhere']) {
      const forged = await new SignJWT(upstreamClaims(sub)).setProtectedHeader({ alg: 'RS256', kid }).sign(stranger);
      await assert.rejects(exchange(forged, params), refusedWith('invalid_request'), `signed by another key (kid ${kid})`);
    }
    await assert.rejects(exchange(await upstream.mint(upstreamClaims(sub, { aud: 'someone-else' })), params), refusedWith('invalid_request'), 'wrong aud');
    await assert.rejects(exchange(await upstream.mint(upstreamClaims(sub, { iat: now() - 900, exp: now() - 300 })), params), refusedWith('invalid_request'), 'expired');
    await assert.rejects(exchange(await upstream.mint(upstreamClaims(sub, { iat: now() - 7200, exp: now() + 3600 })), params), refusedWith('invalid_request'), 'issued too long ago');
    await assert.rejects(exchange(await upstream.mint(upstreamClaims(sub, { iss: 'https://unknown.example.test' })), params), refusedWith('invalid_request'), 'unknown issuer');
    await assert.rejects(
      oidc.genericGrantRequest(broker, TOKEN_EXCHANGE, { subject_token: idToken, subject_token_type: AT_TYPE, ...params }),
      refusedWith('invalid_request'), 'an upstream token is no access token of ours',
    );
    // Admin power never comes through an exchange.
    await assert.rejects(exchange(idToken, { resource: API, scope: 'iam.users:read' }), refusedWith('invalid_scope'), 'iam.* scope');
    await assert.rejects(exchange(idToken, { resource: adminAudience(ts.issuer) }), refusedWith('invalid_target'), 'the admin API');
    // A disabled provider's tokens are no tokens we trust; enabled again, they are.
    assert.equal((await api.patch(`/identity-providers/${providerId}`, { enabled: false })).status, 200);
    await assert.rejects(exchange(idToken, params), refusedWith('invalid_request'), 'disabled provider');
    assert.equal((await api.patch(`/identity-providers/${providerId}`, { enabled: true })).status, 200);
    assert.equal(await issuedFor(userId), before, 'nothing issued by a refusal');
    assert.ok((await exchange(idToken, params)).access_token, 'the same token once the provider is enabled again');

    // An upstream subject never linked here: no account is made at exchange (invalid_grant).
    const stranded = marker('up');
    upstream.accounts.set(stranded, { email: uniqueEmail('stranded').replace(/@.*/, '@acme.test'), email_verified: true });
    await assert.rejects(exchange(await upstream.idToken(stranded), params), refusedWith('invalid_grant'), 'unlinked');
    assert.equal(await ts.server.services.db('federated_identities').where({ provider_id: providerId, subject: stranded }).first(), undefined);

    // A suspended local account.
    assert.equal((await api.post(`/users/${userId}/suspend`)).status, 200);
    await assert.rejects(exchange(idToken, params), refusedWith('invalid_grant'), 'suspended');
    assert.equal(await issuedFor(userId), 0, 'the suspension revoked everything and nothing new was issued');
  });

  it('the exchanged token lives under a grant of its own: ending the grant, logout-all or suspending the user ends it', async () => {
    const { sub, userId, ownToken } = await linkedUser();
    const idToken = await upstream.idToken(sub);
    const db = ts.server.services.db;
    const grantsBefore = (await db('oidc_payloads').where({ model: 'Grant', account_id: userId })).map((g: { id: string }) => g.id);
    const filed = (await exchange(idToken, { resource: API, scope: 'read' })).access_token;
    const [grant] = await db('oidc_payloads').where({ model: 'Grant', account_id: userId }).whereNotIn('id', grantsBefore);
    assert.ok(grant, 'a grant for the exchange');
    assert.equal(grant.payload.clientId, broker.clientMetadata().client_id);
    assert.deepEqual(grant.payload.resources, { [API]: 'read' });
    assert.equal((await db('oidc_payloads').where({ model: 'AccessToken', grant_id: grant.id })).length, 1, 'the token is filed under it');
    assert.equal(await active(filed), true);
    await db('oidc_payloads').where({ model: 'Grant', id: grant.id }).delete();
    assert.equal(await active(filed), false, 'no token without its grant');

    const first = (await exchange(idToken, { resource: API })).access_token;
    assert.equal(await active(first), true);
    const out = await fetch(new URL('/api/v1/auth/logout-all', ts.issuer), { method: 'POST', headers: { authorization: `Bearer ${ownToken}` } });
    assert.equal(out.status, 204);
    assert.equal(await active(first), false, 'logout-all');

    const second = (await exchange(idToken, { resource: API })).access_token;
    assert.equal(await active(second), true);
    assert.equal((await api.post(`/users/${userId}/suspend`)).status, 200);
    assert.equal(await active(second), false, 'suspension');
  });

  it('an upstream whose keys cannot be fetched: 503 temporarily_unavailable, at once', async () => {
    const closed = await listenOn(0);
    const gone = `http://127.0.0.1:${portOf(closed)}`;
    await new Promise((resolve) => closed.close(resolve));
    const created = await api.post('/identity-providers', { alias: 'gone', type: 'oidc', displayName: 'Gone', issuer: gone, clientId: 'our-broker', clientSecret });
    assert.equal(created.status, 201, created.text);
    const { clientId, clientSecret: secret } = await registerExchanger({ token_exchange_providers: ['gone'] });
    const token = await upstream.mint(upstreamClaims('someone', { iss: gone }));
    // openid-client reads OAuth errors of 400 and 401 answers only: this one is read as it comes.
    const res = await fetch(new URL('/token', ts.issuer), {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`${clientId}:${secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: TOKEN_EXCHANGE, subject_token: token, subject_token_type: JWT_TYPE, resource: API }),
    });
    assert.equal(res.status, 503);
    assert.equal(((await res.json()) as { error: string }).error, 'temporarily_unavailable');
  });

  it('the admin API takes token_exchange_providers as a list of provider aliases only', async () => {
    const base = { grant_types: ['client_credentials', TOKEN_EXCHANGE], redirect_uris: [], response_types: [] };
    for (const bad of ['acme', [1], ['Not An Alias'], ['-acme'], [''], { acme: true }, Array.from({ length: 51 }, (_, i) => `p${i}`)]) {
      assertError(await api.post('/clients', { ...base, token_exchange_providers: bad }), 400, 'IDENT_VALIDATION', JSON.stringify(bad));
    }
    const created = await api.post('/clients', { ...base, token_exchange_providers: ['acme', 'not-yet-registered'] });
    assert.equal(created.status, 201, created.text);
    const id = created.body.client_id;
    assert.deepEqual((await api.get(`/clients/${id}`)).body.token_exchange_providers, ['acme', 'not-yet-registered']);
    assertError(await api.patch(`/clients/${id}`, { token_exchange_providers: 'acme' }), 400, 'IDENT_VALIDATION', 'PATCH');
    const cleared = await api.patch(`/clients/${id}`, { token_exchange_providers: [] });
    assert.equal(cleared.status, 200, cleared.text);
    assert.deepEqual(cleared.body.token_exchange_providers, []);
  });
});
