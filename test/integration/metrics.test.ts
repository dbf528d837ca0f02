import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { adminToken, startAdminServer } from '../helpers/admin.ts';
import { loginStatus } from '../helpers/login-page.ts';
import { createUser, registerClient, rpConfig, signIn } from '../helpers/rp.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

/** One scrape of the metrics listener, as Prometheus would make it. */
async function scrape(ts: TestServer): Promise<string> {
  const port = ts.server.metricsPort;
  assert.ok(port, 'the metrics listener is up');
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return res.text();
}

/** The value of one series (`name{labels}` exactly as exposed, labels in declaration order); 0 when absent. */
function value(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

describe('Prometheus metrics', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startAdminServer({ METRICS_PORT: '0', LOCKOUT_THRESHOLD: '3' });
  });
  after(() => ts.stop());

  it('are served on their own port only, never on the public one', async () => {
    for (const path of ['/metrics', '/metrics/']) {
      const res = await fetch(new URL(path, ts.issuer));
      await res.arrayBuffer();
      assert.equal(res.status, 404, `the public port does not serve ${path}`);
    }
    const other = await fetch(`http://127.0.0.1:${ts.server.metricsPort}/healthz`);
    assert.equal(other.status, 404, 'the metrics port serves nothing but /metrics');
  });

  it('name every family the operator needs', async () => {
    const text = await scrape(ts);
    for (const name of [
      'idp_http_request_duration_seconds',
      'idp_tokens_issued_total',
      'idp_sign_ins_total',
      'idp_lockouts_total',
      'idp_outbox_pending',
      'idp_outbox_oldest_pending_seconds',
      'idp_key_age_seconds',
      'idp_db_pool_connections',
      'process_resident_memory_bytes',
      'nodejs_eventloop_lag_seconds',
    ]) {
      assert.match(text, new RegExp(`^# TYPE ${name} `, 'm'), `${name} is exposed`);
    }
    assert.ok(value(text, 'idp_key_age_seconds{use="sig",alg="RS256"}') >= 0, 'the signing key has an age');
    assert.match(text, /^idp_key_age_seconds\{use="sig",alg="RS256"\} \d/m);
    assert.match(text, /^idp_key_age_seconds\{use="cookie",/m);
    assert.match(text, /^idp_outbox_pending \d+$/m);
  });

  it('count tokens per grant and requests per route template', async () => {
    const before = await scrape(ts);
    await adminToken(ts);
    await adminToken(ts);
    const res = await fetch(new URL('/api/v1/users/no-such-user-42', ts.issuer), { headers: { authorization: `Bearer ${await adminToken(ts)}` } });
    await res.arrayBuffer();
    const after = await scrape(ts);
    assert.equal(value(after, 'idp_tokens_issued_total{grant_type="client_credentials"}') - value(before, 'idp_tokens_issued_total{grant_type="client_credentials"}'), 3);
    const tokenRoute = (text: string) => value(text, 'idp_http_request_duration_seconds_count{method="POST",route="/token",status="200"}');
    assert.equal(tokenRoute(after) - tokenRoute(before), 3, 'the token endpoint is timed under its route');
    assert.match(after, /route="\/api\/v1\/users\/:id",status="404"/, 'a route is labelled by its template');
    assert.doesNotMatch(after, /no-such-user-42/, 'never by the raw path');
  });

  it('count sign-in outcomes, lockouts and the authorization code grant', async () => {
    const rp = await registerClient(ts, { token_endpoint_auth_method: 'client_secret_basic' }, true);
    const user = await createUser(ts);
    const before = await scrape(ts);

    await signIn(ts, await rpConfig(ts, rp), user);
    for (let i = 0; i < 3; i++) assert.equal(await loginStatus(ts, rp.clientId, user.email, 'wrong password'), i < 2 ? 401 : 429);
    assert.equal(await loginStatus(ts, rp.clientId, user.email, user.password), 429, 'locked now');

    const after = await scrape(ts);
    const moved = (series: string) => value(after, series) - value(before, series);
    assert.equal(moved('idp_sign_ins_total{outcome="success"}'), 1);
    assert.equal(moved('idp_sign_ins_total{outcome="invalid_credentials"}'), 2);
    assert.equal(moved('idp_sign_ins_total{outcome="locked"}'), 2, 'the third wrong password reaches the threshold; the right one after it is refused');
    assert.equal(moved('idp_lockouts_total'), 1);
    assert.equal(moved('idp_tokens_issued_total{grant_type="authorization_code"}'), 1);
  });
});

describe('Prometheus metrics are off unless METRICS_PORT is set', () => {
  it('no listener, and the public port still answers 404', async () => {
    const ts = await startTestServer();
    try {
      assert.equal(ts.server.metricsPort, undefined);
      const res = await fetch(new URL('/metrics', ts.issuer));
      await res.arrayBuffer();
      assert.equal(res.status, 404);
    } finally {
      await ts.stop();
    }
  });
});

