import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, AdminApi, adminToken, assertError, marker, seenAnswers, startAdminServer, tokenRequest } from '../helpers/admin.ts';
import { registerClient } from '../helpers/rp.ts';
import { onPostgres, startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';

const UNKNOWN_UUID = '00000000-0000-4000-8000-00000000abcd';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A client_credentials token request for the resource server, answering the HTTP status and body. */
const ccToken = (ts: TestServer, client: { id: string; secret: string }, resource: string) =>
  tokenRequest(ts, client, { grant_type: 'client_credentials', resource, scope: 'read' });

/** Sets up a resource server with opaque tokens (so revocation shows in introspection) and a role granting read there. */
async function fixtures(ts: TestServer, api: AdminApi) {
  const resource = `https://sa-${marker()}.example.test`;
  assert.equal((await api.post('/resource-servers', { identifier: resource, scopes: ['read', 'write'], accessTokenFormat: 'opaque' })).status, 201);
  const role = await api.post('/roles', { name: marker('sa-reader'), permissions: [{ resource, scope: 'read' }] });
  assert.equal(role.status, 201, role.text);
  // A gateway that may introspect every client's tokens.
  const introspector = await registerClient(ts, { grant_types: ['client_credentials'], redirect_uris: [], post_logout_redirect_uris: [], response_types: [], introspection_allowed: true });
  return { resource, roleId: role.body.id as string, introspector: { id: introspector.clientId, secret: introspector.clientSecret! } };
}

async function introspect(ts: TestServer, introspector: { id: string; secret: string }, token: string): Promise<Record<string, unknown>> {
  const res = await fetch(new URL('/token/introspection', ts.issuer), {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${encodeURIComponent(introspector.id)}:${encodeURIComponent(introspector.secret)}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ token }).toString(),
  });
  assert.equal(res.status, 200);
  return (await res.json()) as Record<string, unknown>;
}

describe('service accounts API', () => {
  let ts: TestServer;
  let api: AdminApi;
  let fx: Awaited<ReturnType<typeof fixtures>>;

  before(async () => {
    ts = await startAdminServer();
    api = new AdminApi(ts, await adminToken(ts));
    fx = await fixtures(ts, api);
  });
  after(() => stopAndDestroy(ts));

  it('create: a confidential client_credentials client of the tenant with roles; the secret only in that answer', async () => {
    const created = await api.post('/service-accounts', { name: 'billing export', description: 'nightly', roleIds: [fx.roleId] });
    assert.equal(created.status, 201, created.text);
    assert.deepEqual(Object.keys(created.body).sort(), ['clientId', 'clientSecret', 'createdAt', 'description', 'id', 'name', 'roles']);
    assert.equal(created.body.name, 'billing export');
    assert.deepEqual(created.body.roles.map((r: { id: string }) => r.id), [fx.roleId]);
    const client = await ts.server.services.db('clients').where({ client_id: created.body.clientId }).first();
    assert.equal(client.tenant_id, 'default');
    const metadata = typeof client.metadata === 'string' ? JSON.parse(client.metadata) : client.metadata;
    assert.deepEqual(metadata.grant_types, ['client_credentials']);
    assert.equal(metadata.token_endpoint_auth_method, 'client_secret_basic');
    assert.ok(!JSON.stringify(client).includes(created.body.clientSecret), 'only a digest is stored');

    const got = await api.get(`/service-accounts/${created.body.id}`);
    assert.equal(got.status, 200);
    assert.equal(got.body.clientSecret, undefined);
    assert.deepEqual(got.body.roles.map((r: { id: string }) => r.id), [fx.roleId]);
    const list = await api.get('/service-accounts?pageSize=100');
    assert.ok(list.body.data.some((a: { id: string }) => a.id === created.body.id));
    assert.ok(!list.text.includes(created.body.clientSecret));
    const token = await ccToken(ts, { id: created.body.clientId, secret: created.body.clientSecret }, fx.resource);
    assert.equal(token.status, 200, JSON.stringify(token.body));
    assert.equal(token.body.scope, 'read');

    const event = await ts.server.services.db('events').where({ type: 'service_account.created', target_id: created.body.id }).first();
    assert.ok(event, 'service_account.created recorded');
    assert.ok(!JSON.stringify(event).includes(created.body.clientSecret));

    // Bad input and unknown roles create nothing.
    const count = async () => Number((await ts.server.services.db('service_accounts').count({ n: '*' }))[0]!.n);
    const before = await count();
    assertError(await api.post('/service-accounts', { name: '' }), 400, 'IDENT_VALIDATION');
    assertError(await api.post('/service-accounts', { name: 'x', clientSecret: 'mine' }), 400, 'IDENT_VALIDATION');
    assertError(await api.post('/service-accounts', { name: 'x', roleIds: [UNKNOWN_UUID] }), 404, 'IDENT_ROLE_NOT_FOUND');
    assert.equal(await count(), before);
    assertError(await api.get(`/service-accounts/${UNKNOWN_UUID}`), 404, 'IDENT_SERVICE_ACCOUNT_NOT_FOUND');
    assertError(await api.post(`/service-accounts/${UNKNOWN_UUID}/rotate`, {}), 404, 'IDENT_SERVICE_ACCOUNT_NOT_FOUND');
    assertError(await api.delete(`/service-accounts/${UNKNOWN_UUID}`), 404, 'IDENT_SERVICE_ACCOUNT_NOT_FOUND');
  });

  it('rotate: the old secret works for the overlap and is refused after; overlapSeconds 0 ends it at once', async () => {
    const created = (await api.post('/service-accounts', { name: 'rotating', roleIds: [fx.roleId] })).body;
    const old = { id: created.clientId as string, secret: created.clientSecret as string };
    assert.equal((await ccToken(ts, old, fx.resource)).status, 200, 'the old secret is remembered by the instance');
    const rotated = await api.post(`/service-accounts/${created.id}/rotate`, { overlapSeconds: 2 });
    assert.equal(rotated.status, 200, rotated.text);
    assert.ok(Date.parse(rotated.body.previousSecretExpiresAt) > Date.now());
    const fresh = { id: old.id, secret: rotated.body.clientSecret as string };
    assert.notEqual(fresh.secret, old.secret);
    assert.equal((await ccToken(ts, old, fx.resource)).status, 200, 'old secret during the overlap');
    assert.equal((await ccToken(ts, fresh, fx.resource)).status, 200, 'new secret at once');
    await sleep(2300);
    const refused = await ccToken(ts, old, fx.resource);
    assert.equal(refused.status, 401);
    assert.equal(refused.body.error, 'invalid_client');
    assert.equal((await ccToken(ts, fresh, fx.resource)).status, 200);

    const immediate = await api.post(`/service-accounts/${created.id}/rotate`, { overlapSeconds: 0 });
    assert.equal(immediate.body.previousSecretExpiresAt, null);
    assert.equal((await ccToken(ts, fresh, fx.resource)).status, 401, 'overlap 0: the old secret is refused at once');
    assert.equal((await ccToken(ts, { id: old.id, secret: immediate.body.clientSecret }, fx.resource)).status, 200);
    // The default overlap is a day.
    const byDefault = await api.post(`/service-accounts/${created.id}/rotate`, {});
    assert.ok(Math.abs(Date.parse(byDefault.body.previousSecretExpiresAt) - (Date.now() + 86_400_000)) < 60_000);
    assertError(await api.post(`/service-accounts/${created.id}/rotate`, { overlapSeconds: -1 }), 400, 'IDENT_VALIDATION');
    const events = await ts.server.services.db('events').where({ type: 'service_account.secret_rotated', target_id: created.id });
    assert.equal(events.length, 3);
    // The clients API's own rotation still ends the old secret at once (no overlap left behind).
    const viaClients = await api.post(`/clients/${old.id}/secret`);
    assert.equal(viaClients.status, 200);
    assert.equal((await ccToken(ts, { id: old.id, secret: byDefault.body.clientSecret }, fx.resource)).status, 401);
  });

  it('delete: the client goes and every token it holds is revoked at once', async () => {
    const created = (await api.post('/service-accounts', { name: 'leaving', roleIds: [fx.roleId] })).body;
    const creds = { id: created.clientId as string, secret: created.clientSecret as string };
    const token = await ccToken(ts, creds, fx.resource);
    assert.equal((await introspect(ts, fx.introspector, token.body.access_token)).active, true);
    assert.equal((await api.delete(`/service-accounts/${created.id}`)).status, 204);
    assert.equal((await introspect(ts, fx.introspector, token.body.access_token)).active, false);
    assert.equal((await ccToken(ts, creds, fx.resource)).status, 401);
    assertError(await api.get(`/service-accounts/${created.id}`), 404, 'IDENT_SERVICE_ACCOUNT_NOT_FOUND');
    assert.equal(await ts.server.services.db('clients').where({ client_id: creds.id }).first(), undefined);
    const types = (await ts.server.services.db('events').where({ target_id: created.id }).orderBy('seq')).map((e) => e.type);
    assert.deepEqual(types, ['service_account.created', 'service_account.deleted']);
  });

  it("another tenant's service account: 403 IDENT_CROSS_TENANT and nothing changes; the tenant's own admin creates in its tenant", async () => {
    const tenant = `t-${marker()}`;
    const db = ts.server.services.db;
    await db('tenants').insert({ id: tenant, name: 'Other', slug: tenant });
    const theirs = await ts.server.services.access.serviceAccounts.create({ tenantId: tenant }, { name: 'theirs' });
    const otherAdmin = await ts.server.services.clients.register({ tenantId: tenant }, {
      metadata: { grant_types: ['client_credentials'], response_types: [], redirect_uris: [], scope: 'iam.service-accounts:read iam.service-accounts:create iam.service-accounts:rotate iam.service-accounts:delete' },
    });
    const otherApi = new AdminApi(ts, await adminToken(ts, ['iam.service-accounts:read', 'iam.service-accounts:create', 'iam.service-accounts:rotate', 'iam.service-accounts:delete'], { id: otherAdmin.client_id, secret: otherAdmin.client_secret as string }));
    const mine = (await api.post('/service-accounts', { name: 'mine' })).body;
    const digest = async (clientId: string) => (await db('clients').where({ client_id: clientId }).first()).secret_digest;
    const before = await digest(mine.clientId);

    assertError(await otherApi.get(`/service-accounts/${mine.id}`), 403, 'IDENT_CROSS_TENANT');
    assertError(await otherApi.post(`/service-accounts/${mine.id}/rotate`, { overlapSeconds: 0 }), 403, 'IDENT_CROSS_TENANT');
    assertError(await otherApi.delete(`/service-accounts/${mine.id}`), 403, 'IDENT_CROSS_TENANT');
    assertError(await api.get(`/service-accounts/${theirs.account.id}`), 403, 'IDENT_CROSS_TENANT');
    assertError(await api.delete(`/service-accounts/${theirs.account.id}`), 403, 'IDENT_CROSS_TENANT');
    assert.equal(await digest(mine.clientId), before);
    assert.ok(await db('service_accounts').where({ id: theirs.account.id }).first());

    const listed = await otherApi.get('/service-accounts');
    assert.deepEqual(listed.body.data.map((a: { id: string }) => a.id), [theirs.account.id]);
    const made = await otherApi.post('/service-accounts', { name: 'made by them' });
    assert.equal(made.status, 201, made.text);
    assert.equal((await db('clients').where({ client_id: made.body.clientId }).first()).tenant_id, tenant);
    const token = await tokenRequest(ts, { id: made.body.clientId, secret: made.body.clientSecret }, { grant_type: 'client_credentials' });
    assert.equal(token.status, 200);
  });

  it('no answer carried a stored secret digest', () => {
    assert.ok(!seenAnswers.some((t) => /secret_digest|previous_secret/.test(t)));
  });
});

/** Instances share PostgreSQL and Redis and nothing else: without both there is nothing to test. */
const shared = onPostgres && Boolean(process.env.REDIS_URL);

describe('service account secrets on two instances', { skip: !shared && 'needs PostgreSQL + Redis (DATABASE_URL, REDIS_URL)' }, () => {
  let a: TestServer;
  let b: TestServer;
  let api: AdminApi;
  let fx: Awaited<ReturnType<typeof fixtures>>;
  before(async () => {
    const settings = { BOOTSTRAP_ADMIN_CLIENT_ID: ADMIN_CLIENT_ID, BOOTSTRAP_ADMIN_CLIENT_SECRET: ADMIN_CLIENT_SECRET };
    a = await startTestServer(settings);
    b = await startTestServer({ ...settings, ISSUER: a.issuer }, { store: a.store });
    api = new AdminApi(a, await adminToken(a));
    fx = await fixtures(a, api);
  });
  after(async () => {
    await b?.stop();
    await stopAndDestroy(a);
  });

  it('a rotation on A: B takes both secrets during the overlap and only the new one after; a delete on A revokes on B at once', async () => {
    const created = (await api.post('/service-accounts', { name: 'two instances', roleIds: [fx.roleId] })).body;
    const old = { id: created.clientId as string, secret: created.clientSecret as string };
    // B reads and caches the client (and remembers the old secret) before A rotates.
    assert.equal((await ccToken(b, old, fx.resource)).status, 200);
    const rotated = await api.post(`/service-accounts/${created.id}/rotate`, { overlapSeconds: 2 });
    assert.equal(rotated.status, 200, rotated.text);
    const fresh = { id: old.id, secret: rotated.body.clientSecret as string };
    for (const ts of [a, b]) {
      assert.equal((await ccToken(ts, old, fx.resource)).status, 200, 'old secret during the overlap');
      assert.equal((await ccToken(ts, fresh, fx.resource)).status, 200, 'new secret at once');
    }
    await sleep(2300);
    for (const ts of [a, b]) {
      assert.equal((await ccToken(ts, old, fx.resource)).status, 401, 'old secret refused after the overlap');
      assert.equal((await ccToken(ts, fresh, fx.resource)).status, 200);
    }

    // Tokens issued by each instance; the delete on A ends both, as B's introspection says at once.
    const fromA = (await ccToken(a, fresh, fx.resource)).body.access_token as string;
    const fromB = (await ccToken(b, fresh, fx.resource)).body.access_token as string;
    assert.equal((await introspect(b, fx.introspector, fromA)).active, true);
    assert.equal((await api.delete(`/service-accounts/${created.id}`)).status, 204);
    for (const ts of [a, b]) {
      for (const token of [fromA, fromB]) assert.equal((await introspect(ts, fx.introspector, token)).active, false);
      assert.equal((await ccToken(ts, fresh, fx.resource)).status, 401, 'the client is gone everywhere');
    }
  });
});
