import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createLocalJWKSet, decodeJwt, jwtVerify } from 'jose';
import * as oidc from 'openid-client';
import { AdminApi, adminToken, marker, startAdminServer } from '../helpers/admin.ts';
import { createUser, registerClient, rpConfig, signIn } from '../helpers/rp.ts';
import { stopAndDestroy, type TestServer } from '../helpers/server.ts';
import { callUserApi } from '../helpers/user-api.ts';

const refusedWith = (error: string) => (e: oidc.ResponseBodyError) => e.error === error;

/**
 * RBAC at the token endpoint, through real sign-ins (openid-client as the relying party) and real
 * client_credentials grants: a resource server with rbac gives a user's token only the requested
 * scopes the user's roles grant there, a service account's token only its roles' scopes; the
 * roles claim and GET /api/v1/me/access-context say what the roles are.
 */
describe('roles at the token endpoint', () => {
  let ts: TestServer;
  let api: AdminApi;
  let jwks: ReturnType<typeof createLocalJWKSet>;
  let rbacApi: string;
  let plainApi: string;
  let reader: { id: string; name: string };
  let rp: { clientId: string; clientSecret?: string };
  let config: oidc.Configuration;

  before(async () => {
    ts = await startAdminServer();
    api = new AdminApi(ts, await adminToken(ts));
    jwks = createLocalJWKSet(await (await fetch(new URL('/.well-known/jwks.json', ts.issuer))).json());
    rbacApi = `https://orders-${marker()}.example.test`;
    plainApi = `https://catalog-${marker()}.example.test`;
    const rs = await api.post('/resource-servers', { identifier: rbacApi, scopes: ['read', 'write'], rbac: true });
    assert.equal(rs.status, 201, rs.text);
    assert.equal(rs.body.rbac, true);
    assert.equal((await api.post('/resource-servers', { identifier: plainApi, scopes: ['read', 'write'] })).body.rbac, false);
    const role = await api.post('/roles', { name: marker('reader'), permissions: [{ resource: rbacApi, scope: 'read' }, { resource: plainApi, scope: 'read' }] });
    assert.equal(role.status, 201, role.text);
    reader = { id: role.body.id, name: role.body.name };
    rp = await registerClient(ts, {}, true);
    config = await rpConfig(ts, rp);
  });
  after(() => stopAndDestroy(ts));

  const scopeOf = async (token: string, audience: string) => (await jwtVerify(token, jwks, { issuer: ts.issuer, audience })).payload.scope;

  async function userWithRoles(...roleIds: string[]) {
    const user = await createUser(ts);
    if (roleIds.length) assert.equal((await api.post(`/users/${user.id}/roles`, { roleIds })).status, 200);
    return user;
  }

  it("a user's token at an rbac resource server carries only the requested scopes the user's roles grant, after the code and after a refresh", async () => {
    // A role of its own: this test changes it.
    const mine = (await api.post('/roles', { name: marker('mine'), permissions: [{ resource: rbacApi, scope: 'read' }] })).body;
    const user = await userWithRoles(mine.id);
    const { tokens } = await signIn(ts, config, user, { scope: 'openid offline_access read write', prompt: 'consent', params: { resource: rbacApi } });
    assert.equal(await scopeOf(tokens.access_token, rbacApi), 'read', 'write is not granted by any role');
    assert.equal(tokens.scope, 'read');
    const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token!, { resource: rbacApi });
    assert.equal(await scopeOf(refreshed.access_token, rbacApi), 'read');

    // The role changes: the next refresh follows (write added to the role; then the role taken away).
    assert.equal((await api.patch(`/roles/${mine.id}`, { permissions: [{ resource: rbacApi, scope: 'read' }, { resource: rbacApi, scope: 'write' }] })).status, 200);
    const widened = await oidc.refreshTokenGrant(config, refreshed.refresh_token!, { resource: rbacApi });
    assert.equal(await scopeOf(widened.access_token, rbacApi), 'read write');
    const taken = await api.delete(`/users/${user.id}/roles`, { json: { roleIds: [mine.id] } });
    assert.equal(taken.status, 200, taken.text);
    assert.deepEqual(taken.body.data, []);
    const none = await oidc.refreshTokenGrant(config, widened.refresh_token!, { resource: rbacApi });
    assert.equal(await scopeOf(none.access_token, rbacApi), undefined, 'no role: a token without scope');
  });

  it('a user without a granting role gets a token with no scope there; a resource server without rbac ignores roles', async () => {
    const user = await userWithRoles();
    const { tokens } = await signIn(ts, config, user, { scope: 'openid read write', prompt: 'consent', params: { resource: rbacApi } });
    assert.equal(await scopeOf(tokens.access_token, rbacApi), undefined, 'a token, without scope');
    assert.equal(decodeJwt(tokens.access_token).sub, user.id);
    const plain = await signIn(ts, config, user, { scope: 'openid read write', prompt: 'consent', params: { resource: plainApi } });
    assert.equal(await scopeOf(plain.tokens.access_token, plainApi), 'read write', "the user's consent governs where rbac is off");
  });

  it('the roles scope: role names in the ID token, userinfo and the access token; nothing without it', async () => {
    const user = await userWithRoles(reader.id);
    const regular = (await api.get('/roles?pageSize=100')).body.data.find((r: { typeId: string | null }) => r.typeId === '001');
    assert.equal((await api.post(`/users/${user.id}/roles`, { roleIds: [regular.id] })).status, 200);
    const expected = [reader.name, 'regular'].sort();

    const { tokens } = await signIn(ts, config, user, { scope: 'openid roles', prompt: 'consent' });
    assert.deepEqual([...(tokens.claims()!.roles as string[])].sort(), expected);
    assert.equal(tokens.claims()!.tenant_id, 'default');
    const info = await oidc.fetchUserInfo(config, tokens.access_token, user.id);
    assert.deepEqual([...(info.roles as string[])].sort(), expected);
    const introspected = await oidc.tokenIntrospection(config, tokens.access_token);
    assert.deepEqual([...(introspected.roles as string[])].sort(), expected, 'the opaque access token carries them');

    // A JWT access token for a resource server, when roles was granted with it.
    const withResource = await signIn(ts, config, user, { scope: 'openid roles read', prompt: 'consent', params: { resource: rbacApi } });
    const payload = (await jwtVerify(withResource.tokens.access_token, jwks, { audience: rbacApi })).payload;
    assert.deepEqual([...(payload.roles as string[])].sort(), expected);
    assert.equal(payload.tenant_id, 'default', "groundwork's tenant_id stays");

    const without = await signIn(ts, config, user, { scope: 'openid', prompt: 'consent' });
    assert.equal(without.tokens.claims()!.roles, undefined);
    assert.equal((await oidc.fetchUserInfo(config, without.tokens.access_token, user.id)).roles, undefined);
    assert.equal((await oidc.tokenIntrospection(config, without.tokens.access_token)).roles, undefined);
  });

  it('GET /api/v1/me/access-context: tenant, roles, the union of their permissions, memberships; first-party tokens only', async () => {
    const user = await userWithRoles(reader.id);
    const admin = (await api.get('/roles?pageSize=100')).body.data.find((r: { typeId: string | null }) => r.typeId === '100');
    // A second role granting read at the same place again: the permission appears once.
    const again = await api.post('/roles', { name: marker('again'), permissions: [{ resource: rbacApi, scope: 'read' }] });
    assert.equal((await api.post(`/users/${user.id}/roles`, { roleIds: [admin.id, again.body.id] })).status, 200);
    const { tokens } = await signIn(ts, config, user, { scope: 'openid', prompt: 'consent' });
    const res = await callUserApi(ts, 'GET', '/api/v1/me/access-context', tokens.access_token);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const body = res.body!;
    assert.deepEqual(body.tenant, { id: 'default', slug: 'default' });
    assert.deepEqual(
      body.roles.map((r: { name: string }) => r.name).sort(),
      ['admin', again.body.name, reader.name].sort(),
    );
    assert.equal(body.roles.find((r: { name: string }) => r.name === 'admin').typeId, '100');
    assert.equal(body.roles.find((r: { name: string }) => r.name === reader.name).typeId, null);
    assert.deepEqual(body.permissions, [{ resource: plainApi, scope: 'read' }, { resource: rbacApi, scope: 'read' }].sort((a, b) => a.resource.localeCompare(b.resource)));
    assert.deepEqual(body.memberships, [{ tenant: { id: 'default', slug: 'default' }, roles: body.roles.map((r: { name: string }) => r.name) }]);

    // A third-party client's token is refused, as for the rest of account management.
    const thirdParty = await registerClient(ts, {});
    const other = await signIn(ts, await rpConfig(ts, thirdParty), user, { scope: 'openid', prompt: 'consent' });
    assert.equal((await callUserApi(ts, 'GET', '/api/v1/me/access-context', other.tokens.access_token)).status, 403);
    assert.equal((await callUserApi(ts, 'GET', '/api/v1/me/access-context', undefined)).status, 401);
  });

  it('token exchange of a user\'s token for an rbac resource server: no more than the roles grant there', async () => {
    const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
    const opaqueApi = `https://ledger-${marker()}.example.test`;
    assert.equal((await api.post('/resource-servers', { identifier: opaqueApi, scopes: ['read', 'write'], rbac: true, accessTokenFormat: 'opaque' })).status, 201);
    const role = (await api.post('/roles', { name: marker('ledger'), permissions: [{ resource: opaqueApi, scope: 'read' }] })).body;
    const user = await userWithRoles(role.id);
    // The user consents to read and write; the opaque token (no scope cap of its own) is trimmed to read.
    const { tokens } = await signIn(ts, config, user, { scope: 'openid read write', prompt: 'consent', params: { resource: opaqueApi } });
    const service = await registerClient(ts, { grant_types: ['client_credentials', TOKEN_EXCHANGE], redirect_uris: [], post_logout_redirect_uris: [], response_types: [] });
    const serviceConfig = await rpConfig(ts, service);
    const exchange = (params: Record<string, string>) => oidc.genericGrantRequest(serviceConfig, TOKEN_EXCHANGE, {
      subject_token: tokens.access_token, subject_token_type: 'urn:ietf:params:oauth:token-type:access_token', resource: opaqueApi, ...params,
    });
    await assert.rejects(exchange({ scope: 'write' }), refusedWith('invalid_scope'), 'the grant holds write, the roles do not');
    assert.equal((await exchange({})).scope, 'read');
    assert.equal((await api.delete(`/users/${user.id}/roles`, { json: { roleIds: [role.id] } })).status, 200);
    await assert.rejects(exchange({}), refusedWith('invalid_target'), 'no role: nothing to carry there');
  });

  it("a service account's client_credentials token carries its roles' scopes and nothing else; a plain machine client keeps its grant", async () => {
    const created = await api.post('/service-accounts', { name: 'reporting', roleIds: [reader.id] });
    assert.equal(created.status, 201, created.text);
    const sa = await rpConfig(ts, { clientId: created.body.clientId, clientSecret: created.body.clientSecret });
    const token = await oidc.clientCredentialsGrant(sa, { resource: rbacApi, scope: 'read' });
    assert.equal(await scopeOf(token.access_token, rbacApi), 'read');
    assert.equal(decodeJwt(token.access_token).tenant_id, 'default');
    await assert.rejects(oidc.clientCredentialsGrant(sa, { resource: rbacApi, scope: 'read write' }), refusedWith('invalid_scope'));
    // Its roles count at a resource server without rbac too (a service account has no other grant).
    assert.equal(await scopeOf((await oidc.clientCredentialsGrant(sa, { resource: plainApi, scope: 'read' })).access_token, plainApi), 'read');

    // A resource_scopes grant on its client counts for nothing.
    const patched = await api.patch(`/clients/${created.body.clientId}`, { resource_scopes: { [rbacApi]: 'read write' } });
    assert.equal(patched.status, 200, patched.text);
    await assert.rejects(oidc.clientCredentialsGrant(sa, { resource: rbacApi, scope: 'write' }), refusedWith('invalid_scope'));
    // No role at all: no token for the resource server.
    const bare = await api.post('/service-accounts', { name: 'bare' });
    const bareConfig = await rpConfig(ts, { clientId: bare.body.clientId, clientSecret: bare.body.clientSecret });
    await assert.rejects(oidc.clientCredentialsGrant(bareConfig, { resource: rbacApi, scope: 'read' }), refusedWith('invalid_target'));
    // Given the role, it gets read at once.
    assert.equal((await api.post(`/service-accounts/${bare.body.id}/roles`, { roleIds: [reader.id] })).status, 200);
    assert.equal(await scopeOf((await oidc.clientCredentialsGrant(bareConfig, { resource: rbacApi, scope: 'read' })).access_token, rbacApi), 'read');

    // A plain machine client at an rbac resource server: its resource_scopes grant, as before.
    const machine = await registerClient(ts, {
      grant_types: ['client_credentials'], redirect_uris: [], post_logout_redirect_uris: [], response_types: [], resource_scopes: { [rbacApi]: 'read write' },
    });
    const machineConfig = await rpConfig(ts, machine);
    assert.equal(await scopeOf((await oidc.clientCredentialsGrant(machineConfig, { resource: rbacApi, scope: 'read write' })).access_token, rbacApi), 'read write');
  });
});
