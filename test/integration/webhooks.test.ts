import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { AdminApi, adminToken, assertError, marker, startAdminServer } from '../helpers/admin.ts';
import { listenOn, onPostgres, portOf, startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';
import { ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET } from '../helpers/admin.ts';
import { createUser, registerClient, rpConfig, signIn } from '../helpers/rp.ts';
import { sleep, waitFor } from '../helpers/wait.ts';

interface Received {
  headers: Record<string, string>;
  body: string;
  /** What the reference library's verify made of it; undefined when the signature did not verify. */
  payload: any;
  /** The status the receiver answered (undefined: it never answered). */
  answered?: number;
}

/**
 * A webhook receiver on the loopback: it keeps every request, checks each signature with the
 * Standard Webhooks reference library (the secret given by `secretFor`) and answers `answer`
 * (a status, or 'hang' to never answer).
 */
async function startReceiver() {
  const received: Received[] = [];
  let answer: number | 'hang' = 200;
  let location: string | undefined;
  let secret = '';
  const hanging: http.ServerResponse[] = [];
  const server = await listenOn(0);
  server.on('request', (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)]));
      let payload: unknown;
      try {
        payload = new Webhook(secret).verify(body, headers);
      } catch {
        payload = undefined;
      }
      if (answer === 'hang') {
        received.push({ headers, body, payload });
        hanging.push(res);
        return;
      }
      received.push({ headers, body, payload, answered: answer });
      res.statusCode = answer;
      if (location) res.setHeader('location', location);
      res.end('ok');
    });
  });
  return {
    received,
    url: `http://127.0.0.1:${portOf(server)}/hook`,
    port: portOf(server),
    set answer(value: number | 'hang') {
      answer = value;
    },
    set secret(value: string) {
      secret = value;
    },
    set location(value: string) {
      location = value;
    },
    async close() {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
type Receiver = Awaited<ReturnType<typeof startReceiver>>;

const FAST = {
  WEBHOOK_POLL_INTERVAL_MS: '50',
  WEBHOOK_RETRY_BASE_MS: '100',
  WEBHOOK_RETRY_MAX_MS: '300',
  WEBHOOK_TIMEOUT_MS: '1000',
};

const userEmail = () => `${marker('wh')}@example.com`;

describe('webhooks', () => {
  let ts: TestServer;
  let api: AdminApi;
  before(async () => {
    ts = await startAdminServer({ ...FAST, WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true', WEBHOOK_RETRY_WINDOW_SECONDS: '4' });
    api = new AdminApi(ts, await adminToken(ts));
  });
  after(() => stopAndDestroy(ts));

  async function register(receiver: Receiver, events: string[], extra: Record<string, unknown> = {}) {
    const res = await api.post('/webhooks', { url: receiver.url, events, ...extra });
    assert.equal(res.status, 201, res.text);
    receiver.secret = res.body.secret;
    return res.body as { id: string; secret: string; url: string; events: string[]; enabled: boolean };
  }

  const deliveriesOf = async (id: string) => {
    const res = await api.get(`/webhooks/${id}/deliveries?pageSize=100`);
    assert.equal(res.status, 200, res.text);
    return res.body.data as Array<Record<string, any>>;
  };

  it('a user life cycle through the admin API reaches the receiver in order, each delivery signed after Standard Webhooks', async () => {
    const receiver = await startReceiver();
    try {
      const hook = await register(receiver, ['user.*'], { description: 'life cycle' });
      assert.match(hook.secret, /^whsec_[A-Za-z0-9+/]{43}=$/);
      assert.deepEqual([hook.url, hook.events, hook.enabled], [receiver.url, ['user.*'], true]);

      const created = await api.post('/users', { email: userEmail(), givenName: 'Ada' });
      assert.equal(created.status, 201, created.text);
      const id = created.body.id as string;
      assert.equal((await api.patch(`/users/${id}`, { givenName: 'Ada L.' })).status, 200);
      assert.equal((await api.post(`/users/${id}/suspend`)).status, 200);
      assert.equal((await api.delete(`/users/${id}`)).status, 200);

      const mine = () => receiver.received.filter((r) => r.payload?.data?.user?.id === id);
      await waitFor('four deliveries', () => mine().length >= 4);
      await sleep(300);
      const got = mine();
      assert.equal(got.length, 4, 'each event once');
      assert.ok(receiver.received.every((r) => r.payload !== undefined), 'every signature verifies with the reference library');
      const types = got.map((r) => r.payload.type as string);
      assert.equal(types[0], 'user.created');
      assert.equal(types[1], 'user.updated');
      // The suspension: its own type once the catalogue has it, a status change of user.updated until then.
      assert.ok(types[2] === 'user.suspended' || (types[2] === 'user.updated' && got[2]!.payload.data.changes.status.to === 'suspended'), types[2]);
      assert.equal(types[3], 'user.deleted');
      for (const r of got) {
        assert.match(r.headers['webhook-id']!, /^[0-9a-f-]{36}$/);
        assert.match(r.headers['webhook-timestamp']!, /^\d+$/);
        assert.ok(Math.abs(Number(r.headers['webhook-timestamp']) - Date.now() / 1000) < 30);
        assert.match(r.headers['webhook-signature']!, /^v1,/);
        assert.equal(r.headers['content-type'], 'application/json');
        assert.deepEqual(Object.keys(r.payload).sort(), ['data', 'id', 'timestamp', 'type']);
        assert.deepEqual(r.payload.data.actor, { type: 'client', id: ADMIN_CLIENT_ID });
        assert.equal(r.payload.data.target.id, id);
      }
      assert.equal(new Set(got.map((r) => r.headers['webhook-id'])).size, 4, 'a webhook-id per delivery');
      // A signature made with another secret does not verify.
      assert.throws(() => new Webhook(`whsec_${Buffer.alloc(32, 1).toString('base64')}`).verify(got[0]!.body, got[0]!.headers));

      // The delivery log: newest first, each with its answer and latency.
      const log = await deliveriesOf(hook.id);
      const ofUser = log.filter((d) => got.some((r) => r.headers['webhook-id'] === d.id));
      assert.equal(ofUser.length, 4);
      for (const d of ofUser) {
        assert.equal(d.status, 'succeeded');
        assert.equal(d.responseStatus, 200);
        assert.equal(d.attempts, 1);
        assert.equal(typeof d.latencyMs, 'number');
        assert.ok(d.deliveredAt);
        assert.equal(d.nextAttemptAt, null);
      }
      assert.deepEqual(ofUser.map((d) => d.eventType), [...types].reverse());
    } finally {
      await receiver.close();
    }
  });

  it('only subscribed event types are queued; a disabled webhook gets nothing', async () => {
    const receiver = await startReceiver();
    const other = await startReceiver();
    try {
      const hook = await register(receiver, ['user.deleted']);
      const off = await api.post('/webhooks', { url: other.url, events: ['*'], enabled: false });
      assert.equal(off.status, 201);
      const created = await api.post('/users', { email: userEmail() });
      await api.delete(`/users/${created.body.id}`);
      await waitFor('the deletion', () => receiver.received.some((r) => r.payload?.data?.user?.id === created.body.id));
      await sleep(300);
      assert.deepEqual(receiver.received.map((r) => r.payload.type), ['user.deleted']);
      assert.equal(other.received.length, 0);
      assert.deepEqual(await deliveriesOf(off.body.id), []);
      assert.equal((await deliveriesOf(hook.id)).length, 1);
    } finally {
      await receiver.close();
      await other.close();
    }
  });

  it('a receiver that is down for a while gets the deliveries once it is back; a redelivery repeats the same webhook-id', async () => {
    const receiver = await startReceiver();
    try {
      const hook = await register(receiver, ['user.created']);
      receiver.answer = 503;
      const created = await api.post('/users', { email: userEmail() });
      await waitFor('two failed attempts', () => receiver.received.length >= 2);
      const failing = (await deliveriesOf(hook.id))[0]!;
      assert.equal(failing.status, 'pending');
      assert.equal(failing.responseStatus, 503);
      assert.match(failing.lastError, /503/);
      assert.ok(failing.attempts >= 1);
      receiver.answer = 200;
      const done = await waitFor('the delivery', async () => {
        const [d] = await deliveriesOf(hook.id);
        return d?.status === 'succeeded' ? d : undefined;
      });
      assert.equal(done.responseStatus, 200);
      assert.ok(done.attempts >= 3);
      const ids = new Set(receiver.received.map((r) => r.headers['webhook-id']));
      assert.deepEqual([...ids], [done.id], 'every attempt carried the same webhook-id');
      assert.equal(receiver.received.at(-1)!.payload.data.user.id, created.body.id);

      const before = receiver.received.length;
      const again = await api.post(`/webhooks/${hook.id}/deliveries/${done.id}/retry`);
      assert.equal(again.status, 202, again.text);
      assert.equal(again.body.status, 'pending');
      await waitFor('the redelivery', () => receiver.received.length > before);
      assert.equal(receiver.received.at(-1)!.headers['webhook-id'], done.id);
      assert.equal(receiver.received.at(-1)!.body, receiver.received[0]!.body, 'the same body');
      assertError(await api.post(`/webhooks/${hook.id}/deliveries/00000000-0000-4000-8000-000000000000/retry`), 404, 'IDENT_WEBHOOK_NOT_FOUND');
      assertError(await api.post(`/webhooks/${hook.id}/deliveries/not-a-uuid/retry`), 404, 'IDENT_WEBHOOK_NOT_FOUND');
    } finally {
      await receiver.close();
    }
  });

  it('a receiver that fails for the whole retry window: the delivery fails and the webhook is disabled with a webhook.disabled event', async () => {
    const dead = await startReceiver();
    const watcher = await startReceiver();
    try {
      dead.answer = 500;
      const hook = await register(dead, ['user.created']);
      const watch = await api.post('/webhooks', { url: watcher.url, events: ['webhook.disabled'] });
      watcher.secret = watch.body.secret;
      await api.post('/users', { email: userEmail() });
      const event = await waitFor('webhook.disabled', () => watcher.received.find((r) => r.payload?.data?.webhook?.id === hook.id), 20_000);
      assert.equal(event.payload.type, 'webhook.disabled');
      assert.deepEqual(event.payload.data.target, { type: 'webhook', id: hook.id });
      assert.deepEqual(event.payload.data.actor, { type: 'system', id: null });
      const after = await api.get(`/webhooks/${hook.id}`);
      assert.equal(after.body.enabled, false);
      assert.match(after.body.disabledReason, /retry window/);
      const [d] = await deliveriesOf(hook.id);
      assert.equal(d!.status, 'failed');
      assert.equal(d!.responseStatus, 500);
      assert.ok(d!.attempts >= 3);
      // Turned back on: it receives again, and the reason is gone.
      dead.answer = 200;
      const on = await api.patch(`/webhooks/${hook.id}`, { enabled: true });
      assert.equal(on.body.disabledReason, null);
      const created = await api.post('/users', { email: userEmail() });
      await waitFor('a delivery after re-enabling', () => dead.received.some((r) => r.payload?.data?.user?.id === created.body.id));
    } finally {
      await dead.close();
      await watcher.close();
    }
  });

  it('a redirect is not followed: it counts as a failed attempt and its target is never called', async () => {
    const redirecting = await startReceiver();
    const target = await startReceiver();
    try {
      redirecting.answer = 307;
      redirecting.location = target.url;
      const hook = await register(redirecting, ['user.created']);
      await api.post('/users', { email: userEmail() });
      const d = await waitFor('a failed attempt', async () => (await deliveriesOf(hook.id))[0]?.attempts >= 1 ? (await deliveriesOf(hook.id))[0] : undefined);
      assert.equal(d.responseStatus, 307);
      assert.equal(d.status, 'pending');
      await sleep(300);
      assert.equal(target.received.length, 0);
      assert.equal((await api.patch(`/webhooks/${hook.id}`, { enabled: false })).status, 200);
    } finally {
      await redirecting.close();
      await target.close();
    }
  });

  it('POST /webhooks honours Idempotency-Key: a retry gets the first answer, secret included', async () => {
    const key = marker('idem');
    const body = { url: 'https://hooks.example.com/idempotent', events: ['user.created'], enabled: false };
    const first = await api.post('/webhooks', body, { headers: { 'idempotency-key': key } });
    const again = await api.post('/webhooks', body, { headers: { 'idempotency-key': key } });
    assert.equal(first.status, 201);
    assert.equal(again.status, 201);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(again.body, first.body);
    assertError(await api.post('/webhooks', { ...body, events: ['*'] }, { headers: { 'idempotency-key': key } }), 409, 'IDENT_IDEMPOTENCY_MISMATCH');
  });

  it('a receiver that never answers slows neither the admin API nor sign-ins: delivery is off the request path', async () => {
    const slow = await startReceiver();
    try {
      slow.answer = 'hang';
      const hook = await register(slow, ['*']);
      const started = Date.now();
      for (let i = 0; i < 3; i++) assert.equal((await api.post('/users', { email: userEmail() })).status, 201);
      assert.ok(Date.now() - started < 2000, `three creations took ${Date.now() - started} ms`);
      await waitFor('the receiver to be called', () => slow.received.length >= 1);
      // A sign-in (user.signed_in) while the receiver holds a delivery open.
      const user = await createUser(ts);
      const config = await rpConfig(ts, await registerClient(ts, {}, true));
      const { tokens } = await signIn(ts, config, user);
      assert.equal(tokens.claims()!.sub, user.id);
      assert.equal((await api.patch(`/webhooks/${hook.id}`, { enabled: false })).status, 200);
    } finally {
      await slow.close();
    }
  });

  it('the secret is shown at creation and rotation only, sealed at rest, and a rotation signs with the new one', async () => {
    const receiver = await startReceiver();
    try {
      const hook = await register(receiver, ['user.created']);
      const answers = [await api.get(`/webhooks/${hook.id}`), await api.get('/webhooks?pageSize=100'), await api.patch(`/webhooks/${hook.id}`, { description: 'renamed' })];
      for (const res of answers) {
        assert.equal(res.status, 200, res.text);
        assert.ok(!res.text.includes(hook.secret.slice(6)), 'no secret in GET, list or PATCH');
        assert.ok(!res.text.includes('"secret"'));
      }
      assert.equal(answers[2]!.body.description, 'renamed');
      assert.ok(answers[1]!.body.data.some((w: { id: string }) => w.id === hook.id));
      const rows = await ts.server.services.db('webhooks').where({ id: hook.id });
      assert.ok(!JSON.stringify(rows).includes(hook.secret.slice(6)), 'sealed at rest');

      const rotated = await api.post(`/webhooks/${hook.id}/secret`);
      assert.equal(rotated.status, 200, rotated.text);
      assert.match(rotated.body.secret, /^whsec_/);
      assert.notEqual(rotated.body.secret, hook.secret);
      receiver.secret = rotated.body.secret;
      await api.post('/users', { email: userEmail() });
      await waitFor('a delivery', () => receiver.received.length >= 1);
      assert.ok(receiver.received[0]!.payload, 'signed with the new secret');
      assert.throws(() => new Webhook(hook.secret).verify(receiver.received[0]!.body, receiver.received[0]!.headers), 'not with the old one');

      assert.equal((await api.delete(`/webhooks/${hook.id}`)).status, 204);
      assertError(await api.get(`/webhooks/${hook.id}`), 404, 'IDENT_WEBHOOK_NOT_FOUND');
      assertError(await api.get(`/webhooks/${hook.id}/deliveries`), 404, 'IDENT_WEBHOOK_NOT_FOUND');
      assertError(await api.delete(`/webhooks/${hook.id}`), 404, 'IDENT_WEBHOOK_NOT_FOUND');
      assertError(await api.post(`/webhooks/${hook.id}/secret`), 404, 'IDENT_WEBHOOK_NOT_FOUND');
      assertError(await api.get('/webhooks/not-a-uuid'), 404, 'IDENT_WEBHOOK_NOT_FOUND');
    } finally {
      await receiver.close();
    }
  });

  it('bad input answers 400 with the envelope', async () => {
    const good = { url: 'https://hooks.example.com/in', events: ['user.created'] };
    const bad: Array<[string, unknown]> = [
      ['no url', { events: ['*'] }],
      ['no events', { url: good.url }],
      ['empty events', { ...good, events: [] }],
      ['an event type with spaces', { ...good, events: ['User Created'] }],
      ['a non-string event', { ...good, events: [42] }],
      ['ftp', { ...good, url: 'ftp://hooks.example.com/' }],
      ['not a URL', { ...good, url: 'hooks.example.com' }],
      ['credentials in the URL', { ...good, url: 'https://user:pw@hooks.example.com/' }],
      ['a fragment', { ...good, url: 'https://hooks.example.com/#x' }],
      ['an unknown field', { ...good, secret: 'whsec_mine' }],
      ['enabled not a boolean', { ...good, enabled: 'yes' }],
      ['a control character in the description', { ...good, description: 'a\u0007b' }],
      ['an array', [good]],
    ];
    for (const [what, body] of bad) assertError(await api.post('/webhooks', body), 400, 'IDENT_VALIDATION', what);
    assertError(await api.post('/webhooks', undefined, { raw: '{"url":', headers: { 'content-type': 'application/json' } }), 400, 'IDENT_VALIDATION', 'broken JSON');
    const hook = await api.post('/webhooks', good);
    assert.equal(hook.status, 201);
    assertError(await api.patch(`/webhooks/${hook.body.id}`, { events: [] }), 400, 'IDENT_VALIDATION', 'PATCH empty events');
    assertError(await api.patch(`/webhooks/${hook.body.id}`, { url: 'gopher://x/' }), 400, 'IDENT_VALIDATION', 'PATCH url');
    assertError(await api.get('/webhooks?pageSize=1000'), 400, 'IDENT_VALIDATION', 'page size');
  });

  it('a token without the iam.webhooks scopes answers 403', async () => {
    const usersOnly = await adminToken(ts, ['iam.users:read']);
    assertError(await api.get('/webhooks', { token: usersOnly }), 403, 'IDENT_FORBIDDEN');
    assertError(await api.post('/webhooks', { url: 'https://hooks.example.com/', events: ['*'] }, { token: usersOnly }), 403, 'IDENT_FORBIDDEN');
    const readOnly = await adminToken(ts, ['iam.webhooks:read']);
    assert.equal((await api.get('/webhooks', { token: readOnly })).status, 200);
    assertError(await api.post('/webhooks', { url: 'https://hooks.example.com/', events: ['*'] }, { token: readOnly }), 403, 'IDENT_FORBIDDEN');
    const hook = await api.post('/webhooks', { url: 'https://hooks.example.com/', events: ['*'] });
    assertError(await api.post(`/webhooks/${hook.body.id}/secret`, undefined, { token: readOnly }), 403, 'IDENT_FORBIDDEN');
    assertError(await api.delete(`/webhooks/${hook.body.id}`, { token: readOnly }), 403, 'IDENT_FORBIDDEN');
    assertError(await api.get('/webhooks', { token: null }), 401, 'IDENT_UNAUTHENTICATED');
  });
});

describe('webhooks and server-side request forgery (private networks not allowed)', () => {
  let ts: TestServer;
  let api: AdminApi;
  before(async () => {
    ts = await startAdminServer(FAST);
    api = new AdminApi(ts, await adminToken(ts));
  });
  after(() => stopAndDestroy(ts));

  it('literal loopback, private, link-local and metadata addresses are refused at registration', async () => {
    for (const url of [
      'http://127.0.0.1:8080/hook', 'http://127.1/', 'http://0x7f.1/', 'http://2130706433/', 'http://0.0.0.0/', 'http://10.1.2.3/',
      'http://172.16.0.1/', 'http://192.168.1.1/', 'http://100.64.0.1/', 'http://169.254.169.254/latest/meta-data/',
      'http://[::1]/', 'http://[::ffff:127.0.0.1]/', 'http://[fe80::1]/', 'http://[fd00:ec2::254]/', 'https://[::]/',
      'http://[fc00::1]/', 'http://[64:ff9b::7f00:1]/', 'http://224.0.0.1/', 'http://255.255.255.255/',
    ]) {
      assertError(await api.post('/webhooks', { url, events: ['*'] }), 400, 'IDENT_VALIDATION', url);
    }
    // The control: public literal addresses are fine.
    for (const url of ['http://93.184.216.34/hook', 'https://[2606:4700:4700::1111]/hook']) {
      const res = await api.post('/webhooks', { url, events: ['*'], enabled: false });
      assert.equal(res.status, 201, `${url}: ${res.text}`);
    }
    const hook = await api.post('/webhooks', { url: 'https://hooks.example.com/', events: ['*'] });
    assert.equal(hook.status, 201);
    assertError(await api.patch(`/webhooks/${hook.body.id}`, { url: 'http://169.254.169.254/' }), 400, 'IDENT_VALIDATION', 'PATCH to metadata');
    assert.equal((await api.delete(`/webhooks/${hook.body.id}`)).status, 204);
  });

  it('a host name that resolves to the loopback is refused at send time: the receiver is never called', async () => {
    const receiver = await startReceiver();
    try {
      const res = await api.post('/webhooks', { url: `http://localhost:${receiver.port}/hook`, events: ['user.created'] });
      assert.equal(res.status, 201, 'a host name is checked when sending, against what it resolves to then');
      await api.post('/users', { email: userEmail() });
      const d = await waitFor('a refused attempt', async () => {
        const log = await api.get(`/webhooks/${res.body.id}/deliveries`);
        return log.body.data[0]?.attempts >= 1 ? log.body.data[0] : undefined;
      });
      assert.equal(d.responseStatus, null);
      assert.match(d.lastError, /forbidden address/);
      await sleep(300);
      assert.equal(receiver.received.length, 0);
    } finally {
      await receiver.close();
    }
  });
});

// Instances share PostgreSQL and Redis and nothing else; the embedded store is single-instance.
describe('webhooks on two instances', { skip: !(onPostgres && process.env.REDIS_URL) && 'needs PostgreSQL + Redis (DATABASE_URL, REDIS_URL)' }, () => {
  let a: TestServer;
  let b: TestServer;
  before(async () => {
    const settings = {
      ...FAST, WEBHOOK_POLL_INTERVAL_MS: '10', WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
      BOOTSTRAP_ADMIN_CLIENT_ID: ADMIN_CLIENT_ID, BOOTSTRAP_ADMIN_CLIENT_SECRET: ADMIN_CLIENT_SECRET,
    };
    a = await startTestServer(settings);
    b = await startTestServer({ ...settings, ISSUER: a.issuer }, { store: a.store });
  });
  after(async () => {
    await b?.stop();
    await stopAndDestroy(a);
  });

  it('each event reaches the receiver once, whichever instance records it and both polling the queue', async () => {
    const receiver = await startReceiver();
    try {
      const apiA = new AdminApi(a, await adminToken(a));
      const apiB = new AdminApi(b, await adminToken(a));
      const hook = await apiA.post('/webhooks', { url: receiver.url, events: ['user.created'] });
      receiver.secret = hook.body.secret;
      // A backlog first (the receiver refuses), then both instances race for it.
      receiver.answer = 503;
      // B hears of the new webhook through Redis: its events are queued too.
      const ids: string[] = [];
      for (let i = 0; i < 15; i++) {
        const res = await (i % 2 ? apiB : apiA).post('/users', { email: userEmail() });
        assert.equal(res.status, 201);
        ids.push(res.body.id);
      }
      await waitFor('failed attempts', () => receiver.received.length >= 3);
      receiver.answer = 200;
      const taken = () => receiver.received.filter((r) => r.answered === 200);
      await waitFor('every delivery', () => ids.every((id) => taken().some((r) => r.payload?.data?.user?.id === id)));
      await sleep(1000);
      const webhookIds = taken().map((r) => r.headers['webhook-id']);
      assert.equal(webhookIds.length, 15, 'nothing twice');
      assert.equal(new Set(webhookIds).size, 15);
      assert.ok(receiver.received.every((r) => r.payload), 'signatures verify');
    } finally {
      await receiver.close();
    }
  });
});
