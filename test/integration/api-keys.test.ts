import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, AdminApi, adminToken, assertError, marker, seenAnswers } from '../helpers/admin.ts';
import { logCapture } from '../helpers/log-capture.ts';
import { onPostgres, startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';
import { sleep, waitFor } from '../helpers/wait.ts';
import { createLogger } from '../../src/infra/logger.ts';

/**
 * API keys for the admin API, through HTTP: made, listed, rotated with an overlap and revoked with
 * real tokens; then used as `Authorization: Bearer idp_...` with their scopes and their tenant
 * only. On PostgreSQL + Redis the rotation overlap and the revocation are checked on two instances.
 */

const KEY_FORMAT = /^idp_[0-9a-f]{32}_[A-Za-z0-9_-]{43}$/;
const REFUSED = 'the API key is invalid, expired or revoked';

/** A tenant of its own, made in the database (the tenants API is not what is tested here). */
async function createTenant(ts: TestServer): Promise<string> {
  const id = marker('tenant');
  await ts.server.services.db('tenants').insert({ id, name: `Tenant ${id}`, slug: id });
  return id;
}

describe('admin API keys', () => {
  let ts: TestServer;
  let api: AdminApi;
  const logs = logCapture();
  /** Every key and rotated key any test saw: none may show in a log line or a later answer. */
  const keys: string[] = [];

  before(async () => {
    // Every log line, at trace, for the check that no key is ever logged.
    ts = await startTestServer({ BOOTSTRAP_ADMIN_CLIENT_ID: ADMIN_CLIENT_ID, BOOTSTRAP_ADMIN_CLIENT_SECRET: ADMIN_CLIENT_SECRET }, { logger: createLogger('trace', logs.stream) });
    api = new AdminApi(ts, await adminToken(ts));
  });
  after(() => stopAndDestroy(ts));

  async function createKey(body: Record<string, unknown>, opts: Parameters<AdminApi['post']>[2] = {}) {
    const res = await api.post('/api-keys', { name: marker('key'), ...body }, opts);
    assert.equal(res.status, 201, res.text);
    keys.push(res.body.key);
    return res.body as { id: string; key: string; scopes: string[]; name: string; expiresAt: string | null };
  }

  it('create, list, get, rotate and revoke; the key is in the create answer only, prefixed idp_', async () => {
    const created = await createKey({ scopes: ['iam.users:read', 'iam.apikeys:read', 'iam.users:read'] });
    assert.match(created.key, KEY_FORMAT);
    assert.ok(created.key.includes(created.id.replaceAll('-', '')), 'the key names its id');
    assert.deepEqual(created.scopes, ['iam.users:read', 'iam.apikeys:read'], 'duplicates dropped');
    assert.equal(created.expiresAt, null);
    assert.equal((created as any).status, 'active');
    assert.deepEqual((created as any).createdBy, { type: 'client', id: ADMIN_CLIENT_ID });

    const list = await api.get('/api-keys?pageSize=100');
    assert.equal(list.status, 200, list.text);
    const listed = list.body.data.find((k: { id: string }) => k.id === created.id);
    assert.ok(listed, 'listed');
    assert.equal(listed.status, 'active');
    assert.equal(listed.lastUsedAt, null);
    assert.ok(!('key' in listed));
    const got = await api.get(`/api-keys/${created.id}`);
    assert.equal(got.status, 200);
    assert.deepEqual(Object.keys(got.body).sort(), [
      'createdAt', 'createdBy', 'expiresAt', 'id', 'lastUsedAt', 'name', 'previousKeyExpiresAt', 'revokedAt', 'scopes', 'status', 'updatedAt',
    ]);

    // Stored as a keyed digest: neither the key nor its secret part is in the row.
    const row = await ts.server.services.db('api_keys').where({ id: created.id }).first();
    const secret = created.key.split('_').slice(2).join('_');
    assert.ok(!JSON.stringify(row).includes(secret), 'no secret in the row');
    assert.notEqual(row.digest, created.key);

    const rotated = await api.post(`/api-keys/${created.id}/rotate`, { overlapSeconds: 0 });
    assert.equal(rotated.status, 200, rotated.text);
    assert.deepEqual(Object.keys(rotated.body).sort(), ['id', 'key', 'previousKeyExpiresAt']);
    assert.equal(rotated.body.id, created.id);
    assert.match(rotated.body.key, KEY_FORMAT);
    assert.equal(rotated.body.previousKeyExpiresAt, null, 'overlap 0: the old key stopped at once');
    keys.push(rotated.body.key);
    assertError(await api.get('/users', { token: created.key }), 401, 'IDENT_UNAUTHENTICATED', 'the replaced key');
    assert.equal((await api.get('/users', { token: rotated.body.key })).status, 200);

    assert.equal((await api.delete(`/api-keys/${created.id}`)).status, 204);
    assertError(await api.get('/users', { token: rotated.body.key }), 401, 'IDENT_UNAUTHENTICATED', 'revoked');
    const revoked = await api.get(`/api-keys/${created.id}`);
    assert.equal(revoked.body.status, 'revoked');
    assert.ok(revoked.body.revokedAt);
    assert.equal((await api.delete(`/api-keys/${created.id}`)).status, 204, 'revoking again is a no-op');
    assertError(await api.post(`/api-keys/${created.id}/rotate`, {}), 404, 'IDENT_API_KEY_NOT_FOUND', 'a revoked key is not rotated back to life');

    assertError(await api.get(`/api-keys/${randomUUID()}`), 404, 'IDENT_API_KEY_NOT_FOUND');
    assertError(await api.get('/api-keys/not-a-uuid'), 404, 'IDENT_API_KEY_NOT_FOUND');
    assertError(await api.delete(`/api-keys/${randomUUID()}`), 404, 'IDENT_API_KEY_NOT_FOUND');
  });

  it('bad input: 400, and nothing is made', async () => {
    const count = async () => Number((await ts.server.services.db('api_keys').count({ n: '*' }))[0]!.n);
    const before = await count();
    const bad: Array<[string, unknown]> = [
      ['no scopes', { name: 'x', scopes: [] }],
      ['unknown scope', { name: 'x', scopes: ['iam.nothing:read'] }],
      ['not an admin scope', { name: 'x', scopes: ['openid'] }],
      ['no name', { scopes: ['iam.users:read'] }],
      ['expiresAt in the past', { name: 'x', scopes: ['iam.users:read'], expiresAt: new Date(Date.now() - 1000).toISOString() }],
      ['expiresAt not a date', { name: 'x', scopes: ['iam.users:read'], expiresAt: 'tomorrow' }],
      ['unknown field', { name: 'x', scopes: ['iam.users:read'], key: 'idp_mine' }],
    ];
    for (const [what, body] of bad) assertError(await api.post('/api-keys', body), 400, 'IDENT_VALIDATION', what);
    const { id } = await createKey({ scopes: ['iam.users:read'] });
    for (const overlapSeconds of [-1, 1.5, 31 * 24 * 3600, '60']) {
      assertError(await api.post(`/api-keys/${id}/rotate`, { overlapSeconds }), 400, 'IDENT_VALIDATION', `overlap ${overlapSeconds}`);
    }
    assert.equal(await count(), before + 1);
  });

  it('the key works on the admin API with its scopes only: 403 beyond them; its changes are recorded with the key as actor', async () => {
    const { id, key } = await createKey({ scopes: ['iam.users:read', 'iam.users:create'] });
    const users = await api.get('/users?pageSize=1', { token: key });
    assert.equal(users.status, 200, users.text);
    const email = `${marker('bykey')}@example.test`;
    const made = await api.post('/users', { email }, { token: key, headers: { 'x-request-id': `by-key-${id}` } });
    assert.equal(made.status, 201, made.text);
    const forbidden = await api.patch(`/users/${made.body.id}`, { givenName: 'No' }, { token: key });
    assertError(forbidden, 403, 'IDENT_FORBIDDEN');
    assert.match(forbidden.headers.get('www-authenticate') ?? '', /error="insufficient_scope", scope="iam.users:update"/);
    assertError(await api.get('/clients', { token: key }), 403, 'IDENT_FORBIDDEN');
    assertError(await api.get('/api-keys', { token: key }), 403, 'IDENT_FORBIDDEN');
    // The bearer scheme is case-insensitive for keys too.
    assert.equal((await api.get('/users?pageSize=1', { token: null, headers: { authorization: `bearer ${key}` } })).status, 200);

    const [event] = await ts.server.services.db('events').where({ type: 'user.created', subject_id: made.body.id });
    assert.deepEqual({ type: event.actor_type, id: event.actor_id }, { type: 'api_key', id });
    assert.equal(event.request_id, `by-key-${id}`);
    // The audit trail filters by it.
    const trail = await api.get(`/audit/events?actor=api_key:${id}`);
    assert.equal(trail.status, 200, trail.text);
    assert.deepEqual(trail.body.data.map((e: { type: string }) => e.type), ['user.created']);

    // lastUsedAt is recorded (off the request's path) and shown.
    const used = await waitFor('lastUsedAt', async () => (await api.get(`/api-keys/${id}`)).body.lastUsedAt as string | null ?? undefined);
    assert.ok(Math.abs(Date.parse(used) - Date.now()) < 60_000);
    // At most once a minute: more uses leave it as it is.
    await api.get('/users?pageSize=1', { token: key });
    await sleep(100);
    assert.equal((await api.get(`/api-keys/${id}`)).body.lastUsedAt, used);
  });

  it('a key never carries more than its creator: scopes beyond the caller, and platform scopes outside the default tenant, are refused', async () => {
    const count = async () => Number((await ts.server.services.db('api_keys').count({ n: '*' }))[0]!.n);
    const before = await count();
    const narrow = await adminToken(ts, ['iam.apikeys:create', 'iam.users:read']);
    const beyond = await api.post('/api-keys', { name: 'beyond', scopes: ['iam.users:read', 'iam.users:delete'] }, { token: narrow });
    assertError(beyond, 403, 'IDENT_FORBIDDEN');
    assert.match(beyond.body.message, /iam\.users:delete/);
    assert.equal((await api.post('/api-keys', { name: 'within', scopes: ['iam.users:read'] }, { token: narrow })).status, 201);

    // A key that may make keys makes none stronger than itself.
    const maker = await createKey({ scopes: ['iam.apikeys:create', 'iam.users:read'] });
    assertError(await api.post('/api-keys', { name: 'up', scopes: ['iam.clients:read'] }, { token: maker.key }), 403, 'IDENT_FORBIDDEN');
    const child = await api.post('/api-keys', { name: 'child', scopes: ['iam.users:read'] }, { token: maker.key });
    assert.equal(child.status, 201, child.text);
    keys.push(child.body.key);
    assert.deepEqual(child.body.createdBy, { type: 'api_key', id: maker.id });

    // A key made with an expiring key expires with it at the latest.
    const mortal = await createKey({ scopes: ['iam.apikeys:create', 'iam.users:read'], expiresAt: new Date(Date.now() + 3600_000).toISOString() });
    const heir = await api.post('/api-keys', { name: 'heir', scopes: ['iam.users:read'] }, { token: mortal.key });
    assert.equal(heir.status, 201, heir.text);
    keys.push(heir.body.key);
    assert.equal(heir.body.expiresAt, mortal.expiresAt, 'without expiresAt: its maker\'s');
    const later = new Date(Date.parse(mortal.expiresAt!) + 1000).toISOString();
    assertError(await api.post('/api-keys', { name: 'x', scopes: ['iam.users:read'], expiresAt: later }, { token: mortal.key }), 403, 'IDENT_FORBIDDEN');

    // Platform scopes: on a key of the default tenant made by the platform caller, yes; in another tenant, no.
    const platform = await createKey({ scopes: ['iam.tenants:read'] });
    assert.deepEqual(platform.scopes, ['iam.tenants:read']);
    const tenant = await createTenant(ts);
    assertError(await api.post('/api-keys', { name: 'p', scopes: ['iam.tenants:read'] }, { headers: { 'x-tenant-id': tenant } }), 403, 'IDENT_FORBIDDEN');
    assert.equal(await count(), before + 6);

    // Rotating or revoking a key stronger than the caller: 403, nothing changes.
    const strong = await createKey({ scopes: ['iam.users:read', 'iam.users:delete'] });
    const weak = await adminToken(ts, ['iam.apikeys:rotate', 'iam.apikeys:revoke', 'iam.users:read']);
    assertError(await api.post(`/api-keys/${strong.id}/rotate`, {}, { token: weak }), 403, 'IDENT_FORBIDDEN');
    assertError(await api.delete(`/api-keys/${strong.id}`, { token: weak }), 403, 'IDENT_FORBIDDEN');
    assert.equal((await api.get('/users?pageSize=1', { token: strong.key })).status, 200, 'still the one key');
  });

  it("a key of tenant B acts in B only: naming A's objects or A itself is 403 IDENT_CROSS_TENANT, and changes nothing", async () => {
    const b = await createTenant(ts);
    const inA = await createKey({ scopes: ['iam.apikeys:read', 'iam.users:read'] });
    // The platform caller acts in B with X-Tenant-Id: the key it makes there is B's.
    const inB = await createKey({ scopes: ['iam.apikeys:read', 'iam.apikeys:rotate', 'iam.apikeys:revoke', 'iam.apikeys:create', 'iam.users:read'] }, { headers: { 'x-tenant-id': b } });
    assert.equal((await ts.server.services.db('api_keys').where({ id: inB.id }).first()).tenant_id, b);

    const listB = await api.get('/api-keys?pageSize=100', { token: inB.key });
    assert.equal(listB.status, 200, listB.text);
    assert.deepEqual(listB.body.data.map((k: { id: string }) => k.id), [inB.id], "B's list holds B's keys only");
    assert.equal(listB.body.total, 1);
    assert.equal((await api.get(`/api-keys/${inB.id}`, { token: inB.key })).status, 200);
    // Its own tenant by id or slug is fine.
    assert.equal((await api.get('/api-keys', { token: inB.key, headers: { 'x-tenant-id': b } })).status, 200);

    const rowA = async () => ts.server.services.db('api_keys').where({ id: inA.id }).first();
    const before = await rowA();
    assertError(await api.get(`/api-keys/${inA.id}`, { token: inB.key }), 403, 'IDENT_CROSS_TENANT', 'get');
    assertError(await api.post(`/api-keys/${inA.id}/rotate`, {}, { token: inB.key }), 403, 'IDENT_CROSS_TENANT', 'rotate');
    assertError(await api.delete(`/api-keys/${inA.id}`, { token: inB.key }), 403, 'IDENT_CROSS_TENANT', 'revoke');
    for (const named of ['default', 'no-such-tenant']) {
      assertError(await api.get('/api-keys', { token: inB.key, headers: { 'x-tenant-id': named } }), 403, 'IDENT_CROSS_TENANT', `X-Tenant-Id ${named}`);
      assertError(await api.post('/api-keys', { name: 'x', scopes: ['iam.users:read'] }, { token: inB.key, headers: { 'x-tenant-id': named } }), 403, 'IDENT_CROSS_TENANT', `create in ${named}`);
    }
    assert.deepEqual(await rowA(), before, "A's key is untouched");
    assert.equal((await api.get('/users?pageSize=1', { token: inA.key })).status, 200, "A's key still works");
    // The platform caller acting in B does not reach A's key by id either.
    assertError(await api.get(`/api-keys/${inA.id}`, { headers: { 'x-tenant-id': b } }), 403, 'IDENT_CROSS_TENANT', 'platform caller in B');

    // B's key is not a platform caller (even when made by one), and the events of B's keys are B's.
    const made = await api.post('/api-keys', { name: 'made in B', scopes: ['iam.users:read'] }, { token: inB.key });
    assert.equal(made.status, 201, made.text);
    keys.push(made.body.key);
    const [event] = await ts.server.services.db('events').where({ type: 'api_key.created', target_id: made.body.id });
    assert.equal(event.tenant_id, b);
    assert.deepEqual({ type: event.actor_type, id: event.actor_id }, { type: 'api_key', id: inB.id });
  });

  it('expired, malformed, unknown and wrong keys: 401 with one message, whatever the reason', async () => {
    const expiring = await createKey({ scopes: ['iam.users:read'], expiresAt: new Date(Date.now() + 1500).toISOString() });
    assert.equal((await api.get('/users?pageSize=1', { token: expiring.key })).status, 200);
    const real = await createKey({ scopes: ['iam.users:read'] });
    const [, idHex] = /^idp_([0-9a-f]{32})_/.exec(real.key)!;
    const cases: Array<[string, string]> = [
      ['prefix only', 'idp_'],
      ['garbage', 'idp_garbage'],
      ['unknown id', `idp_${randomUUID().replaceAll('-', '')}_${randomBytes(32).toString('base64url')}`],
      ['right id, wrong secret', `idp_${idHex}_${randomBytes(32).toString('base64url')}`],
      ['one character changed', real.key.slice(0, -1) + (real.key.endsWith('A') ? 'B' : 'A')],
      ['upper-case id', real.key.replace(idHex!, idHex!.toUpperCase())],
      ['too long', `${real.key}A`],
    ];
    await waitFor('the key expired', async () => (await api.get('/users?pageSize=1', { token: expiring.key })).status === 401);
    cases.push(['expired', expiring.key]);
    for (const [what, token] of cases) {
      const res = await api.get('/users?pageSize=1', { token });
      assertError(res, 401, 'IDENT_UNAUTHENTICATED', what);
      assert.equal(res.body.message, REFUSED, what);
      assert.match(res.headers.get('www-authenticate') ?? '', /error="invalid_token"/, what);
    }
    assert.equal((await api.get(`/api-keys/${expiring.id}`)).body.status, 'expired');
    assertError(await api.post(`/api-keys/${expiring.id}/rotate`, {}), 404, 'IDENT_API_KEY_NOT_FOUND', 'an expired key is not rotated');
  });

  it('rotation with an overlap: both keys work until it ends, then only the new one', async () => {
    const { id, key } = await createKey({ scopes: ['iam.users:read'] });
    const rotated = await api.post(`/api-keys/${id}/rotate`, { overlapSeconds: 1 });
    assert.equal(rotated.status, 200, rotated.text);
    keys.push(rotated.body.key);
    const until = Date.parse(rotated.body.previousKeyExpiresAt);
    assert.ok(until > Date.now() && until <= Date.now() + 1500);
    assert.equal((await api.get(`/api-keys/${id}`)).body.previousKeyExpiresAt, rotated.body.previousKeyExpiresAt);
    assert.equal((await api.get('/users?pageSize=1', { token: key })).status, 200, 'old key within the overlap');
    assert.equal((await api.get('/users?pageSize=1', { token: rotated.body.key })).status, 200, 'new key');
    await sleep(Math.max(0, until - Date.now()) + 50);
    assertError(await api.get('/users?pageSize=1', { token: key }), 401, 'IDENT_UNAUTHENTICATED', 'old key after the overlap');
    assert.equal((await api.get('/users?pageSize=1', { token: rotated.body.key })).status, 200);
    assert.equal((await api.get(`/api-keys/${id}`)).body.previousKeyExpiresAt, null);

    // The default overlap is 24 hours.
    const again = await api.post(`/api-keys/${id}/rotate`, {});
    keys.push(again.body.key);
    assert.ok(Math.abs(Date.parse(again.body.previousKeyExpiresAt) - (Date.now() + 24 * 3600_000)) < 60_000);
    assert.equal((await api.get('/users?pageSize=1', { token: rotated.body.key })).status, 200);
    // Revoking ends the overlapping key too.
    assert.equal((await api.delete(`/api-keys/${id}`)).status, 204);
    for (const token of [rotated.body.key, again.body.key]) assertError(await api.get('/users?pageSize=1', { token }), 401, 'IDENT_UNAUTHENTICATED');
  });

  it('Idempotency-Key on create: a retry gets the first answer (same key), per caller', async () => {
    const headers = { 'idempotency-key': marker('idem') };
    const body = { name: 'idempotent', scopes: ['iam.users:read'] };
    const first = await api.post('/api-keys', body, { headers });
    assert.equal(first.status, 201);
    keys.push(first.body.key);
    const again = await api.post('/api-keys', body, { headers });
    assert.equal(again.status, 201);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.equal(again.body.id, first.body.id);
    assertError(await api.post('/api-keys', { ...body, name: 'other' }, { headers }), 409, 'IDENT_IDEMPOTENCY_MISMATCH');
    // A key is another caller than the client that made it: the same Idempotency-Key is its own.
    const maker = await createKey({ scopes: ['iam.apikeys:create', 'iam.users:read'] });
    const byKey = await api.post('/api-keys', body, { token: maker.key, headers });
    assert.equal(byKey.status, 201, byKey.text);
    keys.push(byKey.body.key);
    assert.notEqual(byKey.body.id, first.body.id);
  });

  it('the live event stream takes a key with iam.audit:read', async () => {
    const { key } = await createKey({ scopes: ['iam.audit:read'] });
    const controller = new AbortController();
    const res = await fetch(new URL('/api/v1/events/stream', ts.issuer), { headers: { authorization: `Bearer ${key}` }, signal: controller.signal });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    const reader = res.body!.getReader();
    const { value } = await reader.read();
    assert.match(new TextDecoder().decode(value), /stream open/);
    controller.abort();
    const { key: noAudit } = await createKey({ scopes: ['iam.users:read'] });
    const refused = await fetch(new URL('/api/v1/events/stream', ts.issuer), { headers: { authorization: `Bearer ${noAudit}` } });
    assert.equal(refused.status, 403);
  });

  it('no key, secret part or digest in any log line or later answer', async () => {
    const digests = (await ts.server.services.db('api_keys').select('digest', 'previous_digest')).flatMap((r) => [r.digest, r.previous_digest]).filter(Boolean);
    assert.ok(logs.lines.length > 0, 'the server logged (at trace)');
    const logged = JSON.stringify(logs.lines);
    assert.ok(keys.length >= 10);
    for (const key of keys) {
      const secret = key.split('_').slice(2).join('_');
      assert.ok(!logged.includes(secret), 'no key in the logs');
    }
    for (const digest of digests) assert.ok(!logged.includes(digest), 'no digest in the logs');
    // Answers: a key shows only in the answer that made it (create, rotate, an idempotent replay of create).
    const gets = await Promise.all([api.get('/api-keys?pageSize=100'), api.get('/audit/events?limit=200&type=api_key.*')]);
    for (const res of gets) {
      for (const key of keys) assert.ok(!res.text.includes(key.split('_').slice(2).join('_')), 'no key in a GET answer');
      for (const digest of digests) assert.ok(!res.text.includes(digest), 'no digest in a GET answer');
    }
    for (const digest of digests) assert.ok(!seenAnswers.some((t) => t.includes(digest)), 'no digest in any answer');
  });
});

/** Instances share PostgreSQL and Redis and nothing else: without both there is nothing to test. */
const shared = onPostgres && Boolean(process.env.REDIS_URL);

describe('API keys on two instances', { skip: !shared && 'needs PostgreSQL + Redis (DATABASE_URL, REDIS_URL)' }, () => {
  let a: TestServer;
  let b: TestServer;
  let apiA: AdminApi;
  let apiB: AdminApi;
  before(async () => {
    const settings = { BOOTSTRAP_ADMIN_CLIENT_ID: ADMIN_CLIENT_ID, BOOTSTRAP_ADMIN_CLIENT_SECRET: ADMIN_CLIENT_SECRET };
    a = await startTestServer(settings);
    b = await startTestServer({ ...settings, ISSUER: a.issuer }, { store: a.store });
    apiA = new AdminApi(a, await adminToken(a));
    apiB = new AdminApi(b, apiA.token);
  });
  after(async () => {
    await b?.stop();
    await stopAndDestroy(a);
  });

  const status = async (api: AdminApi, token: string) => (await api.get('/users?pageSize=1', { token })).status;

  it('a rotation on A: the old key works on both instances until the overlap ends, then on neither; a revocation on B holds on both at once', async () => {
    const created = await apiA.post('/api-keys', { name: 'shared', scopes: ['iam.users:read'] });
    assert.equal(created.status, 201, created.text);
    const old = created.body.key as string;
    assert.deepEqual([await status(apiA, old), await status(apiB, old)], [200, 200]);

    const rotated = await apiA.post(`/api-keys/${created.body.id}/rotate`, { overlapSeconds: 2 });
    assert.equal(rotated.status, 200, rotated.text);
    const fresh = rotated.body.key as string;
    const until = Date.parse(rotated.body.previousKeyExpiresAt);
    assert.deepEqual([await status(apiA, old), await status(apiB, old)], [200, 200], 'old key within the overlap, on both');
    assert.deepEqual([await status(apiA, fresh), await status(apiB, fresh)], [200, 200], 'new key on both');
    await sleep(Math.max(0, until - Date.now()) + 50);
    assert.deepEqual([await status(apiA, old), await status(apiB, old)], [401, 401], 'old key after the overlap, on both');
    assert.deepEqual([await status(apiA, fresh), await status(apiB, fresh)], [200, 200]);

    // B has just used the key; B revokes it and A refuses it on the very next request.
    assert.equal((await apiB.delete(`/api-keys/${created.body.id}`)).status, 204);
    assert.deepEqual([await status(apiA, fresh), await status(apiB, fresh)], [401, 401], 'revoked on both at once');
  });
});
