import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';

// The per-IP budget of the anonymous account API (AUTH_API_RATE_LIMIT_PER_IP a minute), counted on
// GET /api/v1/auth/captcha: anonymous, cheap, and behind the same limiter as every /api/v1/auth/* call.

interface Answer {
  status: number;
  error?: string;
  retryAfter: string | null;
}

async function captcha(ts: TestServer, forwardedFor?: string): Promise<Answer> {
  const res = await fetch(new URL('/api/v1/auth/captcha', ts.issuer), {
    headers: { accept: 'application/json', ...(forwardedFor ? { 'x-forwarded-for': forwardedFor } : {}) },
  });
  const body = (await res.json()) as { error?: string };
  return { status: res.status, ...(body.error ? { error: body.error } : {}), retryAfter: res.headers.get('retry-after') };
}

function assertLimited(answer: Answer, what: string) {
  assert.equal(answer.status, 429, what);
  assert.equal(answer.error, 'IDENT_RATE_LIMITED', what);
  assert.match(answer.retryAfter ?? '', /^\d+$/, `${what}: Retry-After in seconds`);
  const seconds = Number(answer.retryAfter);
  assert.ok(seconds >= 1 && seconds <= 60, `${what}: within the minute (Retry-After ${seconds})`);
}

describe('anonymous account API: the default per-IP budget', () => {
  let ts: TestServer;
  before(async () => {
    // Default settings: AUTH_API_RATE_LIMIT_PER_IP is not set, so its default (30 a minute) applies.
    ts = await startTestServer();
  });
  after(() => stopAndDestroy(ts));

  it('serves 30 requests a minute from one address; the 31st is 429 IDENT_RATE_LIMITED with Retry-After', async () => {
    for (let i = 1; i <= 30; i++) {
      const answer = await captcha(ts);
      assert.equal(answer.status, 200, `request ${i} of 30 is served`);
      assert.equal(answer.retryAfter, null);
    }
    assertLimited(await captcha(ts), 'the 31st request');
    assertLimited(await captcha(ts), 'and the ones after it');
  });
});

describe('anonymous account API behind two proxies (TRUST_PROXY_HOPS=2)', () => {
  // Client -> proxy 1 (appends the client's address) -> proxy 2 (appends proxy 1's) -> us. The
  // client's address is the second entry from the end; anything before it the client wrote itself.
  const BUDGET = 3;
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer({ TRUST_PROXY: 'true', TRUST_PROXY_HOPS: '2', AUTH_API_RATE_LIMIT_PER_IP: String(BUDGET) });
  });
  after(() => stopAndDestroy(ts));

  it('a forged leftmost entry does not buy a fresh budget', async () => {
    const statuses = [];
    for (const forged of ['1.1.1.1', '2.2.2.2', '3.3.3.3', '4.4.4.4']) {
      statuses.push((await captcha(ts, `${forged}, 198.51.100.7, 10.0.0.1`)).status);
    }
    assert.deepEqual(statuses, [200, 200, 200, 429], 'one client address, whatever it forged before it');
    // Without any forged entry it is the same client, still limited.
    assertLimited(await captcha(ts, '198.51.100.7, 10.0.0.1'), 'the same client without a forged entry');
  });

  it('the client hop separates clients; the proxy hop does not', async () => {
    // One client through two different first proxies: one budget.
    const viaTwoProxies = [];
    for (const proxy of ['10.0.0.1', '10.0.0.2', '10.0.0.3']) viaTwoProxies.push((await captcha(ts, `198.51.100.20, ${proxy}`)).status);
    assert.deepEqual(viaTwoProxies, [200, 200, 200]);
    assertLimited(await captcha(ts, '198.51.100.20, 10.0.0.4'), 'the same client through yet another proxy');
    // Another client behind the same proxies has a budget of its own.
    const other = [];
    for (let i = 0; i < BUDGET; i++) other.push((await captcha(ts, `198.51.100.21, 10.0.0.4`)).status);
    assert.deepEqual(other, [200, 200, 200], 'a client of its own');
    assertLimited(await captcha(ts, '198.51.100.21, 10.0.0.1'), 'that client past its budget');
  });
});
