import { DEFAULT_SCOPE } from '../../src/domain/tenants/tenant-scope.ts';
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import * as oidc from 'openid-client';
import { ConfigError, loadConfig } from '../../src/config/load.ts';
import { createLogger } from '../../src/infra/logger.ts';
import { ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, AdminApi, adminToken, assertError, basic, marker, type ApiAnswer } from '../helpers/admin.ts';
import { logCapture } from '../helpers/log-capture.ts';
import { createUser, registerClient, rpConfig, signIn } from '../helpers/rp.ts';
import { startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';

/**
 * The internal listener (INTERNAL_PORT): cluster-only lookups and introspection for the edge
 * gateway, on a port of its own, open only to INTERNAL_ALLOWED_CIDRS by the socket's address.
 */

const API = 'https://internal-api.example.test';

/**
 * The ports servers of this process start listening on while `work` runs (the test helper binds
 * the public port before the server starts, so only the server's own further listeners show).
 */
async function listensDuring<T>(work: () => Promise<T>): Promise<{ result: T; ports: unknown[] }> {
  const original = net.Server.prototype.listen;
  const ports: unknown[] = [];
  net.Server.prototype.listen = function (this: net.Server, ...args: unknown[]) {
    ports.push(args[0]);
    return (original as (...a: unknown[]) => net.Server).apply(this, args);
  } as typeof original;
  try {
    return { result: await work(), ports };
  } finally {
    net.Server.prototype.listen = original;
  }
}

async function answer(res: Response): Promise<ApiAnswer> {
  const text = await res.text();
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = undefined;
  }
  return { status: res.status, headers: res.headers, text, body };
}

describe('internal endpoints', () => {
  let ts: TestServer;
  let api: AdminApi;
  let internal: string;
  const logs = logCapture();

  before(async () => {
    const started = await listensDuring(() => startTestServer(
      { BOOTSTRAP_ADMIN_CLIENT_ID: ADMIN_CLIENT_ID, BOOTSTRAP_ADMIN_CLIENT_SECRET: ADMIN_CLIENT_SECRET, INTERNAL_PORT: '0', LOG_LEVEL: 'info' },
      { logger: createLogger('info', logs.stream) },
    ));
    ts = started.result;
    // The helper's public listener, then the server's own: the internal one.
    assert.deepEqual(started.ports, [0, 0], 'the public and the internal listener');
    assert.ok(ts.server.internalPort && ts.server.internalPort !== ts.port);
    internal = `http://127.0.0.1:${ts.server.internalPort}`;
    api = new AdminApi(ts, await adminToken(ts));
    await ts.server.services.resourceServers.create(DEFAULT_SCOPE, { identifier: API, name: 'API', scopes: ['read'], accessTokenFormat: 'jwt' });
  });
  after(() => stopAndDestroy(ts));

  const get = async (path: string, headers: Record<string, string> = {}) => answer(await fetch(`${internal}/internal/identity${path}`, { headers }));
  const introspectInternally = async (params: Record<string, string>) =>
    answer(await fetch(`${internal}/internal/identity/tokens/introspect`, {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(params).toString(),
    }));

  /** A registered introspector (introspection_allowed), as the gateway would be on the public port. */
  let gateway: { clientId: string; clientSecret?: string | undefined };
  const introspectPublicly = async (params: Record<string, string>) =>
    answer(await fetch(new URL('/token/introspection', ts.issuer), {
      method: 'POST',
      headers: { authorization: basic(gateway.clientId, gateway.clientSecret!), 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(params).toString(),
    }));

  /** Both introspections of one token, which must say the same. */
  async function bothSay(params: Record<string, string>, what: string) {
    const [inside, outside] = [await introspectInternally(params), await introspectPublicly(params)];
    assert.equal(inside.status, outside.status, `${what}: status`);
    assert.deepEqual(inside.body, outside.body, `${what}: the internal answer is the public one`);
    return inside;
  }

  it('GET /users/:id resolves a user with tenant, status and role names; a suspended user shows as such; unknown: 404', async () => {
    const user = await createUser(ts);
    const admin = await ts.server.services.db('roles').where({ tenant_id: 'default', name: 'admin' }).first();
    const guest = await ts.server.services.db('roles').where({ tenant_id: 'default', name: 'guest' }).first();
    await ts.server.services.db('user_roles').insert([{ user_id: user.id, role_id: guest.id }, { user_id: user.id, role_id: admin.id }]);

    const res = await get(`/users/${user.id}`);
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.body, { id: user.id, tenantId: 'default', email: user.email, status: 'active', roles: ['admin', 'guest'] });
    assert.equal(res.headers.get('cache-control'), 'no-store');

    assert.equal((await api.post(`/users/${user.id}/suspend`)).status, 200);
    assert.equal((await get(`/users/${user.id}`)).body.status, 'suspended');

    assertError(await get(`/users/${crypto.randomUUID()}`), 404, 'IDENT_USER_NOT_FOUND');
    assertError(await get('/users/not-a-uuid'), 404, 'IDENT_USER_NOT_FOUND');
  });

  it('GET /users/by-external/:issuer/:subject finds the linked user by issuer, SAML entity id or alias', async () => {
    const user = await createUser(ts);
    const alias = marker('ext');
    const issuer = `https://sso-${alias}.example.test/realms/x`;
    const created = await api.post('/identity-providers', { alias, type: 'oidc', displayName: 'Ext', issuer, clientId: 'c', clientSecret: 's' });
    assert.equal(created.status, 201, created.text);
    const subject = `upstream|${marker()}`;
    await ts.server.services.db('federated_identities').insert({ id: crypto.randomUUID(), tenant_id: 'default', user_id: user.id, provider_id: created.body.id, subject });

    const expected = { id: user.id, tenantId: 'default', email: user.email, status: 'active', roles: [] };
    const byIssuer = await get(`/users/by-external/${encodeURIComponent(issuer)}/${encodeURIComponent(subject)}`);
    assert.equal(byIssuer.status, 200, byIssuer.text);
    assert.deepEqual(byIssuer.body, expected);
    assert.deepEqual((await get(`/users/by-external/${alias}/${encodeURIComponent(subject)}`)).body, expected, 'by alias');
    assert.deepEqual((await get(`/users/by-external/${alias}/${encodeURIComponent(subject)}?tenantId=default`)).body, expected, 'narrowed to a tenant');

    assertError(await get(`/users/by-external/${encodeURIComponent(issuer)}/someone-else`), 404, 'IDENT_USER_NOT_FOUND');
    assertError(await get(`/users/by-external/${encodeURIComponent('https://unknown.example.test')}/${encodeURIComponent(subject)}`), 404, 'IDENT_USER_NOT_FOUND');
    assertError(await get(`/users/by-external/${alias}/${encodeURIComponent(subject)}?tenantId=nope`), 404, 'IDENT_TENANT_NOT_FOUND');

    // A SAML provider by its entity id.
    const db = ts.server.services.db;
    const samlId = crypto.randomUUID();
    const entityId = `https://idp-${alias}.example.test/saml/metadata`;
    await db('identity_providers').insert({ id: samlId, alias: `${alias}-saml`, type: 'saml', display_name: 'SAML', settings: JSON.stringify({ entityId }) });
    await db('federated_identities').insert({ id: crypto.randomUUID(), tenant_id: 'default', user_id: user.id, provider_id: samlId, subject: 'name-id-1' });
    assert.deepEqual((await get(`/users/by-external/${encodeURIComponent(entityId)}/name-id-1`)).body, expected, 'by entity id');

    // Another tenant's provider with the same issuer linking the same subject: ambiguous without ?tenantId.
    const tenant = marker('t');
    await db('tenants').insert({ id: tenant, name: 'Other', slug: `${tenant}-slug` });
    const other = crypto.randomUUID();
    await db('users').insert({ id: other, tenant_id: tenant, email: `${marker()}@other.example.test`, email_verified: true });
    const otherIdp = crypto.randomUUID();
    await db('identity_providers').insert({ id: otherIdp, tenant_id: tenant, alias: `${alias}-other`, type: 'oidc', display_name: 'Other', settings: JSON.stringify({ issuer }) });
    await db('federated_identities').insert({ id: crypto.randomUUID(), tenant_id: tenant, user_id: other, provider_id: otherIdp, subject });
    const path = `/users/by-external/${encodeURIComponent(issuer)}/${encodeURIComponent(subject)}`;
    assertError(await get(path), 400, 'IDENT_VALIDATION');
    assert.deepEqual((await get(`${path}?tenantId=default`)).body, expected);
    const theirs = await get(`${path}?tenantId=${tenant}-slug`);
    assert.equal(theirs.body.id, other, 'by the tenant\'s slug');
    assert.equal(theirs.body.tenantId, tenant);
  });

  it('GET /service-accounts/:clientId answers its standing; unknown: 404', async () => {
    const client = await registerClient(ts, { grant_types: ['client_credentials'], response_types: [], redirect_uris: [], post_logout_redirect_uris: [] });
    const id = crypto.randomUUID();
    await ts.server.services.db('service_accounts').insert({ id, tenant_id: 'default', client_id: client.clientId, name: 'billing' });
    const res = await get(`/service-accounts/${encodeURIComponent(client.clientId)}`);
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.body, { clientId: client.clientId, serviceAccountId: id, tenantId: 'default', active: true });
    assertError(await get('/service-accounts/no-such-client'), 404, 'IDENT_SERVICE_ACCOUNT_NOT_FOUND');
    // A plain client is no service account.
    const plain = await registerClient(ts, {});
    assertError(await get(`/service-accounts/${plain.clientId}`), 404, 'IDENT_SERVICE_ACCOUNT_NOT_FOUND');
  });

  it('POST /tokens/introspect answers what the public introspection answers: active, revoked, expired, unknown, JWT', async () => {
    gateway = await registerClient(ts, { grant_types: ['client_credentials'], response_types: [], redirect_uris: [], post_logout_redirect_uris: [], introspection_allowed: true });
    const user = await createUser(ts);
    const rp = await registerClient(ts, {}, true);
    const config = await rpConfig(ts, rp);
    const { tokens } = await signIn(ts, config, user, { scope: 'openid offline_access', prompt: 'consent' });

    const active = await bothSay({ token: tokens.access_token }, 'active access token');
    assert.equal(active.body.active, true);
    assert.equal(active.body.sub, user.id);
    assert.equal(active.body.client_id, rp.clientId);
    assert.equal(active.body.tenant_id, 'default');
    assert.equal(active.body.iss, ts.issuer);
    assert.equal(active.body.token_type, 'Bearer');
    assert.match(active.body.scope, /openid/);
    assert.equal(typeof active.body.exp, 'number');
    const refresh = await bothSay({ token: tokens.refresh_token!, token_type_hint: 'refresh_token' }, 'active refresh token');
    assert.equal(refresh.body.active, true);
    assert.equal(refresh.body.sub, user.id);
    await bothSay({ token: tokens.access_token, token_type_hint: 'refresh_token' }, 'a wrong hint');

    // A machine's opaque client_credentials token, then expired in the store.
    const machine = await registerClient(ts, { grant_types: ['client_credentials'], response_types: [], redirect_uris: [], post_logout_redirect_uris: [] });
    const machineConfig = await rpConfig(ts, machine);
    const cc = (await oidc.clientCredentialsGrant(machineConfig)).access_token;
    assert.equal((await bothSay({ token: cc }, 'client_credentials token')).body.active, true);
    const past = Math.floor(Date.now() / 1000) - 120;
    const expired = await ts.server.services.db('oidc_payloads')
      .where({ model: 'ClientCredentials' }).whereRaw(`payload->>'clientId' = ?`, [machine.clientId])
      .update({ payload: ts.server.services.db.raw(`jsonb_set(payload, '{exp}', to_jsonb(?::int))`, [past]), expires_at: new Date(past * 1000) });
    assert.equal(expired, 1);
    assert.deepEqual((await bothSay({ token: cc }, 'expired token')).body, { active: false });

    // Revoked: the user's refresh token (and the grant with it) through the public revocation endpoint.
    await oidc.tokenRevocation(config, tokens.refresh_token!);
    assert.deepEqual((await bothSay({ token: tokens.refresh_token! }, 'revoked refresh token')).body, { active: false });
    assert.deepEqual((await bothSay({ token: tokens.access_token }, 'access token of the revoked grant')).body, { active: false });
    assert.deepEqual((await bothSay({ token: 'garbage-token' }, 'unknown token')).body, { active: false });

    // A JWT access token (a resource server's): refused by both alike.
    const jwt = (await oidc.clientCredentialsGrant(await rpConfig(ts, await registerClient(ts, {
      grant_types: ['client_credentials'], response_types: [], redirect_uris: [], post_logout_redirect_uris: [], resource_scopes: { [API]: 'read' },
    })), { resource: API, scope: 'read' })).access_token;
    assert.equal(jwt.split('.').length, 3);
    assert.equal((await bothSay({ token: jwt }, 'JWT access token')).status, 400);

    // Malformed requests: OAuth errors, never a 500.
    assert.equal((await bothSay({}, 'no token')).body.error, 'invalid_request');
    const json = await answer(await fetch(`${internal}/internal/identity/tokens/introspect`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"token":"x"}' }));
    assert.equal(json.status, 400);
    assert.equal(json.body.error, 'invalid_request');
    const twice = await answer(await fetch(`${internal}/internal/identity/tokens/introspect`, {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'token=a&token=b',
    }));
    assert.equal(twice.status, 400);
    assert.equal(twice.body.error, 'invalid_request');
  });

  it('none of the internal routes answers on the public port; the internal port answers nothing public', async () => {
    const user = await createUser(ts);
    for (const path of [`/internal/identity/users/${user.id}`, '/internal/identity/service-accounts/x', '/internal/identity/users/by-external/a/b']) {
      assert.equal((await fetch(new URL(path, ts.issuer), { headers: { accept: 'application/json' } })).status, 404, `public ${path}`);
    }
    const res = await fetch(new URL('/internal/identity/tokens/introspect', ts.issuer), {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' }, body: 'token=x',
    });
    assert.equal(res.status, 404);
    assertError(await answer(await fetch(`${internal}/.well-known/openid-configuration`)), 404, 'IDENT_NOT_FOUND');
    assertError(await answer(await fetch(`${internal}/api/v1/users`)), 404, 'IDENT_NOT_FOUND');
    assertError(await answer(await fetch(`${internal}/internal/identity/users/${user.id}`, { method: 'DELETE' })), 405, 'IDENT_METHOD_NOT_ALLOWED');
    // Odd input is a 4xx with the envelope, never a 500.
    for (const path of ['/users/by-external/%E0%A4%A/x', '/users/by-external/a%00b/c', '/service-accounts/a%00b', '/users/%00']) {
      const res = await get(path);
      assert.ok(res.status === 404 || res.status === 400, `${path}: ${res.status} ${res.text}`);
      assert.match(res.body.error, /^IDENT_/);
    }
  });

  it('logs one line per request, with the path and never a token', async () => {
    const token = `secret-looking-token-${marker()}`;
    const requestId = `internal-log-${marker()}`;
    await fetch(`${internal}/internal/identity/tokens/introspect`, {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-request-id': requestId }, body: `token=${token}`,
    });
    const lines = logs.lines.filter((l) => l.requestId === requestId);
    assert.equal(lines.length, 1, JSON.stringify(lines));
    assert.equal(lines[0]!.path, '/internal/identity/tokens/introspect');
    assert.equal(lines[0]!.status, 200);
    assert.ok(!JSON.stringify(logs.lines).includes(token), 'no token in the log');
  });
});

describe('internal endpoints: who may call, and off by default', () => {
  it('a peer outside INTERNAL_ALLOWED_CIDRS is refused by its socket address (X-Forwarded-For changes nothing)', async () => {
    const ts = await startTestServer({ INTERNAL_PORT: '0', INTERNAL_ALLOWED_CIDRS: '10.0.0.0/8, fd00::/8', TRUST_PROXY: 'true' });
    try {
      const user = await createUser(ts);
      const url = `http://127.0.0.1:${ts.server.internalPort}/internal/identity/users/${user.id}`;
      assertError(await answer(await fetch(url)), 403, 'IDENT_FORBIDDEN');
      assertError(await answer(await fetch(url, { headers: { 'x-forwarded-for': '10.1.2.3', forwarded: 'for=10.1.2.3' } })), 403, 'IDENT_FORBIDDEN');
      const introspect = await answer(await fetch(`http://127.0.0.1:${ts.server.internalPort}/internal/identity/tokens/introspect`, {
        method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-forwarded-for': '10.1.2.3' }, body: 'token=x',
      }));
      assertError(introspect, 403, 'IDENT_FORBIDDEN');
    } finally {
      await stopAndDestroy(ts);
    }
  });

  it('without INTERNAL_PORT nothing more listens, and the public port still answers 404 there', async () => {
    const { result: ts, ports } = await listensDuring(() => startTestServer());
    try {
      assert.equal(ts.server.internalPort, undefined);
      assert.deepEqual(ports, [0], 'only the public listener');
      const user = await createUser(ts);
      assert.equal((await fetch(new URL(`/internal/identity/users/${user.id}`, ts.issuer))).status, 404);
    } finally {
      await stopAndDestroy(ts);
    }
  });

  it('a malformed INTERNAL_ALLOWED_CIDRS stops the boot with a message naming the entry', () => {
    for (const bad of ['10.0.0.0/33', 'not-a-network', '10.0.0.0/8,,fd00::/129', ' , ', '10.0.0.0/8/1', '10.0.0.0/08x']) {
      assert.throws(() => loadConfig({ NODE_ENV: 'test', INTERNAL_ALLOWED_CIDRS: bad }), (err: unknown) => {
        assert.ok(err instanceof ConfigError, String(err));
        assert.match(err.message, /INTERNAL_ALLOWED_CIDRS/);
        return true;
      }, bad);
    }
    assert.equal(loadConfig({ NODE_ENV: 'test', INTERNAL_ALLOWED_CIDRS: '192.168.0.0/16,::1,10.1.2.3' }).INTERNAL_ALLOWED_CIDRS, '192.168.0.0/16,::1,10.1.2.3');
    assert.throws(() => loadConfig({ NODE_ENV: 'test', PORT: '4000', INTERNAL_PORT: '4000' }), /INTERNAL_PORT/);
  });
});
