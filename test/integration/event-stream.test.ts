import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { importJWK, SignJWT } from 'jose';
import { ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, AdminApi, adminToken, assertError, startAdminServer } from '../helpers/admin.ts';
import { uniqueEmail } from '../helpers/rp.ts';
import { onPostgres, startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';
import { sleep, waitFor } from '../helpers/wait.ts';
import { ADMIN_SCOPES, adminAudience } from '../../src/domain/clients/admin-scopes.ts';
import type { RecordedEvent } from '../../src/domain/events/events.ts';
import { createSseSink } from '../../src/http/api/event-stream.ts';

interface SseMessage {
  id?: string;
  data: any;
}

/**
 * A server-sent events client over fetch, as a dashboard would use one (EventSource cannot send
 * an Authorization header): it keeps every message, comment and `id:` it read.
 */
class SseClient {
  readonly messages: SseMessage[] = [];
  readonly comments: string[] = [];
  /** The last `id:` seen, with or without data (what EventSource keeps as lastEventId). */
  lastEventId: string | undefined;
  status = 0;
  ended = false;
  readonly done: Promise<void>;
  readonly #abort = new AbortController();
  #opened!: () => void;
  readonly #ready = new Promise<void>((resolve) => (this.#opened = resolve));

  constructor(url: URL, token: string, headers: Record<string, string> = {}) {
    this.done = this.#run(url, token, headers);
  }

  async #run(url: URL, token: string, headers: Record<string, string>) {
    try {
      const res = await fetch(url, { headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream', ...headers }, signal: this.#abort.signal });
      this.status = res.status;
      this.headers = res.headers;
      if (res.status !== 200) {
        this.body = await res.text();
        return;
      }
      this.#opened();
      const decoder = new TextDecoder();
      let buffer = '';
      for await (const chunk of res.body!) {
        buffer += decoder.decode(chunk as Uint8Array, { stream: true });
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          this.#block(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    } catch (err) {
      if ((err as Error).name !== 'AbortError') throw err;
    } finally {
      this.ended = true;
      this.#opened();
    }
  }

  headers: Headers | undefined;
  body = '';

  #block(block: string) {
    let data: string | undefined;
    let id: string | undefined;
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) this.comments.push(line.slice(1).trim());
      else if (line.startsWith('id:')) id = line.slice(3).trim();
      else if (line.startsWith('data:')) data = (data === undefined ? '' : `${data}\n`) + line.slice(5).trimStart();
    }
    if (id !== undefined) this.lastEventId = id;
    if (data !== undefined) this.messages.push({ ...(id !== undefined ? { id } : {}), data: JSON.parse(data) });
  }

  /** Resolves once the response headers are in (or the request failed). */
  opened() {
    return this.#ready;
  }

  /** The messages of one user, by type. */
  about(userId: string) {
    return this.messages.filter((m) => m.data.target?.id === userId);
  }

  close() {
    this.#abort.abort();
    return this.done;
  }
}

/** Stream ids are seqs: numbers, increasing. */
function assertIncreasing(messages: SseMessage[]) {
  const ids = messages.map((m) => BigInt(m.id!));
  for (let i = 1; i < ids.length; i++) assert.ok(ids[i]! > ids[i - 1]!, `ids increase: ${ids.join(',')}`);
}

async function openStream(ts: TestServer, token: string, query = '', headers: Record<string, string> = {}) {
  const client = new SseClient(new URL(`/api/v1/events/stream${query}`, ts.issuer), token, headers);
  await client.opened();
  assert.equal(client.status, 200, client.body);
  return client;
}

describe('live events: GET /api/v1/events/stream (server-sent events)', () => {
  let ts: TestServer;
  let api: AdminApi;
  let token: string;
  const streams: SseClient[] = [];
  const stream = async (query = '', headers: Record<string, string> = {}) => {
    const s = await openStream(ts, token, query, headers);
    streams.push(s);
    return s;
  };

  before(async () => {
    ts = await startAdminServer();
    token = await adminToken(ts);
    api = new AdminApi(ts, token);
  });
  after(async () => {
    await stopAndDestroy(ts);
    await Promise.all(streams.map((s) => s.close()));
  });

  const createUser = async () => {
    const res = await api.post('/users', { email: uniqueEmail('live'), givenName: 'Live' });
    assert.equal(res.status, 201, res.text);
    return res.body as { id: string; email: string };
  };
  const rename = async (id: string, givenName: string) => assert.equal((await api.patch(`/users/${id}`, { givenName })).status, 200);

  it('sends each event as it commits, in the audit API shape, with its seq as the id', async () => {
    const live = await stream();
    assert.equal(live.headers?.get('content-type'), 'text/event-stream; charset=utf-8');
    assert.equal(live.headers?.get('cache-control'), 'no-store');
    assert.equal(live.headers?.get('x-accel-buffering'), 'no');
    const user = await createUser();
    const [message] = await waitFor('the event', () => (live.about(user.id).length ? live.about(user.id) : undefined));
    assert.match(message!.id!, /^\d+$/);
    const listed = await api.get(`/audit/events?target=user:${user.id}`);
    assert.deepEqual(message!.data, listed.body.data[0]);
    assert.equal(message!.data.type, 'user.created');
    assert.deepEqual(message!.data.actor, { type: 'client', id: ADMIN_CLIENT_ID });
    // Nothing from before the stream opened is sent without Last-Event-ID.
    assert.ok(live.messages.every((m) => BigInt(m.id!) >= BigInt(message!.id!)));
  });

  it('resumes from Last-Event-ID: what was missed is replayed from the table, then live events follow, nothing twice', async () => {
    const first = await stream();
    const user = await createUser();
    const [seen] = await waitFor('the first event', () => (first.about(user.id).length ? first.about(user.id) : undefined));
    await first.close();
    // Missed while disconnected.
    for (let i = 0; i < 3; i++) await rename(user.id, `Missed ${i}`);
    const resumed = await stream('', { 'last-event-id': seen!.id! });
    await waitFor('the replay', () => resumed.about(user.id).length >= 3);
    await rename(user.id, 'Live again');
    await waitFor('the live event', () => resumed.about(user.id).length >= 4);
    await sleep(200);
    const mine = resumed.about(user.id);
    assert.deepEqual(mine.map((m) => m.data.data.user.firstName), ['Missed 0', 'Missed 1', 'Missed 2', 'Live again']);
    assert.ok(!resumed.messages.some((m) => m.id === seen!.id), 'the event before Last-Event-ID is not sent again');
    assertIncreasing(resumed.messages);
  });

  it('a replay racing new inserts neither repeats nor loses an event', async () => {
    const user = await createUser();
    const start = (await api.get(`/audit/events?target=user:${user.id}`)).body.data[0].id as string;
    const probe = await stream();
    await rename(user.id, 'marker');
    const [marker] = await waitFor('the marker', () => (probe.about(user.id).length ? probe.about(user.id) : undefined));
    await probe.close();
    for (let i = 0; i < 40; i++) await rename(user.id, `Backlog ${i}`);
    // Resume from the marker while more events keep coming.
    const writer = (async () => {
      for (let i = 0; i < 15; i++) await rename(user.id, `Racing ${i}`);
    })();
    const resumed = await stream('', { 'last-event-id': marker!.id! });
    await writer;
    await waitFor('every event', () => resumed.about(user.id).length >= 55);
    await sleep(200);
    const names = resumed.about(user.id).map((m) => m.data.data.user.firstName);
    assert.deepEqual(names, [...Array.from({ length: 40 }, (_, i) => `Backlog ${i}`), ...Array.from({ length: 15 }, (_, i) => `Racing ${i}`)]);
    assertIncreasing(resumed.messages);
    assert.ok(start);
  });

  it('filters by types (exact and prefix) and by the reference topics', async () => {
    const created = await stream('?types=user.created');
    const prefixed = await stream('?types=user.*');
    const authState = await stream('?topics=auth-state');
    const profile = await stream('?topics=profile');
    const both = await stream('?topics=auth-state,profile&types=user.created');
    const user = await createUser();
    await rename(user.id, 'Profiled');
    await api.post(`/users/${user.id}/suspend`);
    await api.post(`/users/${user.id}/reactivate`);
    await api.delete(`/users/${user.id}`);
    const expected = 5;
    await waitFor('the prefix stream', () => prefixed.about(user.id).length >= expected);
    await waitFor('the combined stream', () => both.about(user.id).length >= expected);
    await sleep(300);
    const types = (s: SseClient) => s.about(user.id).map((m) => m.data.type);
    assert.deepEqual(types(created), ['user.created']);
    assert.deepEqual(types(prefixed), ['user.created', 'user.updated', 'user.suspended', 'user.reactivated', 'user.deleted']);
    // auth state: status changes (suspend, reactivate, delete); profile: the rename only.
    assert.deepEqual(authState.about(user.id).map((m) => m.data.data.changes?.status?.to ?? m.data.type), ['suspended', 'active', 'deactivated']);
    assert.deepEqual(profile.about(user.id).map((m) => m.data.data.user.firstName), ['Profiled']);
    assert.equal(both.about(user.id).length, 5);
  });

  it('refuses bad input and callers without iam.audit:read, with envelopes', async () => {
    const url = (q = '') => new URL(`/api/v1/events/stream${q}`, ts.issuer);
    const get = async (q: string, headers: Record<string, string>) => {
      const res = await fetch(url(q), { headers });
      const text = await res.text();
      return { status: res.status, headers: res.headers, text, body: JSON.parse(text) };
    };
    const auth = { authorization: `Bearer ${token}` };
    assertError(await get('?topics=kafka', auth), 400, 'IDENT_VALIDATION', 'unknown topic');
    assertError(await get('?types=User%20Created', auth), 400, 'IDENT_VALIDATION', 'bad type');
    assertError(await get('', { ...auth, 'last-event-id': 'abc' }), 400, 'IDENT_VALIDATION', 'bad Last-Event-ID');
    assertError(await get('', { ...auth, 'last-event-id': '99999999999999999999' }), 400, 'IDENT_VALIDATION', 'Last-Event-ID out of range');
    assertError(await get('?types=a&types=b', auth), 400, 'IDENT_VALIDATION', 'repeated');
    assertError(await get('', {}), 401, 'IDENT_UNAUTHENTICATED');
    const noAudit = await adminToken(ts, ADMIN_SCOPES.filter((s) => s !== 'iam.audit:read'));
    const refused = await get('', { authorization: `Bearer ${noAudit}` });
    assertError(refused, 403, 'IDENT_FORBIDDEN');
    assert.match(refused.headers.get('www-authenticate') ?? '', /scope="iam.audit:read"/);
    for (const method of ['POST', 'PUT', 'DELETE']) {
      const res = await fetch(url(), { method, headers: auth });
      const text = await res.text();
      assertError({ status: res.status, headers: res.headers, text, body: JSON.parse(text) }, 405, 'IDENT_METHOD_NOT_ALLOWED', method);
    }
  });

  it('ends when the access token expires; the client comes back with a new token and Last-Event-ID', async () => {
    const keySet = await ts.server.services.keys.load();
    const jwk = keySet.jwks.keys.find((k) => (k as { alg?: string }).alg === 'ES256') as { kid: string };
    const key = await importJWK(jwk as never, 'ES256');
    const now = Math.floor(Date.now() / 1000);
    const shortLived = await new SignJWT({ client_id: ADMIN_CLIENT_ID, scope: 'iam.audit:read' })
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: jwk.kid })
      .setIssuer(ts.issuer).setAudience(adminAudience(ts.issuer)).setSubject(ADMIN_CLIENT_ID)
      .setIssuedAt(now).setExpirationTime(now + 2)
      .sign(key);
    const s = await openStream(ts, shortLived);
    const user = await createUser();
    await waitFor('the event', () => s.about(user.id).length === 1);
    await waitFor('the end of the stream', () => s.ended, 10_000);
    assert.ok(s.comments.some((c) => /token expired/.test(c)), s.comments.join('|'));
    await rename(user.id, 'After expiry');
    const again = await stream('', { 'last-event-id': s.lastEventId! });
    await waitFor('the missed event', () => again.about(user.id).length === 1);
    assert.equal(again.about(user.id)[0]!.data.data.user.firstName, 'After expiry');
  });

  it('sends heartbeats; a filtered stream\'s heartbeat carries the id it has got past', { timeout: 60_000 }, async () => {
    const quiet = await stream('?types=user.deleted');
    const user = await createUser();
    const created = (await api.get(`/audit/events?target=user:${user.id}`)).body.data[0];
    assert.ok(created);
    await waitFor('a heartbeat', () => quiet.comments.includes('keep-alive'), 20_000);
    assert.equal(quiet.messages.length, 0);
    // The id is at least the user.created event's seq: a reconnect would not rescan it.
    const all = await stream();
    await rename(user.id, 'Seq probe');
    const [probe] = await waitFor('probe', () => (all.about(user.id).length ? all.about(user.id) : undefined));
    assert.ok(quiet.lastEventId !== undefined && BigInt(quiet.lastEventId) < BigInt(probe!.id!) && BigInt(quiet.lastEventId) > 0n);
  });

  it('a client too slow to read is disconnected rather than buffered without bound', async () => {
    // The writer over a destination that never drains (a client that stopped reading).
    let dropped = false;
    const stuck = new Writable({ highWaterMark: 1024, write: () => {} });
    const writer = createSseSink(stuck, { maxBufferedBytes: 16 * 1024 }, () => (dropped = true));
    const event: RecordedEvent = {
      id: crypto.randomUUID(), seq: '1', type: 'user.updated', tenantId: 'default', occurredAt: new Date(),
      actor: { type: 'system', id: null }, target: null, ip: null, userAgent: null, requestId: null, data: { pad: 'x'.repeat(1000) },
    };
    let sent = 0;
    while (!writer.gone && sent < 1000) {
      writer.sink.send({ ...event, seq: String(++sent) });
    }
    assert.ok(dropped, 'the slow client was dropped');
    assert.ok(sent < 30, `dropped after ${sent} events (about 16 kB), not after growing`);
    assert.ok(stuck.destroyed);
    assert.equal(await writer.sink.ready(), false);
  });

  /** An event row as the recorder writes it, in a transaction the test controls. */
  const rowFor = (userId: string, givenName: string) => ({
    id: crypto.randomUUID(), type: 'user.updated', tenant_id: 'default', subject_id: userId, actor_type: 'system', actor_id: null,
    target_type: 'user', target_id: userId, ip: null, user_agent: null, request_id: null,
    payload: { user: { id: userId, firstName: givenName }, changed: ['givenName'] },
  });

  it('a seq left unused by a rolled-back transaction holds the stream up only briefly', async () => {
    const user = await createUser();
    const live = await stream();
    const { db, repos } = ts.server.services;
    await assert.rejects(db.transaction(async (trx) => {
      await repos.events.insert(rowFor(user.id, 'Rolled back'), trx);
      throw new Error('roll back');
    }), /roll back/);
    const started = Date.now();
    await rename(user.id, 'After the hole');
    await waitFor('the event past the hole', () => live.about(user.id).length === 1, 10_000);
    assert.ok(Date.now() - started < 8000);
    assert.equal(live.about(user.id)[0]!.data.data.user.firstName, 'After the hole');
  });

  it('events reach the stream in seq order even when a lower seq commits after a higher one', { skip: !onPostgres && 'PGlite runs one transaction at a time' }, async () => {
    const user = await createUser();
    const live = await stream();
    const { db, repos } = ts.server.services;
    let commit!: () => void;
    const held = new Promise<void>((resolve) => (commit = resolve));
    let inserted!: () => void;
    const insertedYet = new Promise<void>((resolve) => (inserted = resolve));
    // A transaction takes a seq, then waits; an API change takes the next seq and commits first.
    const slow = db.transaction(async (trx) => {
      await repos.events.insert(rowFor(user.id, 'Slow'), trx);
      inserted();
      await held;
    });
    await insertedYet;
    await rename(user.id, 'Fast');
    await sleep(500);
    assert.equal(live.about(user.id).length, 0, 'the later seq waits for the hole below it');
    commit();
    await slow;
    await waitFor('both events', () => live.about(user.id).length === 2, 10_000);
    assert.deepEqual(live.about(user.id).map((m) => m.data.data.user.firstName), ['Slow', 'Fast']);
    assertIncreasing(live.messages);
  });

  it('stopping the server ends open streams (stop does not wait for them)', async () => {
    const open = await stream();
    const started = Date.now();
    await ts.stop();
    await waitFor('the stream to end', () => open.ended, 5000);
    assert.ok(Date.now() - started < 5000);
  });
});

const shared = onPostgres && Boolean(process.env.REDIS_URL);

describe('live events across instances (PostgreSQL + Redis)', { skip: !shared && 'needs PostgreSQL + Redis (DATABASE_URL, REDIS_URL)' }, () => {
  let a: TestServer;
  let b: TestServer;
  let api: AdminApi;
  let token: string;
  const streams: SseClient[] = [];
  before(async () => {
    const settings = { BOOTSTRAP_ADMIN_CLIENT_ID: ADMIN_CLIENT_ID, BOOTSTRAP_ADMIN_CLIENT_SECRET: ADMIN_CLIENT_SECRET };
    a = await startTestServer(settings);
    b = await startTestServer({ ...settings, ISSUER: a.issuer }, { store: a.store });
    token = await adminToken(a);
    api = new AdminApi(a, token);
  });
  after(async () => {
    // The servers end their streams (a client's abort makes undici open a spare connection that
    // server.close would wait for until the client drops it).
    await b?.stop();
    await stopAndDestroy(a);
    await Promise.all(streams.map((s) => s.close()));
  });
  const onB = async (headers: Record<string, string> = {}) => {
    const s = await openStream(b, token, '', headers);
    streams.push(s);
    return s;
  };

  it('an event made through instance A arrives on a stream opened on instance B, through Redis at once', async () => {
    const live = await onB();
    const started = Date.now();
    const created = await api.post('/users', { email: uniqueEmail('fanout'), givenName: 'Fan' });
    assert.equal(created.status, 201, created.text);
    await waitFor('the event on B', () => live.about(created.body.id).length === 1, 10_000);
    // Sooner than B's own poll of the table (every 5 s): the notification came through Redis.
    assert.ok(Date.now() - started < 4000, `${Date.now() - started} ms`);
  });

  it('Last-Event-ID from a stream on A resumes on B', async () => {
    const onA = await openStream(a, token);
    streams.push(onA);
    const created = await api.post('/users', { email: uniqueEmail('resume'), givenName: 'Resume' });
    const id = created.body.id as string;
    const [seen] = await waitFor('the event on A', () => (onA.about(id).length ? onA.about(id) : undefined));
    await onA.close();
    for (let i = 0; i < 3; i++) assert.equal((await api.patch(`/users/${id}`, { givenName: `Missed ${i}` })).status, 200);
    const resumed = await onB({ 'last-event-id': seen!.id! });
    await waitFor('the replay on B', () => resumed.about(id).length >= 3);
    await sleep(200);
    assert.deepEqual(resumed.about(id).map((m) => m.data.data.user.firstName), ['Missed 0', 'Missed 1', 'Missed 2']);
    assertIncreasing(resumed.messages);
  });
});
