import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ADMIN_SCOPES } from '../../src/domain/clients/admin-scopes.ts';
import { AdminApi, adminToken, assertError, marker, startAdminServer } from '../helpers/admin.ts';
import { uniqueEmail } from '../helpers/rp.ts';
import { stopAndDestroy, type TestServer } from '../helpers/server.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const TENANT_SCOPES = ADMIN_SCOPES.filter((s) => s.startsWith('iam.tenants:'));
const machine = { grant_types: ['client_credentials'], response_types: [], redirect_uris: [] };

/** The tenants API over HTTP with real tokens: platform callers only, slugs, seeded roles, deletion rules. */
describe('tenants API', () => {
  let ts: TestServer;
  let api: AdminApi;
  before(async () => {
    ts = await startAdminServer();
    api = new AdminApi(ts, await adminToken(ts));
  });
  after(() => stopAndDestroy(ts));

  const db = () => ts.server.services.db;
  const newTenant = async (name = 'Acme') => {
    const res = await api.post('/tenants', { name, slug: marker('t') });
    assert.equal(res.status, 201, res.text);
    return res.body as { id: string; name: string; slug: string; createdAt: string; updatedAt: string };
  };
  const rowsOf = async (id: string) => db()('tenants').where({ id });

  it('create: 201 {id, name, slug, createdAt, updatedAt} with a UUID id; get by id or slug; list; patch name and slug', async () => {
    const slug = marker('acme');
    const created = await api.post('/tenants', { name: 'Acme Corp', slug });
    assert.equal(created.status, 201, created.text);
    assert.deepEqual(Object.keys(created.body).sort(), ['createdAt', 'id', 'name', 'slug', 'updatedAt']);
    assert.match(created.body.id, UUID);
    assert.equal(created.body.name, 'Acme Corp');
    assert.equal(created.body.slug, slug);
    assert.ok(Math.abs(Date.parse(created.body.createdAt) - Date.now()) < 60_000);

    assert.deepEqual((await api.get(`/tenants/${created.body.id}`)).body, created.body);
    assert.deepEqual((await api.get(`/tenants/${slug}`)).body, created.body);
    assertError(await api.get('/tenants/no-such-tenant'), 404, 'IDENT_TENANT_NOT_FOUND');

    const list = await api.get('/tenants?pageSize=100');
    assert.equal(list.status, 200);
    const slugs = list.body.data.map((t: { slug: string }) => t.slug);
    assert.ok(slugs.includes('default') && slugs.includes(slug), slugs.join(','));
    assert.equal(list.body.total, list.body.data.length);

    const renamed = await api.patch(`/tenants/${slug}`, { name: 'Acme Inc', slug: `${slug}-2` });
    assert.equal(renamed.status, 200, renamed.text);
    assert.equal(renamed.body.id, created.body.id);
    assert.equal(renamed.body.slug, `${slug}-2`);
    assert.equal((await api.get(`/tenants/${slug}-2`)).body.name, 'Acme Inc');
    assertError(await api.get(`/tenants/${slug}`), 404, 'IDENT_TENANT_NOT_FOUND');
  });

  it('the three seeded roles (admin 100, regular 001, guest 000) exist in a new tenant', async () => {
    const t = await newTenant();
    const roles = await db()('roles').where({ tenant_id: t.id }).orderBy('name').select('name', 'type_id');
    assert.deepEqual(roles, [{ name: 'admin', type_id: '100' }, { name: 'guest', type_id: '000' }, { name: 'regular', type_id: '001' }]);
  });

  it('validation: bad slugs and bodies are 400 IDENT_VALIDATION, and nothing is created', async () => {
    const before = Number((await db()('tenants').count({ n: '*' }))[0]!.n);
    for (const body of [
      { name: 'x', slug: 'Upper' },
      { name: 'x', slug: 'a' },
      { name: 'x', slug: 'a'.repeat(64) },
      { name: 'x', slug: '-lead' },
      { name: 'x', slug: 'trail-' },
      { name: 'x', slug: 'has space' },
      { name: 'x', slug: 'under_score' },
      { name: 'x', slug: '3f2b8c1e-7a4d-4e2f-9b6a-1c0d2e3f4a5b' },
      { name: '', slug: 'fine-slug' },
      { slug: 'no-name' },
      { name: 'no slug' },
      { name: 'x', slug: 'extra-field', id: 'mine' },
      { name: 'bad\u0000name', slug: 'nul-name' },
    ]) {
      assertError(await api.post('/tenants', body), 400, 'IDENT_VALIDATION', JSON.stringify(body));
    }
    assert.equal(Number((await db()('tenants').count({ n: '*' }))[0]!.n), before);
    const t = await newTenant();
    assertError(await api.patch(`/tenants/${t.id}`, { slug: 'NOPE' }), 400, 'IDENT_VALIDATION');
    assertError(await api.patch('/tenants/default', { slug: 'renamed-default' }), 400, 'IDENT_VALIDATION');
    assert.equal((await api.patch('/tenants/default', { name: 'Default' })).status, 200, 'the default tenant may be renamed');
  });

  it('a taken slug is 409 IDENT_TENANT_DUPLICATE (on create and on patch)', async () => {
    const a = await newTenant();
    const b = await newTenant();
    assertError(await api.post('/tenants', { name: 'Again', slug: a.slug }), 409, 'IDENT_TENANT_DUPLICATE');
    assertError(await api.post('/tenants', { name: 'Again', slug: 'default' }), 409, 'IDENT_TENANT_DUPLICATE');
    assertError(await api.patch(`/tenants/${b.id}`, { slug: a.slug }), 409, 'IDENT_TENANT_DUPLICATE');
    assert.equal((await rowsOf(b.id))[0].slug, b.slug);
  });

  it('Idempotency-Key on create: the replay answers the same tenant, another body 409', async () => {
    const key = marker('idem');
    const body = { name: 'Once', slug: marker('once') };
    const first = await api.post('/tenants', body, { headers: { 'idempotency-key': key } });
    const second = await api.post('/tenants', body, { headers: { 'idempotency-key': key } });
    assert.equal(first.status, 201);
    assert.equal(second.status, 201);
    assert.equal(second.headers.get('idempotent-replayed'), 'true');
    assert.equal(second.body.id, first.body.id);
    assertError(await api.post('/tenants', { ...body, name: 'Other' }, { headers: { 'idempotency-key': key } }), 409, 'IDENT_IDEMPOTENCY_MISMATCH');
  });

  it('delete: refused (409 IDENT_TENANT_NOT_EMPTY) while it has a user or a client, allowed once they are gone; default never', async () => {
    const t = await newTenant();
    const inT = { headers: { 'x-tenant-id': t.id } };
    const user = await api.post('/users', { email: uniqueEmail('t') }, inT);
    assert.equal(user.status, 201, user.text);
    assertError(await api.delete(`/tenants/${t.id}`), 409, 'IDENT_TENANT_NOT_EMPTY');
    assert.equal((await rowsOf(t.id)).length, 1);

    // A deactivated user no longer holds the tenant; a client does.
    assert.equal((await api.delete(`/users/${user.body.id}`, inT)).status, 200);
    const client = await api.post('/clients', { ...machine, client_name: 'in t' }, inT);
    assert.equal(client.status, 201, client.text);
    assertError(await api.delete(`/tenants/${t.slug}`), 409, 'IDENT_TENANT_NOT_EMPTY');
    assert.equal((await api.delete(`/clients/${client.body.client_id}`, inT)).status, 204);

    // Configuration blocks it too: each is removed on purpose.
    const hook = await api.post('/webhooks', { url: 'https://hooks.example.test/t', events: ['*'] }, inT);
    assert.equal(hook.status, 201, hook.text);
    assertError(await api.delete(`/tenants/${t.id}`), 409, 'IDENT_TENANT_NOT_EMPTY');
    assert.equal((await api.delete(`/webhooks/${hook.body.id}`, inT)).status, 204);

    const gone = await api.delete(`/tenants/${t.id}`);
    assert.equal(gone.status, 204, gone.text);
    assert.equal((await rowsOf(t.id)).length, 0);
    assert.equal((await db()('roles').where({ tenant_id: t.id })).length, 0, 'its roles went with it');
    assert.equal((await db()('users').where({ tenant_id: t.id })).length, 0, 'its deactivated user went with it');
    assert.ok((await db()('events').where({ tenant_id: t.id })).length > 0, 'its events stay');
    assertError(await api.get(`/tenants/${t.id}`), 404, 'IDENT_TENANT_NOT_FOUND');
    assertError(await api.get('/users', { headers: { 'x-tenant-id': t.id } }), 404, 'IDENT_TENANT_NOT_FOUND');

    assertError(await api.delete('/tenants/default'), 409, 'IDENT_TENANT_NOT_EMPTY');
    assert.equal((await rowsOf('default')).length, 1);
  });

  it('only platform callers: a tenant\'s own admin client gets 403 on every tenants operation, and nothing changes', async () => {
    const t = await newTenant();
    // A client of tenant t cannot even be registered with iam.tenants:* scopes.
    const refused = await api.post('/clients', { ...machine, scope: TENANT_SCOPES.join(' ') }, { headers: { 'x-tenant-id': t.id } });
    assertError(refused, 400, 'IDENT_VALIDATION');
    const multi = await api.post('/clients', { ...machine, scope: 'iam.users:read', multi_tenant: true }, { headers: { 'x-tenant-id': t.id } });
    assertError(multi, 400, 'IDENT_VALIDATION');

    // A default-tenant client without iam.tenants:* scopes is no platform caller either.
    const plain = await api.post('/clients', { ...machine, scope: 'iam.users:read' });
    assert.equal(plain.status, 201, plain.text);
    const token = await adminToken(ts, ['iam.users:read'], { id: plain.body.client_id, secret: plain.body.client_secret });
    for (const [method, path] of [['GET', '/tenants'], ['POST', '/tenants'], ['GET', `/tenants/${t.id}`], ['PATCH', `/tenants/${t.id}`], ['DELETE', `/tenants/${t.id}`]] as const) {
      const res = await api.call(method, path, { token, ...(method === 'POST' || method === 'PATCH' ? { json: { name: 'x', slug: marker('x') } } : {}) });
      assertError(res, 403, 'IDENT_FORBIDDEN', `${method} ${path}`);
    }
    // And it may not name another tenant.
    assertError(await api.get('/users', { token, headers: { 'x-tenant-id': t.id } }), 403, 'IDENT_CROSS_TENANT');
    assert.deepEqual((await rowsOf(t.id)).map((r) => r.name), ['Acme']);
  });
});

describe('POST /api/v1/users per tenant and minute (USERS_CREATE_RATE_LIMIT_PER_MINUTE)', () => {
  let ts: TestServer;
  let api: AdminApi;
  before(async () => {
    ts = await startAdminServer({ USERS_CREATE_RATE_LIMIT_PER_MINUTE: '3' });
    api = new AdminApi(ts, await adminToken(ts));
  });
  after(() => stopAndDestroy(ts));

  const tenant = async () => (await api.post('/tenants', { name: 'Limited', slug: marker('lim') })).body.id as string;
  const usersIn = async (tenantId: string) => Number((await ts.server.services.db('users').where({ tenant_id: tenantId }).count({ n: '*' }))[0]!.n);

  it('the limit+1st creation in a minute is 429 IDENT_RATE_LIMITED with Retry-After and creates nothing; another tenant is unaffected', async () => {
    const x = await tenant();
    const y = await tenant();
    for (let i = 0; i < 3; i++) assert.equal((await api.post('/users', { email: uniqueEmail('x') }, { headers: { 'x-tenant-id': x } })).status, 201);
    const limited = await api.post('/users', { email: uniqueEmail('x') }, { headers: { 'x-tenant-id': x } });
    assertError(limited, 429, 'IDENT_RATE_LIMITED');
    const wait = Number(limited.headers.get('retry-after'));
    assert.ok(wait >= 1 && wait <= 60, `Retry-After ${limited.headers.get('retry-after')}`);
    assert.equal(await usersIn(x), 3);
    // A second admin client of the same tenant shares the budget: it is the tenant's.
    const other = await api.post('/clients', { ...machine, scope: 'iam.users:create' }, { headers: { 'x-tenant-id': x } });
    const otherToken = await adminToken(ts, ['iam.users:create'], { id: other.body.client_id, secret: other.body.client_secret });
    assertError(await api.post('/users', { email: uniqueEmail('x') }, { token: otherToken }), 429, 'IDENT_RATE_LIMITED');

    for (let i = 0; i < 3; i++) assert.equal((await api.post('/users', { email: uniqueEmail('y') }, { headers: { 'x-tenant-id': y } })).status, 201);
    assert.equal(await usersIn(y), 3);
  });

  it('an Idempotency-Key replay does not count again', async () => {
    const z = await tenant();
    const headers = { 'x-tenant-id': z, 'idempotency-key': marker('k') };
    const body = { email: uniqueEmail('z') };
    for (let i = 0; i < 4; i++) assert.equal((await api.post('/users', body, { headers })).status, 201);
    for (let i = 0; i < 2; i++) assert.equal((await api.post('/users', { email: uniqueEmail('z') }, { headers: { 'x-tenant-id': z } })).status, 201);
    assertError(await api.post('/users', { email: uniqueEmail('z') }, { headers: { 'x-tenant-id': z } }), 429, 'IDENT_RATE_LIMITED');
    assert.equal(await usersIn(z), 3);
  });
});
