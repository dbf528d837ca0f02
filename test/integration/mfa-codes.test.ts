import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type * as oidc from 'openid-client';
import { createLogger } from '../../src/infra/logger.ts';
import { accountConsole } from '../helpers/account-console.ts';
import { formField, HttpBrowser } from '../helpers/browser-http.ts';
import { logCapture } from '../helpers/log-capture.ts';
import { alertText } from '../helpers/login-page.ts';
import { fastMailSettings, startMailbox } from '../helpers/mailbox.ts';
import { afterPassword, postSecondFactor, sendSecondFactorCode } from '../helpers/mfa.ts';
import { createUser, registerClient, rpConfig, signIn } from '../helpers/rp.ts';
import { startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';
import { startSmsReceiver, type SmsReceiver } from '../helpers/sms-receiver.ts';
import { callUserApi } from '../helpers/user-api.ts';

/**
 * SMS codes (through a local HTTP receiver the webhook provider posts to) and email codes as
 * second factors: enrolled through the account API with real first-party tokens, then proven at a
 * real sign-in that openid-client completes, the ID token telling what was proven.
 */

type Mailbox = Awaited<ReturnType<typeof startMailbox>>;

/** A Vietnamese mobile number of its own per test: quotas and cooldowns are per number. */
const newPhone = () => `+8490${String(randomInt(0, 10_000_000)).padStart(7, '0')}`;
const spaced = (e164: string) => `${e164.slice(0, 3)} ${e164.slice(3, 5)} ${e164.slice(5, 8)} ${e164.slice(8)}`;
const wrongOf = (code: string) => (code === '000000' ? '111111' : '000000');

describe('second factors: SMS and email codes', () => {
  let ts: TestServer;
  let sms: SmsReceiver;
  let mailbox: Mailbox;
  let config: oidc.Configuration;
  const logs = logCapture();

  before(async () => {
    sms = await startSmsReceiver();
    mailbox = await startMailbox();
    ts = await startTestServer(
      {
        ...fastMailSettings(mailbox.url),
        SMS_PROVIDER: 'webhook', SMS_WEBHOOK_URL: sms.url, SMS_WEBHOOK_TOKEN: 'webhook-secret', SMS_WEBHOOK_TIMEOUT_MS: '500',
        ME_API_RATE_LIMIT_PER_USER: '1000',
      },
      { logger: createLogger('trace', logs.stream) },
    );
    config = await rpConfig(ts, await registerClient(ts, { token_endpoint_auth_method: 'none' }, true));
  });
  after(async () => {
    await stopAndDestroy(ts);
    await sms.stop();
    await mailbox.stop();
  });

  const call = (method: string, path: string, token: string | undefined, body?: unknown) => callUserApi(ts, method, path, token, body);

  /** A new user and a first-party access token of theirs (taken before any factor, so no second step). */
  async function userWithToken(extra: Record<string, unknown> = {}, firstParty = true) {
    const user = await createUser(ts, undefined, extra);
    const client = await registerClient(ts, { scope: 'openid email profile' }, firstParty);
    const { tokens } = await signIn(ts, await rpConfig(ts, client), user, { scope: 'openid email', prompt: 'consent', browser: new HttpBrowser() });
    return { ...user, token: tokens.access_token };
  }

  async function withSms() {
    const user = await userWithToken();
    const phone = newPhone();
    const enrolled = await call('POST', '/api/v1/me/mfa/sms/enroll', user.token, { phone: spaced(phone) });
    assert.equal(enrolled.status, 201, JSON.stringify(enrolled.body));
    const code = sms.codeOf(phone);
    const confirmed = await call('POST', '/api/v1/me/mfa/sms/confirm', user.token, { factorId: enrolled.body!.factorId, code });
    assert.equal(confirmed.status, 200, JSON.stringify(confirmed.body));
    return { ...user, phone, enrolled: enrolled.body!, confirmed: confirmed.body!, enrolCode: code };
  }

  async function withEmail() {
    const user = await userWithToken();
    const enrolled = await call('POST', '/api/v1/me/mfa/email/enroll', user.token);
    assert.equal(enrolled.status, 201, JSON.stringify(enrolled.body));
    const code = /\b(\d{6})\b/.exec((await mailbox.next(user.email, /verification code/)).text)![1]!;
    const confirmed = await call('POST', '/api/v1/me/mfa/email/confirm', user.token, { factorId: enrolled.body!.factorId, code });
    assert.equal(confirmed.status, 200, JSON.stringify(confirmed.body));
    return { ...user, confirmed: confirmed.body! };
  }

  /** Follows a successful second step to the client and redeems the code with openid-client. */
  async function finish(started: Awaited<ReturnType<typeof afterPassword>>, res: Response) {
    assert.equal(res.status, 303, `the code completes the step, got ${res.status}: ${alertText(await res.clone().text())}`);
    const done = await started.browser.follow(new URL(res.headers.get('location')!, started.next), {}, started.isCallback);
    assert.ok(started.isCallback(done.url), 'the authorization ends at the client');
    return (await started.request.redeem(done.url)).claims()!;
  }

  it('a phone enrolled through the API (the code texted to the webhook) is asked for after the password: amr pwd, sms, mfa; acr mfa', async () => {
    const user = await withSms();
    assert.equal(user.enrolled.phone, `••• ${user.phone.slice(-2)}`, 'the number is answered masked');
    assert.ok(Date.parse(user.enrolled.expiresAt) > Date.now());
    const texted = sms.last(user.phone);
    assert.equal(texted.authorization, 'Bearer webhook-secret');
    assert.match(texted.text, /code to add this phone/);
    assert.equal(user.confirmed.type, 'sms');
    const listed = await call('GET', '/api/v1/me/mfa', user.token);
    assert.deepEqual(listed.body!.data.map((f: { type: string; phone?: string }) => [f.type, f.phone]), [['sms', `••• ${user.phone.slice(-2)}`]]);

    const started = await afterPassword(config, user);
    assert.match(started.next.pathname, /\/mfa$/, 'the password leads to the second step');
    const page = await (await started.browser.request(started.next)).text();
    assert.match(page, new RegExp(`••• ${user.phone.slice(-2)}`), 'the page names the phone, masked');
    assert.ok(!page.includes(user.phone.slice(3)), 'never the whole number');
    assert.match(page, /autocomplete="one-time-code"/);
    const before = sms.received.length;
    await (await started.browser.request(started.next)).arrayBuffer();
    assert.equal(sms.received.length, before, 'loading the page sends nothing');

    const sent = await sendSecondFactorCode(started.browser, started.next, 'sms');
    assert.equal(sent.status, 303);
    assert.match(sent.headers.get('location')!, /method=sms&sent=1$/);
    assert.equal(sms.received.length, before + 1, 'the button sends one code');
    const code = sms.codeOf(user.phone);
    assert.match(sms.last(user.phone).text, /sign-in code/);
    const claims = await finish(started, await postSecondFactor(started.browser, started.next, code, 'sms'));
    assert.deepEqual(claims.amr, ['pwd', 'sms', 'mfa']);
    assert.equal(claims.acr, 'mfa');

    // Codes stay in the messages: never in events nor logs.
    const events = JSON.stringify(await ts.server.services.db('events').where({ subject_id: user.id }));
    assert.ok(events.includes('"user.mfa_login"') && events.includes('"user.mfa_enrolled"'));
    for (const secret of [code, user.enrolCode]) {
      assert.ok(!events.includes(secret), 'no code in the events');
      assert.ok(!JSON.stringify(logs.lines).includes(secret), 'no code in the logs');
    }
    // The enrollment is a factor change: mailed to the user.
    assert.match((await mailbox.next(user.email, /sign-in step was added/)).text, /A phone was added/);
  });

  it('email codes: enrolled through the API with a mailed code, then asked for after the password: amr pwd, otp, mfa', async () => {
    const user = await withEmail();
    assert.equal(user.confirmed.type, 'email');
    assert.match((await mailbox.next(user.email, /sign-in step was added/)).text, /Email codes were turned on/);

    const started = await afterPassword(config, user);
    assert.match(started.next.pathname, /\/mfa$/);
    const page = await (await started.browser.request(started.next)).text();
    assert.match(page, new RegExp(`${user.email[0]}•••@`), 'the address, masked');
    assert.equal((await sendSecondFactorCode(started.browser, started.next, 'email')).status, 303);
    const mail = await mailbox.next(user.email, /verification code/);
    assert.match(mail.text, /finish signing in/);
    const code = /\b(\d{6})\b/.exec(mail.text)![1]!;
    const claims = await finish(started, await postSecondFactor(started.browser, started.next, code, 'email'));
    assert.deepEqual(claims.amr, ['pwd', 'otp', 'mfa']);
    assert.equal(claims.acr, 'mfa');
  });

  it('five wrong codes lock the factor (429 page, the right code refused, no more sends) and count toward the account lockout', async () => {
    const user = await withSms();
    const started = await afterPassword(config, user);
    assert.equal((await sendSecondFactorCode(started.browser, started.next, 'sms')).status, 303);
    const code = sms.codeOf(user.phone);
    const statuses = [];
    for (let i = 0; i < 5; i++) statuses.push((await postSecondFactor(started.browser, started.next, wrongOf(code), 'sms')).status);
    assert.deepEqual(statuses, [401, 401, 401, 401, 429]);
    const locked = await postSecondFactor(started.browser, started.next, code, 'sms');
    assert.equal(locked.status, 429);
    assert.equal(alertText(await locked.text()), 'Too many wrong codes. Please try again in 15 minutes.');
    const before = sms.received.length;
    const resend = await sendSecondFactorCode(started.browser, started.next, 'sms');
    assert.equal(resend.status, 429, 'a locked factor gets no more codes');
    assert.equal(alertText(await resend.text()), 'Too many wrong codes. Please try again in 15 minutes.', 'refused for the lock, not a cooldown');
    assert.equal(sms.received.length, before);
    const row = (await ts.server.services.repos.users.findById(user.id))!;
    assert.equal(row.failed_attempts, 5, 'each wrong code counted toward the account lockout');
    assert.deepEqual(await ts.server.services.mfa.lockedFactors(user.id), ['sms']);
  });

  it('a code is good once: replaying a used code at the next sign-in is refused', async () => {
    const user = await withEmail();
    const first = await afterPassword(config, user);
    assert.equal((await sendSecondFactorCode(first.browser, first.next, 'email')).status, 303);
    const code = /\b(\d{6})\b/.exec((await mailbox.next(user.email, /verification code/)).text)![1]!;
    await finish(first, await postSecondFactor(first.browser, first.next, code, 'email'));

    const second = await afterPassword(config, user);
    assert.equal((await postSecondFactor(second.browser, second.next, code, 'email')).status, 401, 'the used code is refused');
  });

  it('an unconfirmed phone does not count: the sign-in does not ask for it', async () => {
    const user = await userWithToken();
    const phone = newPhone();
    assert.equal((await call('POST', '/api/v1/me/mfa/sms/enroll', user.token, { phone })).status, 201);
    const started = await afterPassword(config, user);
    assert.ok(started.isCallback(started.next), `straight to the client, got ${started.next.pathname}`);
    assert.deepEqual((await started.request.redeem(started.next)).claims()!.amr, ['pwd']);
    assert.deepEqual((await call('GET', '/api/v1/me/mfa', user.token)).body!.data, [], 'not listed either');
    // A wrong code does not confirm it.
    const wrong = await call('POST', '/api/v1/me/mfa/sms/confirm', user.token, { factorId: (await ts.server.services.db('mfa_factors').where({ user_id: user.id }).first()).id, code: wrongOf(sms.codeOf(phone)) });
    assert.equal(wrong.status, 400);
    assert.equal(wrong.body!.error, 'IDENT_OTP_INVALID');
  });

  it('the webhook down or hanging: a clear 503 envelope and error page, never a 500 nor a hang; the user may ask again at once', async () => {
    const user = await userWithToken();
    const phone = newPhone();
    for (const mode of ['down', 'hang'] as const) {
      sms.setMode(mode);
      const res = await call('POST', '/api/v1/me/mfa/sms/enroll', user.token, { phone });
      assert.equal(res.status, 503, mode);
      assert.equal(res.body!.error, 'IDENT_SMS_UNAVAILABLE', mode);
    }
    sms.setMode('up');
    const enrolled = await call('POST', '/api/v1/me/mfa/sms/enroll', user.token, { phone });
    assert.equal(enrolled.status, 201, 'no cooldown after a send that did not go out');
    assert.equal((await call('POST', '/api/v1/me/mfa/sms/enroll', user.token, { phone })).body!.error, 'IDENT_OTP_COOLDOWN', 'but after one that did');

    const withPhone = await withSms();
    const started = await afterPassword(config, withPhone);
    sms.setMode('down');
    try {
      const page = await sendSecondFactorCode(started.browser, started.next, 'sms');
      assert.equal(page.status, 503);
      assert.equal(alertText(await page.text()), 'The text message could not be sent. Please try again in a few minutes.');
    } finally {
      sms.setMode('up');
    }
    assert.equal((await sendSecondFactorCode(started.browser, started.next, 'sms')).status, 303, 'sent once the gateway is back');
  });

  it('bad input: an invalid number is 400, email codes need a verified address (422)', async () => {
    const user = await userWithToken();
    for (const phone of ['12345', '+1 555 0100', 'not a number', '0901234567']) {
      const res = await call('POST', '/api/v1/me/mfa/sms/enroll', user.token, { phone });
      assert.equal(res.status, 400, phone);
      assert.equal(res.body!.error, 'IDENT_VALIDATION', phone);
    }
    const unverified = await userWithToken();
    await ts.server.services.db('users').where({ id: unverified.id }).update({ email_verified: false });
    const res = await call('POST', '/api/v1/me/mfa/email/enroll', unverified.token);
    assert.equal(res.status, 422);
    assert.equal(res.body!.error, 'IDENT_EMAIL_UNVERIFIED');
  });

  it('the account console adds a phone (number, then the texted code) and email codes, each removable', async () => {
    const { post, followRedirect, consoleSignIn } = accountConsole(() => ts);
    const user = await createUser(ts);
    const browser = new HttpBrowser();
    let page = await consoleSignIn(browser, user);
    const phone = newPhone();

    // A bad number is said so on the page; a good one gets a text and the code form.
    const bad = await post(browser, '/mfa/sms/enroll', { csrf: formField(page, 'csrf')!, phone: '12345' });
    assert.equal(bad.status, 400);
    assert.match(await bad.text(), /Enter a valid phone number/);
    const sent = await post(browser, '/mfa/sms/enroll', { csrf: formField(page, 'csrf')!, phone: spaced(phone) });
    assert.equal(sent.status, 200);
    page = await sent.text();
    assert.match(page, new RegExp(`We texted a code to ••• ${phone.slice(-2)}`));
    assert.match(page, /id="sms_code"[^>]*autocomplete="one-time-code"/);
    const factor = /action="[^"]*\/mfa\/sms\/confirm"[\s\S]*?name="factor" value="([^"]+)"/.exec(page)![1]!;
    const wrong = await post(browser, '/mfa/sms/confirm', { csrf: formField(page, 'csrf')!, factor, code: wrongOf(sms.codeOf(phone)) });
    assert.equal(wrong.status, 400);
    page = await wrong.text();
    assert.match(page, /That code is not right/);
    assert.match(page, /id="sms_code"/, 'asked again for the same enrollment');
    const done = await followRedirect(await post(browser, '/mfa/sms/confirm', { csrf: formField(page, 'csrf')!, factor, code: sms.codeOf(phone) }), browser);
    assert.match(done.html, /Phone added/);
    assert.match(done.html, new RegExp(`<div class="muted small factor-detail">••• ${phone.slice(-2)}</div>`));

    // Email codes: a code to the verified address, then confirmed.
    const emailSent = await post(browser, '/mfa/email/enroll', { csrf: formField(done.html, 'csrf')! });
    assert.equal(emailSent.status, 200);
    page = await emailSent.text();
    const emailFactor = /action="[^"]*\/mfa\/email\/confirm"[\s\S]*?name="factor" value="([^"]+)"/.exec(page)![1]!;
    const code = /\b(\d{6})\b/.exec((await mailbox.next(user.email, /verification code/)).text)![1]!;
    const emailDone = await followRedirect(await post(browser, '/mfa/email/confirm', { csrf: formField(page, 'csrf')!, factor: emailFactor, code }), browser);
    assert.match(emailDone.html, /Email codes added/);
    const rows = await ts.server.services.db('mfa_factors').where({ user_id: user.id }).whereNotNull('confirmed_at').orderBy('type');
    assert.deepEqual(rows.map((r) => [r.type, r.phone]), [['email', null], ['sms', phone]]);

    // Each is removable with the console's remove form, and mailed about.
    for (const row of rows) {
      const removed = await followRedirect(await post(browser, '/mfa/remove', { csrf: formField(emailDone.html, 'csrf')!, factor: row.id }), browser);
      assert.match(removed.html, /The sign-in step was removed/);
    }
    assert.deepEqual(await ts.server.services.db('mfa_factors').where({ user_id: user.id }).whereNotNull('confirmed_at'), []);
    assert.match((await mailbox.next(user.email, /sign-in step was removed/)).text, /phone was removed|Email codes were turned off/);
  });

  it('a third-party token is refused on the new routes (403), and nothing is sent', async () => {
    const user = await userWithToken({}, false);
    const phone = newPhone();
    const factorId = '00000000-0000-4000-8000-000000000000';
    for (const [path, body] of [
      ['/api/v1/me/mfa/sms/enroll', { phone }],
      ['/api/v1/me/mfa/sms/confirm', { factorId, code: '123456' }],
      ['/api/v1/me/mfa/email/enroll', undefined],
      ['/api/v1/me/mfa/email/confirm', { factorId, code: '123456' }],
    ] as const) {
      const res = await call('POST', path, user.token, body);
      assert.equal(res.status, 403, path);
      assert.equal(res.body!.error, 'IDENT_FORBIDDEN', path);
    }
    assert.ok(!sms.received.some((m) => m.to === phone), 'no SMS');
  });
});

describe('SMS_PROVIDER=off (the default)', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer({ ME_API_RATE_LIMIT_PER_USER: '1000' });
  });
  after(() => stopAndDestroy(ts));

  it('the SMS factor is not offered: enrolling is 422 IDENT_SMS_DISABLED', async () => {
    const user = await createUser(ts);
    const client = await registerClient(ts, { scope: 'openid email' }, true);
    const { tokens } = await signIn(ts, await rpConfig(ts, client), user, { scope: 'openid', prompt: 'consent' });
    const res = await callUserApi(ts, 'POST', '/api/v1/me/mfa/sms/enroll', tokens.access_token, { phone: '+84 90 123 45 78' });
    assert.equal(res.status, 422);
    assert.equal(res.body!.error, 'IDENT_SMS_DISABLED');
  });
});
