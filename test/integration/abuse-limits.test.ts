import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { emailIdentifier } from '../../src/domain/accounts/account-flow.ts';
import { HttpBrowser, formAction, formField } from '../helpers/browser-http.ts';
import { codeAndLink, fastMailSettings, startMailbox, type Mailbox } from '../helpers/mailbox.ts';
import { solveCaptcha } from '../helpers/captcha.ts';
import { createUser, registerClient, rpConfig, signIn, uniqueEmail } from '../helpers/rp.ts';
import { startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';

// Limits a stranger must not be able to turn against someone: per-IP budgets count an IPv6 client
// by its /64 (it owns the whole /64), and a stranger who locks an address's codes by typing wrong
// ones does not stop the owner, whose next mail's link still works.

const strongPassword = () => `Lim-${randomBytes(12).toString('base64url')}-3`;
let ipCounter = 0;
const newIp = () => `198.51.100.${++ipCounter}`;
/** Requests a minute per client (the pages' posts of this file come from 127.0.0.1 and stay under it). */
const BUDGET = 5;

describe('limits a stranger cannot turn against the owner', () => {
  let ts: TestServer;
  let mailbox: Mailbox;

  before(async () => {
    mailbox = await startMailbox();
    ts = await startTestServer({ ...fastMailSettings(mailbox.url), TRUST_PROXY: 'true', AUTH_API_RATE_LIMIT_PER_IP: String(BUDGET), CAPTCHA_ALTCHA_MAX_NUMBER: '1000' });
  });
  after(async () => {
    await stopAndDestroy(ts);
    await mailbox.stop();
  });

  async function api(path: string, body: unknown, ip: string) {
    const res = await fetch(new URL(path, ts.issuer), {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-forwarded-for': ip },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
  }

  /** The cooldown between two sends is not under test: this stands for the minute passing. */
  const cooldownPasses = (namespace: string, email: string) =>
    ts.server.services.ephemeral.del(`${namespace}:cooldown:${emailIdentifier('default', email)}`);

  /** Five wrong codes from a stranger: the address's typed codes lock. */
  async function hammer(path: string, email: string, extra: Record<string, string> = {}) {
    let last;
    // From several addresses: the stranger is not held back by the per-IP budget either.
    for (let i = 0; i < 5; i++) last = await api(path, { email, code: '000000', ...extra }, newIp());
    return last!;
  }

  it('two IPv6 addresses in one /64 share a per-IP budget; another /64 has its own', async () => {
    const send = (ip: string) => api('/api/v1/auth/verify-email/resend', { email: uniqueEmail('v6') }, ip);
    for (let i = 1; i <= BUDGET; i++) {
      const ip = `2001:db8:1:2:${i.toString(16)}:${randomBytes(2).toString('hex')}::${i}`;
      assert.equal((await send(ip)).status, 202, ip);
    }
    const over = await send('2001:db8:1:2:ffff:ffff:ffff:ffff');
    assert.equal(over.status, 429, 'one more address of the same /64 is over the budget');
    assert.equal(over.body.error, 'IDENT_RATE_LIMITED');
    assert.equal((await send('2001:db8:1:3::1')).status, 202, 'the next /64 is another client');
  });

  it('after a stranger locks the reset code of an address, the owner still resets the password with the link of a new mail', async () => {
    const owner = await createUser(ts, strongPassword());
    // The stranger asks for a reset of the owner's address and types wrong codes until it locks.
    assert.equal((await api('/api/v1/auth/password-reset/request', { email: owner.email }, newIp())).status, 202);
    await mailbox.next(owner.email, /^Reset your password$/);
    const locked = await hammer('/api/v1/auth/password-reset/confirm', owner.email, { password: strongPassword() });
    assert.equal(locked.status, 429);
    assert.equal(locked.body.error, 'IDENT_OTP_LOCKED');

    // The owner asks again (a minute later) and uses the link of the new mail.
    await cooldownPasses('forgot-password', owner.email);
    assert.equal((await api('/api/v1/auth/password-reset/request', { email: owner.email }, newIp())).status, 202);
    const { link, code } = codeAndLink(await mailbox.next(owner.email, /^Reset your password$/), ts.issuer);
    const typed = await api('/api/v1/auth/password-reset/confirm', { email: owner.email, code: code!, password: strongPassword() }, newIp());
    assert.equal(typed.body.error, 'IDENT_OTP_LOCKED', 'typed codes wait for the lock to end');
    const browser = new HttpBrowser();
    const form = await browser.request(link!);
    const html = await form.text();
    assert.equal(form.status, 200, html.slice(0, 300));
    const password = strongPassword();
    const done = await browser.postForm(new URL(formAction(html, '/reset-password')!, link), { csrf: formField(html, 'csrf')!, token: formField(html, 'token')!, password });
    assert.equal(done.status, 200);
    const client = await registerClient(ts, {}, true);
    const { tokens } = await signIn(ts, await rpConfig(ts, client), { email: owner.email, password });
    assert.equal(tokens.claims()!.sub, owner.id);
  });

  it('after a stranger locks the verification code of an address, the owner still verifies it with the link of a new mail', async () => {
    const { email } = await createUser(ts, strongPassword(), { emailVerified: false });
    // The stranger has a code sent, then types wrong ones.
    assert.equal((await api('/api/v1/auth/verify-email/resend', { email }, newIp())).status, 202);
    await mailbox.next(email, /^Verify your email address$/);
    const locked = await hammer('/api/v1/auth/verify-email', email);
    assert.equal(locked.status, 429);
    assert.equal(locked.body.error, 'IDENT_OTP_LOCKED');

    await cooldownPasses('verify-email', email);
    assert.equal((await api('/api/v1/auth/verify-email/resend', { email }, newIp())).status, 202);
    const { link } = codeAndLink(await mailbox.next(email, /^Verify your email address$/), ts.issuer);
    const browser = new HttpBrowser();
    const page = await (await browser.request(link!)).text();
    const proven = await browser.postForm(new URL(formAction(page, '/verify-email')!, link), { csrf: formField(page, 'csrf')!, token: formField(page, 'token')! });
    assert.equal(proven.status, 200);
    assert.equal((await ts.server.services.repos.users.findByEmail('default', email))!.email_verified, true);
  });

  it('a stranger who uses up an address’s reset budget does not stop its owner: past it a solved CAPTCHA still gets the mail', async () => {
    const owner = await createUser(ts, strongPassword());
    // PASSWORD_RESET_LIMIT_PER_HOUR (3) requests for the address, from three networks.
    for (let i = 0; i < 3; i++) assert.equal((await api('/api/v1/auth/password-reset/request', { email: owner.email }, newIp())).status, 202);
    await mailbox.next(owner.email, /^Reset your password$/);

    // The owner, without a CAPTCHA: asked for one (the API and the page, which shows the widget).
    const refused = await api('/api/v1/auth/password-reset/request', { email: owner.email }, newIp());
    assert.equal(refused.status, 429);
    assert.equal(refused.body.error, 'IDENT_CAPTCHA_REQUIRED');
    const browser = new HttpBrowser();
    const forgot = await (await browser.request(new URL('/forgot-password', ts.issuer))).text();
    assert.doesNotMatch(forgot, /altcha-widget/, 'no CAPTCHA while within the budget');
    const page = await browser.postForm(new URL('/forgot-password', ts.issuer), { csrf: formField(forgot, 'csrf')!, email: owner.email });
    const html = await page.text();
    assert.equal(page.status, 429);
    assert.match(html, /Complete the check below to ask again/);
    assert.match(html, /<altcha-widget /);
    // A wrong CAPTCHA is refused as such.
    const garbage = await api('/api/v1/auth/password-reset/request', { email: owner.email, captcha: 'garbage' }, newIp());
    assert.equal(garbage.body.error, 'IDENT_CAPTCHA_INVALID');

    // With a solved CAPTCHA (a minute after the stranger's mail) the owner gets a mail and resets.
    await cooldownPasses('forgot-password', owner.email);
    const solved = await api('/api/v1/auth/password-reset/request', { email: owner.email, captcha: await solveCaptcha(ts) }, newIp());
    assert.equal(solved.status, 202);
    const { code } = codeAndLink(await mailbox.next(owner.email, /^Reset your password$/), ts.issuer);
    const password = strongPassword();
    const done = await api('/api/v1/auth/password-reset/confirm', { email: owner.email, code: code!, password }, newIp());
    assert.equal(done.status, 200);
    const { tokens } = await signIn(ts, await rpConfig(ts, await registerClient(ts, {}, true)), { email: owner.email, password });
    assert.equal(tokens.claims()!.sub, owner.id);
  });
});
