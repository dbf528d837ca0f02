import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type * as oidc from 'openid-client';
import { AdminApi, adminToken, assertError, startAdminServer } from '../helpers/admin.ts';
import { accountConsole } from '../helpers/account-console.ts';
import { formField, HttpBrowser } from '../helpers/browser-http.ts';
import { alertText } from '../helpers/login-page.ts';
import { afterPassword, codeAt, postSecondFactor, userWithTotp } from '../helpers/mfa.ts';
import { authorizationRequest, createUser, REDIRECT_URI, registerClient, rpConfig, signIn, submitLogin } from '../helpers/rp.ts';
import { stopAndDestroy, type TestServer } from '../helpers/server.ts';
import { callUserApi } from '../helpers/user-api.ts';

/**
 * MFA policies (MFA_POLICY and a client's mfa_policy, the stricter wins) and enrolment during a
 * sign-in, through the real pages with openid-client as the relying party; removing the last
 * factor through the account API and the console.
 */

const isCallback = (u: URL) => u.href.startsWith(REDIRECT_URI);
const ENROLL = /^\/interaction\/[^/]+\/mfa\/enroll$/;
/** The secret as the enrolment page shows it for typing by hand (groups of four), without the spaces. */
const shownSecret = (html: string) => /<code class="totp-secret">([^<]*)<\/code>/.exec(html)?.[1]?.replace(/\s/g, '');
/** A well-formed code that is not the current one (nor one either side). */
async function wrongCode(secret: string) {
  const near = new Set(await Promise.all([-1, 0, 1].map((s) => codeAt(secret, s))));
  return ['000000', '111111', '222222', '333333'].find((c) => !near.has(c))!;
}

/** Posts `fields` with the page's CSRF token to the enrolment form at `url`. */
async function postEnrol(browser: HttpBrowser, url: URL, html: string, fields: Record<string, string>) {
  return browser.postForm(url, { csrf: formField(html, 'csrf')!, method: 'totp', ...fields });
}

/**
 * On the enrolment page at `url`: starts an authenticator enrolment, confirms it with the app's
 * current code, and follows on towards the client. The secret, and where it ended.
 */
async function enrolAndFinish(browser: HttpBrowser, url: URL) {
  const intro = await (await browser.request(url)).text();
  const started = await postEnrol(browser, url, intro, { step: 'start' });
  const html = await started.text();
  assert.equal(started.status, 200, html.slice(0, 300));
  const secret = shownSecret(html)!;
  const confirmed = await postEnrol(browser, url, html, { step: 'finish', factor: formField(html, 'factor')!, code: await codeAt(secret) });
  assert.equal(confirmed.status, 303);
  const done = await browser.follow(new URL(confirmed.headers.get('location')!, url), {}, isCallback);
  return { secret, done: done.url };
}

/** An authorization request in `browser` (which may hold a session), followed to the first page or the callback. */
async function authorize(browser: HttpBrowser, config: oidc.Configuration, params: Record<string, string> = {}) {
  const request = await authorizationRequest(config, { scope: 'openid', params });
  const step = await browser.follow(request.url, {}, isCallback);
  if (!isCallback(step.url)) await step.res.arrayBuffer();
  return { request, step: step.url };
}

describe('MFA_POLICY=required', () => {
  let ts: TestServer;
  let config: oidc.Configuration;
  before(async () => {
    ts = await startAdminServer({ MFA_POLICY: 'required', AUTH_API_RATE_LIMIT_PER_IP: '10000' });
    config = await rpConfig(ts, await registerClient(ts, { token_endpoint_auth_method: 'none', scope: 'openid email profile' }, true));
  });
  after(() => stopAndDestroy(ts));
  const db = () => ts.server.services.db;

  it('a user with no factor is guided to enrol an authenticator after the password; its code completes the sign-in with acr mfa', async () => {
    const user = await createUser(ts);
    const { browser, request, next } = await afterPassword(config, user);
    assert.match(next.pathname, ENROLL, `the password leads to the enrolment, got ${next.pathname}`);

    const intro = await browser.request(next);
    const introHtml = await intro.text();
    assert.equal(intro.status, 200);
    assert.match(introHtml, /Set up an authenticator app/);

    const started = await postEnrol(browser, next, introHtml, { step: 'start' });
    const html = await started.text();
    assert.equal(started.status, 200);
    assert.match(html, /<img class="qr" src="data:image\/png;base64,/, 'the QR code is a data: URL');
    assert.match(started.headers.get('content-security-policy') ?? '', /img-src [^;]*data:/, 'which the CSP lets load');
    assert.equal(started.headers.get('cache-control'), 'no-store');
    const secret = shownSecret(html)!;
    assert.match(secret, /^[A-Z2-7]{32}$/);
    const factor = formField(html, 'factor')!;

    // A wrong code asks again for the same enrolment, without showing the secret again.
    const wrong = await postEnrol(browser, next, html, { step: 'finish', factor, code: await wrongCode(secret) });
    const wrongHtml = await wrong.text();
    assert.equal(wrong.status, 401);
    assert.equal(alertText(wrongHtml), 'That code is not right. Enter the current code from your authenticator app.');
    assert.equal(shownSecret(wrongHtml), undefined);
    assert.equal(formField(wrongHtml, 'factor'), factor);

    const right = await postEnrol(browser, next, wrongHtml, { step: 'finish', factor, code: await codeAt(secret) });
    assert.equal(right.status, 303);
    const done = await browser.follow(new URL(right.headers.get('location')!, next), {}, isCallback);
    assert.ok(isCallback(done.url), `the authorization ends at the client, got ${done.url.href}`);
    const claims = (await request.redeem(done.url)).claims()!;
    assert.deepEqual(claims.amr, ['pwd', 'otp', 'mfa']);
    assert.equal(claims.acr, 'mfa');
    assert.equal(claims.sub, user.id);

    const enrolled = await db()('events').where({ subject_id: user.id, type: 'user.mfa_enrolled' });
    assert.equal(enrolled.length, 1);
    assert.equal(enrolled[0].payload.factor.type, 'totp');
    assert.ok(!JSON.stringify(enrolled).includes(secret), 'no secret in the event');
    assert.ok(await db()('outbox').where({ recipient: user.email, template: 'mfa-enrolled' }).first(), 'the user is mailed');

    // The next sign-in proves the new factor; it is not offered another enrolment.
    const again = await afterPassword(config, user);
    assert.match(again.next.pathname, /\/mfa$/);
    const proved = await postSecondFactor(again.browser, again.next, await codeAt(secret, 1));
    assert.equal(proved.status, 303);
  });

  it('wrong codes are bounded: the fifth locks that enrolment, and a right code after it is refused', async () => {
    const user = await createUser(ts);
    const { browser, next } = await afterPassword(config, user);
    const intro = await (await browser.request(next)).text();
    const html = await (await postEnrol(browser, next, intro, { step: 'start' })).text();
    const secret = shownSecret(html)!;
    const factor = formField(html, 'factor')!;
    const wrong = await wrongCode(secret);
    const statuses = [];
    for (let i = 0; i < 5; i++) statuses.push((await postEnrol(browser, next, html, { step: 'finish', factor, code: wrong })).status);
    assert.deepEqual(statuses, [401, 401, 401, 401, 429]);
    const locked = await postEnrol(browser, next, html, { step: 'finish', factor, code: await codeAt(secret) });
    assert.equal(locked.status, 429);
    assert.equal(alertText(await locked.text()), 'Too many wrong codes. Please set up the app again.');
    assert.deepEqual(await db()('mfa_factors').where({ user_id: user.id }).whereNotNull('confirmed_at'), [], 'nothing enrolled');
  });

  it('the enrolment page refuses a browser whose interaction has no proven first factor', async () => {
    const browser = new HttpBrowser();
    const { step } = await authorize(browser, config);
    const loginHtml = await (await browser.request(step)).text();
    const enrolUrl = new URL(`${step.pathname}/mfa/enroll`, step);
    const shown = await browser.request(enrolUrl);
    assert.equal(shown.status, 303, 'no first factor: back to the sign-in page');
    assert.equal(new URL(shown.headers.get('location')!, step).pathname, step.pathname);
    const noCsrf = await browser.postForm(enrolUrl, { method: 'totp', step: 'start' });
    assert.equal(noCsrf.status, 403, 'no CSRF token of this interaction');
    const before = await db()('mfa_factors').count({ n: '*' }).first();
    const posted = await postEnrol(browser, enrolUrl, loginHtml, { step: 'start' });
    assert.equal(posted.status, 303, 'with its CSRF token but no first factor: back to the sign-in page');
    assert.deepEqual(await db()('mfa_factors').count({ n: '*' }).first(), before, 'no enrolment was started');
  });

  it('an account with a factor proves it: the enrolment page is not open to it', async () => {
    const user = await userWithTotp(ts);
    const { browser, next } = await afterPassword(config, user);
    assert.match(next.pathname, /\/mfa$/);
    const html = await (await browser.request(next)).text();
    const enrolUrl = new URL(`${next.pathname}/enroll`, next);
    assert.equal((await browser.request(enrolUrl)).status, 303);
    const pending = () => db()('mfa_factors').where({ user_id: user.id }).whereNull('confirmed_at');
    const posted = await postEnrol(browser, enrolUrl, html, { step: 'start' });
    assert.equal(posted.status, 303, 'enrolling another here would step around the one it has');
    assert.deepEqual(await pending(), []);
  });

  it('a client with mfa_policy=off cannot lower it: its sign-ins still need a second factor', async () => {
    const lax = await rpConfig(ts, await registerClient(ts, { token_endpoint_auth_method: 'none', mfa_policy: 'off' }, true));
    const user = await createUser(ts);
    const { browser, request, next } = await afterPassword(lax, user);
    assert.match(next.pathname, ENROLL);
    const { done } = await enrolAndFinish(browser, next);
    assert.equal((await request.redeem(done)).claims()!.acr, 'mfa');
  });

  it('a client with mfa_policy=phishing-resistant: an account with only an authenticator gets unmet_authentication_requirements', async () => {
    const strict = await rpConfig(ts, await registerClient(ts, { token_endpoint_auth_method: 'none', mfa_policy: 'phishing-resistant' }, true));
    const user = await userWithTotp(ts);
    const { request, next } = await afterPassword(strict, user);
    assert.ok(isCallback(next), `to the client, got ${next.href}`);
    assert.equal(next.searchParams.get('state'), request.state);
    assert.equal(next.searchParams.get('error'), 'unmet_authentication_requirements');
    assert.equal(next.searchParams.get('error_description'), 'no phishing-resistant authenticator enrolled');
  });

  it('GET /api/v1/users/:id says mfa.required for a user without any factor', async () => {
    const api = new AdminApi(ts, await adminToken(ts));
    const user = await createUser(ts);
    const res = await api.get(`/users/${user.id}`);
    assert.equal(res.status, 200);
    assert.deepEqual(res.body.mfa, { enrolled: [], required: true, locked: [] });
  });

  describe('removing factors', () => {
    const call = (method: string, path: string, token: string, body?: unknown) => callUserApi(ts, method, path, token, body);
    const factorsOf = (userId: string) => db()('mfa_factors').where({ user_id: userId }).orderBy('type').pluck('type');

    /** A user with an authenticator, signed in (password and code) to a first-party client: its access token. */
    async function signedInWithTotp() {
      const user = await userWithTotp(ts);
      const { browser, request, next } = await afterPassword(config, user);
      const res = await postSecondFactor(browser, next, await codeAt(user.secret));
      const done = await browser.follow(new URL(res.headers.get('location')!, next), {}, isCallback);
      const tokens = await request.redeem(done.url);
      const list = await call('GET', '/api/v1/me/mfa', tokens.access_token);
      return { user, token: tokens.access_token, factors: list.body!.data as { id: string; type: string }[] };
    }

    it('the last second factor cannot be removed (409 IDENT_MFA_LAST_FACTOR, nothing changed); recovery codes can', async () => {
      const { user, token } = await signedInWithTotp();
      const codes = await call('POST', '/api/v1/me/mfa/recovery-codes', token);
      assert.equal(codes.status, 201);
      const factors = (await call('GET', '/api/v1/me/mfa', token)).body!.data as { id: string; type: string }[];
      const totp = factors.find((f) => f.type === 'totp')!;
      const recovery = factors.find((f) => f.type === 'recovery')!;

      const refused = await call('DELETE', `/api/v1/me/mfa/${totp.id}`, token);
      assert.equal(refused.status, 409);
      assert.equal(refused.body!.error, 'IDENT_MFA_LAST_FACTOR');
      assert.deepEqual(await factorsOf(user.id), ['recovery', 'totp'], 'nothing removed');
      assert.deepEqual(await db()('events').where({ subject_id: user.id, type: 'user.mfa_removed' }), []);
      assert.equal(await db()('outbox').where({ recipient: user.email, template: 'mfa-removed' }).first(), undefined);

      assert.equal((await call('DELETE', `/api/v1/me/mfa/${recovery.id}`, token)).status, 204, 'recovery codes are not a second factor of their own');
      assert.deepEqual(await factorsOf(user.id), ['totp']);
    });

    it('one of two second factors can be removed', async () => {
      const { user, token, factors } = await signedInWithTotp();
      // A second confirmed factor of another kind (its enrolment is built elsewhere): an email factor row.
      await ts.server.services.repos.mfaFactors.insert({
        id: randomUUID(), tenant_id: (await db()('users').where({ id: user.id }).first()).tenant_id, user_id: user.id,
        type: 'email', name: 'Email codes', secret_sealed: null, confirmed_at: new Date(),
      });
      const totp = factors.find((f) => f.type === 'totp')!;
      assert.equal((await call('DELETE', `/api/v1/me/mfa/${totp.id}`, token)).status, 204);
      assert.deepEqual(await factorsOf(user.id), ['email']);
    });

    it('the account console refuses it and says why', async () => {
      const { consoleUrl, open, post } = accountConsole(() => ts);
      const user = await userWithTotp(ts);
      const browser = new HttpBrowser();
      const login = await open(browser);
      const submitted = await submitLogin(browser, login.url, login.html, user.email, user.password);
      const second = await browser.follow(new URL(submitted.headers.get('location')!, login.url));
      await second.res.arrayBuffer();
      const proved = await postSecondFactor(browser, second.url, await codeAt(user.secret));
      const page = await browser.follow(new URL(proved.headers.get('location')!, second.url));
      const html = await page.res.text();
      assert.equal(page.url.href, consoleUrl());
      const factorId = /name="factor" value="([^"]+)"/.exec(html)![1]!;
      const refused = await post(browser, '/mfa/remove', { csrf: formField(html, 'csrf')!, factor: factorId });
      assert.equal(refused.status, 409);
      assert.equal(alertText(await refused.text()), 'Two-step verification is required here: add another method before you remove this one.');
      assert.deepEqual(await factorsOf(user.id), ['totp']);
    });
  });
});

describe('MFA_POLICY=optional with a client whose mfa_policy is required', () => {
  let ts: TestServer;
  let api: AdminApi;
  before(async () => {
    ts = await startAdminServer();
    api = new AdminApi(ts, await adminToken(ts));
  });
  after(() => stopAndDestroy(ts));

  /** A public client registered through the admin API with `metadata`. */
  async function client(metadata: Record<string, unknown>) {
    const res = await api.post('/clients', {
      redirect_uris: [REDIRECT_URI], grant_types: ['authorization_code'], response_types: ['code'], token_endpoint_auth_method: 'none',
      first_party: true, ...metadata,
    });
    assert.equal(res.status, 201, res.text);
    return { clientId: res.body.client_id as string, body: res.body };
  }

  it('the admin API takes mfa_policy on create and update, shows it, and refuses a bad value with the envelope', async () => {
    const created = await client({ mfa_policy: 'required' });
    assert.equal(created.body.mfa_policy, 'required');
    assert.equal((await api.get(`/clients/${created.clientId}`)).body.mfa_policy, 'required');
    const patched = await api.patch(`/clients/${created.clientId}`, { mfa_policy: 'phishing-resistant' });
    assert.equal(patched.status, 200);
    assert.equal((await api.get(`/clients/${created.clientId}`)).body.mfa_policy, 'phishing-resistant');

    assertError(await api.post('/clients', { redirect_uris: [REDIRECT_URI], mfa_policy: 'sometimes' }), 400, 'IDENT_VALIDATION', 'create');
    assertError(await api.post('/clients', { redirect_uris: [REDIRECT_URI], mfa_policy: true }), 400, 'IDENT_VALIDATION', 'create, not a string');
    assertError(await api.patch(`/clients/${created.clientId}`, { mfa_policy: 'OFF' }), 400, 'IDENT_VALIDATION', 'update');
    assert.equal((await api.get(`/clients/${created.clientId}`)).body.mfa_policy, 'phishing-resistant', 'unchanged by the refused update');
  });

  it("that client's sign-ins require a second factor, another client's do not; a session from the other is stepped up", async () => {
    const strict = await rpConfig(ts, await client({ mfa_policy: 'required' }));
    const lax = await rpConfig(ts, await client({}));
    const user = await createUser(ts);

    // The other client: the password alone.
    const { browser, tokens } = await signIn(ts, lax, user, { scope: 'openid' });
    assert.deepEqual(tokens.claims()!.amr, ['pwd']);

    // The strict client in the same browser: the session is not enough. prompt=none hears so.
    const none = await authorize(browser, strict, { prompt: 'none' });
    assert.ok(isCallback(none.step));
    assert.equal(none.step.searchParams.get('error'), 'interaction_required');

    // Interactively: no password again, straight to the enrolment (the account has no factor).
    const { request, step } = await authorize(browser, strict);
    assert.match(step.pathname, ENROLL, `straight to the enrolment, got ${step.pathname}`);
    const { secret, done } = await enrolAndFinish(browser, step);
    const claims = (await request.redeem(done)).claims()!;
    assert.equal(claims.acr, 'mfa');
    assert.deepEqual(claims.amr, ['pwd', 'otp', 'mfa']);
    assert.equal(claims.sub, user.id);

    // A fresh browser at the strict client: password, then the factor it now has.
    const fresh = await afterPassword(strict, user);
    assert.match(fresh.next.pathname, /\/mfa$/);
    assert.equal((await postSecondFactor(fresh.browser, fresh.next, await codeAt(secret, 1))).status, 303);

    // A user without a factor at the other client still signs in with the password alone.
    const other = await createUser(ts);
    const plain = await afterPassword(lax, other);
    assert.ok(isCallback(plain.next), `straight to the client, got ${plain.next.pathname}`);
  });

  it('GET /api/v1/users/:id: mfa.required is false without a factor under optional', async () => {
    const user = await createUser(ts);
    assert.equal((await api.get(`/users/${user.id}`)).body.mfa.required, false);
  });
});
