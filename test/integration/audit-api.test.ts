import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, AdminApi, adminToken, assertError, startAdminServer, tokenRequest } from '../helpers/admin.ts';
import { cleanEnv, finished, spawnIdp } from '../helpers/cli.ts';
import { uniqueEmail } from '../helpers/rp.ts';
import { stopAndDestroy, type TestServer } from '../helpers/server.ts';
import { sleep, waitFor } from '../helpers/wait.ts';
import { adminAudience } from '../../src/domain/clients/admin-scopes.ts';
import { createAuditRetention } from '../../src/domain/events/audit.ts';
import { createEventsReader } from '../../src/repos/events.ts';

const UNKNOWN_UUID = '8a4c7a2e-0d6b-4f1e-9a53-3b1f0c2d9e77';
const RETENTION_DAYS = 30;

interface AuditEvent {
  id: string;
  type: string;
  occurredAt: string;
  actor: { type: string; id: string | null };
  target: { type: string; id: string } | null;
  ip: string | null;
  userAgent: string | null;
  requestId: string | null;
  data: Record<string, any>;
}

describe('audit API: GET /api/v1/audit/events and /api/v1/users/:id/events', () => {
  let ts: TestServer;
  let api: AdminApi;

  before(async () => {
    // The sweep runs every 5 s here, so the retention test sees the server's own sweeper at work.
    ts = await startAdminServer({ AUDIT_RETENTION_DAYS: String(RETENTION_DAYS), SWEEP_INTERVAL_SECONDS: '5' });
    api = new AdminApi(ts, await adminToken(ts));
  });
  after(() => stopAndDestroy(ts));

  const createUser = async (extra: Record<string, unknown> = {}) => {
    const res = await api.post('/users', { email: uniqueEmail('audit'), givenName: 'Ada', ...extra });
    assert.equal(res.status, 201, res.text);
    return res.body as { id: string; email: string };
  };
  const rename = async (id: string, givenName: string) => {
    const res = await api.patch(`/users/${id}`, { givenName });
    assert.equal(res.status, 200, res.text);
  };
  const list = async (query: Record<string, string>, path = '/audit/events') => {
    const res = await api.get(`${path}?${new URLSearchParams(query)}`);
    assert.equal(res.status, 200, res.text);
    return res.body as { data: AuditEvent[]; nextCursor: string | null };
  };
  /** Every page of a query, following nextCursor. */
  const all = async (query: Record<string, string>, path?: string) => {
    const out: AuditEvent[] = [];
    let cursor: string | null = null;
    do {
      const page = await list({ ...query, ...(cursor ? { cursor } : {}) }, path);
      out.push(...page.data);
      cursor = page.nextCursor;
    } while (cursor);
    return out;
  };

  it('answers the documented shape, newest first, with who, what, from where and in which request', async () => {
    const user = await createUser({ familyName: 'Lovelace' });
    await rename(user.id, 'Augusta');
    const { data, nextCursor } = await list({ target: `user:${user.id}` });
    assert.equal(nextCursor, null);
    assert.deepEqual(data.map((e) => e.type), ['user.updated', 'user.created']);
    const [updated, created] = data as [AuditEvent, AuditEvent];
    assert.deepEqual(Object.keys(created).sort(), ['actor', 'data', 'id', 'ip', 'occurredAt', 'requestId', 'target', 'type', 'userAgent']);
    assert.deepEqual(created.actor, { type: 'client', id: ADMIN_CLIENT_ID });
    assert.deepEqual(created.target, { type: 'user', id: user.id });
    assert.match(created.id, /^[0-9a-f-]{36}$/);
    assert.ok(Date.parse(updated.occurredAt) >= Date.parse(created.occurredAt));
    assert.equal(created.data.user.email, user.email);
    assert.ok(created.requestId, 'the request id');
    assert.match(created.ip ?? '', /127\.0\.0\.1/);
    assert.ok(created.userAgent, 'the caller user agent');
  });

  it('filters by type (exact, comma-separated, prefix), actor (type:id, type, bare id), target and time', async () => {
    const a = await createUser();
    await sleep(30);
    const between = new Date().toISOString();
    await sleep(30);
    const b = await createUser();
    await rename(b.id, 'Grace');
    await api.post(`/users/${b.id}/suspend`);

    const aboutB = await list({ target: `user:${b.id}` });
    assert.deepEqual(aboutB.data.map((e) => e.type), ['user.suspended', 'user.updated', 'user.created']);
    assert.ok(aboutB.data.every((e) => e.target?.id === b.id));
    // A bare id finds the same target whatever its type.
    assert.deepEqual((await list({ target: b.id })).data.map((e) => e.id), aboutB.data.map((e) => e.id));

    const created = await all({ type: 'user.created', limit: '200' });
    assert.ok(created.length >= 2 && created.every((e) => e.type === 'user.created'));
    assert.ok(created.some((e) => e.target?.id === a.id) && created.some((e) => e.target?.id === b.id));

    const both = await list({ type: 'user.created,user.updated', target: `user:${b.id}` });
    assert.deepEqual(both.data.map((e) => e.type), ['user.updated', 'user.created']);
    const prefix = await list({ type: 'user.*', target: `user:${b.id}` });
    assert.equal(prefix.data.length, 3);
    assert.equal((await list({ type: 'client.*', target: `user:${b.id}` })).data.length, 0);
    assert.equal((await list({ type: '*', target: `user:${b.id}` })).data.length, 3);

    for (const actor of [`client:${ADMIN_CLIENT_ID}`, 'client', ADMIN_CLIENT_ID]) {
      const byAdmin = await list({ actor, target: `user:${b.id}` });
      assert.equal(byAdmin.data.length, 3, actor);
    }
    assert.equal((await list({ actor: 'system', target: `user:${b.id}` })).data.length, 0);
    assert.equal((await list({ actor: 'client:someone-else', target: `user:${b.id}` })).data.length, 0);

    // from is inclusive, to exclusive; a's creation is before `between`, b's after.
    const sinceBetween = await all({ from: between, type: 'user.created', limit: '200' });
    assert.ok(sinceBetween.some((e) => e.target?.id === b.id));
    assert.ok(!sinceBetween.some((e) => e.target?.id === a.id));
    const untilBetween = await all({ to: between, type: 'user.created', limit: '200' });
    assert.ok(untilBetween.some((e) => e.target?.id === a.id));
    assert.ok(!untilBetween.some((e) => e.target?.id === b.id));
    // The same instant in another offset, and a date (midnight UTC), are the same filter.
    const offset = new Date(Date.parse(between)).toISOString().replace('Z', '+00:00');
    assert.equal((await all({ from: offset, type: 'user.created', limit: '200' })).length, sinceBetween.length);
    assert.equal((await list({ from: '2999-01-01', target: `user:${b.id}` })).data.length, 0);
  });

  it('pages newest first with an opaque cursor; the last page says nextCursor null', async () => {
    const user = await createUser();
    for (let i = 0; i < 6; i++) await rename(user.id, `Name ${i}`);
    const everything = (await list({ target: `user:${user.id}`, limit: '200' })).data;
    assert.equal(everything.length, 7);
    assert.equal(everything.at(-1)!.type, 'user.created');
    assert.deepEqual(everything.slice(0, 6).map((e) => e.data.user.firstName), ['Name 5', 'Name 4', 'Name 3', 'Name 2', 'Name 1', 'Name 0']);

    const first = await list({ target: `user:${user.id}`, limit: '3' });
    assert.equal(first.data.length, 3);
    assert.ok(first.nextCursor);
    assert.doesNotMatch(first.nextCursor, /^\d+$/, 'the cursor is opaque');
    const second = await list({ target: `user:${user.id}`, limit: '3', cursor: first.nextCursor });
    assert.equal(second.data.length, 3);
    const third = await list({ target: `user:${user.id}`, limit: '3', cursor: second.nextCursor! });
    assert.equal(third.data.length, 1);
    assert.equal(third.nextCursor, null);
    assert.deepEqual([...first.data, ...second.data, ...third.data].map((e) => e.id), everything.map((e) => e.id));
    // A page that ends exactly at the last event says so too.
    const exact = await list({ target: `user:${user.id}`, limit: '7' });
    assert.equal(exact.data.length, 7);
    assert.equal(exact.nextCursor, null);
  });

  it('pages stay stable while events are inserted: no duplicates, and no event that existed at the start is skipped', async () => {
    const user = await createUser();
    for (let i = 0; i < 9; i++) await rename(user.id, `Before ${i}`);
    const query = { target: `user:${user.id}`, limit: '2' };
    const existing = (await list({ ...query, limit: '200' })).data.map((e) => e.id);
    assert.equal(existing.length, 10);

    // One task pages through while another keeps changing the same user (each change an event
    // matching the query): between every two pages at least one event is inserted.
    let writing = true;
    let written = 0;
    const writer = (async () => {
      while (writing) {
        await rename(user.id, `During ${written++}`);
      }
    })();
    const seen: string[] = [];
    let cursor: string | null = null;
    try {
      do {
        const before = written;
        const page = await list({ ...query, ...(cursor ? { cursor } : {}) });
        seen.push(...page.data.map((e) => e.id));
        cursor = page.nextCursor;
        await waitFor('an insert between pages', () => written > before);
      } while (cursor);
    } finally {
      writing = false;
      await writer;
    }
    assert.ok(written >= 5, `events were inserted meanwhile (${written})`);
    assert.equal(new Set(seen).size, seen.length, 'no event twice');
    for (const id of existing) assert.ok(seen.includes(id), `event ${id} that existed before paging is listed`);
    // What was listed keeps the newest-first order of the table.
    const now = (await list({ ...query, limit: '200' })).data.map((e) => e.id);
    assert.deepEqual(seen, now.filter((id) => seen.includes(id)));
  });

  it('the default page is 50 events and a page holds at most 200', async () => {
    // Enough events for both bounds to show.
    await Promise.all(Array.from({ length: 6 }, async () => {
      for (let i = 0; i < 6; i++) await createUser();
    }));
    const total = (await all({ limit: '200' })).length;
    assert.ok(total > 50, `${total} events`);
    assert.equal((await list({})).data.length, 50);
    assert.equal((await list({ limit: '200' })).data.length, Math.min(200, total));
    assert.equal((await list({ limit: '1' })).data.length, 1);
  });

  it('bad input is a 400 envelope, never a 500', async () => {
    const user = await createUser();
    const good = await list({ limit: '1' });
    assert.ok(good.nextCursor);
    const otherQueryCursor = (await list({ limit: '1', type: 'user.*' })).nextCursor!;
    const [head] = good.nextCursor.split('.');
    const forged = `${Buffer.from('999999').toString('base64url')}.${good.nextCursor.split('.')[1]}`;
    const cases: [string, string][] = [
      ['limit 0', 'limit=0'],
      ['limit 201', 'limit=201'],
      ['negative limit', 'limit=-5'],
      ['fractional limit', 'limit=1.5'],
      ['limit not a number', 'limit=ten'],
      ['empty limit', 'limit='],
      ['type with spaces', 'type=User%20Created'],
      ['type with a partial wildcard', 'type=user.mfa_*'],
      ['type with an empty item', 'type=user.created,,user.updated'],
      ['empty actor', 'actor='],
      ['actor type without id', 'actor=client:'],
      ['target too long', `target=${'x'.repeat(301)}`],
      ['from not ISO 8601', 'from=yesterday'],
      ['from without offset', 'from=2026-01-01T10:00:00'],
      ['from an impossible date', 'from=2026-02-30'],
      ['to an impossible hour', 'to=2026-01-01T25:00:00Z'],
      ['from after to', 'from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z'],
      ['garbage cursor', 'cursor=not-a-cursor'],
      ['cursor with a bad tag', `cursor=${head}.AAAAAAAAAAAAAAAAAAAAAA`],
      ['forged cursor (another seq, a real tag)', `cursor=${forged}`],
      ['cursor from another query', `cursor=${encodeURIComponent(otherQueryCursor)}`],
      ['cursor with NUL', 'cursor=%00'],
      ['repeated type', 'type=user.created&type=user.updated'],
    ];
    for (const [what, q] of cases) {
      assertError(await api.get(`/audit/events?${q}`), 400, 'IDENT_VALIDATION', what);
    }
    assertError(await api.get(`/users/${user.id}/events?limit=500`), 400, 'IDENT_VALIDATION', 'per-user limit');
    assertError(await api.get(`/users/${user.id}/events?cursor=${encodeURIComponent(good.nextCursor)}`), 400, 'IDENT_VALIDATION', 'a cursor of another query');
  });

  it('needs iam.audit:read: a client without it gets 403 on both routes', async () => {
    const user = await createUser();
    const created = await api.post('/clients', {
      client_name: 'user admin without audit', grant_types: ['client_credentials'], response_types: [], redirect_uris: [],
      scope: 'iam.users:read iam.users:update',
    });
    assert.equal(created.status, 201, created.text);
    const token = await tokenRequest(ts, { id: created.body.client_id, secret: created.body.client_secret }, {
      grant_type: 'client_credentials', resource: adminAudience(ts.issuer), scope: 'iam.users:read iam.users:update',
    });
    assert.equal(token.status, 200, JSON.stringify(token.body));
    for (const path of ['/audit/events', `/users/${user.id}/events`]) {
      const res = await api.get(path, { token: token.body.access_token });
      assertError(res, 403, 'IDENT_FORBIDDEN', path);
      assert.match(res.headers.get('www-authenticate') ?? '', /insufficient_scope", scope="iam.audit:read"/);
      assertError(await api.get(path, { token: null }), 401, 'IDENT_UNAUTHENTICATED', path);
    }
    // The same client's own scope still works where it applies.
    assert.equal((await api.get(`/users/${user.id}`, { token: token.body.access_token })).status, 200);
    // And the audit scope alone is enough.
    assert.equal((await api.get('/audit/events', { token: await adminToken(ts, ['iam.audit:read']) })).status, 200);
  });

  it("GET /users/:id/events lists one user's events; an unknown user is a 404 envelope", async () => {
    const user = await createUser();
    const other = await createUser();
    await rename(user.id, 'Mine');
    await rename(other.id, 'Theirs');
    await api.post(`/users/${user.id}/suspend`);
    const events = await all({}, `/users/${user.id}/events`);
    assert.deepEqual(events.map((e) => e.type), ['user.suspended', 'user.updated', 'user.created']);
    assert.ok(events.every((e) => e.target?.id === user.id));
    assert.deepEqual((await list({ type: 'user.created' }, `/users/${user.id}/events`)).data.map((e) => e.type), ['user.created']);
    const paged = await list({ limit: '2' }, `/users/${user.id}/events`);
    assert.equal(paged.data.length, 2);
    const rest = await list({ limit: '2', cursor: paged.nextCursor! }, `/users/${user.id}/events`);
    assert.deepEqual(rest.data.map((e) => e.type), ['user.created']);
    assert.equal(rest.nextCursor, null);

    assertError(await api.get(`/users/${UNKNOWN_UUID}/events`), 404, 'IDENT_USER_NOT_FOUND');
    assertError(await api.get('/users/not-a-uuid/events'), 404, 'IDENT_USER_NOT_FOUND');
  });

  it('is append-only: PUT, PATCH, POST and DELETE on the audit routes answer 404/405 envelopes and change nothing', async () => {
    const user = await createUser();
    const count = async () => Number((await ts.server.services.db('events').count({ n: '*' }))[0]!.n);
    const before = await count();
    const [latest] = (await list({ limit: '1' })).data;
    for (const method of ['PUT', 'PATCH', 'POST', 'DELETE']) {
      for (const path of ['/audit/events', `/users/${user.id}/events`]) {
        const res = await api.call(method, path, { json: { type: 'user.deleted' } });
        assertError(res, 405, 'IDENT_METHOD_NOT_ALLOWED', `${method} ${path}`);
      }
      assertError(await api.call(method, `/audit/events/${latest!.id}`, { json: {} }), 404, 'IDENT_NOT_FOUND', `${method} one event`);
    }
    assert.equal(await count(), before);
    assert.deepEqual((await list({ limit: '1' })).data[0], latest);
  });

  it(`retention: the sweep deletes events older than AUDIT_RETENTION_DAYS (${RETENTION_DAYS}) and nothing newer, in batches, harmlessly in parallel`, async () => {
    const db = ts.server.services.db;
    const day = 86_400_000;
    const user = await createUser();
    for (let i = 0; i < 6; i++) await rename(user.id, `Old ${i}`);
    const ids = (await list({ target: `user:${user.id}`, limit: '200' })).data.map((e) => e.id);
    assert.equal(ids.length, 7);
    // The one place rows are written by hand: real events made old.
    const age = async (id: string, days: number) => {
      await db('events').where({ id }).update({ occurred_at: new Date(Date.now() - days * day) });
    };
    await age(ids[0]!, RETENTION_DAYS + 1);
    await age(ids[1]!, RETENTION_DAYS - 1);
    // The server's own sweeper (every SWEEP_INTERVAL_SECONDS) takes the old one and keeps the other.
    await waitFor('the sweeper', async () => (await db('events').where({ id: ids[0] }).first()) === undefined, 20_000);
    assert.ok(await db('events').where({ id: ids[1] }).first(), 'an event younger than the retention stays');

    // Batches of 2 over 5 old events, two sweeps at once: every old event goes, exactly once.
    for (const id of ids.slice(2)) await age(id, RETENTION_DAYS + 10);
    const reader = createEventsReader(db);
    const sweeps = [createAuditRetention({ reader, days: RETENTION_DAYS, batchSize: 2 }), createAuditRetention({ reader, days: RETENTION_DAYS, batchSize: 2 })];
    const deleted = await Promise.all(sweeps.map((s) => s.sweep()));
    // A sweep that finds another holding the lock leaves the rest to it (or to the next sweep).
    const again = await sweeps[0]!.sweep();
    assert.ok(deleted[0]! + deleted[1]! + again <= 5, 'no event counted twice');
    await waitFor('every old event gone', async () => Number((await db('events').whereIn('id', ids.slice(2)).count({ n: '*' }))[0]!.n) === 0);
    const remaining = (await list({ target: `user:${user.id}`, limit: '200' })).data.map((e) => e.id);
    assert.deepEqual(remaining, [ids[1]]);
    // Newer events are all still there.
    assert.ok((await list({ limit: '1' })).data.length === 1);
    // 0 keeps events for ever.
    assert.equal(await createAuditRetention({ reader, days: 0 }).sweep(), 0);
  });

  it('the CLI has the commands: idp audit events and idp users events', async () => {
    const user = await createUser();
    await rename(user.id, 'Cli');
    const env = cleanEnv({ IDP_ISSUER: ts.issuer, IDP_CLIENT_ID: ADMIN_CLIENT_ID, IDP_CLIENT_SECRET: ADMIN_CLIENT_SECRET, LOG_LEVEL: 'silent' });
    const r = await finished(spawnIdp(['audit', 'events', '--target', `user:${user.id}`, '--limit', '1', '--json'], env), 60_000);
    assert.equal(r.code, 0, r.stderr);
    const page = JSON.parse(r.stdout) as { data: AuditEvent[]; nextCursor: string };
    assert.deepEqual(page.data.map((e) => e.type), ['user.updated']);
    const next = await finished(spawnIdp(['audit', 'events', '--target', `user:${user.id}`, '--limit', '1', '--cursor', page.nextCursor, '--json'], env), 60_000);
    assert.equal(next.code, 0, next.stderr);
    assert.deepEqual((JSON.parse(next.stdout) as { data: AuditEvent[] }).data.map((e) => e.type), ['user.created']);
    const byEmail = await finished(spawnIdp(['users', 'events', user.email], env), 60_000);
    assert.equal(byEmail.code, 0, byEmail.stderr);
    assert.match(byEmail.stdout, /user\.updated[\s\S]*user\.created/);
  });
});
