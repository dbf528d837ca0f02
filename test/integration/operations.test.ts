import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { authorizationUrl, openLoginPage, postLogin, type LoginPage } from '../helpers/login-page.ts';
import { createUser, registerClient, uniqueEmail, REDIRECT_URI } from '../helpers/rp.ts';
import { startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A failed sign-in from the forwarded address `xff` (or none); returns the status. */
async function attempt(page: LoginPage, xff?: string): Promise<number> {
  const answer = await postLogin(page, { email: uniqueEmail('probe'), password: 'guess' }, xff ? { 'x-forwarded-for': xff } : {});
  return answer.status;
}

describe('operations', () => {
  let ts: TestServer;
  // Per-IP limit of 2 a minute, with and without a trusted proxy in front.
  let proxyOn: TestServer;
  let proxyOff: TestServer;
  let clientId: string;
  let proxyOnClient: string;
  let proxyOffClient: string;

  before(async () => {
    [ts, proxyOn, proxyOff] = await Promise.all([
      startTestServer(),
      startTestServer({ TRUST_PROXY: 'true', LOGIN_RATE_LIMIT_PER_IP: '2' }),
      startTestServer({ TRUST_PROXY: 'false', LOGIN_RATE_LIMIT_PER_IP: '2' }),
    ]);
    const publicClient = async (s: TestServer) => (await registerClient(s, { token_endpoint_auth_method: 'none' }, true)).clientId;
    [clientId, proxyOnClient, proxyOffClient] = await Promise.all([publicClient(ts), publicClient(proxyOn), publicClient(proxyOff)]);
  });
  after(() => Promise.all([stopAndDestroy(ts), stopAndDestroy(proxyOn), stopAndDestroy(proxyOff)]));

  describe('health', () => {
    it('GET /healthz answers 200', async () => {
      const res = await fetch(new URL('/healthz', ts.issuer));
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), { status: 'ok' });
      assert.equal(res.headers.get('cache-control'), 'no-store');
    });

    it('GET /readyz answers 200 with the database and ephemeral store checks', async () => {
      const res = await fetch(new URL('/readyz', ts.issuer));
      assert.equal(res.status, 200);
      const body = (await res.json()) as { status: string; checks: Record<string, string>; ephemeral: string };
      assert.equal(body.status, 'ok');
      const store = process.env.REDIS_URL ? 'redis' : 'ephemeral';
      assert.deepEqual(body.checks, { database: 'ok', [store]: 'ok' });
      assert.equal(body.ephemeral, process.env.REDIS_URL ? 'redis' : 'memory');
    });

    it('GET /readyz answers 503 naming the check that fails (database, then ephemeral store)', async () => {
      const { db, ephemeral } = ts.server.services;
      const store = process.env.REDIS_URL ? 'redis' : 'ephemeral';
      const failing = async (target: object, method: string, check: string) => {
        // The probe's own method, made to fail as an unreachable server would, then restored.
        const down = () => Promise.reject(new Error('connection refused'));
        Object.defineProperty(target, method, { value: down, configurable: true, writable: true });
        try {
          const res = await fetch(new URL('/readyz', ts.issuer));
          assert.equal(res.status, 503, `${check} down: 503`);
          const body = (await res.json()) as { status: string; checks: Record<string, string> };
          assert.equal(body.status, 'unavailable');
          assert.equal(body.checks[check], 'unavailable');
          assert.equal(Object.values(body.checks).filter((v) => v === 'ok').length, 1, 'the other check is still ok');
        } finally {
          delete (target as Record<string, unknown>)[method];
        }
      };
      const rawDescriptor = Object.getOwnPropertyDescriptor(db, 'raw')!;
      try {
        await failing(db, 'raw', 'database');
      } finally {
        Object.defineProperty(db, 'raw', rawDescriptor);
      }
      await failing(ephemeral, 'ping', store);
      assert.equal((await fetch(new URL('/readyz', ts.issuer))).status, 200, 'ready again once both answer');
      assert.equal((await fetch(new URL('/healthz', ts.issuer))).status, 200);
    });
  });

  describe('request ids', () => {
    it('echoes a valid X-Request-Id and generates one otherwise', async () => {
      for (const path of ['/healthz', '/.well-known/openid-configuration', '/nope']) {
        const sent = await fetch(new URL(path, ts.issuer), { headers: { 'x-request-id': 'lb-7f3a.42:abc_DEF' } });
        assert.equal(sent.headers.get('x-request-id'), 'lb-7f3a.42:abc_DEF', `${path}: echoed`);
      }
      const a = (await fetch(new URL('/healthz', ts.issuer))).headers.get('x-request-id');
      const b = (await fetch(new URL('/healthz', ts.issuer))).headers.get('x-request-id');
      assert.match(a ?? '', UUID);
      assert.match(b ?? '', UUID);
      assert.notEqual(a, b);
      // An id that could break log lines or is absurdly long is replaced, not echoed.
      for (const bad of ['two words', 'x'.repeat(129), 'id"}{"injected":1']) {
        const res = await fetch(new URL('/healthz', ts.issuer), { headers: { 'x-request-id': bad } });
        assert.match(res.headers.get('x-request-id') ?? '', UUID, `replaced: ${bad.slice(0, 20)}`);
      }
    });

    it('shows the request id on the error page', async () => {
      const res = await fetch(new URL('/nope', ts.issuer), { headers: { accept: 'text/html', 'x-request-id': 'trace-123' } });
      assert.equal(res.status, 404);
      assert.match(await res.text(), /trace-123/);
    });
  });

  describe('client address for the per-IP sign-in limit', () => {
    it('with TRUST_PROXY=true, keys the limit on the X-Forwarded-For address', async () => {
      const page = await openLoginPage(proxyOn, proxyOnClient);
      assert.deepEqual([await attempt(page, '203.0.113.10'), await attempt(page, '203.0.113.10')], [401, 401]);
      assert.equal(await attempt(page, '203.0.113.10'), 429, 'the third attempt from one address is limited');
      // Another forwarded address has a budget of its own, even on the same connection and interaction.
      assert.deepEqual([await attempt(page, '203.0.113.20'), await attempt(page, '203.0.113.20')], [401, 401]);
      assert.equal(await attempt(page, '203.0.113.20'), 429);
      // The first address is still limited.
      assert.equal(await attempt(page, '203.0.113.10'), 429);
    });

    it('with TRUST_PROXY=true, keys on the address the proxy appended, not on what the client forged before it', async () => {
      // An appending proxy (nginx $proxy_add_x_forwarded_for, AWS ALB...) passes on whatever the
      // client sent and adds the real address at the end.
      const page = await openLoginPage(proxyOn, proxyOnClient);
      const statuses = [];
      for (const forged of ['1.1.1.1', '2.2.2.2', '3.3.3.3']) statuses.push(await attempt(page, `${forged}, 198.51.100.7`));
      assert.deepEqual(statuses, [401, 401, 429], 'a forged X-Forwarded-For prefix must not buy a fresh budget');
    });

    it('with TRUST_PROXY off, ignores X-Forwarded-For (all attempts count against the connection address)', async () => {
      const page = await openLoginPage(proxyOff, proxyOffClient);
      assert.equal(await attempt(page, '203.0.113.10'), 401);
      assert.equal(await attempt(page, '203.0.113.20'), 401);
      assert.equal(await attempt(page, '203.0.113.30'), 429);
      assert.equal(await attempt(page), 429);
    });
  });

  describe('bad input never yields a server error', () => {
    let page: LoginPage;
    let secretClient: { clientId: string; clientSecret?: string | undefined };
    before(async () => {
      page = await openLoginPage(ts, clientId);
      secretClient = await registerClient(ts, { grant_types: ['authorization_code', 'refresh_token'] }, true);
    });

    const html = { accept: 'text/html' };
    const formHeaders = { ...html, 'content-type': 'application/x-www-form-urlencoded' };
    const assertClientError = async (res: Response, what: string, expected?: number) => {
      const body = await res.text();
      assert.ok(res.status >= 400 && res.status < 500, `${what}: 4xx expected, got ${res.status} ${body.slice(0, 200)}`);
      if (expected) assert.equal(res.status, expected, what);
      return body;
    };

    it('POST /interaction/<bogus uid>/login', async () => {
      const url = new URL('/interaction/bogus-uid/login', ts.issuer);
      const body = 'email=a%40b.c&password=x&csrf=y';
      await assertClientError(await fetch(url, { method: 'POST', headers: formHeaders, body }), 'no interaction cookie');
      // With a real interaction cookie, but another uid in the path.
      await assertClientError(
        await page.browser.request(url, { method: 'POST', headers: formHeaders, body: `email=a%40b.c&password=x&csrf=${page.csrf}` }),
        'uid mismatch',
      );
    });

    it('a form body over 16 kB to the login route', async () => {
      const body = `csrf=${page.csrf}&email=a%40b.c&password=${'x'.repeat(17 * 1024)}`;
      await assertClientError(await page.browser.request(page.action, { method: 'POST', headers: formHeaders, body }), 'huge body', 413);
      await assertClientError(
        await fetch(new URL('/interaction/bogus-uid/login', ts.issuer), { method: 'POST', headers: formHeaders, body }),
        'huge body, no interaction',
        413,
      );
    });

    it('malformed percent-encoding in the path, the query and the form body', async () => {
      const postPath = await fetch(`${ts.issuer}/interaction/%E0%A4%A/login`, { method: 'POST', headers: formHeaders, body: 'a=b' });
      await assertClientError(postPath, 'path (POST)');
      await assertClientError(await fetch(`${ts.issuer}/interaction/%ZZ`, { headers: html }), 'path (GET)');
      const query = await fetch(`${ts.issuer}/auth?client_id=%E0%A4%A&response_type=code&scope=%ZZ`, { headers: html, redirect: 'manual' });
      await assertClientError(query, 'query of /auth');
      const body = `csrf=${page.csrf}&email=%E0%A4%A&password=%ZZ%`;
      const form = await page.browser.request(page.action, { method: 'POST', headers: formHeaders, body });
      await assertClientError(form, 'form body');
    });

    for (const param of ['client_id', 'state', 'nonce', 'login_hint', 'redirect_uri']) {
      it(`a NUL byte in the ${param} of /auth`, async () => {
        const url = authorizationUrl(ts, clientId);
        url.searchParams.set(param, `${url.searchParams.get(param) ?? 'x'}\u0000tail`);
        await assertClientError(await fetch(url, { headers: html, redirect: 'manual' }), `NUL in ${param}`);
      });
    }

    it('a NUL byte in the sign-in form fields', async () => {
      const user = await createUser(ts);
      for (const fields of [
        { email: `${user.email}\u0000`, password: user.password },
        { email: user.email, password: `${user.password}\u0000` },
      ]) {
        const answer = await postLogin(page, fields);
        assert.ok(answer.status >= 400 && answer.status < 500, `4xx expected, got ${answer.status} for ${JSON.stringify(fields)}`);
        assert.equal(answer.location, null, 'not signed in');
      }
    });

    // A NUL byte in a form body the provider parses itself (the query-string guard does not see it):
    // the value is simply one that matches nothing, so the answer is the endpoint's usual refusal.
    for (const [what, path, fields, confidential, status, error] of [
      [
        'a code at /token',
        '/token',
        { grant_type: 'authorization_code', code: 'abc\u0000def', redirect_uri: REDIRECT_URI, code_verifier: 'x'.repeat(43) },
        false,
        400,
        'invalid_grant',
      ],
      ['a client_id at /token', '/token', { grant_type: 'authorization_code', client_id: 'abc\u0000def', code: 'abc' }, false, 401, 'invalid_client'],
      ['a refresh_token at /token', '/token', { grant_type: 'refresh_token', refresh_token: 'abc\u0000def' }, true, 400, 'invalid_grant'],
      // RFC 7662 / RFC 7009 answer an unknown token with 200: inactive / nothing to revoke.
      ['a token at /token/introspection', '/token/introspection', { token: 'abc\u0000def' }, true, 200, undefined],
      ['a token at /token/revocation', '/token/revocation', { token: 'abc\u0000def' }, true, 200, undefined],
    ] as const) {
      it(`a NUL byte in ${what}`, async () => {
        const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
        const body = new URLSearchParams(fields);
        const basic = Buffer.from(`${secretClient.clientId}:${secretClient.clientSecret}`).toString('base64');
        if (confidential) headers.authorization = `Basic ${basic}`;
        else if (!body.has('client_id')) body.set('client_id', clientId);
        const res = await fetch(new URL(path, ts.issuer), { method: 'POST', headers, body: body.toString() });
        const text = await res.text();
        assert.equal(res.status, status, `NUL in ${what}: ${text.slice(0, 200)}`);
        if (error) assert.equal((JSON.parse(text) as { error: string }).error, error);
        else if (path === '/token/introspection') assert.deepEqual(JSON.parse(text), { active: false });
        else assert.equal(text, '', 'revocation answers an empty 200');
      });
    }

    it('an unknown path answers the 404 page (HTML) or the JSON envelope', async () => {
      const page404 = await fetch(new URL('/definitely/not/here', ts.issuer), { headers: html });
      const body = await assertClientError(page404, '404 page', 404);
      assert.match(page404.headers.get('content-type') ?? '', /text\/html/);
      assert.match(body, /role="alert"/);
      const json = await fetch(new URL('/definitely/not/here', ts.issuer), { headers: { accept: 'application/json' } });
      assert.equal(json.status, 404);
      const envelope = (await json.json()) as { error: string; requestId: string };
      assert.equal(envelope.error, 'IDENT_NOT_FOUND');
      assert.match(envelope.requestId, UUID);
    });

    it('a wrong method on the login route', async () => {
      await assertClientError(await page.browser.request(page.action, { headers: html }), 'GET on a POST route', 405);
    });
  });
});

