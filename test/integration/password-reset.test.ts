import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import * as oidc from 'openid-client';
import type { OutboxRow } from '../../src/repos/outbox.ts';
import { HttpBrowser, formAction, formField } from '../helpers/browser-http.ts';
import { alertText, inputTag, loginStatus } from '../helpers/login-page.ts';
import { codeAndLink, fastMailSettings, mailSettled, startMailbox, type Mailbox } from '../helpers/mailbox.ts';
import { createUser, registerClient, rpConfig, signIn, submitLogin, uniqueEmail, REDIRECT_URI } from '../helpers/rp.ts';
import { startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';

// Forgot password end to end: the pages (from the login page of a pending authorization) and the
// JSON API, the code and the link, what a reset ends (old password, refresh tokens, lockout), the
// mails, the events, the hourly limits per address and per client IP.

const strongPassword = () => `Rst-${randomBytes(12).toString('base64url')}-7`;
const SUBJECT = { reset: /^Reset your password$/, changed: /^Your password was changed$/ };

// The server trusts X-Forwarded-For (TRUST_PROXY), so each test can be its own client IP: the
// per-IP limit of 3 requests an hour would otherwise be shared by the whole file.
let ipCounter = 0;
const newIp = () => `203.0.113.${++ipCounter}`;

const h1 = (html: string) => /<h1>([^<]*)<\/h1>/.exec(html)?.[1];
const isInvalidGrant = (err: oidc.ResponseBodyError) => err.error === 'invalid_grant';

async function api(ts: TestServer, path: string, body: unknown, ip: string) {
  const res = await fetch(new URL(path, ts.issuer), {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json', 'x-forwarded-for': ip },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {}, text };
}

/** A form post from `browser` as client `ip`. */
async function post(browser: HttpBrowser, url: URL, fields: Record<string, string>, ip: string) {
  const res = await browser.request(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-forwarded-for': ip },
    body: new URLSearchParams(fields).toString(),
  });
  return { res, html: res.status >= 300 && res.status < 400 ? '' : await res.text() };
}

const findUser = (ts: TestServer, email: string) => ts.server.services.repos.users.findByEmail('default', email);
const outboxOf = (ts: TestServer, email: string) => ts.server.services.db<OutboxRow>('outbox').where({ recipient: email });
const eventsOf = async (ts: TestServer, subjectId: string) =>
  (await ts.server.services.db('events').where({ subject_id: subjectId }).orderBy('occurred_at')).map((e) => ({
    ...e,
    payload: typeof e.payload === 'string' ? JSON.parse(e.payload) : e.payload,
  })) as { type: string; actor_type: string; actor_id: string | null; request_id: string | null; payload: Record<string, any> }[];

describe('password reset', () => {
  let ts: TestServer;
  let mailbox: Mailbox;

  before(async () => {
    mailbox = await startMailbox();
    ts = await startTestServer({
      ...fastMailSettings(mailbox.url),
      TRUST_PROXY: 'true',
      LOCKOUT_THRESHOLD: '3',
      AUTH_API_RATE_LIMIT_PER_IP: '10000',
    });
  });
  after(async () => {
    await stopAndDestroy(ts);
    await mailbox.stop();
  });

  it('on the pages, from the login page: email, code, new password (a weak one is refused and the step stays open), then the sign-in continues', async () => {
    const ip = newIp();
    const user = await createUser(ts);
    const client = await registerClient(ts, {}, true);
    const config = await rpConfig(ts, client);
    const browser = new HttpBrowser();
    const verifier = oidc.randomPKCECodeVerifier();
    const authUrl = oidc.buildAuthorizationUrl(config, {
      redirect_uri: REDIRECT_URI,
      scope: 'openid email',
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state: 'reset-page',
    });
    const login = await browser.follow(authUrl);
    const loginHtml = await login.res.text();
    const uid = login.url.pathname.split('/')[2]!;

    // "Forgot password?" on the login page carries the pending sign-in along.
    const forgotHref = /<a href="([^"]+)">Forgot password\?<\/a>/.exec(loginHtml)?.[1];
    assert.equal(forgotHref, `/forgot-password?interaction=${uid}`);
    const forgot = await browser.request(new URL(forgotHref!, login.url));
    const forgotHtml = await forgot.text();
    assert.equal(forgot.status, 200);
    assert.equal(h1(forgotHtml), 'Reset your password');
    assert.equal(formField(forgotHtml, 'interaction'), uid);
    const csrf = formField(forgotHtml, 'csrf')!;
    assert.ok(csrf);

    const requested = await post(browser, new URL(formAction(forgotHtml, '/forgot-password')!, login.url), { csrf, interaction: uid, email: user.email }, ip);
    assert.equal(requested.res.status, 200, requested.html.slice(0, 300));
    assert.equal(h1(requested.html), 'Choose a new password');
    assert.match(requested.html, /we sent it a 6-digit code/);
    assert.equal(formField(requested.html, 'email'), user.email);
    assert.equal(formField(requested.html, 'interaction'), uid);

    const mail = await mailbox.next(user.email, SUBJECT.reset);
    const { code, link } = codeAndLink(mail, ts.issuer);
    assert.match(code ?? '', /^\d{6}$/);
    assert.ok(link?.startsWith(`${ts.issuer}/reset-password?token=`), link);

    const resetUrl = new URL(formAction(requested.html, '/reset-password')!, login.url);
    const verified = await post(browser, resetUrl, { csrf, interaction: uid, email: user.email, code: code! }, ip);
    assert.equal(verified.res.status, 200, verified.html.slice(0, 300));
    const session = formField(verified.html, 'session');
    assert.ok(session, 'the new-password form carries the verified step');
    assert.match(inputTag(verified.html, 'password') ?? '', /autocomplete="new-password"/);

    // A weak password: refused with the policy's reasons, the same form with the same step.
    const weak = await post(browser, resetUrl, { csrf, interaction: uid, session: session!, password: 'password1' }, ip);
    assert.equal(weak.res.status, 400);
    assert.match(alertText(weak.html) ?? '', /^Choose a stronger password:/);
    assert.equal(formField(weak.html, 'session'), session);
    assert.match(inputTag(weak.html, 'password') ?? '', /autocomplete="new-password"/);
    assert.equal(await loginStatus(ts, client.clientId, user.email, user.password), 303, 'the old password still works');

    const password = strongPassword();
    const done = await post(browser, resetUrl, { csrf, interaction: uid, session: session!, password }, ip);
    assert.equal(done.res.status, 200, done.html.slice(0, 300));
    // The step is used up.
    const reused = await post(browser, resetUrl, { csrf, interaction: uid, session: session!, password: strongPassword() }, ip);
    assert.equal(reused.res.status, 400);

    // Back to the pending sign-in: the old password fails, the new one completes it.
    const back = await browser.request(new URL(`/interaction/${uid}`, login.url));
    const backHtml = await back.text();
    assert.equal(back.status, 200, 'the authorization is still pending');
    const old = await submitLogin(browser, login.url, backHtml, user.email, user.password);
    assert.equal(old.status, 401);
    const ok = await submitLogin(browser, login.url, backHtml, user.email, password);
    assert.equal(ok.status, 303);
    const cb = await browser.follow(new URL(ok.headers.get('location')!, login.url), {}, (u) => u.href.startsWith(REDIRECT_URI));
    const tokens = await oidc.authorizationCodeGrant(config, cb.url, { pkceCodeVerifier: verifier, expectedState: 'reset-page' });
    assert.equal(tokens.claims()!.sub, user.id);

    const changed = await mailbox.next(user.email, SUBJECT.changed);
    assert.ok(changed.text.includes(`${ts.issuer}/forgot-password`));

    // Events: requested and done, without the code, the link token, the password or its hash.
    const events = await eventsOf(ts, user.id);
    const types = events.map((e) => e.type);
    assert.ok(types.includes('user.password_reset_requested'), types.join());
    assert.ok(types.includes('user.password_reset'), types.join());
    const requestedEvent = events.find((e) => e.type === 'user.password_reset_requested')!;
    assert.equal(requestedEvent.payload.user.email, user.email);
    assert.equal(requestedEvent.payload.resetParamExpiryMillisec, 15 * 60 * 1000);
    assert.ok(requestedEvent.request_id);
    const hash = (await findUser(ts, user.email))!.password_hash;
    const serialised = JSON.stringify(events);
    for (const secret of [password, user.password, code!, new URL(link!).searchParams.get('token')!, session!, hash ?? 'argon2', 'argon2']) {
      assert.ok(!serialised.includes(secret), 'no secret in the events');
    }

    // What the last page said, and where it led.
    assert.equal(h1(done.html), 'Password changed');
    assert.match(done.html, new RegExp(`href="/interaction/${uid}"`), 'a link back to the pending sign-in');
  });

  it('answers the same for an unknown address (page and API), and sends it no mail', async () => {
    const known = await createUser(ts);
    const unknown = uniqueEmail('nobody');
    const browser = new HttpBrowser();
    const forgot = await browser.request(new URL('/forgot-password', ts.issuer));
    const csrf = formField(await forgot.text(), 'csrf')!;
    const pages: { status: number; html: string }[] = [];
    for (const email of [known.email, unknown]) {
      const { res, html } = await post(browser, new URL('/forgot-password', ts.issuer), { csrf, email }, newIp());
      pages.push({ status: res.status, html: html.replaceAll(email, 'EMAIL') });
    }
    assert.equal(pages[0]!.status, 200);
    assert.equal(pages[1]!.status, pages[0]!.status);
    assert.equal(pages[1]!.html, pages[0]!.html, 'the same page for both');

    const other = await createUser(ts);
    const ip = newIp();
    const forKnown = await api(ts, '/api/v1/auth/password-reset/request', { email: other.email }, ip);
    const forUnknown = await api(ts, '/api/v1/auth/password-reset/request', { email: uniqueEmail('nobody') }, ip);
    assert.equal(forKnown.status, 202, forKnown.text);
    assert.equal(forUnknown.status, 202);
    assert.deepEqual(forUnknown.body, forKnown.body);

    await mailbox.next(known.email, SUBJECT.reset);
    await mailbox.next(other.email, SUBJECT.reset);
    await mailSettled(ts);
    assert.deepEqual(mailbox.all(unknown), []);
    assert.deepEqual(await outboxOf(ts, unknown), [], 'nothing queued for an unknown address');
  });

  it('API with the link: the old password fails, the new works, a refresh token from before is rejected, a password-changed mail', async () => {
    const ip = newIp();
    const user = await createUser(ts);
    const client = await registerClient(ts, { client_name: 'Offline Reader' });
    const config = await rpConfig(ts, client);
    const before = await signIn(ts, config, user, { scope: 'openid offline_access', prompt: 'consent' });
    const refreshToken = before.tokens.refresh_token;
    assert.ok(refreshToken, 'a refresh token before the reset');

    const requested = await api(ts, '/api/v1/auth/password-reset/request', { email: user.email }, ip);
    assert.equal(requested.status, 202, requested.text);
    assert.equal(requested.body.status, 'accepted');
    const { link } = codeAndLink(await mailbox.next(user.email, SUBJECT.reset), ts.issuer);
    const token = new URL(link!).searchParams.get('token')!;
    assert.ok(token);

    const password = strongPassword();
    const confirmed = await api(ts, '/api/v1/auth/password-reset/confirm', { token, password }, ip);
    assert.equal(confirmed.status, 200, confirmed.text);
    assert.deepEqual(confirmed.body, { status: 'password_reset' });
    const again = await api(ts, '/api/v1/auth/password-reset/confirm', { token, password: strongPassword() }, ip);
    assert.equal(again.status, 400);
    assert.equal(again.body.error, 'IDENT_OTP_INVALID', 'the link works once');

    await assert.rejects(oidc.refreshTokenGrant(config, refreshToken!), isInvalidGrant);
    assert.equal(await loginStatus(ts, client.clientId, user.email, user.password), 401, 'the old password fails');
    const after = await signIn(ts, config, { email: user.email, password });
    assert.equal(after.tokens.claims()!.sub, user.id);
    await mailbox.next(user.email, SUBJECT.changed);
  });

  it('the mail link opens the new-password form without using the link up (mail scanners fetch links); posting the form uses it', async () => {
    const ip = newIp();
    const user = await createUser(ts);
    const client = await registerClient(ts, {}, true);
    assert.equal((await api(ts, '/api/v1/auth/password-reset/request', { email: user.email }, ip)).status, 202);
    const { link } = codeAndLink(await mailbox.next(user.email, SUBJECT.reset), ts.issuer);

    // A scanner opens the link first: nothing is used up.
    const scanner = await new HttpBrowser().request(link!, { headers: { 'x-forwarded-for': ip } });
    assert.equal(scanner.status, 200);
    await scanner.arrayBuffer();

    const browser = new HttpBrowser();
    const opened = await browser.request(link!, { headers: { 'x-forwarded-for': ip } });
    const html = await opened.text();
    assert.equal(opened.status, 200, html.slice(0, 300));
    assert.equal(opened.headers.get('cache-control'), 'no-store');
    const token = formField(html, 'token');
    assert.equal(token, new URL(link!).searchParams.get('token'));
    assert.match(inputTag(html, 'password') ?? '', /autocomplete="new-password"/);
    const action = new URL(formAction(html, '/reset-password')!, link);

    // A weak password is refused on the same form and the link stays good.
    const weak = await post(browser, action, { csrf: formField(html, 'csrf')!, token: token!, password: 'password1' }, ip);
    assert.equal(weak.res.status, 400);
    assert.equal(formField(weak.html, 'token'), token);

    const password = strongPassword();
    const done = await post(browser, action, { csrf: formField(html, 'csrf')!, token: token!, password }, ip);
    assert.equal(done.res.status, 200, done.html.slice(0, 300));
    assert.equal(await loginStatus(ts, client.clientId, user.email, password), 303);
    assert.equal(await loginStatus(ts, client.clientId, user.email, user.password), 401);

    // Used: opening it again says so, and posting it again changes nothing.
    const again = await new HttpBrowser().request(link!, { headers: { 'x-forwarded-for': ip } });
    assert.equal(again.status, 400);
    await again.arrayBuffer();
    const replay = await post(browser, action, { csrf: formField(html, 'csrf')!, token: token!, password: strongPassword() }, ip);
    assert.equal(replay.res.status, 400);
    assert.equal(await loginStatus(ts, client.clientId, user.email, password), 303);
  });

  it('API with the code; a weak password is refused with IDENT_PASSWORD_POLICY and changes nothing', async () => {
    const ip = newIp();
    const user = await createUser(ts);
    const client = await registerClient(ts, {}, true);
    assert.equal((await api(ts, '/api/v1/auth/password-reset/request', { email: user.email }, ip)).status, 202);
    const { code } = codeAndLink(await mailbox.next(user.email, SUBJECT.reset), ts.issuer);
    const hashBefore = (await findUser(ts, user.email))!.password_hash;

    const weak = await api(ts, '/api/v1/auth/password-reset/confirm', { email: user.email, code: code!, password: 'password1' }, ip);
    assert.equal(weak.status, 400, weak.text);
    assert.equal(weak.body.error, 'IDENT_PASSWORD_POLICY');
    assert.deepEqual(Object.keys(weak.body).sort(), ['error', 'message', 'reasons', 'requestId', 'timestamp']);
    assert.deepEqual(weak.body.reasons, ['too_weak']);
    assert.match(String(weak.body.message), /^the password is too easy to guess: /);
    assert.equal((await findUser(ts, user.email))!.password_hash, hashBefore);
    assert.equal(await loginStatus(ts, client.clientId, user.email, user.password), 303, 'the old password still works');

    const wrong = await api(ts, '/api/v1/auth/password-reset/confirm', { email: user.email, code: code === '000000' ? '111111' : '000000', password: strongPassword() }, ip);
    assert.equal(wrong.status, 400);
    assert.equal(wrong.body.error, 'IDENT_OTP_INVALID');
  });

  it('API: a weak password does not use up the emailed code either', async () => {
    const ip = newIp();
    const user = await createUser(ts);
    assert.equal((await api(ts, '/api/v1/auth/password-reset/request', { email: user.email }, ip)).status, 202);
    const { code } = codeAndLink(await mailbox.next(user.email, SUBJECT.reset), ts.issuer);
    const weak = await api(ts, '/api/v1/auth/password-reset/confirm', { email: user.email, code: code!, password: 'password1' }, ip);
    assert.equal(weak.body.error, 'IDENT_PASSWORD_POLICY');
    const retry = await api(ts, '/api/v1/auth/password-reset/confirm', { email: user.email, code: code!, password: strongPassword() }, ip);
    assert.equal(retry.status, 200, retry.text);
  });

  it('limits requests to 3 an hour per address (past it a CAPTCHA is needed) and per client IP: the 4th answers 429', async () => {
    // Per address: four IPs, one address. Anyone can use the address's budget up, so past it the
    // answer asks for a CAPTCHA rather than shutting the owner out (abuse-limits.test.ts).
    const user = await createUser(ts);
    for (let i = 1; i <= 4; i++) {
      const res = await api(ts, '/api/v1/auth/password-reset/request', { email: user.email }, newIp());
      if (i <= 3) assert.equal(res.status, 202, `request ${i}: ${res.text}`);
      else {
        assert.equal(res.status, 429, res.text);
        assert.equal(res.body.error, 'IDENT_CAPTCHA_REQUIRED');
      }
    }
    // The address is normalised: another spelling of it is the same address.
    const upper = await api(ts, '/api/v1/auth/password-reset/request', { email: user.email.toUpperCase() }, newIp());
    assert.equal(upper.status, 429);
    await mailbox.next(user.email, SUBJECT.reset);
    await mailSettled(ts);
    assert.equal(mailbox.all(user.email).length, 1, 'one mail: the others met the cooldown or the limit');

    // Per IP: one IP, four addresses (unknown ones count too); the page shares the limit.
    const ip = newIp();
    for (let i = 1; i <= 3; i++) {
      const res = await api(ts, '/api/v1/auth/password-reset/request', { email: uniqueEmail('limit') }, ip);
      assert.equal(res.status, 202, `request ${i}: ${res.text}`);
    }
    const fourth = await api(ts, '/api/v1/auth/password-reset/request', { email: uniqueEmail('limit') }, ip);
    assert.equal(fourth.status, 429, fourth.text);
    assert.equal(fourth.body.error, 'IDENT_RATE_LIMITED');
    const browser = new HttpBrowser();
    const forgot = await browser.request(new URL('/forgot-password', ts.issuer));
    const csrf = formField(await forgot.text(), 'csrf')!;
    const page = await post(browser, new URL('/forgot-password', ts.issuer), { csrf, email: uniqueEmail('limit') }, ip);
    assert.equal(page.res.status, 429);
    assert.equal(alertText(page.html), 'Too many attempts. Please try again later.');
    assert.equal(h1(page.html), 'Reset your password', 'the request form again');
    // Another IP is not limited.
    assert.equal((await api(ts, '/api/v1/auth/password-reset/request', { email: uniqueEmail('limit') }, newIp())).status, 202);
  });

  it('a reset proves the address (email verified) and ends a lockout', async () => {
    const ip = newIp();
    const user = await createUser(ts, 'an old password 11', { emailVerified: false });
    const client = await registerClient(ts, {}, true);
    // LOCKOUT_THRESHOLD=3: three wrong passwords lock the account; then even the right one fails.
    for (let i = 0; i < 3; i++) assert.ok([401, 429].includes(await loginStatus(ts, client.clientId, user.email, 'wrong password')));
    assert.equal(await loginStatus(ts, client.clientId, user.email, user.password), 429, 'locked');
    const locked = (await findUser(ts, user.email))!;
    assert.ok(locked.locked_until && locked.locked_until.getTime() > Date.now());

    assert.equal((await api(ts, '/api/v1/auth/password-reset/request', { email: user.email }, ip)).status, 202);
    const { code } = codeAndLink(await mailbox.next(user.email, SUBJECT.reset), ts.issuer);
    const password = strongPassword();
    const confirmed = await api(ts, '/api/v1/auth/password-reset/confirm', { email: user.email, code: code!, password }, ip);
    assert.equal(confirmed.status, 200, confirmed.text);

    const row = (await findUser(ts, user.email))!;
    assert.equal(row.email_verified, true);
    assert.equal(row.locked_until, null);
    assert.equal(row.failed_attempts, 0);
    const events = (await eventsOf(ts, user.id)).filter((e) => e.type === 'user.password_reset' || e.type === 'user.unlocked');
    assert.deepEqual(events.map((e) => e.type), ['user.password_reset', 'user.unlocked'], 'the reset records the lock it ended');
    assert.deepEqual({ type: events[1]!.actor_type, id: events[1]!.actor_id }, { type: 'user', id: user.id });
    assert.equal(events[1]!.payload.by, 'password_reset');
    assert.equal(events[1]!.payload.before.locked, true);
    // Verified, so the policy's verification step does not stop the sign-in.
    const { tokens } = await signIn(ts, await rpConfig(ts, client), { email: user.email, password });
    assert.equal(tokens.claims()!.sub, user.id);
  });

  it('API confirm judges the password on the request alone: a password that only an account’s names make weak gets the same answer for a known and an unknown address', async () => {
    // Weak only next to the names Zanzibar Quixote (zxcvbn's user inputs); fine otherwise.
    const known = await createUser(ts, strongPassword(), { givenName: 'Zanzibar', familyName: 'Quixote' });
    const ip = newIp();
    const answers = [];
    for (const email of [known.email, uniqueEmail('nobody')]) {
      const res = await api(ts, '/api/v1/auth/password-reset/confirm', { email, code: '000000', password: 'Zanzibarquixote' }, ip);
      answers.push({ status: res.status, error: res.body.error, message: res.body.message });
    }
    assert.deepEqual(answers[0], answers[1], 'the verdict does not depend on the account');
    assert.equal(answers[0]!.error, 'IDENT_OTP_INVALID');
  });
});
