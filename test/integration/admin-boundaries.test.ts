import assert from 'node:assert/strict';
import { exportJWK, generateKeyPair, jwtVerify, createLocalJWKSet } from 'jose';
import { after, before, describe, it } from 'node:test';
import * as oidc from 'openid-client';
import { adminAudience } from '../../src/domain/clients/admin-scopes.ts';
import {
  ADMIN_CLIENT_ID,
  ADMIN_CLIENT_SECRET,
  AdminApi,
  adminToken,
  assertError,
  basic,
  marker,
  startAdminServer,
  tokenRequest,
} from '../helpers/admin.ts';
import { HttpBrowser } from '../helpers/browser-http.ts';
import { POST_LOGOUT_URI, REDIRECT_URI, createUser, rpConfig, signIn, submitLogin } from '../helpers/rp.ts';
import { stopAndDestroy, type TestServer } from '../helpers/server.ts';

/**
 * The admin API's privilege boundaries, over HTTP with real tokens: no caller reaches a client that
 * holds admin scopes its own token lacks, the provider's built-in clients cannot be broken, admin
 * tokens come only from client_credentials, and deleting a client ends what it was issued.
 */

const machineMetadata = { grant_types: ['client_credentials'], response_types: [], redirect_uris: [] };

describe('admin API boundaries', () => {
  let ts: TestServer;
  let api: AdminApi;
  let aud: string;
  let jwks: ReturnType<typeof createLocalJWKSet>;
  const bootstrap = { id: ADMIN_CLIENT_ID, secret: ADMIN_CLIENT_SECRET };

  before(async () => {
    ts = await startAdminServer();
    aud = adminAudience(ts.issuer);
    api = new AdminApi(ts, await adminToken(ts));
    jwks = createLocalJWKSet(await (await fetch(new URL('/jwks', ts.issuer))).json());
  });
  after(() => stopAndDestroy(ts));

  async function createMachine(extra: Record<string, unknown> = {}) {
    const res = await api.post('/clients', { ...machineMetadata, ...extra });
    assert.equal(res.status, 201, res.text);
    return { id: res.body.client_id as string, secret: res.body.client_secret as string };
  }

  /** An admin API caller registered with exactly these scopes, holding a token with all of them. */
  async function callerWith(scopes: string[]) {
    const client = await createMachine({ scope: scopes.join(' ') });
    return new AdminApi(ts, await adminToken(ts, scopes, client));
  }

  async function introspect(client: { id: string; secret: string }, token: string) {
    const res = await fetch(new URL('/token/introspection', ts.issuer), {
      method: 'POST',
      headers: { authorization: basic(client.id, client.secret), 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token }).toString(),
    });
    assert.equal(res.status, 200);
    return (await res.json()) as Record<string, unknown>;
  }

  describe('a caller reaches only clients whose admin scopes its token holds', () => {
    it('iam.clients:read/update/delete alone cannot read, change, rotate, re-authenticate or delete the bootstrap admin client', async () => {
      const limited = await callerWith(['iam.clients:read', 'iam.clients:update', 'iam.clients:delete']);
      const before = await api.get(`/clients/${ADMIN_CLIENT_ID}`);
      assert.equal(before.status, 200);

      const attacker = await generateKeyPair('ES256');
      const ownJwks = { keys: [{ ...(await exportJWK(attacker.publicKey)), kid: 'attacker', use: 'sig', alg: 'ES256' }] };
      const attempts: [string, () => ReturnType<AdminApi['get']>][] = [
        ['read', () => limited.get(`/clients/${ADMIN_CLIENT_ID}`)],
        ['rename', () => limited.patch(`/clients/${ADMIN_CLIENT_ID}`, { client_name: 'taken over' })],
        ['switch to client_secret_jwt', () => limited.patch(`/clients/${ADMIN_CLIENT_ID}`, { token_endpoint_auth_method: 'client_secret_jwt' })],
        ['switch to private_key_jwt with own keys', () =>
          limited.patch(`/clients/${ADMIN_CLIENT_ID}`, { token_endpoint_auth_method: 'private_key_jwt', jwks: ownJwks })],
        ['rotate the secret', () => limited.post(`/clients/${ADMIN_CLIENT_ID}/secret`)],
        ['delete', () => limited.delete(`/clients/${ADMIN_CLIENT_ID}`)],
      ];
      for (const [what, attempt] of attempts) {
        const res = await attempt();
        assertError(res, 403, 'IDENT_FORBIDDEN', what);
        assert.match(res.body.message, /^the client admin is registered with admin scopes this token lacks: .*iam\.users:delete/, what);
        assert.match(res.headers.get('www-authenticate') ?? '', /error="insufficient_scope", scope="[^"]*iam\.users:delete/, what);
        assert.ok(!('client_secret' in res.body), what);
      }

      // Nothing changed: the same record, and the configured secret still yields every scope.
      assert.deepEqual((await api.get(`/clients/${ADMIN_CLIENT_ID}`)).body, before.body);
      const full = await tokenRequest(ts, bootstrap, { grant_type: 'client_credentials', resource: aud, scope: 'iam.users:delete' });
      assert.equal(full.status, 200, JSON.stringify(full.body));
    });

    it('the same caller manages a client with no admin scopes, or with a subset of its own', async () => {
      const limited = await callerWith(['iam.clients:read', 'iam.clients:update', 'iam.clients:delete']);
      for (const scope of [undefined, 'iam.clients:read']) {
        const target = await createMachine(scope ? { scope } : {});
        assert.equal((await limited.get(`/clients/${target.id}`)).status, 200);
        const renamed = await limited.patch(`/clients/${target.id}`, { client_name: 'managed' });
        assert.equal(renamed.status, 200, renamed.text);
        assert.equal(renamed.body.client_name, 'managed');
        const toJwt = await limited.patch(`/clients/${target.id}`, { token_endpoint_auth_method: 'client_secret_jwt' });
        assert.equal(toJwt.status, 200, toJwt.text);
        assert.ok(toJwt.body.client_secret, 'a new secret for client_secret_jwt');
        const back = await limited.patch(`/clients/${target.id}`, { token_endpoint_auth_method: 'client_secret_basic' });
        assert.equal(back.status, 200, back.text);
        const rotated = await limited.post(`/clients/${target.id}/secret`);
        assert.equal(rotated.status, 200, rotated.text);
        const cc = await tokenRequest(ts, { id: target.id, secret: rotated.body.client_secret }, { grant_type: 'client_credentials' });
        assert.equal(cc.status, 200, 'the rotated secret works');
        assert.equal((await limited.delete(`/clients/${target.id}`)).status, 204);
      }
    });

    it('a client cannot be given more by PATCH either: the current and the new scopes must both be within reach', async () => {
      const limited = await callerWith(['iam.clients:read', 'iam.clients:update']);
      const reader = await createMachine({ scope: 'iam.users:read' });
      // Taking an admin scope away from a client the caller cannot reach is refused too.
      assertError(await limited.patch(`/clients/${reader.id}`, { scope: 'openid' }), 403, 'IDENT_FORBIDDEN');
      assert.equal((await api.get(`/clients/${reader.id}`)).body.scope, 'iam.users:read');
    });

    it('the list leaves out clients beyond the token, with a total that counts only what it shows', async () => {
      const held = ['iam.clients:read', 'iam.users:read'];
      const limited = await callerWith(held);
      const visible = await createMachine({ client_name: `visible ${marker()}`, scope: 'iam.users:read' });
      const hidden = await createMachine({ client_name: `hidden ${marker()}`, scope: 'iam.users:read iam.users:create' });

      const all: Array<{ client_id: string; scope?: string }> = (await api.get('/clients?pageSize=100')).body.data;
      const reachable = all.filter((c) => (c.scope ?? '').split(' ').every((s) => !s.startsWith('iam.') || held.includes(s)));
      assert.ok(reachable.length < all.length, 'some clients are out of reach');

      const seen: string[] = [];
      const pageSize = 2;
      for (let page = 1; ; page++) {
        const res = await limited.get(`/clients?page=${page}&pageSize=${pageSize}`);
        assert.equal(res.status, 200, res.text);
        assert.equal(res.body.total, reachable.length, 'total counts only the clients shown');
        seen.push(...res.body.data.map((c: { client_id: string }) => c.client_id));
        if (res.body.data.length < pageSize) break;
      }
      assert.deepEqual(seen.sort(), reachable.map((c) => c.client_id).sort());
      assert.ok(seen.includes(visible.id));
      assert.ok(!seen.includes(hidden.id));
      assert.ok(!seen.includes(ADMIN_CLIENT_ID));
      assert.ok(seen.includes('account-console'), 'a client without admin scopes is listed');
      assertError(await limited.get(`/clients/${hidden.id}`), 403, 'IDENT_FORBIDDEN');
    });
  });

  describe('built-in clients are managed by their settings', () => {
    it('the bootstrap admin client cannot be deleted, changed or rotated: 409, and it still gets tokens', async () => {
      const attempts: [string, () => ReturnType<AdminApi['get']>][] = [
        ['delete', () => api.delete(`/clients/${ADMIN_CLIENT_ID}`)],
        ['patch', () => api.patch(`/clients/${ADMIN_CLIENT_ID}`, { client_name: 'renamed' })],
        ['rotate', () => api.post(`/clients/${ADMIN_CLIENT_ID}/secret`)],
      ];
      for (const [what, attempt] of attempts) {
        const res = await attempt();
        assertError(res, 409, 'IDENT_CLIENT_BUILT_IN', what);
        assert.match(res.body.message, /built in.*BOOTSTRAP_ADMIN_CLIENT_ID/, what);
      }
      assert.equal((await api.get(`/clients/${ADMIN_CLIENT_ID}`)).body.client_name, 'Bootstrap admin client');
      assert.ok(await adminToken(ts), 'the configured secret still works');
    });

    it('the account console client cannot be deleted or changed: 409, and /account still signs people in', async () => {
      assertError(await api.delete('/clients/account-console'), 409, 'IDENT_CLIENT_BUILT_IN');
      const patched = await api.patch('/clients/account-console', { redirect_uris: ['https://evil.example.test/cb'] });
      assertError(patched, 409, 'IDENT_CLIENT_BUILT_IN');
      assert.match(patched.body.message, /account console/);
      assert.deepEqual((await api.get('/clients/account-console')).body.redirect_uris, [`${ts.issuer}/account/callback`]);

      const user = await createUser(ts);
      const browser = new HttpBrowser();
      const login = await browser.follow(`${ts.issuer}/account`);
      const html = await login.res.text();
      assert.equal(login.res.status, 200);
      assert.ok(html.includes('autocomplete="current-password"'), 'the provider login page for the console');
      const res = await submitLogin(browser, login.url, html, user.email, user.password);
      assert.equal(res.status, 303);
      const page = await browser.follow(new URL(res.headers.get('location')!, login.url));
      assert.equal(page.url.href, `${ts.issuer}/account`);
      assert.equal(page.res.status, 200);
      assert.ok((await page.res.text()).includes(user.email), 'the console shows the signed-in user');
    });
  });

  describe('admin tokens come only from client_credentials', () => {
    it('an authorization code flow cannot get the admin audience (invalid_target) or iam.* scopes (invalid_scope)', async () => {
      // A relying party that was also given admin scopes, first party so no consent screen hides anything.
      const created = await api.post('/clients', {
        redirect_uris: [REDIRECT_URI], post_logout_redirect_uris: [POST_LOGOUT_URI],
        grant_types: ['authorization_code', 'refresh_token', 'client_credentials'], response_types: ['code'],
        scope: 'openid offline_access iam.users:read', first_party: true,
      });
      assert.equal(created.status, 201, created.text);
      const client = { clientId: created.body.client_id as string, clientSecret: created.body.client_secret as string };
      const config = await rpConfig(ts, client);
      const user = await createUser(ts);

      const refused = async (scope: string, params: Record<string, string>) => {
        const err = await signIn(ts, config, user, { scope, params }).then(
          () => assert.fail(`${scope} ${JSON.stringify(params)} should be refused`),
          (e: unknown) => e,
        );
        assert.ok(err instanceof oidc.AuthorizationResponseError, String(err));
        return err.error;
      };
      assert.equal(await refused('openid iam.users:read', { resource: aud }), 'invalid_target');
      assert.equal(await refused('openid', { resource: aud }), 'invalid_target');
      assert.equal(await refused('openid iam.users:read', {}), 'invalid_scope');

      // Without them the same client signs the user in; its tokens carry no admin scope, and a
      // refresh cannot reach the admin audience either.
      const { tokens } = await signIn(ts, config, user, { scope: 'openid offline_access', prompt: 'consent' });
      assert.doesNotMatch(tokens.scope ?? '', /iam\./);
      const refresh = await tokenRequest(ts, { id: client.clientId, secret: client.clientSecret }, {
        grant_type: 'refresh_token', refresh_token: tokens.refresh_token!, resource: aud,
      });
      assert.equal(refresh.status, 400);
      assert.equal(refresh.body.error, 'invalid_target');
      // The same client by client_credentials is an admin API caller.
      const cc = await tokenRequest(ts, { id: client.clientId, secret: client.clientSecret }, { grant_type: 'client_credentials', scope: 'iam.users:read' });
      assert.equal(cc.status, 200, JSON.stringify(cc.body));
      assert.equal((await api.get('/users?pageSize=1', { token: cc.body.access_token })).status, 200);
    });

    it('client_credentials for iam.* scopes without resource yields a JWT for the admin API, which accepts it', async () => {
      const reader = await createMachine({ scope: 'iam.users:read' });
      const res = await tokenRequest(ts, reader, { grant_type: 'client_credentials', scope: 'iam.users:read' });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const { payload } = await jwtVerify(res.body.access_token, jwks, { issuer: ts.issuer, audience: aud, typ: 'at+jwt' });
      assert.equal(payload.scope, 'iam.users:read');
      assert.equal(payload.sub, reader.id, 'the subject is the client itself');
      assert.equal((await api.get('/users?pageSize=1', { token: res.body.access_token })).status, 200);

      // Without admin scopes nothing changes: an opaque token, not one for the admin API.
      const plain = await tokenRequest(ts, reader, { grant_type: 'client_credentials' });
      assert.equal(plain.status, 200);
      assert.equal(plain.body.access_token.split('.').length, 1, 'opaque');
      assertError(await api.get('/users', { token: plain.body.access_token }), 401, 'IDENT_UNAUTHENTICATED');
    });
  });

  describe('deleting a client ends its grants and tokens', () => {
    it('access tokens introspect inactive and refresh tokens stop working, even for a client_id registered again', async () => {
      const introspector = await createMachine({ introspection_allowed: true });
      const clientId = `doomed-${marker()}`;
      const metadata = {
        client_id: clientId,
        redirect_uris: [REDIRECT_URI],
        grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
        response_types: ['code'],
        first_party: true,
      };
      const created = await api.post('/clients', metadata);
      assert.equal(created.status, 201, created.text);
      const secret = created.body.client_secret as string;
      const config = await rpConfig(ts, { clientId, clientSecret: secret });
      const user = await createUser(ts);
      const { tokens } = await signIn(ts, config, user, { scope: 'openid offline_access', prompt: 'consent' });
      assert.ok(tokens.refresh_token);
      const cc = await tokenRequest(ts, { id: clientId, secret }, { grant_type: 'client_credentials' });
      assert.equal(cc.status, 200);
      const issued = { 'user access token': tokens.access_token, 'refresh token': tokens.refresh_token!, 'client token': cc.body.access_token as string };
      for (const [what, token] of Object.entries(issued)) assert.equal((await introspect(introspector, token)).active, true, what);

      assert.equal((await api.delete(`/clients/${clientId}`)).status, 204);
      // Registered again with the same id and secret: it inherits nothing.
      const again = await api.post('/clients', { ...metadata, client_secret: secret });
      assert.equal(again.status, 201, again.text);

      for (const [what, token] of Object.entries(issued)) assert.equal((await introspect(introspector, token)).active, false, what);
      const refresh = await tokenRequest(ts, { id: clientId, secret }, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token! });
      assert.equal(refresh.status, 400, JSON.stringify(refresh.body));
      assert.equal(refresh.body.error, 'invalid_grant');
      const userinfo = await fetch(new URL('/me', ts.issuer), { headers: { authorization: `Bearer ${tokens.access_token}` } });
      assert.equal(userinfo.status, 401);
    });
  });
});
