import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createLocalJWKSet, decodeJwt, jwtVerify } from 'jose';
import * as oidc from 'openid-client';
import { adminAudience } from '../../src/domain/clients/admin-scopes.ts';
import { AdminApi, adminToken, startAdminServer } from '../helpers/admin.ts';
import { HttpBrowser } from '../helpers/browser-http.ts';
import { createUser, registerClient, rpConfig, signIn } from '../helpers/rp.ts';
import { stopAndDestroy, type TestServer } from '../helpers/server.ts';
import { DEFAULT_SCOPE } from '../../src/domain/tenants/tenant-scope.ts';

/** Token exchange (RFC 8693) through POST /token with openid-client as the relying party. */

const API = 'https://api.example.test'; // opaque tokens, so introspection can tell when one ends
const SHORT_API = 'https://short.example.test'; // opaque, one-minute tokens
const OTHER_API = 'https://other.example.test'; // RFC 9068 JWTs
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const AT_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

type User = Awaited<ReturnType<typeof createUser>>;

describe('token exchange', () => {
  let ts: TestServer;
  let admin: AdminApi;
  let jwks: ReturnType<typeof createLocalJWKSet>;
  // The web app the user signs in to, and the back-end service that exchanges the user's tokens.
  let webConfig: oidc.Configuration;
  let svc: { clientId: string };
  let svcConfig: oidc.Configuration;

  before(async () => {
    ts = await startAdminServer();
    admin = new AdminApi(ts, await adminToken(ts));
    const servers = ts.server.services.resourceServers;
    await servers.create(DEFAULT_SCOPE, { identifier: API, scopes: ['read', 'write'], accessTokenFormat: 'opaque', accessTokenTtl: 3600 });
    await servers.create(DEFAULT_SCOPE, { identifier: SHORT_API, scopes: ['read'], accessTokenFormat: 'opaque', accessTokenTtl: 60 });
    await servers.create(DEFAULT_SCOPE, { identifier: OTHER_API, scopes: ['other:read', 'read'], accessTokenFormat: 'jwt', accessTokenTtl: 300 });
    jwks = createLocalJWKSet(await (await fetch(new URL('/.well-known/jwks.json', ts.issuer))).json());
    webConfig = await rpConfig(ts, await registerClient(ts, {}, true));
    ({ client: svc, config: svcConfig } = await machine([TOKEN_EXCHANGE], { [SHORT_API]: 'read', [OTHER_API]: 'read', [API]: 'read' }));
  });
  after(() => stopAndDestroy(ts));

  /** A machine client, granted `resourceScopes` (its client_credentials reach) and `grantTypes` besides. */
  async function machine(grantTypes: string[] = [], resourceScopes?: Record<string, string>) {
    const client = await registerClient(ts, {
      grant_types: ['client_credentials', ...grantTypes],
      redirect_uris: [],
      post_logout_redirect_uris: [],
      response_types: [],
      ...(resourceScopes ? { resource_scopes: resourceScopes } : {}),
    });
    return { client, config: await rpConfig(ts, client) };
  }

  /** The user signs in to the web app, granting `scope` for `resource` (tokens for it, plus a refresh token). */
  function grantFor(user: User, resource: string, scope: string, browser = new HttpBrowser()) {
    return signIn(ts, webConfig, user, { scope: `openid offline_access ${scope}`, prompt: 'consent', browser, params: { resource } });
  }

  const exchange = (subjectToken: string, params: Record<string, string>, config = svcConfig) =>
    oidc.genericGrantRequest(config, TOKEN_EXCHANGE, { subject_token: subjectToken, subject_token_type: AT_TYPE, ...params });
  const refusedWith = (code: string) => (e: oidc.ResponseBodyError) => {
    assert.equal(e.status, 400);
    assert.equal(e.error, code, e.error_description);
    return true;
  };
  const active = async (token: string) => (await oidc.tokenIntrospection(svcConfig, token)).active;

  it('carries only what the user granted for the target resource; asking for more is invalid_scope', async () => {
    const user = await createUser(ts);
    const { tokens } = await grantFor(user, API, 'read');
    assert.equal(tokens.access_token.split('.').length, 1, 'an opaque subject token');

    await assert.rejects(exchange(tokens.access_token, { resource: API, scope: 'write' }), refusedWith('invalid_scope'));
    await assert.rejects(exchange(tokens.access_token, { resource: API, scope: 'read write' }), refusedWith('invalid_scope'));
    // The user granted nothing for OTHER_API, though it defines `read` too.
    await assert.rejects(exchange(tokens.access_token, { resource: OTHER_API, scope: 'read' }), refusedWith('invalid_scope'));
    await assert.rejects(exchange(tokens.access_token, { resource: OTHER_API }), refusedWith('invalid_target'));

    for (const params of [{ resource: API, scope: 'read' }, { resource: API }] as Record<string, string>[]) {
      const exchanged = await exchange(tokens.access_token, params);
      assert.equal(exchanged.issued_token_type, AT_TYPE);
      assert.equal(exchanged.scope, 'read');
      const info = await oidc.tokenIntrospection(svcConfig, exchanged.access_token);
      assert.equal(info.active, true);
      assert.equal(info.sub, user.id, 'the subject is kept');
      assert.equal(info.client_id, svc.clientId);
      assert.equal(info.aud, API);
      assert.equal(info.scope, 'read');
    }
  });

  it('a JWT subject token gives at most its own scopes; exchanged JWTs can be exchanged again; an actor adds act', async () => {
    const user = await createUser(ts);
    const { tokens } = await grantFor(user, OTHER_API, 'other:read');
    const subject = await jwtVerify(tokens.access_token, jwks, { issuer: ts.issuer, audience: OTHER_API, typ: 'at+jwt' });
    assert.equal(subject.payload.scope, 'other:read');

    await assert.rejects(exchange(tokens.access_token, { resource: OTHER_API, scope: 'read' }), refusedWith('invalid_scope'));
    await assert.rejects(exchange(tokens.access_token, { resource: API, scope: 'read' }), refusedWith('invalid_scope'));

    const exchanged = await exchange(tokens.access_token, { resource: OTHER_API, scope: 'other:read' });
    const { payload } = await jwtVerify(exchanged.access_token, jwks, { issuer: ts.issuer, audience: OTHER_API, typ: 'at+jwt' });
    assert.equal(payload.sub, user.id, 'the subject is kept');
    assert.equal(payload.client_id, svc.clientId);
    assert.equal(payload.scope, 'other:read');
    assert.equal(payload.act, undefined);
    assert.equal(payload.email, undefined);

    const again = await exchange(exchanged.access_token, { resource: OTHER_API });
    const { payload: p2 } = await jwtVerify(again.access_token, jwks, { audience: OTHER_API });
    assert.equal(p2.sub, user.id);
    assert.equal(p2.scope, 'other:read');

    // With an actor token the new token says who acts for the subject.
    const actorUser = await createUser(ts);
    const { tokens: actorTokens } = await signIn(ts, webConfig, actorUser, { scope: 'openid' });
    const withActor = await exchange(tokens.access_token, { resource: OTHER_API, actor_token: actorTokens.access_token, actor_token_type: AT_TYPE });
    const { payload: acted } = await jwtVerify(withActor.access_token, jwks, { audience: OTHER_API });
    assert.equal(acted.sub, user.id);
    assert.deepEqual(acted.act, { sub: actorUser.id, client_id: webConfig.clientMetadata().client_id }, 'act names the actor and its client');
    const plain = decodeJwt((await exchange(tokens.access_token, { resource: OTHER_API })).access_token);
    assert.equal(plain.act, undefined, 'no act claim without an actor token');
    // An actor token that is no token of ours, or a type without a token, is refused (RFC 8693 2.2.2).
    await assert.rejects(
      exchange(tokens.access_token, { resource: OTHER_API, actor_token: 'not-a-token', actor_token_type: AT_TYPE }),
      refusedWith('invalid_request'),
    );
    await assert.rejects(exchange(tokens.access_token, { resource: OTHER_API, actor_token_type: AT_TYPE }), refusedWith('invalid_request'));
  });

  it('a suspended, deactivated or reset user\'s tokens, opaque or JWT, cannot be exchanged', async () => {
    for (const [action, call] of [
      ['suspend', (id: string) => admin.post(`/users/${id}/suspend`)],
      ['deactivate', (id: string) => admin.delete(`/users/${id}`)],
      ['password reset', (id: string) => admin.patch(`/users/${id}`, { password: 'a brand new passphrase 42' })],
    ] as const) {
      const user = await createUser(ts);
      const jwt = (await grantFor(user, OTHER_API, 'other:read')).tokens.access_token;
      const opaque = (await grantFor(user, API, 'read')).tokens.access_token;
      assert.ok((await exchange(jwt, { resource: OTHER_API })).access_token, 'exchangeable before');
      assert.equal((await call(user.id)).status, 200, action);

      // A JWT is still a genuine, unexpired token: the authorization behind it has ended.
      await assert.rejects(exchange(jwt, { resource: OTHER_API }), refusedWith('invalid_grant'), action);
      // The opaque token was revoked with the rest, so it is no token at all (RFC 8693 2.2.2).
      await assert.rejects(exchange(opaque, { resource: API }), refusedWith('invalid_request'), action);
      if (action === 'suspend') {
        assert.equal((await admin.post(`/users/${user.id}/reactivate`)).status, 200);
        await assert.rejects(exchange(jwt, { resource: OTHER_API }), refusedWith('invalid_grant'), 'not after reactivation either');
      }
    }
  });

  it('the exchanged token lives no longer than the subject token', async () => {
    const user = await createUser(ts);
    const browser = new HttpBrowser();
    await grantFor(user, API, 'read', browser);
    // The same grant now also holds SHORT_API, whose tokens live a minute; API's live an hour.
    const { tokens } = await grantFor(user, SHORT_API, 'read', browser);
    const subject = await oidc.tokenIntrospection(webConfig, tokens.access_token);
    assert.equal(subject.aud, SHORT_API);

    const exchanged = await exchange(tokens.access_token, { resource: API, scope: 'read' });
    assert.ok(exchanged.expires_in! <= 60, `expires_in ${exchanged.expires_in}`);
    const info = await oidc.tokenIntrospection(svcConfig, exchanged.access_token);
    assert.ok(info.exp! <= subject.exp!, 'ends no later than the subject token');
  });

  it('the exchanged token ends with the subject\'s grant: revocation, logout-all, password reset', async () => {
    const user = await createUser(ts);
    const exchangedFrom = async () => {
      const { tokens } = await grantFor(user, API, 'read');
      const exchanged = (await exchange(tokens.access_token, { resource: API })).access_token;
      assert.equal(await active(exchanged), true);
      return { tokens, exchanged };
    };

    // The web app revokes its refresh token, which ends the grant; another grant of the user lives on.
    const other = await exchangedFrom();
    const first = await exchangedFrom();
    await oidc.tokenRevocation(webConfig, first.tokens.refresh_token!);
    assert.equal(await active(first.exchanged), false, 'revoking the refresh token');
    assert.equal(await active(other.exchanged), true, 'another grant is untouched');

    // The user signs out everywhere through the account API.
    const { tokens: own } = await signIn(ts, webConfig, user, { scope: 'openid' });
    const out = await fetch(new URL('/api/v1/auth/logout-all', ts.issuer), {
      method: 'POST',
      headers: { authorization: `Bearer ${own.access_token}` },
    });
    assert.equal(out.status, 204);
    assert.equal(await active(other.exchanged), false, 'logout-all');

    const third = await exchangedFrom();
    assert.equal((await admin.patch(`/users/${user.id}`, { password: 'another new passphrase 77' })).status, 200);
    assert.equal(await active(third.exchanged), false, 'an administrator\'s password reset');
  });

  it('a token filed under a grant that no longer exists is not found, even if its row survived', async () => {
    // What a revocation racing the exchange could leave behind: the grant gone, the token row still there.
    const user = await createUser(ts);
    const { tokens } = await grantFor(user, API, 'read');
    const exchanged = (await exchange(tokens.access_token, { resource: API })).access_token;
    const db = ts.server.services.db;
    const grants = await db('oidc_payloads').where({ model: 'Grant', account_id: user.id });
    assert.equal(grants.length, 1);
    const filed = await db('oidc_payloads').where({ model: 'AccessToken', grant_id: grants[0].id, account_id: user.id });
    assert.equal(filed.length, 2, 'the subject token and the exchanged one are filed under the grant');
    await db('oidc_payloads').where({ model: 'Grant', id: grants[0].id }).delete();
    assert.equal(await db('oidc_payloads').where({ model: 'AccessToken', grant_id: grants[0].id }).count().first().then((r) => Number(r!.count)), 2);
    assert.equal(await active(exchanged), false);
  });

  it('a client_credentials token as subject keeps the client as sub, gains no user claims, and only its own client may exchange it', async () => {
    const subject = await oidc.clientCredentialsGrant(svcConfig, { resource: SHORT_API, scope: 'read' });
    assert.equal(subject.access_token.split('.').length, 1, 'an opaque client_credentials token');
    const exchanged = await exchange(subject.access_token, { resource: OTHER_API, scope: 'read' });
    const { payload } = await jwtVerify(exchanged.access_token, jwks, { issuer: ts.issuer, audience: OTHER_API, typ: 'at+jwt' });
    assert.equal(payload.sub, svc.clientId);
    assert.equal(payload.client_id, svc.clientId);
    assert.equal(payload.scope, 'read');
    for (const claim of ['email', 'name', 'grant_id', 'act']) assert.equal(payload[claim], undefined, claim);
    assert.ok(exchanged.expires_in! <= 60, 'capped at the subject token\'s minute');
    await assert.rejects(exchange(subject.access_token, { resource: OTHER_API, scope: 'other:read' }), refusedWith('invalid_scope'));

    // A client_credentials JWT as subject, exchanged for an opaque token: no user behind it.
    const jwtSubject = await oidc.clientCredentialsGrant(svcConfig, { resource: OTHER_API, scope: 'read' });
    assert.equal(decodeJwt(jwtSubject.access_token).sub, svc.clientId);
    const opaque = await exchange(jwtSubject.access_token, { resource: API });
    const info = await oidc.tokenIntrospection(svcConfig, opaque.access_token);
    assert.equal(info.active, true);
    assert.equal(info.client_id, svc.clientId);
    assert.equal(info.scope, 'read');
    assert.equal(info.sub, undefined, 'no account');

    // Another client presenting it would pass itself off as this one.
    const { config: otherConfig } = await machine([TOKEN_EXCHANGE]);
    await assert.rejects(exchange(subject.access_token, { resource: OTHER_API }, otherConfig), refusedWith('invalid_request'));
    await assert.rejects(exchange(jwtSubject.access_token, { resource: API }, otherConfig), refusedWith('invalid_request'));
  });

  it("a client's own token reaches by exchange only resources and scopes it was granted for client_credentials", async () => {
    // Granted read at SHORT_API only; OTHER_API defines read too.
    const { config } = await machine([TOKEN_EXCHANGE], { [SHORT_API]: 'read' });
    const subject = await oidc.clientCredentialsGrant(config, { resource: SHORT_API, scope: 'read' });
    // As for a user's token: asking for a scope not granted is invalid_scope, nothing granted invalid_target.
    const refused: [Record<string, string>, string][] = [
      [{ resource: OTHER_API, scope: 'read' }, 'invalid_scope'],
      [{ resource: OTHER_API }, 'invalid_target'],
      [{ resource: API }, 'invalid_target'],
    ];
    for (const [params, error] of refused) {
      await assert.rejects(exchange(subject.access_token, params, config), refusedWith(error), JSON.stringify(params));
    }
    // svc is granted read at OTHER_API, not other:read, and its token carries read only.
    const own = await oidc.clientCredentialsGrant(svcConfig, { resource: SHORT_API, scope: 'read' });
    await assert.rejects(exchange(own.access_token, { resource: OTHER_API, scope: 'read other:read' }), refusedWith('invalid_scope'));
    // A user's token keeps today's rule (what the user granted), whatever the exchanging client's grants.
    const user = await createUser(ts);
    const { tokens } = await grantFor(user, API, 'read write');
    assert.equal((await exchange(tokens.access_token, { resource: API, scope: 'read write' }, config)).scope, 'read write');
  });

  it('never targets the admin API nor yields iam.* scopes', async () => {
    const user = await createUser(ts);
    const { tokens } = await grantFor(user, API, 'read');
    await assert.rejects(exchange(tokens.access_token, { resource: adminAudience(ts.issuer) }), refusedWith('invalid_target'));
    await assert.rejects(exchange(tokens.access_token, { audience: adminAudience(ts.issuer) }), refusedWith('invalid_target'));
    // A resource server row that lists an admin scope (written around the API's validation).
    const sneaky = 'https://sneaky.example.test';
    await ts.server.services.resourceServers.create(DEFAULT_SCOPE, { identifier: sneaky, scopes: ['iam.users:read', 'read'], accessTokenFormat: 'opaque' });
    const subject = await oidc.clientCredentialsGrant(svcConfig, { resource: SHORT_API, scope: 'read' });
    // The client has no grant there yet: its own token is no way in.
    await assert.rejects(exchange(subject.access_token, { resource: sneaky }), refusedWith('invalid_target'));
    const patched = await admin.patch(`/clients/${svc.clientId}`, { resource_scopes: { [SHORT_API]: 'read', [OTHER_API]: 'read', [API]: 'read', [sneaky]: 'read' } });
    assert.equal(patched.status, 200, patched.text);
    await assert.rejects(exchange(subject.access_token, { resource: sneaky, scope: 'iam.users:read' }), refusedWith('invalid_scope'));
    const plain = await exchange(subject.access_token, { resource: sneaky });
    assert.equal(plain.scope, 'read');
  });

  it('prompt=login with a third-party client that needs consent: one login, one consent, the code, and an exchange', async () => {
    const user = await createUser(ts);
    const thirdParty = await rpConfig(ts, await registerClient(ts, {}, false));
    const browser = new HttpBrowser();
    // Signed in already (another app), so only the requested prompt=login forces a new sign-in.
    await signIn(ts, webConfig, user, { scope: 'openid', browser });
    const { tokens, logins, consentShown } = await signIn(ts, thirdParty, user, {
      scope: 'openid read', prompt: 'login', browser, params: { resource: API },
    });
    assert.equal(logins, 1, 'one login');
    assert.equal(consentShown, true, 'one consent');
    const exchanged = await exchange(tokens.access_token, { resource: API, scope: 'read' });
    assert.equal((await oidc.tokenIntrospection(svcConfig, exchanged.access_token)).sub, user.id);
  });

  it('rejects what the RFC says to reject', async () => {
    const user = await createUser(ts);
    const { tokens } = await signIn(ts, webConfig, user, { scope: 'openid' });
    const { config: notAllowed } = await machine();
    const base = { resource: OTHER_API };

    await assert.rejects(exchange(tokens.access_token, base, notAllowed), (e: oidc.ResponseBodyError) =>
      ['unauthorized_client', 'invalid_request'].includes(e.error));
    await assert.rejects(exchange('not-a-token', base), refusedWith('invalid_request'));
    await assert.rejects(exchange('eyJhbGciOiJFUzI1NiJ9.e30.c2ln', base), refusedWith('invalid_request'));
    await assert.rejects(
      oidc.genericGrantRequest(svcConfig, TOKEN_EXCHANGE, { subject_token: tokens.access_token, subject_token_type: 'urn:ietf:params:oauth:token-type:saml2', ...base }),
      refusedWith('invalid_request'),
    );
    await assert.rejects(exchange(tokens.access_token, { resource: 'https://nope.test' }), refusedWith('invalid_target'));
    await assert.rejects(exchange(tokens.access_token, { ...base, scope: 'write' }), refusedWith('invalid_scope'));
    await assert.rejects(
      exchange(tokens.access_token, { ...base, requested_token_type: 'urn:ietf:params:oauth:token-type:refresh_token' }),
      refusedWith('invalid_request'),
    );
    await assert.rejects(
      oidc.genericGrantRequest(svcConfig, TOKEN_EXCHANGE, { subject_token_type: AT_TYPE, ...base }),
      refusedWith('invalid_request'),
    );
  });
});
