import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ADMIN_SCOPES } from '../../src/domain/clients/admin-scopes.ts';
import { adminOperationSpecs } from '../../src/http/api/admin-operations.ts';
import { AdminApi, adminToken, assertError, marker, startAdminServer, type ApiAnswer } from '../helpers/admin.ts';
import { uniqueEmail } from '../helpers/rp.ts';
import { stopAndDestroy, type TestServer } from '../helpers/server.ts';
import { waitFor } from '../helpers/wait.ts';

/**
 * Two tenants, A and B, each with one of every kind of object, and B's own admin client (registered
 * in B, holding every iam.* scope a tenant client may hold). Whatever B's client names of A's, by id
 * in a path or by X-Tenant-Id, is refused with 403 and leaves A's rows exactly as they were; lists,
 * the audit trail and the live stream show B only its own.
 */

const machine = { grant_types: ['client_credentials'], response_types: [], redirect_uris: [] };
const TENANT_CLIENT_SCOPES = ADMIN_SCOPES.filter((s) => !s.startsWith('iam.tenants:'));

/** A valid body for every operation that takes one, so validation never answers before the tenant check. */
const BODIES: Record<string, unknown> = {
  'users update': { givenName: 'Hijacked' },
  'clients update': { client_name: 'Hijacked' },
  'resource-servers update': { name: 'Hijacked' },
  'identity-providers update': { displayName: 'Hijacked' },
  'webhooks update': { description: 'Hijacked' },
  'tenants update': { name: 'Hijacked' },
  'roles update': { description: 'Hijacked' },
  'api-keys rotate': { overlapSeconds: 0 },
  'service-accounts rotate': { overlapSeconds: 0 },
};

/** Bodies that name more of the tenant's objects (its role, its other user). */
const bodyNaming = (t: Objects): Record<string, unknown> => ({
  'users merge': { sourceUserId: t.otherUser },
  'users assign-roles': { roleIds: [t.role] },
  'users unassign-roles': { roleIds: [t.role] },
  'service-accounts assign-roles': { roleIds: [t.role] },
  'service-accounts unassign-roles': { roleIds: [t.role] },
});

/**
 * Operations a tenant's client cannot call at all, whatever it names: the tenants API is the
 * platform's (its scopes are refused to clients outside the default tenant).
 */
const PLATFORM_ONLY = new Set(['tenants get', 'tenants update', 'tenants delete']);

interface Objects {
  tenant: { id: string; slug: string };
  user: string;
  client: string;
  resourceServer: string;
  identityProvider: string;
  webhook: string;
  delivery: string;
  otherUser: string;
  role: string;
  apiKey: string;
  serviceAccount: string;
  identityProviderAlias: string;
}

describe('tenant isolation of the admin API', () => {
  let ts: TestServer;
  let platform: AdminApi;
  let a: Objects;
  let b: Objects;
  /** B's own admin client's token (tenant_id B): a tenant caller, not a platform one. */
  let bToken: string;
  let bApi: AdminApi;

  before(async () => {
    ts = await startAdminServer({
      // Deliveries to the unreachable receivers fail fast and for good, so A's rows stop changing.
      WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
      WEBHOOK_POLL_INTERVAL_MS: '50',
      WEBHOOK_RETRY_BASE_MS: '50',
      WEBHOOK_RETRY_MAX_MS: '100',
      WEBHOOK_RETRY_WINDOW_SECONDS: '1',
      WEBHOOK_TIMEOUT_MS: '500',
    });
    platform = new AdminApi(ts, await adminToken(ts));
    a = await populate('ta');
    b = await populate('tb');
    const created = await platform.post('/clients', { ...machine, client_name: 'B admin', scope: TENANT_CLIENT_SCOPES.join(' ') }, { headers: { 'x-tenant-id': b.tenant.id } });
    assert.equal(created.status, 201, created.text);
    bToken = await adminToken(ts, TENANT_CLIENT_SCOPES, { id: created.body.client_id, secret: created.body.client_secret });
    bApi = new AdminApi(ts, bToken);
    // A's webhook has given up on its delivery (and turned itself off): nothing of A's moves by itself now.
    for (const t of [a, b]) {
      await waitFor('the delivery to fail for good', async () => (await ts.server.services.db('webhook_deliveries').where({ id: t.delivery }).first())?.status === 'failed', 20_000);
      await waitFor('the webhook to be turned off', async () => (await ts.server.services.db('webhooks').where({ id: t.webhook }).first())?.enabled === false, 20_000);
    }
  });
  after(() => stopAndDestroy(ts));

  /** A tenant with one of everything, made by the platform client acting in it (X-Tenant-Id). */
  async function populate(prefix: string): Promise<Objects> {
    const tenant = await platform.post('/tenants', { name: prefix, slug: marker(prefix) });
    assert.equal(tenant.status, 201, tenant.text);
    const inT = { headers: { 'x-tenant-id': tenant.body.slug } };
    const ok = (res: ApiAnswer) => {
      assert.ok(res.status === 201, res.text);
      return res.body;
    };
    const webhook = ok(await platform.post('/webhooks', { url: 'http://127.0.0.1:9/hook', events: ['user.*'] }, inT));
    const user = ok(await platform.post('/users', { email: uniqueEmail(prefix), password: 'a long enough password 1', givenName: 'Own' }, inT));
    const client = ok(await platform.post('/clients', { ...machine, client_name: `${prefix} machine`, scope: 'iam.users:read' }, inT));
    const resourceServer = ok(await platform.post('/resource-servers', { identifier: `https://${marker(prefix)}.example.test`, scopes: ['read'] }, inT));
    const identityProvider = ok(await platform.post('/identity-providers', {
      alias: marker(prefix), type: 'oidc', displayName: `${prefix} SSO`, issuer: 'https://sso.example.test', clientId: 'c', clientSecret: 's',
    }, inT));
    const otherUser = ok(await platform.post('/users', { email: uniqueEmail(`${prefix}-other`) }, inT));
    const role = ok(await platform.post('/roles', { name: marker(`${prefix}-role`), permissions: [{ resource: resourceServer.identifier, scope: 'read' }] }, inT));
    assert.equal((await platform.post(`/users/${user.id}/roles`, { roleIds: [role.id] }, inT)).status, 200);
    const apiKey = ok(await platform.post('/api-keys', { name: `${prefix} key`, scopes: ['iam.users:read'] }, inT));
    const serviceAccount = ok(await platform.post('/service-accounts', { name: `${prefix} robot`, roleIds: [role.id] }, inT));
    const deliveries = await platform.get(`/webhooks/${webhook.id}/deliveries`, inT);
    assert.equal(deliveries.status, 200, deliveries.text);
    assert.ok(deliveries.body.data.length >= 1, 'user.created was queued for the tenant\'s webhook');
    return {
      tenant: { id: tenant.body.id, slug: tenant.body.slug },
      user: user.id, client: client.client_id, resourceServer: resourceServer.id, identityProvider: identityProvider.id,
      webhook: webhook.id, delivery: deliveries.body.data[0].id,
      identityProviderAlias: identityProvider.alias, otherUser: otherUser.id, role: role.id, apiKey: apiKey.id, serviceAccount: serviceAccount.id,
    };
  }

  /** Every row of a tenant, in every table that has its objects (what must not change). */
  async function rowsOf(t: Objects): Promise<string> {
    const db = ts.server.services.db;
    const tables = ['users', 'clients', 'resource_servers', 'identity_providers', 'webhooks', 'mfa_factors', 'roles', 'api_keys', 'service_accounts', 'events'];
    const out: Record<string, unknown> = {};
    for (const table of tables) out[table] = await db(table).where({ tenant_id: t.tenant.id }).orderBy(table === 'clients' ? 'client_id' : 'id');
    out.tenant = await db('tenants').where({ id: t.tenant.id });
    out.deliveries = await db('webhook_deliveries').where({ webhook_id: t.webhook }).orderBy('id');
    out.userRoles = await db('user_roles').whereIn('user_id', [t.user, t.otherUser]).orderBy(['user_id', 'role_id']);
    out.serviceAccountRoles = await db('service_account_roles').where({ service_account_id: t.serviceAccount }).orderBy('role_id');
    return JSON.stringify(out);
  }

  /** The object of `t` a path parameter names, by the collection it follows; fails for any it does not know. */
  function fixture(t: Objects, command: string, path: string, param: string): string {
    const collection = path.split('/')[1];
    const byCollection: Record<string, Record<string, string>> = {
      users: { id: t.user },
      clients: { clientId: t.client },
      'resource-servers': { id: t.resourceServer },
      'identity-providers': { id: t.identityProvider },
      webhooks: { id: t.webhook, deliveryId: t.delivery },
      tenants: { id: t.tenant.id },
      roles: { id: t.role },
      'api-keys': { id: t.apiKey },
      'service-accounts': { id: t.serviceAccount },
    };
    const value = byCollection[collection!]?.[param];
    if (value === undefined) assert.fail(`no fixture of tenant A for :${param} of ${command} (${path}): add one to tenant-isolation.test.ts`);
    return value;
  }

  it('every operation that names an object by id: B\'s admin client naming A\'s gets 403 IDENT_CROSS_TENANT, and A\'s rows do not change', async () => {
    const withParams = Object.entries(adminOperationSpecs).filter(([, spec]) => spec.path.includes(':'));
    assert.ok(withParams.length >= 25, 'the table has its operations');
    for (const [command, spec] of withParams) {
      const url = spec.path.replace(/:(\w+)/g, (_, param: string) => encodeURIComponent(fixture(a, command, spec.path, param)));
      const hasBody = 'body' in spec && spec.body !== undefined;
      const body = BODIES[command] ?? bodyNaming(a)[command];
      if (hasBody && body === undefined) assert.fail(`no body for ${command}: add a valid one to BODIES in tenant-isolation.test.ts`);
      const before = await rowsOf(a);
      const res = await bApi.call(spec.method.toUpperCase(), url, hasBody ? { json: body } : {});
      if (PLATFORM_ONLY.has(command)) assertError(res, 403, 'IDENT_FORBIDDEN', `${command} ${url}`);
      else assertError(res, 403, 'IDENT_CROSS_TENANT', `${command} ${url}`);
      assert.equal(await rowsOf(a), before, `${command}: A's rows are unchanged`);
    }
  });

  it('B\'s own objects with A\'s named in the body (a role to give, a user to merge): 403 IDENT_CROSS_TENANT, and nothing changes', async () => {
    const before = await rowsOf(a);
    const beforeB = await rowsOf(b);
    const calls: Array<[string, string, unknown]> = [
      ['POST', `/users/${b.user}/roles`, { roleIds: [a.role] }],
      ['DELETE', `/users/${b.user}/roles`, { roleIds: [a.role] }],
      ['POST', `/service-accounts/${b.serviceAccount}/roles`, { roleIds: [a.role] }],
      ['POST', `/users/${b.user}/merge`, { sourceUserId: a.otherUser }],
      ['POST', '/service-accounts', { name: 'with A\'s role', roleIds: [a.role] }],
    ];
    for (const [method, url, json] of calls) {
      assertError(await bApi.call(method, url, { json }), 403, 'IDENT_CROSS_TENANT', `${method} ${url}`);
    }
    assert.equal(await rowsOf(a), before);
    assert.equal(await rowsOf(b), beforeB);
  });

  it('B\'s client naming tenant A in X-Tenant-Id: 403 IDENT_CROSS_TENANT on every operation, and nothing changes', async () => {
    const before = await rowsOf(a);
    const beforeB = await rowsOf(b);
    for (const [command, spec] of Object.entries(adminOperationSpecs)) {
      const url = spec.path.replace(/:(\w+)/g, (_, param: string) => encodeURIComponent(fixture(b, command, spec.path, param)));
      const hasBody = 'body' in spec && spec.body !== undefined;
      const body = BODIES[command] ?? bodyNaming(b)[command] ?? (command === 'users create' ? { email: uniqueEmail('x') } : {});
      for (const named of [a.tenant.id, a.tenant.slug]) {
        const res = await bApi.call(spec.method.toUpperCase(), url, { headers: { 'x-tenant-id': named }, ...(hasBody ? { json: body } : {}) });
        assertError(res, 403, 'IDENT_CROSS_TENANT', `${command} with X-Tenant-Id ${named}`);
      }
    }
    // An unknown tenant is no different for a tenant caller (it learns nothing).
    assertError(await bApi.get('/users', { headers: { 'x-tenant-id': 'no-such-tenant' } }), 403, 'IDENT_CROSS_TENANT');
    // Naming its own tenant is fine.
    assert.equal((await bApi.get('/users', { headers: { 'x-tenant-id': b.tenant.slug } })).status, 200);
    assert.equal(await rowsOf(a), before);
    assert.equal(await rowsOf(b), beforeB);
  });

  it('lists from B show only B\'s objects; creates by B land in B', async () => {
    const listed = async (path: string, key = 'id') => ((await bApi.get(`${path}?pageSize=100`)).body.data as Array<Record<string, string>>).map((r) => r[key]);
    assert.deepEqual((await listed('/users')).sort(), [b.user, b.otherUser].sort());
    assert.ok(!(await listed('/roles')).includes(a.role));
    assert.deepEqual(await listed('/api-keys'), [b.apiKey]);
    assert.deepEqual(await listed('/service-accounts'), [b.serviceAccount]);
    const clients = await listed('/clients', 'client_id');
    assert.ok(clients.includes(b.client) && !clients.includes(a.client), clients.join(','));
    assert.ok(!clients.includes('admin') && !clients.includes('account-console'), 'the built-in clients are the default tenant\'s');
    assert.deepEqual(await listed('/resource-servers'), [b.resourceServer]);
    assert.deepEqual(await listed('/identity-providers'), [b.identityProvider]);
    assert.deepEqual(await listed('/webhooks'), [b.webhook]);

    const user = await bApi.post('/users', { email: uniqueEmail('b-own') });
    assert.equal(user.status, 201, user.text);
    const db = ts.server.services.db;
    assert.equal((await db('users').where({ id: user.body.id }).first()).tenant_id, b.tenant.id);
    const client = await bApi.post('/clients', { ...machine, client_name: 'made by B' });
    assert.equal(client.status, 201, client.text);
    assert.equal((await db('clients').where({ client_id: client.body.client_id }).first()).tenant_id, b.tenant.id);
    // An alias names the provider's URLs in one issuer: A's is taken for B too, and A's stays A's.
    const sameAlias = await bApi.post('/identity-providers', {
      alias: a.identityProviderAlias, type: 'oidc', displayName: 'B copy', issuer: 'https://sso.example.test', clientId: 'c', clientSecret: 's',
    });
    assertError(sameAlias, 409, 'IDENT_IDP_DUPLICATE');
    const rs = await bApi.post('/resource-servers', { identifier: `https://${marker('bown')}.example.test`, scopes: ['x'] });
    assert.equal((await db('resource_servers').where({ id: rs.body.id }).first()).tenant_id, b.tenant.id);
  });

  it('the platform client acts in default without X-Tenant-Id, and in B with it', async () => {
    const inDefault = (await platform.get('/users?pageSize=100')).body.data.map((u: { id: string }) => u.id);
    assert.ok(!inDefault.includes(a.user) && !inDefault.includes(b.user));
    const inB = (await platform.get('/users?pageSize=100', { headers: { 'x-tenant-id': b.tenant.id } })).body.data.map((u: { id: string }) => u.id);
    assert.ok(inB.includes(b.user) && !inB.includes(a.user));
    assert.equal((await platform.get(`/users/${a.user}`, { headers: { 'x-tenant-id': a.tenant.slug } })).status, 200);
    assertError(await platform.get(`/users/${a.user}`), 403, 'IDENT_CROSS_TENANT', 'in default, A\'s user is another tenant\'s');
    assertError(await platform.get(`/users/${a.user}`, { headers: { 'x-tenant-id': b.tenant.id } }), 403, 'IDENT_CROSS_TENANT');
    assertError(await platform.get('/users', { headers: { 'x-tenant-id': 'no-such-tenant' } }), 404, 'IDENT_TENANT_NOT_FOUND');
  });

  it('the same email is two users in two tenants; a duplicate within one is 409', async () => {
    const email = uniqueEmail('same');
    const inA = await platform.post('/users', { email }, { headers: { 'x-tenant-id': a.tenant.id } });
    const inB = await bApi.post('/users', { email });
    assert.equal(inA.status, 201, inA.text);
    assert.equal(inB.status, 201, inB.text);
    assert.notEqual(inA.body.id, inB.body.id);
    assertError(await bApi.post('/users', { email: email.toUpperCase() }), 409, 'IDENT_EMAIL_DUPLICATE');
  });

  it('an Idempotency-Key replay never crosses tenants', async () => {
    const key = marker('idem');
    const body = { email: uniqueEmail('idem') };
    const inA = await platform.post('/users', body, { headers: { 'x-tenant-id': a.tenant.id, 'idempotency-key': key } });
    const inB = await platform.post('/users', body, { headers: { 'x-tenant-id': b.tenant.id, 'idempotency-key': key } });
    assert.equal(inA.status, 201, inA.text);
    assert.equal(inB.status, 201, inB.text);
    assert.equal(inB.headers.get('idempotent-replayed'), null, 'not a replay of A\'s answer');
    assert.notEqual(inA.body.id, inB.body.id);
    const again = await platform.post('/users', body, { headers: { 'x-tenant-id': b.tenant.id, 'idempotency-key': key } });
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.equal(again.body.id, inB.body.id);
  });

  it('client rules: no tenant_id in metadata, no platform scopes or multi_tenant outside default; resource server identifiers are global', async () => {
    assertError(await bApi.post('/clients', { ...machine, tenant_id: a.tenant.id }), 400, 'IDENT_VALIDATION');
    assertError(await bApi.patch(`/clients/${b.client}`, { tenant_id: 'default' }), 400, 'IDENT_VALIDATION');
    assertError(await platform.post('/clients', { ...machine, tenant_id: b.tenant.id }), 400, 'IDENT_VALIDATION');
    assertError(await platform.post('/clients', { ...machine, scope: 'iam.tenants:read' }, { headers: { 'x-tenant-id': b.tenant.id } }), 400, 'IDENT_VALIDATION');
    assertError(await platform.patch(`/clients/${b.client}`, { multi_tenant: true }, { headers: { 'x-tenant-id': b.tenant.id } }), 400, 'IDENT_VALIDATION');
    const db = ts.server.services.db;
    assert.equal((await db('clients').where({ client_id: b.client }).first()).tenant_id, b.tenant.id);
    // A default-tenant client may be multi_tenant.
    assert.equal((await platform.post('/clients', { ...machine, multi_tenant: true })).status, 201);

    const taken = (await db('resource_servers').where({ id: a.resourceServer }).first()).identifier;
    // A's resource server is no place B's clients can be granted scopes at.
    assertError(await bApi.post('/clients', { ...machine, resource_scopes: { [taken]: 'read' } }), 400, 'IDENT_VALIDATION');
    assertError(await bApi.patch(`/clients/${b.client}`, { resource_scopes: { [taken]: 'read' } }), 400, 'IDENT_VALIDATION');
    const ownRs = (await db('resource_servers').where({ id: b.resourceServer }).first()).identifier;
    assert.equal((await bApi.post('/clients', { ...machine, resource_scopes: { [ownRs]: 'read' } })).status, 201);
    const dup = await bApi.post('/resource-servers', { identifier: taken, scopes: ['read'] });
    assertError(dup, 409, 'IDENT_RESOURCE_SERVER_DUPLICATE');
    assert.ok(!dup.text.includes(a.tenant.id) && !dup.text.includes(a.resourceServer), 'the answer says nothing of A');
  });

  it('audit: B\'s events listing, a B user\'s events and the live stream show none of A\'s events', async () => {
    const db = ts.server.services.db;
    const aEvents = new Set((await db('events').where({ tenant_id: a.tenant.id }).select('id')).map((e) => e.id as string));
    assert.ok(aEvents.size > 0);
    const page = await bApi.get('/audit/events?limit=200');
    assert.equal(page.status, 200, page.text);
    assert.ok(page.body.data.length > 0, 'B has events of its own');
    for (const e of page.body.data) assert.ok(!aEvents.has(e.id), `${e.type} is not A's`);
    const bIds = new Set((await db('events').where({ tenant_id: b.tenant.id }).select('id')).map((e) => e.id as string));
    for (const e of page.body.data) assert.ok(bIds.has(e.id), `${e.type} is B's`);
    const own = await bApi.get(`/users/${b.user}/events`);
    assert.equal(own.status, 200);
    assert.ok(own.body.data.length > 0);
    // The platform client in default sees neither A's nor B's.
    const inDefault = await platform.get('/audit/events?limit=200');
    for (const e of inDefault.body.data) assert.ok(!aEvents.has(e.id) && !bIds.has(e.id), `${e.type} in default`);

    // The live stream: B naming A is refused before it opens; B's own gets B's new events and none of A's.
    const refused = await fetch(new URL('/api/v1/events/stream', ts.issuer), { headers: { authorization: `Bearer ${bToken}`, accept: 'text/event-stream', 'x-tenant-id': a.tenant.id } });
    assert.equal(refused.status, 403);
    assert.equal(((await refused.json()) as { error: string }).error, 'IDENT_CROSS_TENANT');
    const abort = new AbortController();
    const res = await fetch(new URL('/api/v1/events/stream', ts.issuer), { headers: { authorization: `Bearer ${bToken}`, accept: 'text/event-stream' }, signal: abort.signal });
    assert.equal(res.status, 200);
    const seen: Array<{ id: string; type: string; target: { id: string } | null }> = [];
    const reading = (async () => {
      const decoder = new TextDecoder();
      let buffer = '';
      try {
        for await (const chunk of res.body!) {
          buffer += decoder.decode(chunk as Uint8Array, { stream: true });
          let end: number;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            const data = buffer.slice(0, end).split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart()).join('\n');
            if (data) seen.push(JSON.parse(data));
            buffer = buffer.slice(end + 2);
          }
        }
      } catch (err) {
        if ((err as Error).name !== 'AbortError') throw err;
      }
    })();
    const userA = await platform.post('/users', { email: uniqueEmail('live-a') }, { headers: { 'x-tenant-id': a.tenant.id } });
    const userB = await bApi.post('/users', { email: uniqueEmail('live-b') });
    await waitFor('B\'s new user in B\'s stream', () => seen.some((e) => e.target?.id === userB.body.id), 15_000);
    abort.abort();
    await reading;
    assert.ok(!seen.some((e) => e.target?.id === userA.body.id), 'A\'s new user is not in B\'s stream');
    const aNow = new Set((await db('events').where({ tenant_id: a.tenant.id }).select('id')).map((e) => e.id as string));
    for (const e of seen) assert.ok(!aNow.has(e.id), `${e.type} in B's stream is not A's`);
  });

  it('a webhook hears only its own tenant\'s events', async () => {
    const db = ts.server.services.db;
    const rows = await db('webhook_deliveries').join('events', 'events.id', 'webhook_deliveries.event_id').where({ webhook_id: b.webhook }).select('events.tenant_id');
    assert.ok(rows.length > 0);
    for (const r of rows) assert.equal(r.tenant_id, b.tenant.id);
  });
});
