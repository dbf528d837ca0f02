import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import * as oidc from 'openid-client';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { en } from '../../src/i18n/en.ts';
import { startCallbackServer, type CallbackServer } from '../helpers/callback-server.ts';
import { launchChromium, skipWithoutChromium } from '../helpers/chromium.ts';
import { loginStatus } from '../helpers/login-page.ts';
import { codeAndLink, fastMailSettings, startMailbox, type Mailbox } from '../helpers/mailbox.ts';
import { REDIRECT_URI, authorizationRequest, createUser, registerClient, rpConfig, signIn, uniqueEmail, type Registered } from '../helpers/rp.ts';
import { startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';

// Issue 8's boundaries as a person meets them in a real browser: a victim taking back an address
// an attacker registered, a relying party asking for re-authentication from a client that needs
// consent, and a malformed URL typed into the address bar.

const strongPassword = () => `Br-${randomBytes(12).toString('base64url')}-7`;

describe('privilege boundaries in a real browser', { skip: skipWithoutChromium }, () => {
  let ts: TestServer;
  let rp: CallbackServer;
  let browser: Browser;
  let mailbox: Mailbox;
  /** First-party, signs new accounts in before they verify (so the attacker holds a session and tokens). */
  let noVerification: Registered;
  let noVerificationConfig: oidc.Configuration;

  before(async () => {
    mailbox = await startMailbox();
    [ts, rp, browser] = await Promise.all([
      startTestServer({ ...fastMailSettings(mailbox.url), CAPTCHA_PROVIDER: 'none', AUTH_API_RATE_LIMIT_PER_IP: '10000' }),
      startCallbackServer(),
      launchChromium(),
    ]);
    noVerification = await registerClient(
      ts,
      { registration_require_email_verification: false, token_endpoint_auth_method: 'none', redirect_uris: [rp.redirectUri, REDIRECT_URI] },
      true,
    );
    noVerificationConfig = await rpConfig(ts, noVerification);
  });
  after(async () => {
    await browser?.close();
    await rp?.close();
    await stopAndDestroy(ts);
    await mailbox?.stop();
  });

  async function newPage(): Promise<{ context: BrowserContext; page: Page }> {
    const context = await browser.newContext();
    context.setDefaultTimeout(10_000);
    return { context, page: await context.newPage() };
  }

  /** An authorization request with PKCE to the callback server, as a relying party builds it. */
  const authorization = (config: oidc.Configuration, params: Record<string, string> = {}) =>
    authorizationRequest(config, { redirectUri: rp.redirectUri, params });

  const atCallback = (u: URL) => u.href.startsWith(rp.redirectUri);
  /** An interaction page (login or consent), not one of its form posts. */
  const atInteraction = (u: URL) => /^\/interaction\/[^/]+$/.test(u.pathname);
  const loginHeading = (page: Page) => page.getByRole('heading', { name: en['login.title'], exact: true });
  const consentHeading = (page: Page) => page.getByRole('heading', { name: en['consent.title'], exact: true });

  /** Fills and submits the login form shown in `page`, then waits for the next page of the flow. */
  async function submitLogin(page: Page, email: string, password: string) {
    await page.getByLabel(en['login.email'], { exact: true }).fill(email);
    await page.getByLabel(en['login.password'], { exact: true }).fill(password);
    await Promise.all([
      page.waitForURL((u) => atCallback(u) || atInteraction(u)),
      page.getByRole('button', { name: en['login.submit'], exact: true }).click(),
    ]);
  }

  const findUser = async (email: string) => (await ts.server.services.repos.users.findByEmail('default', email))!;
  /** The status userinfo answers for an access token: 200 while it works, 401 once it is refused. */
  async function userinfoStatus(accessToken: string): Promise<number> {
    const res = await fetch(noVerificationConfig.serverMetadata().userinfo_endpoint!, { headers: { authorization: `Bearer ${accessToken}` } });
    await res.arrayBuffer();
    return res.status;
  }

  it('pre-hijacking: the victim opens the verification link in the browser, the button proves the address, the attacker’s password and token die, the victim’s new password signs in', async () => {
    const victim = uniqueEmail('browser-victim');
    const attackerPassword = strongPassword();

    // The attacker registers the victim's address over the API and signs in with their own password.
    const registered = await fetch(new URL('/api/v1/auth/register', ts.issuer), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: victim, password: attackerPassword, client_id: noVerification.clientId }),
    });
    assert.equal(registered.status, 202, await registered.text());
    const mail = await mailbox.next(victim, /^Verify your email address$/);
    const { tokens: attackerTokens } = await signIn(ts, noVerificationConfig, { email: victim, password: attackerPassword }, { scope: 'openid' });
    assert.equal(await userinfoStatus(attackerTokens.access_token), 200, 'the attacker is signed in and holds a working token');
    const accountId = (await findUser(victim)).id;

    const { link } = codeAndLink(mail, ts.issuer);
    assert.ok(link, 'the mail carries the verification link');
    const { context, page } = await newPage();
    try {
      // Opening the link shows a button and changes nothing (a mail scanner opens it too).
      const opened = await page.goto(link);
      assert.equal(opened?.status(), 200);
      const verifyButton = page.getByRole('button', { name: en['verify.link_submit'], exact: true });
      await verifyButton.waitFor();
      assert.equal((await findUser(victim)).email_verified, false, 'opening the link verifies nothing');
      assert.equal(await userinfoStatus(attackerTokens.access_token), 200, 'and ends nothing');

      // The button proves the address; the page goes on with the set-password form.
      await Promise.all([page.waitForURL((u) => u.pathname === '/verify-email'), verifyButton.click()]);
      assert.equal((await page.locator('h1').textContent())?.trim(), en['reset.title'], 'the set-password form follows the proof');
      assert.equal((await page.getByRole('status').textContent())?.trim(), en['verify.password_discarded']);
      const proven = await findUser(victim);
      assert.equal(proven.email_verified, true, 'the button verified the address');
      assert.equal(proven.password_hash, null, 'the attacker’s password is discarded');
      assert.equal(await userinfoStatus(attackerTokens.access_token), 401, 'the proof itself ends the attacker’s tokens');

      const victimPassword = strongPassword();
      await page.getByLabel(en['reset.new_password'], { exact: true }).fill(victimPassword);
      await Promise.all([
        page.waitForURL((u) => u.pathname === '/reset-password'),
        page.getByRole('button', { name: en['reset.submit'], exact: true }).click(),
      ]);
      await page.getByRole('heading', { name: en['reset.done_title'], exact: true }).waitFor();

      assert.equal(await loginStatus(ts, noVerification.clientId, victim, attackerPassword), 401, 'the attacker’s password no longer signs in');
      assert.equal(await userinfoStatus(attackerTokens.access_token), 401, 'the attacker’s access token is refused at userinfo');

      // The victim signs in with the new password in the same browser; the relying party redeems the code.
      const flow = await authorization(noVerificationConfig);
      await page.goto(flow.url.href);
      await loginHeading(page).waitFor();
      await submitLogin(page, victim, victimPassword);
      assert.ok(atCallback(new URL(page.url())), `the sign-in ends at the relying party, not ${page.url()}`);
      const tokens = await flow.redeem(new URL(page.url()));
      assert.equal(tokens.claims()?.sub, accountId);
      assert.equal(await userinfoStatus(tokens.access_token), 200);
    } finally {
      await context.close();
    }
  });

  it('prompt=login with a fresh third-party client that needs consent: exactly one login page and one consent page, then the relying party redeems the code', async () => {
    const user = await createUser(ts);
    const thirdParty = await registerClient(ts, { token_endpoint_auth_method: 'none', redirect_uris: [rp.redirectUri] }, false);
    const config = await rpConfig(ts, thirdParty);
    const { context, page } = await newPage();
    // Every interaction page the browser is shown, by what it asks for (from the served HTML).
    let shown: Array<Promise<string>> = [];
    page.on('response', (res) => {
      if (!res.request().isNavigationRequest() || res.status() !== 200 || !atInteraction(new URL(res.url()))) return;
      shown.push(res.text().then((html) => (html.includes('autocomplete="current-password"') ? 'login' : html.includes('/confirm"') ? 'consent' : 'other')));
    });
    try {
      // Signed in already (another app), so only prompt=login asks for the password again.
      const first = await authorization(noVerificationConfig);
      await page.goto(first.url.href);
      await submitLogin(page, user.email, user.password);
      assert.ok(atCallback(new URL(page.url())), 'the first-party sign-in completes without consent');

      const flow = await authorization(config, { prompt: 'login' });
      shown = [];
      await page.goto(flow.url.href);
      await loginHeading(page).waitFor();
      await submitLogin(page, user.email, user.password);
      assert.ok(atInteraction(new URL(page.url())), `the consent page follows the login, not ${page.url()}`);
      await consentHeading(page).waitFor();
      assert.equal(await page.getByLabel(en['login.password'], { exact: true }).count(), 0, 'the consent page asks for no password');
      await Promise.all([
        page.waitForURL((u) => atCallback(u) || atInteraction(u)),
        page.getByRole('button', { name: en['consent.allow'], exact: true }).click(),
      ]);
      // Before the fix the consent led back to the login page, and round again, forever.
      const pages = await Promise.all(shown);
      assert.ok(atCallback(new URL(page.url())), `after consent the relying party's callback, not ${page.url()} (pages: ${pages.join(' -> ')})`);
      assert.deepEqual(pages, ['login', 'consent'], 'exactly one login page and one consent page');

      const callback = new URL(page.url());
      assert.equal(callback.searchParams.get('error'), null, callback.href);
      assert.ok(rp.hits.some((h) => h.searchParams.get('state') === flow.state), 'the callback server received the code');
      const tokens = await flow.redeem(callback);
      assert.equal(tokens.claims()?.sub, user.id);
    } finally {
      await context.close();
    }
  });

  it('a repeated query parameter typed into the address bar gets the 400 error page, not a 500', async () => {
    const { context, page } = await newPage();
    try {
      const res = await page.goto(new URL('/register?ui_locales=en&ui_locales=vi', ts.issuer).href);
      assert.equal(res?.status(), 400);
      assert.match(res!.headers()['content-type'] ?? '', /text\/html/);
      await page.getByRole('heading', { name: en['errorpage.title'], exact: true }).waitFor();
      const alert = (await page.getByRole('alert').textContent()) ?? '';
      assert.match(alert, /IDENT_VALIDATION/, 'the page names the refusal');
      assert.doesNotMatch(alert, /server_error/);
      // Sent once, the same page opens.
      assert.equal((await page.goto(new URL('/register?ui_locales=vi', ts.issuer).href))?.status(), 200);
    } finally {
      await context.close();
    }
  });
});
