import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import * as oidc from 'openid-client';
import { createUser, registerClient, rpConfig, signIn } from '../helpers/rp.ts';
import { startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';

const API = 'https://api.example.test';
const OTHER_API = 'https://other.example.test';
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const AT_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

describe('client_credentials, introspection, revocation, token exchange', () => {
  let ts: TestServer;
  let jwks: ReturnType<typeof createLocalJWKSet>;
  before(async () => {
    ts = await startTestServer();
    await ts.server.services.resourceServers.create({ identifier: API, name: 'API', scopes: ['read', 'write'] });
    await ts.server.services.resourceServers.create({
      identifier: OTHER_API,
      scopes: ['other:read'],
      accessTokenFormat: 'jwt',
      accessTokenTtl: 300,
    });
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

  it('client_credentials with a resource yields an RFC 9068 JWT limited to the resource scopes', async () => {
    const { client, config } = await machine();
    const res = await oidc.clientCredentialsGrant(config, { resource: API, scope: 'read write' });
    assert.equal(res.token_type.toLowerCase(), 'bearer');
    assert.equal(decodeProtectedHeader(res.access_token).typ, 'at+jwt');
    const { payload } = await jwtVerify(res.access_token, jwks, { issuer: ts.issuer, audience: API, typ: 'at+jwt' });
    assert.equal(payload.client_id, client.clientId);
    assert.equal(payload.sub, client.clientId);
    assert.equal(payload.scope, 'read write');
    // A scope the resource server does not define is not granted.
    const limited = await oidc.clientCredentialsGrant(config, { resource: API, scope: 'read other:read' });
    const { payload: p2 } = await jwtVerify(limited.access_token, jwks, { audience: API });
    assert.equal(p2.scope, 'read');
  });

  it('client_secret_jwt clients authenticate with an HMAC assertion; the raw secret is stored sealed', async () => {
    const { client } = await machine({ token_endpoint_auth_method: 'client_secret_jwt' });
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

  it('token exchange: an access token for another resource server, same subject, act for the actor', async () => {
    const user = await createUser(ts);
    const web = await registerClient(ts, {}, true);
    const webConfig = await rpConfig(ts, web);
    const { tokens } = await signIn(ts, webConfig, user, { scope: 'openid email' });

    const { client: svc, config } = await machine({ grant_types: ['client_credentials', TOKEN_EXCHANGE] });
    const exchanged = await oidc.genericGrantRequest(config, TOKEN_EXCHANGE, {
      subject_token: tokens.access_token,
      subject_token_type: AT_TYPE,
      resource: OTHER_API,
      scope: 'other:read',
    });
    assert.equal(exchanged.issued_token_type, AT_TYPE);
    const { payload } = await jwtVerify(exchanged.access_token, jwks, { issuer: ts.issuer, audience: OTHER_API, typ: 'at+jwt' });
    assert.equal(payload.sub, user.id, 'the subject is kept');
    assert.equal(payload.client_id, svc.clientId);
    assert.equal(payload.scope, 'other:read');
    assert.equal(payload.act, undefined);

    // With an actor token the new token says who acts for the subject.
    const actorToken = (await oidc.clientCredentialsGrant(config)).access_token;
    const { tokens: actorUserTokens } = await signIn(ts, webConfig, await createUser(ts), { scope: 'openid' });
    const withActor = await oidc.genericGrantRequest(config, TOKEN_EXCHANGE, {
      subject_token: tokens.access_token,
      subject_token_type: AT_TYPE,
      actor_token: actorUserTokens.access_token,
      actor_token_type: AT_TYPE,
      resource: OTHER_API,
    });
    const { payload: acted } = await jwtVerify(withActor.access_token, jwks, { audience: OTHER_API });
    assert.equal(acted.sub, user.id);
    assert.deepEqual((acted.act as { sub: string }).sub, actorUserTokens.claims()!.sub);
    assert.ok(actorToken);

    // A JWT access token we issued can itself be the subject token.
    const again = await oidc.genericGrantRequest(config, TOKEN_EXCHANGE, {
      subject_token: exchanged.access_token,
      subject_token_type: AT_TYPE,
      resource: API,
      scope: 'read',
    });
    const { payload: p3 } = await jwtVerify(again.access_token, jwks, { audience: API });
    assert.equal(p3.sub, user.id);
  });

  it('token exchange rejects what the RFC says to reject', async () => {
    const user = await createUser(ts);
    const web = await registerClient(ts, {}, true);
    const { tokens } = await signIn(ts, await rpConfig(ts, web), user, { scope: 'openid' });
    const { config } = await machine({ grant_types: ['client_credentials', TOKEN_EXCHANGE] });
    const { config: notAllowed } = await machine();
    const base = { subject_token: tokens.access_token, subject_token_type: AT_TYPE, resource: OTHER_API };
    const expectError = (code: string) => (e: oidc.ResponseBodyError) => e.error === code;

    await assert.rejects(oidc.genericGrantRequest(notAllowed, TOKEN_EXCHANGE, base), (e: oidc.ResponseBodyError) =>
      ['unauthorized_client', 'invalid_request'].includes(e.error));
    await assert.rejects(oidc.genericGrantRequest(config, TOKEN_EXCHANGE, { ...base, subject_token: 'not-a-token' }), expectError('invalid_request'));
    await assert.rejects(
      oidc.genericGrantRequest(config, TOKEN_EXCHANGE, { ...base, subject_token_type: 'urn:ietf:params:oauth:token-type:saml2' }),
      expectError('invalid_request'),
    );
    await assert.rejects(oidc.genericGrantRequest(config, TOKEN_EXCHANGE, { ...base, resource: 'https://nope.test' }), expectError('invalid_target'));
    await assert.rejects(oidc.genericGrantRequest(config, TOKEN_EXCHANGE, { ...base, scope: 'write' }), expectError('invalid_scope'));
    await assert.rejects(
      oidc.genericGrantRequest(config, TOKEN_EXCHANGE, { ...base, requested_token_type: 'urn:ietf:params:oauth:token-type:refresh_token' }),
      expectError('invalid_request'),
    );
    await assert.rejects(
      oidc.genericGrantRequest(config, TOKEN_EXCHANGE, { subject_token_type: AT_TYPE, resource: OTHER_API }),
      expectError('invalid_request'),
    );
  });
});
