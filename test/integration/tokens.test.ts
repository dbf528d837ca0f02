import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import * as oidc from 'openid-client';
import { createUser, registerClient, rpConfig, signIn } from '../helpers/rp.ts';
import { startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';
import { DEFAULT_SCOPE } from '../../src/domain/tenants/tenant-scope.ts';

const API = 'https://api.example.test';
const ELSEWHERE = 'https://elsewhere.example.test';
const refusedWith = (error: string) => (e: oidc.ResponseBodyError) => e.error === error;

describe('client_credentials, introspection, revocation', () => {
  let ts: TestServer;
  let jwks: ReturnType<typeof createLocalJWKSet>;
  before(async () => {
    ts = await startTestServer();
    await ts.server.services.resourceServers.create(DEFAULT_SCOPE, { identifier: API, name: 'API', scopes: ['read', 'write'] });
    await ts.server.services.resourceServers.create(DEFAULT_SCOPE, { identifier: ELSEWHERE, scopes: ['read'] });
    jwks = createLocalJWKSet(await (await fetch(new URL('/.well-known/jwks.json', ts.issuer))).json());
  });
  after(() => stopAndDestroy(ts));

  async function machine(metadata: Record<string, unknown> = {}) {
    const client = await registerClient(ts, {
      grant_types: ['client_credentials'],
      redirect_uris: [],
      post_logout_redirect_uris: [],
      response_types: [],
      ...metadata,
    });
    return { client, config: await rpConfig(ts, client) };
  }

  it('client_credentials with a resource yields an RFC 9068 JWT with the scopes granted to the client there', async () => {
    const { client, config } = await machine({ resource_scopes: { [API]: 'read write' } });
    const res = await oidc.clientCredentialsGrant(config, { resource: API, scope: 'read write' });
    assert.equal(res.token_type.toLowerCase(), 'bearer');
    assert.equal(decodeProtectedHeader(res.access_token).typ, 'at+jwt');
    const { payload } = await jwtVerify(res.access_token, jwks, { issuer: ts.issuer, audience: API, typ: 'at+jwt' });
    assert.equal(payload.client_id, client.clientId);
    assert.equal(payload.sub, client.clientId);
    assert.equal(payload.scope, 'read write');
    // A scope the resource server does not define is refused, not silently dropped.
    await assert.rejects(oidc.clientCredentialsGrant(config, { resource: API, scope: 'read other:read' }), refusedWith('invalid_scope'));
  });

  it('without a grant at the resource server a machine client gets no token for it, whatever its scope', async () => {
    for (const metadata of [{}, { scope: 'openid' }, { resource_scopes: { [ELSEWHERE]: 'read' } }]) {
      const { config } = await machine(metadata);
      for (const scope of [undefined, 'read', 'read write']) {
        await assert.rejects(oidc.clientCredentialsGrant(config, { resource: API, ...(scope ? { scope } : {}) }), refusedWith('invalid_target'),
          `${JSON.stringify(metadata)} asking ${scope}`);
      }
    }
  });

  it('granted read, asking read write is invalid_scope (RFC 6749 5.2: beyond the grant); read alone is granted', async () => {
    const { config } = await machine({ resource_scopes: { [API]: 'read' } });
    await assert.rejects(oidc.clientCredentialsGrant(config, { resource: API, scope: 'read write' }), (e: oidc.ResponseBodyError) =>
      e.error === 'invalid_scope' && (e.cause as { scope?: string }).scope === 'write');
    await assert.rejects(oidc.clientCredentialsGrant(config, { resource: API, scope: 'write' }), refusedWith('invalid_scope'));
    const { payload } = await jwtVerify((await oidc.clientCredentialsGrant(config, { resource: API, scope: 'read' })).access_token, jwks, { audience: API });
    assert.equal(payload.scope, 'read');
    // Another client's grant does not leak into this one's tokens.
    await machine({ resource_scopes: { [API]: 'read write' } });
    await assert.rejects(oidc.clientCredentialsGrant(config, { resource: API, scope: 'write' }), refusedWith('invalid_scope'));
  });

  it('a user\'s authorization code for the same resource is unchanged: the user\'s consent governs, not the machine grant', async () => {
    const user = await createUser(ts);
    const client = await registerClient(ts, {
      grant_types: ['authorization_code', 'refresh_token', 'client_credentials'], resource_scopes: { [API]: 'read' },
    }, true);
    const config = await rpConfig(ts, client);
    const { tokens } = await signIn(ts, config, user, { scope: 'openid offline_access read write', prompt: 'consent', params: { resource: API } });
    const { payload } = await jwtVerify(tokens.access_token, jwks, { issuer: ts.issuer, audience: API });
    assert.equal(payload.sub, user.id);
    assert.equal(payload.scope, 'read write');
    const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token!, { resource: API });
    assert.equal((await jwtVerify(refreshed.access_token, jwks, { audience: API })).payload.scope, 'read write');
    // The same client's own tokens stay within its grant.
    await assert.rejects(oidc.clientCredentialsGrant(config, { resource: API, scope: 'write' }), refusedWith('invalid_scope'));
  });

  it('a resource server\'s scope deleted or renamed is gone from every grant at once', async () => {
    const identifier = 'https://renamed.example.test';
    const rs = await ts.server.services.resourceServers.create(DEFAULT_SCOPE, { identifier, scopes: ['read', 'write'] });
    const { config } = await machine({ resource_scopes: { [identifier]: 'read write' } });
    const scopeOf = async (scope: string) =>
      (await jwtVerify((await oidc.clientCredentialsGrant(config, { resource: identifier, scope })).access_token, jwks, { audience: identifier })).payload.scope;
    assert.equal(await scopeOf('read write'), 'read write');
    await ts.server.services.resourceServers.update(DEFAULT_SCOPE, rs.id, { scopes: ['read', 'writer'] });
    await assert.rejects(oidc.clientCredentialsGrant(config, { resource: identifier, scope: 'write' }), refusedWith('invalid_scope'));
    await assert.rejects(oidc.clientCredentialsGrant(config, { resource: identifier, scope: 'writer' }), refusedWith('invalid_scope'), 'the new name is not granted');
    assert.equal(await scopeOf('read'), 'read');
    // With read deleted too, nothing granted is left there: the resource is out of reach.
    await ts.server.services.resourceServers.update(DEFAULT_SCOPE, rs.id, { scopes: ['writer'] });
    for (const scope of ['read', 'writer', undefined]) {
      await assert.rejects(oidc.clientCredentialsGrant(config, { resource: identifier, ...(scope ? { scope } : {}) }), refusedWith('invalid_target'));
    }
  });

  it('a withdrawn scope or a deleted resource server registered again brings no old grant back', async () => {
    const identifier = 'https://again.example.test';
    const rs = await ts.server.services.resourceServers.create(DEFAULT_SCOPE, { identifier, scopes: ['read', 'write'] });
    const { client, config } = await machine({ resource_scopes: { [identifier]: 'read write', [API]: 'read' } });
    const grantsOf = async () => (await ts.server.services.clients.get(DEFAULT_SCOPE, client.clientId)).metadata.resource_scopes;
    // write withdrawn, then defined again: the client's grant no longer names it.
    await ts.server.services.resourceServers.update(DEFAULT_SCOPE, rs.id, { scopes: ['read'] });
    await ts.server.services.resourceServers.update(DEFAULT_SCOPE, rs.id, { scopes: ['read', 'write'] });
    assert.deepEqual(await grantsOf(), { [identifier]: 'read', [API]: 'read' });
    await assert.rejects(oidc.clientCredentialsGrant(config, { resource: identifier, scope: 'write' }), refusedWith('invalid_scope'));
    // The server deleted and registered again under the same identifier: nothing is granted there.
    await ts.server.services.resourceServers.remove(DEFAULT_SCOPE, rs.id);
    await ts.server.services.resourceServers.create(DEFAULT_SCOPE, { identifier, scopes: ['read', 'write'] });
    assert.deepEqual(await grantsOf(), { [API]: 'read' }, 'the grant elsewhere is untouched');
    await assert.rejects(oidc.clientCredentialsGrant(config, { resource: identifier, scope: 'read' }), refusedWith('invalid_target'));
    assert.ok((await oidc.clientCredentialsGrant(config, { resource: API, scope: 'read' })).access_token);
  });

  it('client_secret_jwt clients authenticate with an HMAC assertion; the raw secret is stored sealed', async () => {
    const { client } = await machine({ token_endpoint_auth_method: 'client_secret_jwt', resource_scopes: { [API]: 'read' } });
    const config = await oidc.discovery(new URL(ts.issuer), client.clientId, undefined, oidc.ClientSecretJwt(client.clientSecret!), {
      execute: [oidc.allowInsecureRequests],
    });
    const res = await oidc.clientCredentialsGrant(config, { resource: API, scope: 'read' });
    assert.ok(res.access_token);
    const row = await ts.server.services.db('clients').where({ client_id: client.clientId }).first();
    assert.match(row.secret_sealed, /^v1\./);
    assert.ok(!row.secret_sealed.includes(client.clientSecret!) && row.secret_digest !== client.clientSecret);
    const wrong = await oidc.discovery(new URL(ts.issuer), client.clientId, undefined, oidc.ClientSecretJwt('x'.repeat(43)), {
      execute: [oidc.allowInsecureRequests],
    });
    await assert.rejects(oidc.clientCredentialsGrant(wrong), (e: oidc.WWWAuthenticateChallengeError) => e.status === 401);
  });

  it('client_credentials without a resource yields an opaque token that introspects as active', async () => {
    const { client, config } = await machine();
    const res = await oidc.clientCredentialsGrant(config);
    assert.equal(res.access_token.split('.').length, 1, 'opaque');
    const info = await oidc.tokenIntrospection(config, res.access_token);
    assert.equal(info.active, true);
    assert.equal(info.client_id, client.clientId);
    assert.equal(info.iss, ts.issuer);
  });

  it('rejects an unknown resource, a wrong secret and an unsupported grant type', async () => {
    const { client, config } = await machine();
    await assert.rejects(oidc.clientCredentialsGrant(config, { resource: 'https://unknown.test' }), (e: oidc.ResponseBodyError) =>
      e.error === 'invalid_target');
    const wrong = await rpConfig(ts, { clientId: client.clientId, clientSecret: 'not-the-secret' });
    await assert.rejects(oidc.clientCredentialsGrant(wrong), (e: oidc.WWWAuthenticateChallengeError) =>
      e.status === 401 && e.cause[0]?.parameters.error === 'invalid_client');
    await assert.rejects(oidc.genericGrantRequest(config, 'password', { username: 'a', password: 'b' }), (e: oidc.ResponseBodyError) =>
      e.error === 'unsupported_grant_type');
    // A grant the provider supports but this client is not allowed.
    await assert.rejects(oidc.refreshTokenGrant(config, 'whatever'), (e: oidc.ResponseBodyError) =>
      ['invalid_request', 'unauthorized_client'].includes(e.error));
  });

  it('introspection shows a client only its own tokens unless it is an introspector; revocation deactivates', async () => {
    const a = await machine();
    const b = await machine();
    const gateway = await machine({ introspection_allowed: true });
    const token = (await oidc.clientCredentialsGrant(a.config)).access_token;
    assert.equal((await oidc.tokenIntrospection(a.config, token)).active, true);
    assert.equal((await oidc.tokenIntrospection(b.config, token)).active, false, 'another client learns nothing');
    assert.equal((await oidc.tokenIntrospection(gateway.config, token)).active, true, 'a registered introspector does');

    await oidc.tokenRevocation(a.config, token);
    assert.equal((await oidc.tokenIntrospection(a.config, token)).active, false);
    assert.equal((await oidc.tokenIntrospection(a.config, 'garbage-token')).active, false);
  });

  it('user access tokens introspect with their subject and are revoked with refresh tokens', async () => {
    const user = await createUser(ts);
    const client = await registerClient(ts, {}, true);
    const config = await rpConfig(ts, client);
    const { tokens } = await signIn(ts, config, user, { scope: 'openid offline_access', prompt: 'consent' });
    const info = await oidc.tokenIntrospection(config, tokens.access_token);
    assert.equal(info.active, true);
    assert.equal(info.sub, user.id);
    await oidc.tokenRevocation(config, tokens.refresh_token!);
    await assert.rejects(oidc.refreshTokenGrant(config, tokens.refresh_token!), (e: oidc.ResponseBodyError) =>
      e.error === 'invalid_grant');
  });
});
