import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import * as oidc from 'openid-client';
import { emailIdentifier } from '../../src/domain/accounts/account-flow.ts';
import { AppError } from '../../src/domain/errors.ts';
import type { OutboxRow } from '../../src/repos/outbox.ts';
import type { UserRow } from '../../src/repos/users.ts';
import { HttpBrowser, formAction, formField } from '../helpers/browser-http.ts';
import { finishAuthorization, startAuthorization as startPending, type PendingAuthorization } from '../helpers/authorization.ts';
import { solveCaptcha } from '../helpers/captcha.ts';
import { alertText } from '../helpers/login-page.ts';
import { codeAndLink, fastMailSettings, mailSettled, startMailbox, waitFor, type Mailbox } from '../helpers/mailbox.ts';
import { createUser, registerClient, rpConfig, signIn, submitLogin, uniqueEmail, type Registered } from '../helpers/rp.ts';
import { startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';

// Self-registration end to end: the register page inside a pending authorization (real ALTCHA
// proof of work, real SMTP mailbox, openid-client as the relying party), the JSON API, the
// registration policy per server and per client, and the verification code's limits.

const strongPassword = () => `Reg-${randomBytes(12).toString('base64url')}-9`;
const SUBJECT = {
  verify: /^Verify your email address$/,
  welcome: /^Welcome$/,
  setPassword: /^Choose your password$/,
  exists: /^Someone tried to create an account with your email$/,
};

const mailSettings = (smtpUrl: string) => ({
  ...fastMailSettings(smtpUrl),
  CAPTCHA_ALTCHA_MAX_NUMBER: '1000',
  // Every request comes from 127.0.0.1: the per-IP limit of the account API is not under test here.
  AUTH_API_RATE_LIMIT_PER_IP: '10000',
});

async function api(ts: TestServer, path: string, body: unknown) {
  const res = await fetch(new URL(path, ts.issuer), {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {}, text };
}

const findUser = (ts: TestServer, email: string) => ts.server.services.repos.users.findByEmail('default', email);
/** The user a registration makes: it is written after the answer, so it may take a moment. */
const createdUser = (ts: TestServer, email: string) => waitFor(`user ${email}`, () => findUser(ts, email));
const userCount = async (ts: TestServer, email: string) =>
  Number((await ts.server.services.db('users').whereRaw('lower(email) = lower(?)', [email]).count({ n: '*' }))[0]!.n);
const outboxOf = (ts: TestServer, email: string) => ts.server.services.db<OutboxRow>('outbox').where({ recipient: email }).orderBy('created_at');

/** Waits until every mail queued for `email` is sent; answers their templates. */
async function sentTemplates(ts: TestServer, email: string): Promise<string[]> {
  return waitFor(`mails to ${email} sent`, async () => {
    const rows = await outboxOf(ts, email);
    return rows.length > 0 && rows.every((r) => r.status === 'sent') ? rows.map((r) => r.template).sort() : undefined;
  });
}

const title = (html: string) => /<title>([^<]*)<\/title>/.exec(html)?.[1];
const h1 = (html: string) => /<h1>([^<]*)<\/h1>/.exec(html)?.[1];

/** A pending authorization up to its login page, asking for the names too (registration sets them). */
const startAuthorization = (ts: TestServer, client: Registered) => startPending(ts, client, { scope: 'openid email profile' });
type Flow = PendingAuthorization;
const redeem = finishAuthorization;

/** The register page of a pending authorization, reached by the login page's "Create an account" link. */
async function openRegisterPage(flow: Flow) {
  const href = /<a href="([^"]+)">Create an account<\/a>/.exec(flow.loginHtml)?.[1];
  assert.equal(href, `/interaction/${flow.uid}/register`, 'the login page links to the register page');
  const url = new URL(href!, flow.loginUrl);
  const res = await flow.browser.request(url);
  const html = await res.text();
  assert.equal(res.status, 200, html.slice(0, 300));
  return { url, html, action: new URL(formAction(html, '/register')!, url), csrf: formField(html, 'csrf')! };
}

async function postRegisterPage(flow: Flow, page: { action: URL; csrf: string }, fields: Record<string, string>) {
  const res = await flow.browser.postForm(page.action, { csrf: page.csrf, ...fields });
  return { res, html: res.status === 303 ? '' : await res.text() };
}

/**
 * Registers each address on the register page of a fresh authorization; answers each page with
 * what differs by nature (the address, the interaction, the CSRF token) blanked, to compare them.
 */
async function registerPageAnswers(ts: TestServer, client: Registered, emails: string[], password: string) {
  const answers: { status: number; html: string }[] = [];
  for (const email of emails) {
    const flow = await startAuthorization(ts, client);
    const page = await openRegisterPage(flow);
    const { res, html } = await postRegisterPage(flow, page, { email, password, captcha: await solveCaptcha(ts, flow.browser) });
    answers.push({
      status: res.status,
      html: html.replaceAll(email, 'EMAIL').replaceAll(flow.uid, 'UID').replace(/name="csrf" value="[^"]*"/g, 'name="csrf" value=""'),
    });
  }
  return answers;
}

describe('self-registration', () => {
  let ts: TestServer;
  let mailbox: Mailbox;

  before(async () => {
    mailbox = await startMailbox();
    ts = await startTestServer(mailSettings(mailbox.url));
  });
  after(async () => {
    await stopAndDestroy(ts);
    await mailbox.stop();
  });

  it('registers on the page inside a pending authorization; the emailed code completes the sign-in', async () => {
    const client = await registerClient(ts, { client_name: 'Registration Shop' });
    const flow = await startAuthorization(ts, client);
    const page = await openRegisterPage(flow);
    // The page carries the self-hosted ALTCHA widget; the test solves its challenge as the widget would.
    const widget = /<altcha-widget challenge="([^"]+)" name="([^"]+)"/.exec(page.html);
    assert.ok(widget, 'ALTCHA widget on the page');
    assert.equal(widget[2], 'captcha');
    for (const name of ['email', 'given_name', 'family_name', 'password']) assert.match(page.html, new RegExp(`name="${name}"`));
    assert.match(page.html, /name="password" type="password" autocomplete="new-password"[^>]* required/, 'password required by default');

    const email = uniqueEmail('reg-page');
    const password = strongPassword();
    const captcha = await solveCaptcha(ts, flow.browser, widget[1]);
    const registered = await postRegisterPage(flow, page, { email, given_name: 'Grace', family_name: 'Hopper', password, captcha });
    assert.equal(registered.res.status, 200, registered.html.slice(0, 400));
    assert.equal(h1(registered.html), 'Verify your email');
    const verifyAction = formAction(registered.html, '/verify-email');
    assert.equal(verifyAction, `/interaction/${flow.uid}/verify-email`);

    const user = await createdUser(ts, email);
    assert.equal(user.email_verified, false);
    assert.equal(user.given_name, 'Grace');

    const mail = await mailbox.next(email, SUBJECT.verify);
    const { code, link } = codeAndLink(mail, ts.issuer);
    assert.match(code ?? '', /^\d{6}$/);
    assert.ok(link?.startsWith(`${ts.issuer}/verify-email?token=`), link);

    const verified = await flow.browser.postForm(new URL(verifyAction!, flow.loginUrl), {
      csrf: formField(registered.html, 'csrf')!,
      email,
      code: code!,
    });
    const tokens = await redeem(flow, verified, flow.loginUrl);
    const claims = tokens.claims()!;
    assert.equal(claims.sub, user.id, 'the ID token names the new user');
    const info = await oidc.fetchUserInfo(flow.config, tokens.access_token, user.id);
    assert.equal(info.email, email);
    assert.equal(info.email_verified, true);
    assert.equal(info.given_name, 'Grace');
    assert.equal((await findUser(ts, email))!.email_verified, true);

    // The welcome mail (REGISTRATION_WELCOME_MAIL defaults to on).
    const welcome = await mailbox.next(email, SUBJECT.welcome);
    assert.ok(welcome.text.includes(`${ts.issuer}/account`));

    // Events: created (by the relying party's flow) and verified, with no secret in them.
    const events = await ts.server.services.db('events').where({ subject_id: user.id }).orderBy('occurred_at');
    const types = events.map((e) => e.type as string);
    assert.deepEqual(types, ['user.created', 'user.email_verified', 'user.signed_in'], 'created, verified, then signed in once the code completed it');
    const created = events.find((e) => e.type === 'user.created')!;
    const payload = typeof created.payload === 'string' ? JSON.parse(created.payload) : created.payload;
    assert.equal(payload.user.email, email);
    assert.equal(payload.source, 'self-registration');
    assert.deepEqual({ type: created.actor_type, id: created.actor_id }, { type: 'user', id: user.id }, 'the registrant acts');
    assert.equal(payload.clientId, client.clientId, 'through the relying party of the sign-in');
    const serialised = JSON.stringify(events);
    for (const secret of [password, code!, new URL(link!).searchParams.get('token')!, user.password_hash ?? 'argon2', 'argon2']) {
      assert.ok(!serialised.includes(secret), 'no secret in the events');
    }
  });

  it('registers through the API in a browser; the mail link opened there asks, its button verifies; then the relying party signs the user in', async () => {
    const client = await registerClient(ts, {}, true);
    const email = uniqueEmail('reg-api');
    const password = strongPassword();
    // The API call and the link share one browser (its registrant cookie), so the password stays.
    const browser = new HttpBrowser();
    const registered = await browser.request(new URL('/api/v1/auth/register', ts.issuer), {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({ email, password, givenName: 'Alan', captcha: await solveCaptcha(ts) }),
    });
    assert.equal(registered.status, 202, await registered.text());

    const mail = await mailbox.next(email, SUBJECT.verify);
    const { link } = codeAndLink(mail, ts.issuer);
    assert.ok(link);
    const opened = await browser.request(link);
    const page = await opened.text();
    assert.equal(opened.status, 200, page.slice(0, 300));
    assert.equal((await findUser(ts, email))!.email_verified, false, 'opening the link changes nothing');
    const post = () => browser.postForm(new URL(formAction(page, '/verify-email')!, link), { csrf: formField(page, 'csrf')!, token: formField(page, 'token')! });
    const confirmed = await post();
    const html = await confirmed.text();
    assert.equal(confirmed.status, 200, html.slice(0, 300));
    assert.equal((await findUser(ts, email))!.email_verified, true);
    // The link works once; used again it says the work is done rather than "invalid".
    const again = await post();
    assert.equal(again.status, 200);
    const againHtml = await again.text();

    const { tokens } = await signIn(ts, await rpConfig(ts, client), { email, password });
    assert.equal(tokens.claims()!.sub, (await findUser(ts, email))!.id);
    assert.deepEqual(await sentTemplates(ts, email), ['verify-email', 'welcome']);

    // What the pages say.
    assert.match(page, /Verify my email address/);
    assert.equal(h1(html), 'Email verified');
    assert.match(html, /your email address is verified/);
    assert.match(againHtml, /already verified/);
  });

  it('sends no welcome mail for a client with registration_welcome_mail: false', async () => {
    const client = await registerClient(ts, { registration_welcome_mail: false }, true);
    const email = uniqueEmail('reg-nowelcome');
    const res = await api(ts, '/api/v1/auth/register', { email, password: strongPassword(), client_id: client.clientId, captcha: await solveCaptcha(ts) });
    assert.equal(res.status, 202, res.text);
    await mailbox.next(email, SUBJECT.verify);
    // Mails of a registration are queued in its transaction: once they are all sent, none is missing.
    assert.deepEqual(await sentTemplates(ts, email), ['verify-email']);
    await mailSettled(ts);
    assert.deepEqual(mailbox.all(email).map((m) => m.subject), ['Verify your email address']);
  });

  it('password optional (client registration_password: optional): a set-password mail whose code sets one via /reset-password', async () => {
    const client = await registerClient(ts, { registration_password: 'optional' }, true);
    // The register page of this client does not require a password.
    const flow = await startAuthorization(ts, client);
    const page = await openRegisterPage(flow);
    assert.match(page.html, /\(optional: we can email you a link to set one\)/);
    assert.doesNotMatch(page.html, /name="password"[^>]* required/);

    // Without the client the tenant's policy (password required) applies.
    const email = uniqueEmail('reg-nopw');
    const refused = await api(ts, '/api/v1/auth/register', { email, captcha: await solveCaptcha(ts) });
    assert.equal(refused.status, 400, refused.text);
    assert.equal(refused.body.error, 'IDENT_VALIDATION');
    assert.equal(await findUser(ts, email), undefined);

    const res = await api(ts, '/api/v1/auth/register', { email, givenName: 'Ada', client_id: client.clientId, captcha: await solveCaptcha(ts) });
    assert.equal(res.status, 202, res.text);
    assert.ok(await createdUser(ts, email));
    const mail = await mailbox.next(email, SUBJECT.setPassword);
    const { code, link } = codeAndLink(mail, ts.issuer);
    assert.match(code ?? '', /^\d{6}$/);
    assert.ok(link?.startsWith(`${ts.issuer}/reset-password?token=`), link);
    await mailbox.next(email, SUBJECT.verify);

    // The code on the reset page: email + code, then the new-password form.
    const browser = new HttpBrowser();
    const forgot = await browser.request(new URL('/forgot-password', ts.issuer));
    const csrf = formField(await forgot.text(), 'csrf')!;
    assert.ok(csrf);
    const step = await browser.postForm(new URL('/reset-password', ts.issuer), { csrf, email, code: code! });
    const stepHtml = await step.text();
    assert.equal(step.status, 200, stepHtml.slice(0, 300));
    const session = formField(stepHtml, 'session');
    assert.ok(session, 'the new-password form carries the verified step');
    assert.match(stepHtml, /name="password" type="password" autocomplete="new-password"/);
    const password = strongPassword();
    const done = await browser.postForm(new URL('/reset-password', ts.issuer), { csrf: formField(stepHtml, 'csrf')!, session, password });
    assert.equal(done.status, 200);
    const doneHtml = await done.text();

    // The emailed code proved the address, so the first sign-in needs no other code.
    const { tokens } = await signIn(ts, await rpConfig(ts, client), { email, password });
    assert.equal(tokens.claims()!.sub, (await findUser(ts, email))!.id);
    assert.equal(h1(doneHtml), 'Password changed');
    assert.match(doneHtml, /Your password is changed/);
  });

  it('requires the CAPTCHA: missing, garbage or replayed payloads are refused and create nobody', async () => {
    const missing = uniqueEmail('reg-captcha');
    const password = strongPassword();
    for (const captcha of [undefined, 'garbage', Buffer.from('{"challenge":{},"solution":{}}').toString('base64')]) {
      const res = await api(ts, '/api/v1/auth/register', { email: missing, password, ...(captcha === undefined ? {} : { captcha }) });
      assert.equal(res.status, 400, res.text);
      assert.equal(res.body.error, 'IDENT_CAPTCHA_INVALID');
      assert.deepEqual(Object.keys(res.body).sort(), ['error', 'message', 'requestId', 'timestamp']);
    }
    assert.equal(await findUser(ts, missing), undefined);

    // A solved payload is accepted once.
    const payload = await solveCaptcha(ts);
    const first = uniqueEmail('reg-captcha');
    assert.equal((await api(ts, '/api/v1/auth/register', { email: first, password, captcha: payload })).status, 202);
    const replay = uniqueEmail('reg-captcha');
    const replayed = await api(ts, '/api/v1/auth/register', { email: replay, password, captcha: payload });
    assert.equal(replayed.status, 400, replayed.text);
    assert.equal(replayed.body.error, 'IDENT_CAPTCHA_INVALID');
    assert.ok(await createdUser(ts, first));
    assert.equal(await findUser(ts, replay), undefined);

    // The page: the form again with the error, the address kept, nobody created.
    const client = await registerClient(ts, {}, true);
    const flow = await startAuthorization(ts, client);
    const page = await openRegisterPage(flow);
    const pageEmail = uniqueEmail('reg-captcha-page');
    for (const captcha of [undefined, 'garbage', payload]) {
      const answer = await postRegisterPage(flow, page, { email: pageEmail, password, ...(captcha === undefined ? {} : { captcha }) });
      assert.equal(answer.res.status, 400);
      assert.equal(alertText(answer.html), 'Please complete the check that you are not a robot.');
      assert.equal(h1(answer.html), 'Create an account');
      assert.equal(formField(answer.html, 'email'), pageEmail);
    }
    assert.equal(await findUser(ts, pageEmail), undefined);
  });

  it('a client with registration_enabled: false: no register link, its register page and the API refuse', async () => {
    const client = await registerClient(ts, { registration_enabled: false }, true);
    const flow = await startAuthorization(ts, client);
    assert.doesNotMatch(flow.loginHtml, /Create an account/);
    assert.doesNotMatch(flow.loginHtml, /\/register"/);
    assert.match(flow.loginHtml, /Forgot password\?/, 'the rest of the login page is there');

    const pageUrl = new URL(`/interaction/${flow.uid}/register`, flow.loginUrl);
    const get = await flow.browser.request(pageUrl);
    const html = await get.text();
    assert.equal(get.status, 403);
    assert.doesNotMatch(html, /altcha-widget|<form/);

    const email = uniqueEmail('reg-off-client');
    const csrf = formField(flow.loginHtml, 'csrf')!;
    const post = await flow.browser.postForm(pageUrl, { csrf, email, password: strongPassword(), captcha: await solveCaptcha(ts) });
    assert.equal(post.status, 403);
    const res = await api(ts, '/api/v1/auth/register', { email, password: strongPassword(), client_id: client.clientId, captcha: await solveCaptcha(ts) });
    assert.equal(res.status, 403, res.text);
    assert.equal(res.body.error, 'IDENT_REGISTRATION_DISABLED');
    assert.equal(await findUser(ts, email), undefined);
    assert.match(html, /Creating an account is not possible here/, 'the register page says why');
  });

  it('does not reveal existing addresses: same answers, the owner is told by mail, no second user', async () => {
    // API: a new address and a taken one get the same status and body.
    const owner = await createUser(ts);
    const fresh = uniqueEmail('reg-enum');
    const password = strongPassword();
    const forNew = await api(ts, '/api/v1/auth/register', { email: fresh, password, captcha: await solveCaptcha(ts) });
    const forTaken = await api(ts, '/api/v1/auth/register', { email: owner.email, password, captcha: await solveCaptcha(ts) });
    assert.equal(forNew.status, 202);
    assert.equal(forTaken.status, forNew.status);
    // The registration handle is random for both (bound to nothing for a taken address).
    for (const b of [forNew.body, forTaken.body]) assert.match(String(b.registration), /^[\w-]{43}$/);
    const strip = (b: Record<string, unknown>) => {
      const { requestId: _r, timestamp: _t, registration: _h, ...rest } = b;
      return rest;
    };
    assert.deepEqual(strip(forTaken.body), strip(forNew.body));
    const notice = await mailbox.next(owner.email, SUBJECT.exists);
    assert.ok(notice.text.includes(`${ts.issuer}/forgot-password`), 'the notice points to the password reset');
    assert.equal(await userCount(ts, owner.email), 1);
    const ownerRow = (await findUser(ts, owner.email))!;
    assert.equal(ownerRow.id, owner.id);
    assert.equal(ownerRow.given_name, 'Ada', 'the existing account is untouched');
    // An upper-case variant of the address is the same address.
    const upper = await api(ts, '/api/v1/auth/register', { email: owner.email.toUpperCase(), password, captcha: await solveCaptcha(ts) });
    assert.equal(upper.status, 202);
    assert.equal(await userCount(ts, owner.email), 1);
    assert.deepEqual(await sentTemplates(ts, owner.email), ['account-exists'], 'no verification mail to the owner');

    // The page: the same page and title for a new and a taken address.
    const client = await registerClient(ts, {}, true);
    const pageOwner = await createUser(ts);
    const pageFresh = uniqueEmail('reg-enum-page');
    const answers = await registerPageAnswers(ts, client, [pageFresh, pageOwner.email], password);
    assert.equal(answers[0]!.status, 200);
    assert.equal(answers[1]!.status, answers[0]!.status);
    assert.equal(title(answers[1]!.html), title(answers[0]!.html));
    assert.equal(answers[1]!.html, answers[0]!.html, 'byte for byte the same page');
    await mailbox.next(pageOwner.email, SUBJECT.exists);
    assert.equal(await userCount(ts, pageOwner.email), 1);
    await createdUser(ts, pageFresh);
    assert.equal(await userCount(ts, pageFresh), 1);
  });

  it('with verification off (client registration_require_email_verification: false) a taken address still looks like a new one: the code form for both, no sign-in at once', async () => {
    const client = await registerClient(ts, { registration_require_email_verification: false }, true);
    const owner = await createUser(ts);
    const fresh = uniqueEmail('reg-enum-nover');
    const password = strongPassword();
    const answers = await registerPageAnswers(ts, client, [fresh, owner.email], password);
    assert.equal(answers[0]!.status, 200, 'the code form, not a redirect that signs in');
    assert.equal(answers[1]!.status, answers[0]!.status);
    assert.equal(answers[1]!.html, answers[0]!.html, 'byte for byte the same page');
    // The API answers alike too (the random registration handle aside).
    const strip = ({ requestId: _r, timestamp: _t, registration: _h, ...rest }: Record<string, unknown>) => rest;
    const apiAnswers = [];
    for (const email of [uniqueEmail('reg-enum-nover'), owner.email]) {
      const res = await api(ts, '/api/v1/auth/register', { email, password, client_id: client.clientId, captcha: await solveCaptcha(ts) });
      apiAnswers.push({ status: res.status, body: strip(res.body) });
    }
    assert.deepEqual(apiAnswers[1], apiAnswers[0]);
    // The new account may still sign in with its password before it verifies.
    await createdUser(ts, fresh);
    const { tokens } = await signIn(ts, await rpConfig(ts, client), { email: fresh, password });
    assert.equal(tokens.claims()!.sub, (await findUser(ts, fresh))!.id);
  });

  it('requireEmailVerification: an unverified user with the right password gets the code page; the code completes the sign-in', async () => {
    const email = uniqueEmail('reg-unverified');
    const password = strongPassword();
    assert.equal((await api(ts, '/api/v1/auth/register', { email, password, captcha: await solveCaptcha(ts) })).status, 202);
    const mail = await mailbox.next(email, SUBJECT.verify);
    const { code } = codeAndLink(mail, ts.issuer);
    const user = (await findUser(ts, email))!;

    const client = await registerClient(ts, { client_name: 'Needs Verified Mail' });
    const flow = await startAuthorization(ts, client);
    // A wrong password gets the plain login error, not the code page.
    const wrong = await submitLogin(flow.browser, flow.loginUrl, flow.loginHtml, email, 'not-the-password-1');
    assert.equal(wrong.status, 401);
    assert.doesNotMatch(await wrong.text(), /verify-email/);

    const answer = await submitLogin(flow.browser, flow.loginUrl, flow.loginHtml, email, password);
    const html = await answer.text();
    assert.equal(answer.status, 200, 'the code page instead of a redirect');
    assert.equal(h1(html), 'Verify your email');
    assert.equal(formAction(html, '/verify-email'), `/interaction/${flow.uid}/verify-email`);
    assert.equal(formField(html, 'email'), email);
    const events = await ts.server.services.db('events').where({ subject_id: user.id, type: 'user.email_verified' });
    assert.equal(events.length, 0);

    // The code of the registration mail is still the live one (a new send would be within the cooldown).
    const done = await flow.browser.postForm(new URL(formAction(html, '/verify-email')!, flow.loginUrl), {
      csrf: formField(html, 'csrf')!,
      email,
      code: code!,
    });
    const tokens = await redeem(flow, done, flow.loginUrl);
    assert.equal(tokens.claims()!.sub, user.id);
    assert.equal((await findUser(ts, email))!.email_verified, true);
  });

  it('locks the verification code after 5 wrong tries: then even the right code is refused', async () => {
    const email = uniqueEmail('reg-lock');
    assert.equal((await api(ts, '/api/v1/auth/register', { email, password: strongPassword(), captcha: await solveCaptcha(ts) })).status, 202);
    const { code } = codeAndLink(await mailbox.next(email, SUBJECT.verify), ts.issuer);
    const wrongCodes = ['000000', '111111', '222222', '333333', '444444', '555555'].filter((c) => c !== code).slice(0, 5);
    for (const [i, wrong] of wrongCodes.entries()) {
      const res = await api(ts, '/api/v1/auth/verify-email', { email, code: wrong });
      if (i < 4) {
        assert.equal(res.status, 400, `try ${i + 1}: ${res.text}`);
        assert.equal(res.body.error, 'IDENT_OTP_INVALID');
      } else {
        assert.equal(res.status, 429, `the 5th wrong try locks: ${res.text}`);
        assert.equal(res.body.error, 'IDENT_OTP_LOCKED');
      }
    }
    const right = await api(ts, '/api/v1/auth/verify-email', { email, code: code! });
    assert.equal(right.status, 429, right.text);
    assert.equal(right.body.error, 'IDENT_OTP_LOCKED');
    assert.equal((await findUser(ts, email))!.email_verified, false);
  });

  it('resend: nothing within the 60 s cooldown; the daily quota (10) stops resends too', async () => {
    const { codes, ephemeral } = ts.server.services;
    const email = uniqueEmail('reg-resend');
    assert.equal((await api(ts, '/api/v1/auth/register', { email, password: strongPassword(), captcha: await solveCaptcha(ts) })).status, 202);
    await mailbox.next(email, SUBJECT.verify);
    const id = emailIdentifier('default', email);

    const resend = await api(ts, '/api/v1/auth/verify-email/resend', { email });
    assert.equal(resend.status, 202, resend.text);
    assert.equal(resend.body.status, 'accepted');
    await mailSettled(ts);
    const verifyRows = async () => (await outboxOf(ts, email)).filter((r) => r.template === 'verify-email').length;
    assert.equal(await verifyRows(), 1, 'no second code within the cooldown');
    assert.equal(await ephemeral.get(`verify-email:daily:${id}`), '1', 'the refused send did not spend the quota');

    // The quota is hard to reach over HTTP with a 60-s cooldown: the same OneTimeCodes the server
    // uses issues the rest of today's 10, with the cooldown key removed between issues.
    for (let i = 0; i < 9; i++) {
      await ephemeral.del(`verify-email:cooldown:${id}`);
      await codes.issue('verify-email', id);
    }
    await ephemeral.del(`verify-email:cooldown:${id}`);
    const overQuota = await api(ts, '/api/v1/auth/verify-email/resend', { email });
    assert.equal(overQuota.status, 202, 'the answer does not change');
    await mailSettled(ts);
    assert.equal(await verifyRows(), 1, 'no mail over the daily quota');
    await ephemeral.del(`verify-email:cooldown:${id}`);
    await assert.rejects(codes.issue('verify-email', id), (err: unknown) => err instanceof AppError && err.code === 'IDENT_OTP_DAILY_QUOTA');

    // A resend for an unknown address answers the same.
    const unknown = await api(ts, '/api/v1/auth/verify-email/resend', { email: uniqueEmail('reg-nobody') });
    assert.equal(unknown.status, 202);
    assert.deepEqual(unknown.body, resend.body);
  });
});

describe('self-registration turned off for the server', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer({ REGISTRATION_ENABLED: 'false', CAPTCHA_ALTCHA_MAX_NUMBER: '1000', AUTH_API_RATE_LIMIT_PER_IP: '10000' });
  });
  after(() => stopAndDestroy(ts));

  it('the API answers 403 IDENT_REGISTRATION_DISABLED, the pages say so, the login page has no register link', async () => {
    const email = uniqueEmail('reg-off');
    const res = await api(ts, '/api/v1/auth/register', { email, password: strongPassword(), captcha: await solveCaptcha(ts) });
    assert.equal(res.status, 403, res.text);
    assert.equal(res.body.error, 'IDENT_REGISTRATION_DISABLED');
    assert.ok(res.body.requestId && res.body.timestamp && res.body.message);
    assert.equal(await findUser(ts, email), undefined);

    const standalone = await fetch(new URL('/register', ts.issuer));
    const html = await standalone.text();
    assert.doesNotMatch(html, /<form|altcha-widget/);

    const client = await registerClient(ts, {}, true);
    const flow = await startAuthorization(ts, client);
    assert.doesNotMatch(flow.loginHtml, /Create an account/);
    const page = await flow.browser.request(new URL(`/interaction/${flow.uid}/register`, flow.loginUrl));
    assert.equal(page.status, 403);
    const pageHtml = await page.text();
    assert.doesNotMatch(pageHtml, /<form|altcha-widget/);

    assert.match(html, /Creating an account is not possible here/, 'the standalone page says why');
    assert.match(pageHtml, /Creating an account is not possible here/, 'the interaction page says why');
  });

  it('a client may turn it on for itself (registration_enabled: true)', async () => {
    const client = await registerClient(ts, { registration_enabled: true }, true);
    const flow = await startAuthorization(ts, client);
    await openRegisterPage(flow);
    const email = uniqueEmail('reg-on-client');
    const res = await api(ts, '/api/v1/auth/register', { email, password: strongPassword(), client_id: client.clientId, captcha: await solveCaptcha(ts) });
    assert.equal(res.status, 202, res.text);
    assert.ok(await createdUser(ts, email));
  });
});

describe('registration while SMTP is down', () => {
  let ts: TestServer;
  let mailbox: Mailbox;
  before(async () => {
    mailbox = await startMailbox();
    mailbox.down();
    ts = await startTestServer(mailSettings(mailbox.url));
  });
  after(async () => {
    await stopAndDestroy(ts);
    await mailbox.stop();
  });

  it('answers 202 and creates the user; the verification mail arrives once SMTP is back and the flow completes', async () => {
    const email = uniqueEmail('reg-smtp');
    const password = strongPassword();
    const res = await api(ts, '/api/v1/auth/register', { email, password, captcha: await solveCaptcha(ts) });
    assert.equal(res.status, 202, res.text);
    const user: UserRow | undefined = await createdUser(ts, email);
    assert.ok(user, 'the user exists while the mail waits');
    const failing = await waitFor('a failed delivery attempt', async () => {
      const rows = (await outboxOf(ts, email)).filter((r) => r.template === 'verify-email');
      return rows.length === 1 && rows[0]!.attempts >= 1 ? rows[0] : undefined;
    });
    assert.equal(failing.status, 'pending');
    assert.ok(failing.last_error);

    mailbox.up();
    const { code } = codeAndLink(await mailbox.next(email, SUBJECT.verify), ts.issuer);
    // The registration's handle makes this the registrant's own proof: the password stays.
    const verified = await api(ts, '/api/v1/auth/verify-email', { email, code: code!, registration: res.body.registration });
    assert.equal(verified.status, 200, verified.text);
    assert.equal(verified.body.status, 'verified');
    const client = await registerClient(ts, {}, true);
    const { tokens } = await signIn(ts, await rpConfig(ts, client), { email, password });
    assert.equal(tokens.claims()!.sub, user.id);
  });
});
