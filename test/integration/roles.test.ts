import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { AdminApi, adminToken, assertError, marker, startAdminServer, tokenRequest } from '../helpers/admin.ts';
import { createUser, uniqueEmail } from '../helpers/rp.ts';
import { stopAndDestroy, type TestServer } from '../helpers/server.ts';
import { adminAudience } from '../../src/domain/clients/admin-scopes.ts';

const UNKNOWN_UUID = '00000000-0000-4000-8000-00000000abcd';

/**
 * /api/v1/roles and role assignment over HTTP with real admin tokens: CRUD, validation against the
 * registered resource servers, the seeded roles, and the tenant boundary (a caller of another tenant
 * touching this one's roles, users or service accounts gets 403 IDENT_CROSS_TENANT and changes nothing).
 */
describe('roles API', () => {
  let ts: TestServer;
  let api: AdminApi;
  let rsId: string;
  let identifier: string;
  /** A second tenant, made in the database (the tenants API is built elsewhere), with a role, a user and a service account. */
  const other = { tenant: `t-${marker()}`, roleId: randomUUID(), userId: randomUUID(), serviceAccountId: randomUUID(), clientId: `sa-${marker()}` };
  /** An admin client of the other tenant, and its API. */
  let otherApi: AdminApi;

  before(async () => {
    ts = await startAdminServer();
    api = new AdminApi(ts, await adminToken(ts));
    identifier = `https://roles-${marker()}.example.test`;
    const rs = await api.post('/resource-servers', { identifier, scopes: ['read', 'write'] });
    assert.equal(rs.status, 201, rs.text);
    rsId = rs.body.id;

    const db = ts.server.services.db;
    await db('tenants').insert({ id: other.tenant, name: 'Other', slug: other.tenant });
    await db('roles').insert({ id: other.roleId, tenant_id: other.tenant, name: 'other-role', permissions: JSON.stringify([]) });
    await db('users').insert({ id: other.userId, tenant_id: other.tenant, email: uniqueEmail('other') });
    await db('clients').insert({ client_id: other.clientId, tenant_id: other.tenant, metadata: JSON.stringify({ grant_types: ['client_credentials'] }), first_party: false });
    await db('service_accounts').insert({ id: other.serviceAccountId, tenant_id: other.tenant, client_id: other.clientId, name: 'other sa' });
    const otherAdmin = await ts.server.services.clients.register({ tenantId: other.tenant }, {
      metadata: {
        grant_types: ['client_credentials'], response_types: [], redirect_uris: [],
        scope: 'iam.roles:read iam.roles:create iam.roles:update iam.roles:delete iam.users:read',
      },
    });
    const token = await tokenRequest(ts, { id: otherAdmin.client_id, secret: otherAdmin.client_secret as string }, {
      grant_type: 'client_credentials', resource: adminAudience(ts.issuer), scope: 'iam.roles:read iam.roles:create iam.roles:update iam.roles:delete',
    });
    assert.equal(token.status, 200, JSON.stringify(token.body));
    otherApi = new AdminApi(ts, token.body.access_token);
  });
  after(() => stopAndDestroy(ts));

  const roleRow = (id: string) => ts.server.services.db('roles').where({ id }).first();
  const heldBy = async (userId: string) => (await ts.server.services.db('user_roles').where({ user_id: userId })).map((r) => r.role_id).sort();

  it('create, read, list, change and delete a role of the tenant', async () => {
    const name = marker('editors');
    const created = await api.post('/roles', { name, description: 'Edit things', permissions: [{ resource: identifier, scope: 'write' }, { resource: identifier, scope: 'write' }] });
    assert.equal(created.status, 201, created.text);
    assert.deepEqual(Object.keys(created.body).sort(), ['createdAt', 'description', 'id', 'name', 'permissions', 'typeId', 'updatedAt']);
    assert.equal(created.body.name, name);
    assert.equal(created.body.typeId, null);
    assert.deepEqual(created.body.permissions, [{ resource: identifier, scope: 'write' }], 'the same permission once');
    assert.equal((await roleRow(created.body.id)).tenant_id, 'default');

    assert.deepEqual((await api.get(`/roles/${created.body.id}`)).body, created.body);
    const list = await api.get('/roles?pageSize=100');
    assert.equal(list.status, 200);
    assert.ok(list.body.data.some((r: { id: string }) => r.id === created.body.id));
    assert.ok(!list.body.data.some((r: { id: string }) => r.id === other.roleId), "another tenant's roles are not listed");
    assert.equal(list.body.total, list.body.data.length);
    const page = await api.get('/roles?page=1&pageSize=1');
    assert.equal(page.body.data.length, 1);
    assert.equal(page.body.total, list.body.total);

    const renamed = await api.patch(`/roles/${created.body.id}`, { name: `${name}-2`, description: null, permissions: [{ resource: identifier, scope: 'read' }] });
    assert.equal(renamed.status, 200, renamed.text);
    assert.equal(renamed.body.name, `${name}-2`);
    assert.equal(renamed.body.description, null);
    assert.deepEqual(renamed.body.permissions, [{ resource: identifier, scope: 'read' }]);

    assertError(await api.post('/roles', { name: `${name}-2`, permissions: [] }), 409, 'IDENT_ROLE_DUPLICATE');
    const second = await api.post('/roles', { name: `${name}-3`, permissions: [] });
    assertError(await api.patch(`/roles/${second.body.id}`, { name: `${name}-2` }), 409, 'IDENT_ROLE_DUPLICATE');

    assert.equal((await api.delete(`/roles/${created.body.id}`)).status, 204);
    assertError(await api.get(`/roles/${created.body.id}`), 404, 'IDENT_ROLE_NOT_FOUND');
    assertError(await api.delete(`/roles/${created.body.id}`), 404, 'IDENT_ROLE_NOT_FOUND');
    assertError(await api.get('/roles/not-a-uuid'), 404, 'IDENT_ROLE_NOT_FOUND');
  });

  it('permissions must name a registered resource server and a scope it defines; bodies are validated', async () => {
    const name = marker('bad');
    assertError(await api.post('/roles', { name, permissions: [{ resource: 'https://nowhere.example.test', scope: 'read' }] }), 400, 'IDENT_VALIDATION');
    assertError(await api.post('/roles', { name, permissions: [{ resource: identifier, scope: 'delete' }] }), 400, 'IDENT_VALIDATION');
    assertError(await api.post('/roles', { name, permissions: [{ resource: identifier, scope: 'read', extra: 1 }] }), 400, 'IDENT_VALIDATION');
    assertError(await api.post('/roles', { name, permissions: [{ resource: identifier, scope: 'two words' }] }), 400, 'IDENT_VALIDATION');
    assertError(await api.post('/roles', { name: '', permissions: [] }), 400, 'IDENT_VALIDATION');
    assertError(await api.post('/roles', { name: 'a\u0007b', permissions: [] }), 400, 'IDENT_VALIDATION');
    assertError(await api.post('/roles', { name }), 400, 'IDENT_VALIDATION');
    assertError(await api.post('/roles', { name, permissions: [], typeId: '100' }), 400, 'IDENT_VALIDATION');
    assertError(await api.post('/roles', { name, permissions: [{ resource: adminAudience(ts.issuer), scope: 'iam.users:read' }] }), 400, 'IDENT_VALIDATION');
    const ok = await api.post('/roles', { name, permissions: [] });
    assert.equal(ok.status, 201);
    assertError(await api.patch(`/roles/${ok.body.id}`, { permissions: [{ resource: identifier, scope: 'nope' }] }), 400, 'IDENT_VALIDATION');
    assert.deepEqual((await api.get(`/roles/${ok.body.id}`)).body.permissions, [], 'a refused change changes nothing');
    // A scope the resource server no longer defines stays in the role harmlessly (tokens get only defined scopes).
    const rs2 = await api.post('/resource-servers', { identifier: `https://shrinking-${marker()}.example.test`, scopes: ['a', 'b'] });
    const holding = await api.post('/roles', { name: marker('holding'), permissions: [{ resource: rs2.body.identifier, scope: 'b' }] });
    assert.equal((await api.patch(`/resource-servers/${rs2.body.id}`, { scopes: ['a'] })).status, 200);
    assert.equal((await api.patch(`/roles/${holding.body.id}`, { description: 'still here' })).status, 200);
    void rsId;
  });

  it('the seeded roles admin, regular and guest carry their typeId; their permissions change, not their name, and they stay', async () => {
    const seeded = (await api.get('/roles?pageSize=100')).body.data.filter((r: { typeId: string | null }) => r.typeId !== null);
    assert.deepEqual(seeded.map((r: { name: string; typeId: string }) => `${r.name}:${r.typeId}`).sort(), ['admin:100', 'guest:000', 'regular:001']);
    const admin = seeded.find((r: { name: string }) => r.name === 'admin');
    const changed = await api.patch(`/roles/${admin.id}`, { description: 'Operators', permissions: [{ resource: identifier, scope: 'write' }] });
    assert.equal(changed.status, 200, changed.text);
    assert.equal(changed.body.typeId, '100');
    assert.equal((await api.patch(`/roles/${admin.id}`, { name: 'admin' })).status, 200, 'the same name is no rename');
    assertError(await api.patch(`/roles/${admin.id}`, { name: 'superuser' }), 409, 'IDENT_ROLE_BUILT_IN');
    assertError(await api.delete(`/roles/${admin.id}`), 409, 'IDENT_ROLE_BUILT_IN');
    assert.equal((await roleRow(admin.id)).name, 'admin');
  });

  it('users: assign, list and take away roles; each change is one event', async () => {
    const user = await createUser(ts);
    const a = (await api.post('/roles', { name: marker('a'), permissions: [] })).body;
    const b = (await api.post('/roles', { name: marker('b'), permissions: [] })).body;
    const given = await api.post(`/users/${user.id}/roles`, { roleIds: [a.id, b.id] });
    assert.equal(given.status, 200, given.text);
    assert.deepEqual(given.body.data.map((r: { id: string }) => r.id).sort(), [a.id, b.id].sort());
    assert.equal((await api.post(`/users/${user.id}/roles`, { roleIds: [a.id] })).body.data.length, 2, 'giving a held role again changes nothing');
    assert.deepEqual((await api.get(`/users/${user.id}/roles`)).body, given.body);
    const taken = await api.delete(`/users/${user.id}/roles`, { json: { roleIds: [a.id] } });
    assert.equal(taken.status, 200, taken.text);
    assert.deepEqual(taken.body.data.map((r: { id: string }) => r.id), [b.id]);

    const events = await ts.server.services.db('events').where({ type: 'user.roles_changed', target_id: user.id }).orderBy('seq');
    assert.equal(events.length, 2, 'the no-op records nothing');
    const payload = (e: { payload: unknown }) => (typeof e.payload === 'string' ? JSON.parse(e.payload) : e.payload);
    assert.deepEqual(payload(events[0]).added.map((r: { id: string }) => r.id).sort(), [a.id, b.id].sort());
    assert.deepEqual(payload(events[1]).removed, [{ id: a.id, name: a.name }]);
    assert.equal(events[1].actor_id, 'admin');

    // Validation and unknown ids: nothing changes.
    assertError(await api.post(`/users/${user.id}/roles`, { roleIds: [] }), 400, 'IDENT_VALIDATION');
    assertError(await api.post(`/users/${user.id}/roles`, { roleIds: ['nope'] }), 400, 'IDENT_VALIDATION');
    assertError(await api.post(`/users/${user.id}/roles`, { roleIds: [UNKNOWN_UUID, a.id] }), 404, 'IDENT_ROLE_NOT_FOUND');
    assertError(await api.post(`/users/${UNKNOWN_UUID}/roles`, { roleIds: [a.id] }), 404, 'IDENT_USER_NOT_FOUND');
    assertError(await api.get(`/users/${UNKNOWN_UUID}/roles`), 404, 'IDENT_USER_NOT_FOUND');
    assertError(await api.delete(`/users/${user.id}/roles`, { raw: '{"roleIds": [', headers: { 'content-type': 'application/json' } }), 400, 'IDENT_VALIDATION');
    assert.deepEqual(await heldBy(user.id), [b.id]);

    // A deleted role is taken from its holders.
    assert.equal((await api.delete(`/roles/${b.id}`)).status, 204);
    assert.deepEqual((await api.get(`/users/${user.id}/roles`)).body.data, []);
  });

  it("another tenant's role, user or service account: 403 IDENT_CROSS_TENANT, and nothing changes", async () => {
    const user = await createUser(ts);
    const mine = (await api.post('/roles', { name: marker('mine'), permissions: [] })).body;
    const before = await roleRow(other.roleId);
    assertError(await api.get(`/roles/${other.roleId}`), 403, 'IDENT_CROSS_TENANT');
    assertError(await api.patch(`/roles/${other.roleId}`, { name: 'taken over' }), 403, 'IDENT_CROSS_TENANT');
    assertError(await api.delete(`/roles/${other.roleId}`), 403, 'IDENT_CROSS_TENANT');
    assertError(await api.post(`/users/${user.id}/roles`, { roleIds: [mine.id, other.roleId] }), 403, 'IDENT_CROSS_TENANT');
    assertError(await api.post(`/users/${other.userId}/roles`, { roleIds: [mine.id] }), 403, 'IDENT_CROSS_TENANT');
    assertError(await api.delete(`/users/${other.userId}/roles`, { json: { roleIds: [mine.id] } }), 403, 'IDENT_CROSS_TENANT');
    assertError(await api.get(`/users/${other.userId}/roles`), 403, 'IDENT_CROSS_TENANT');
    assertError(await api.post(`/service-accounts/${other.serviceAccountId}/roles`, { roleIds: [mine.id] }), 403, 'IDENT_CROSS_TENANT');
    assertError(await api.get(`/service-accounts/${other.serviceAccountId}/roles`), 403, 'IDENT_CROSS_TENANT');
    assert.deepEqual(await roleRow(other.roleId), before);
    assert.deepEqual(await heldBy(user.id), []);
    assert.deepEqual(await heldBy(other.userId), []);
    assert.equal((await ts.server.services.db('service_account_roles').where({ service_account_id: other.serviceAccountId })).length, 0);

    // The other tenant's own admin client sees its tenant only, and cannot reach this one's.
    const theirs = await otherApi.get('/roles?pageSize=100');
    assert.equal(theirs.status, 200, theirs.text);
    assert.deepEqual(theirs.body.data.map((r: { id: string }) => r.id), [other.roleId]);
    assertError(await otherApi.get(`/roles/${mine.id}`), 403, 'IDENT_CROSS_TENANT');
    assertError(await otherApi.delete(`/roles/${mine.id}`), 403, 'IDENT_CROSS_TENANT');
    assertError(await otherApi.post(`/users/${user.id}/roles`, { roleIds: [other.roleId] }), 403, 'IDENT_CROSS_TENANT');
    assertError(await otherApi.get('/roles', { headers: { 'x-tenant-id': 'default' } }), 403, 'IDENT_CROSS_TENANT');
    const made = await otherApi.post('/roles', { name: 'theirs', permissions: [{ resource: identifier, scope: 'read' }] });
    assert.equal(made.status, 201, `a default-tenant resource server is shared: ${made.text}`);
    assert.equal((await roleRow(made.body.id)).tenant_id, other.tenant);
    assert.equal((await otherApi.post(`/users/${other.userId}/roles`, { roleIds: [made.body.id] })).status, 200);
    assert.deepEqual(await heldBy(other.userId), [made.body.id]);
    assert.equal((await roleRow(mine.id)).name, mine.name);

    // A platform caller (the bootstrap client holds iam.tenants:*) acts in the other tenant by naming it.
    const asPlatform = await api.get('/roles?pageSize=100', { headers: { 'x-tenant-id': other.tenant } });
    assert.equal(asPlatform.status, 200);
    assert.deepEqual(asPlatform.body.data.map((r: { id: string }) => r.id).sort(), [other.roleId, made.body.id].sort());
    assert.equal((await api.get(`/roles/${other.roleId}`, { headers: { 'x-tenant-id': other.tenant } })).status, 200);
  });

  it('a new tenant gets the seeded roles from seedTenant (for the tenants API), once', async () => {
    const tenant = `t-${marker()}`;
    const db = ts.server.services.db;
    await db.transaction(async (trx) => {
      await trx('tenants').insert({ id: tenant, name: 'Seeded', slug: tenant });
      await ts.server.services.access.roles.seedTenant(tenant, trx);
      await ts.server.services.access.roles.seedTenant(tenant, trx);
    });
    const rows = await db('roles').where({ tenant_id: tenant }).orderBy('type_id');
    assert.deepEqual(rows.map((r) => `${r.name}:${r.type_id}`), ['guest:000', 'regular:001', 'admin:100']);
  });

  it('resource servers take and show rbac', async () => {
    const created = await api.post('/resource-servers', { identifier: `https://rbac-${marker()}.example.test`, scopes: ['x'], rbac: true });
    assert.equal(created.status, 201, created.text);
    assert.equal(created.body.rbac, true);
    const off = await api.patch(`/resource-servers/${created.body.id}`, { rbac: false });
    assert.equal(off.body.rbac, false);
    assertError(await api.patch(`/resource-servers/${created.body.id}`, { rbac: 'yes' }), 400, 'IDENT_VALIDATION');
  });
});
