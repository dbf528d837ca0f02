import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import * as oidc from 'openid-client';
import { HttpBrowser, formAction, formField } from '../helpers/browser-http.ts';
import { finishAuthorization, startAuthorization, type PendingAuthorization } from '../helpers/authorization.ts';
import { alertText, openLoginPage, postLogin } from '../helpers/login-page.ts';
import { codeAndLink, fastMailSettings, startMailbox, type Mailbox } from '../helpers/mailbox.ts';
import { registerClient, rpConfig, signIn, uniqueEmail, type Registered } from '../helpers/rp.ts';
import { startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';

// Account pre-hijacking ("Pre-hijacked accounts", USENIX Security 2022): an attacker registers the
// victim's address with a password of their own. The first proof of the address from outside the
// registrant's flow (the verification link opened elsewhere, a magic link) discards that password
// and every session and token; the registrant's own flow (the code typed in the interaction that
// registered) keeps it. Verification links change state on POST only.

const strongPassword = () => `Hj-${randomBytes(12).toString('base64url')}-7`;
const VERIFY = /^Verify your email address$/;
const MAGIC = /^Your sign-in link$/;

describe('account pre-hijacking', () => {
  let ts: TestServer;
  let mailbox: Mailbox;
  /** A first-party client that signs new accounts in before they verify (the attacker gets sessions). */
  let noVerification: Registered;

  before(async () => {
    mailbox = await startMailbox();
    ts = await startTestServer({ ...fastMailSettings(mailbox.url), CAPTCHA_PROVIDER: 'none', AUTH_API_RATE_LIMIT_PER_IP: '10000' });
    noVerification = await registerClient(ts, { registration_require_email_verification: false }, true);
  });
  after(async () => {
    await stopAndDestroy(ts);
    await mailbox.stop();
  });

  const findUser = async (email: string) => (await ts.server.services.repos.users.findByEmail('default', email))!;
  const payloadCount = async (accountId: string) =>
    Number((await ts.server.services.db('oidc_payloads').where({ account_id: accountId }).count({ n: '*' }))[0]!.n);

  /** Registers on the register page of a pending authorization; the answer of the post. */
  async function registerOnPage(flow: PendingAuthorization, email: string, password: string, extra: Record<string, string> = {}) {
    const url = new URL(`/interaction/${flow.uid}/register`, flow.loginUrl);
    const page = await (await flow.browser.request(url)).text();
    return flow.browser.postForm(new URL(formAction(page, '/register')!, url), { csrf: formField(page, 'csrf')!, email, password, ...extra });
  }

  /** The status of a password sign-in on a fresh login page: 303 signs in, 401 does not. */
  async function passwordSignIn(email: string, password: string): Promise<number> {
    const page = await openLoginPage(ts, noVerification.clientId);
    return (await postLogin(page, { email, password })).status;
  }

  /** POST /api/v1/auth/register as an API client would (no browser, no cookie). */
  const registerByApi = (body: Record<string, string>) =>
    fetch(new URL('/api/v1/auth/register', ts.issuer), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });

  /** The amr of the account's last completed sign-in (its user.signed_in event). */
  async function lastSignInAmr(accountId: string): Promise<string[]> {
    const [event] = await ts.server.services.db('events').where({ subject_id: accountId, type: 'user.signed_in' }).orderBy('occurred_at', 'desc').limit(1);
    const payload = typeof event.payload === 'string' ? JSON.parse(event.payload) : event.payload;
    return payload.amr;
  }

  const userinfoWorks = async (config: oidc.Configuration, accessToken: string) =>
    oidc.fetchUserInfo(config, accessToken, oidc.skipSubjectCheck).then(() => true, () => false);

  it('the victim proving the address by the verification link (POST) ends the registrant’s password, sessions and tokens, and chooses a password', async () => {
    const victim = uniqueEmail('victim-link');
    const attackerPassword = strongPassword();

    // The attacker registers the victim's address and signs in with the password (no verification asked).
    const attacker = await startAuthorization(ts, noVerification);
    const registered = await registerOnPage(attacker, victim, attackerPassword, { given_name: 'Support: visit evil.example' });
    assert.equal(registered.status, 200, 'the code form, as for a taken address');
    const verifyMail = await mailbox.next(victim, VERIFY);
    const { tokens: attackerTokens } = await signIn(ts, attacker.config, { email: victim, password: attackerPassword });
    assert.equal(await userinfoWorks(attacker.config, attackerTokens.access_token), true);
    const account = await findUser(victim);
    assert.ok((await payloadCount(account.id)) > 0, 'the attacker has a session and tokens');

    // The victim opens the link: a page with a button, nothing changed (a mail scanner does this too).
    assert.doesNotMatch(verifyMail.text + verifyMail.html, /Support|evil\.example/, 'the registrant’s chosen name is not in the owner’s mail');
    assert.match(verifyMail.text, /^Hello,/);
    const { link } = codeAndLink(verifyMail, ts.issuer);
    assert.ok(link);
    const browser = new HttpBrowser();
    const opened = await browser.request(link);
    const page = await opened.text();
    assert.equal(opened.status, 200, page.slice(0, 300));
    assert.match(page, /<button type="submit">Verify my email address<\/button>/);
    assert.equal((await findUser(victim)).email_verified, false, 'a GET of the link changes nothing');
    assert.equal(await userinfoWorks(attacker.config, attackerTokens.access_token), true);

    // The button proves the address from outside the registrant's flow.
    const proven = await browser.postForm(new URL(formAction(page, '/verify-email')!, link), { csrf: formField(page, 'csrf')!, token: formField(page, 'token')! });
    const html = await proven.text();
    assert.equal(proven.status, 200, html.slice(0, 300));
    assert.match(html, /The password chosen when this account was created no longer works/);
    const after = await findUser(victim);
    assert.equal(after.email_verified, true);
    assert.equal(after.password_hash, null, 'the registrant’s password is gone');
    assert.equal(after.given_name, null, 'and so is the name they chose');
    assert.equal(await payloadCount(account.id), 0, 'every session, grant and token of the account is gone');
    assert.equal(await userinfoWorks(attacker.config, attackerTokens.access_token), false);
    assert.equal(await passwordSignIn(victim, attackerPassword), 401, 'the registrant’s password no longer signs in');
    const events = await ts.server.services.db('events').where({ subject_id: account.id }).orderBy('occurred_at');
    assert.ok(events.some((e) => e.type === 'user.credentials_reset'));

    // The page goes on with the set-password form: the victim chooses a password and signs in with it.
    const session = formField(html, 'session');
    assert.ok(session, 'a set-password step for the prover');
    const victimPassword = strongPassword();
    const set = await browser.postForm(new URL(formAction(html, '/reset-password')!, link), { csrf: formField(html, 'csrf')!, session, password: victimPassword });
    assert.equal(set.status, 200, (await set.text()).slice(0, 300));
    const { tokens } = await signIn(ts, await rpConfig(ts, noVerification), { email: victim, password: victimPassword });
    assert.equal(tokens.claims()!.sub, account.id);
    assert.equal(await passwordSignIn(victim, attackerPassword), 401);
  });

  it('the victim signing in by magic link ends the registrant’s password and tokens; the victim is signed in (amr otp)', async () => {
    const victim = uniqueEmail('victim-magic');
    const attackerPassword = strongPassword();
    // Registered through the API (no browser), then signed in with the password.
    const res = await registerByApi({ email: victim, password: attackerPassword, client_id: noVerification.clientId });
    assert.equal(res.status, 202, await res.text());
    // The account is written after the answer; its verification mail says it is there.
    await mailbox.next(victim, VERIFY);
    const config = await rpConfig(ts, noVerification);
    const { tokens: attackerTokens } = await signIn(ts, config, { email: victim, password: attackerPassword });
    assert.equal(await userinfoWorks(config, attackerTokens.access_token!), true);

    const flow = await startAuthorization(ts, noVerification);
    const asked = await flow.browser.postForm(new URL(formAction(flow.loginHtml, '/magic-link')!, flow.loginUrl), { csrf: formField(flow.loginHtml, 'csrf')!, email: victim });
    assert.equal(asked.status, 200);
    const { link } = codeAndLink(await mailbox.next(victim, MAGIC), ts.issuer);
    const tokens = await finishAuthorization(flow, await flow.browser.request(link!), new URL(link!));
    const account = await findUser(victim);
    assert.equal(tokens.claims()!.sub, account.id, 'the victim is signed in');
    assert.deepEqual(await lastSignInAmr(account.id), ['otp']);
    assert.equal(account.email_verified, true);
    assert.equal(account.password_hash, null);

    assert.equal(await userinfoWorks(config, attackerTokens.access_token!), false, 'the attacker’s tokens are gone');
    assert.equal(await passwordSignIn(victim, attackerPassword), 401, 'the attacker’s password no longer signs in');
    assert.equal(await userinfoWorks(config, tokens.access_token), true, 'the victim’s own sign-in stays');
  });

  it('the registrant’s own flow (the code typed in the interaction that registered) keeps the password and signs in with amr otp', async () => {
    const client = await registerClient(ts, {}, true);
    const email = uniqueEmail('own-flow');
    const password = strongPassword();
    const flow = await startAuthorization(ts, client);
    const registered = await registerOnPage(flow, email, password);
    const page = await registered.text();
    assert.equal(registered.status, 200, 'the code form (verification required)');
    const { code } = codeAndLink(await mailbox.next(email, VERIFY), ts.issuer);
    const done = await flow.browser.postForm(new URL(formAction(page, '/verify-email')!, flow.loginUrl), { csrf: formField(page, 'csrf')!, email, code: code! });
    const tokens = await finishAuthorization(flow, done, flow.loginUrl);
    const account = await findUser(email);
    assert.equal(tokens.claims()!.sub, account.id);
    assert.deepEqual(await lastSignInAmr(account.id), ['otp'], 'the code was proven here, not the password');
    assert.equal(account.email_verified, true);
    assert.equal(account.password_unverified_owner, false);
    assert.equal(await passwordSignIn(email, password), 303, 'the password chosen at registration still signs in');
  });

  it('the code form of an interaction verifies only the account that interaction registered; another account’s code stays unused', async () => {
    const email = uniqueEmail('other-account');
    const password = strongPassword();
    const res = await registerByApi({ email, password });
    assert.equal(res.status, 202);
    const { code } = codeAndLink(await mailbox.next(email, VERIFY), ts.issuer);

    // Another sign-in posts that code to its own code form.
    const flow = await startAuthorization(ts, noVerification);
    const posted = await flow.browser.postForm(new URL(`/interaction/${flow.uid}/verify-email`, flow.loginUrl), { csrf: formField(flow.loginHtml, 'csrf')!, email, code: code! });
    assert.equal(posted.status, 400, 'no sign-in');
    assert.match(await posted.text(), /wrong, expired or already used/);
    assert.equal((await findUser(email)).email_verified, false);

    // The code is still good where it proves only the address.
    const verified = await fetch(new URL('/api/v1/auth/verify-email', ts.issuer), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email, code }),
    });
    assert.equal(verified.status, 200);
    assert.equal((await findUser(email)).email_verified, true);
    // From outside the registrant's flow: the password chosen at registration is gone.
    assert.equal((await findUser(email)).password_hash, null);
  });

  it('through the API the registration handle marks the registrant: the code with it keeps the password, the code without it (another caller) does not', async () => {
    const register = async (email: string, password: string) => {
      const res = await registerByApi({ email, password });
      assert.equal(res.status, 202);
      return ((await res.json()) as { registration: string }).registration;
    };
    const verify = (body: Record<string, string>) =>
      fetch(new URL('/api/v1/auth/verify-email', ts.issuer), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

    const own = uniqueEmail('api-own');
    const ownPassword = strongPassword();
    const handle = await register(own, ownPassword);
    const ownCode = codeAndLink(await mailbox.next(own, VERIFY), ts.issuer).code!;
    assert.equal((await verify({ email: own, code: ownCode, registration: handle })).status, 200);
    assert.equal(await passwordSignIn(own, ownPassword), 303);

    const other = uniqueEmail('api-other');
    const otherPassword = strongPassword();
    await register(other, otherPassword);
    const otherCode = codeAndLink(await mailbox.next(other, VERIFY), ts.issuer).code!;
    // A handle of another registration is no marker of this one.
    assert.equal((await verify({ email: other, code: otherCode, registration: handle })).status, 200);
    assert.equal(await passwordSignIn(other, otherPassword), 401);
  });

  it('names with CR/LF or control characters are refused on both register pages as the API refuses them; nobody is created', async () => {
    const bad = ['Eve\r\nBcc: all@example.test', 'Eve\u0007', 'x'.repeat(201)];
    for (const givenName of bad) {
      const email = uniqueEmail('bad-name');
      const flow = await startAuthorization(ts, noVerification);
      const inInteraction = await registerOnPage(flow, email, strongPassword(), { given_name: givenName });
      assert.equal(inInteraction.status, 400);
      assert.equal(alertText(await inInteraction.text()), 'Names are at most 200 characters, on one line, without control characters.');

      const browser = new HttpBrowser();
      const page = await (await browser.request(new URL('/register', ts.issuer))).text();
      const standalone = await browser.postForm(new URL('/register', ts.issuer), { csrf: formField(page, 'csrf')!, email, password: strongPassword(), family_name: givenName });
      assert.equal(standalone.status, 400);
      assert.equal(alertText(await standalone.text()), 'Names are at most 200 characters, on one line, without control characters.');

      const api = await registerByApi({ email, password: strongPassword(), givenName });
      assert.equal(api.status, 400);
      assert.equal(((await api.json()) as { error: string }).error, 'IDENT_VALIDATION');
      assert.equal(await ts.server.services.repos.users.findByEmail('default', email), undefined);
    }
  });

  it('a password typed and the code typed in one sign-in keep the password (amr pwd and otp)', async () => {
    const email = uniqueEmail('pwd-then-code');
    const password = strongPassword();
    const res = await registerByApi({ email, password });
    assert.equal(res.status, 202);
    const { code } = codeAndLink(await mailbox.next(email, VERIFY), ts.issuer);
    const flow = await startAuthorization(ts, await registerClient(ts, {}, true));
    const login = await flow.browser.postForm(new URL(formAction(flow.loginHtml, '/login')!, flow.loginUrl), { csrf: formField(flow.loginHtml, 'csrf')!, email, password });
    const page = await login.text();
    assert.equal(login.status, 200, 'the code form');
    const done = await flow.browser.postForm(new URL(formAction(page, '/verify-email')!, flow.loginUrl), { csrf: formField(page, 'csrf')!, email, code: code! });
    const tokens = await finishAuthorization(flow, done, flow.loginUrl);
    assert.equal(tokens.claims()!.sub, (await findUser(email)).id);
    assert.deepEqual(await lastSignInAmr(tokens.claims()!.sub), ['pwd', 'otp']);
    assert.ok((await findUser(email)).password_hash);
    assert.equal(await passwordSignIn(email, password), 303);
  });

  it('a password typed and then a magic link opened in one sign-in: amr lists both (pwd and otp), the password stays', async () => {
    const email = uniqueEmail('pwd-then-link');
    const password = strongPassword();
    const res = await registerByApi({ email, password });
    assert.equal(res.status, 202);
    await mailbox.next(email, VERIFY);
    const flow = await startAuthorization(ts, await registerClient(ts, {}, true));
    const login = await flow.browser.postForm(new URL(formAction(flow.loginHtml, '/login')!, flow.loginUrl), { csrf: formField(flow.loginHtml, 'csrf')!, email, password });
    assert.equal(login.status, 200, 'the code form');
    // Back on the login page of the same sign-in, the link instead of the code.
    const again = await (await flow.browser.request(flow.loginUrl)).text();
    const asked = await flow.browser.postForm(new URL(formAction(again, '/magic-link')!, flow.loginUrl), { csrf: formField(again, 'csrf')!, email });
    assert.equal(asked.status, 200);
    const { link } = codeAndLink(await mailbox.next(email, MAGIC), ts.issuer);
    const tokens = await finishAuthorization(flow, await flow.browser.request(link!), new URL(link!));
    assert.equal(tokens.claims()!.sub, (await findUser(email)).id);
    assert.deepEqual(await lastSignInAmr(tokens.claims()!.sub), ['pwd', 'otp']);
    assert.ok((await findUser(email)).password_hash, 'the password typed in the registrant’s own sign-in stays');
  });
});
