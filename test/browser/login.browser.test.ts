import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as oidc from 'openid-client';
import type { Browser, Page } from 'playwright-core';
import { en } from '../../src/i18n/en.ts';
import { authorizationRequest, createUser, registerClient, rpConfig } from '../helpers/rp.ts';
import { startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';
import { codeAndLink, startMailbox, type Mailbox } from '../helpers/mailbox.ts';
import { launchChromium, skipWithoutChromium } from '../helpers/chromium.ts';
import { startCallbackServer, type CallbackServer } from '../helpers/callback-server.ts';

describe('signing in with a real browser', { skip: skipWithoutChromium }, () => {
  let ts: TestServer;
  let rp: CallbackServer;
  let browser: Browser;
  let config: oidc.Configuration;
  let mailbox: Mailbox;

  before(async () => {
    mailbox = await startMailbox();
    [ts, rp, browser] = await Promise.all([
      // A light ALTCHA: the widget solves it in the page in well under a second.
      startTestServer({ SMTP_URL: mailbox.url, MAIL_POLL_INTERVAL_MS: '50', CAPTCHA_ALTCHA_MAX_NUMBER: '5000' }),
      startCallbackServer(),
      launchChromium(),
    ]);
    const client = await registerClient(ts, { token_endpoint_auth_method: 'none', redirect_uris: [rp.redirectUri] }, true);
    config = await rpConfig(ts, client);
  });
  after(async () => {
    await browser?.close();
    await rp?.close();
    await stopAndDestroy(ts);
    await mailbox?.stop();
  });

  /** Opens the authorization URL in a fresh context; console messages about CSP are collected. */
  async function startAuthorization() {
    const { url, verifier, state, nonce } = await authorizationRequest(config, { redirectUri: rp.redirectUri });
    const context = await browser.newContext();
    context.setDefaultTimeout(10_000);
    const page: Page = await context.newPage();
    const cspViolations: string[] = [];
    page.on('console', (msg) => {
      if (/Content Security Policy|Refused to/i.test(msg.text())) cspViolations.push(msg.text());
    });
    const response = await page.goto(url.href);
    assert.equal(response?.status(), 200, 'the login page loads');
    assert.match(new URL(page.url()).pathname, /^\/interaction\//);
    return { page, context, verifier, state, nonce, cspViolations };
  }

  it('signs a user in through the login page and the relying party redeems the code', async () => {
    const user = await createUser(ts);
    const { page, context, verifier, state, nonce, cspViolations } = await startAuthorization();
    try {
      await page.getByLabel(en['login.email'], { exact: true }).fill(user.email);
      await page.getByLabel(en['login.password'], { exact: true }).fill(user.password);
      await Promise.all([
        page.waitForURL((u) => u.href.startsWith(rp.redirectUri)),
        page.getByRole('button', { name: en['login.submit'], exact: true }).click(),
      ]);
      const callback = new URL(page.url());
      assert.equal(callback.searchParams.get('error'), null, `no error expected: ${callback.href}`);
      assert.equal(callback.searchParams.get('state'), state);
      assert.ok(callback.searchParams.get('code'));
      assert.ok(rp.hits.some((h) => h.searchParams.get('state') === state), 'the callback server was reached');

      const tokens = await oidc.authorizationCodeGrant(config, callback, {
        pkceCodeVerifier: verifier,
        expectedState: state,
        expectedNonce: nonce,
      });
      assert.equal(tokens.claims()?.sub, user.id);
      assert.deepEqual(cspViolations, [], 'the pages work under their own Content-Security-Policy');
    } finally {
      await context.close();
    }
  });

  it('shows the error alert for a wrong password and stays on the login page', async () => {
    const user = await createUser(ts);
    const { page, context, state } = await startAuthorization();
    try {
      // The fields as a password manager finds them.
      await page.locator('input[autocomplete="username"]').fill(user.email);
      await page.locator('input[autocomplete="current-password"]').fill('not the password');
      await Promise.all([
        page.waitForResponse((r) => r.request().method() === 'POST' && r.url().endsWith('/login')),
        page.getByRole('button', { name: en['login.submit'], exact: true }).click(),
      ]);
      const alert = page.getByRole('alert');
      await alert.waitFor();
      assert.equal((await alert.textContent())?.trim(), en['error.invalid_credentials']);
      assert.match(new URL(page.url()).pathname, /^\/interaction\/[^/]+\/login$/);
      assert.equal(await page.locator('input[autocomplete="username"]').inputValue(), user.email, 'the email is kept');
      assert.equal(await page.locator('input[autocomplete="current-password"]').inputValue(), '', 'the password is not');
      assert.ok(!rp.hits.some((h) => h.searchParams.get('state') === state), 'the relying party got nothing');

      // The same page then accepts the right password.
      await page.locator('input[autocomplete="current-password"]').fill(user.password);
      await Promise.all([
        page.waitForURL((u) => u.href.startsWith(rp.redirectUri)),
        page.getByRole('button', { name: en['login.submit'], exact: true }).click(),
      ]);
      assert.equal(new URL(page.url()).searchParams.get('state'), state);
    } finally {
      await context.close();
    }
  });

  it('registers from the login page: the ALTCHA widget solves, the mailed code verifies, the sign-in completes', async () => {
    const { page, context, verifier, state, nonce, cspViolations } = await startAuthorization();
    const email = `browser.${Date.now()}@example.test`;
    try {
      await page.getByRole('link', { name: en['login.register'], exact: true }).click();
      await page.waitForURL((u) => u.pathname.endsWith('/register'));
      await page.locator('input[autocomplete="email"]').fill(email);
      await page.getByLabel(en['register.given_name'], { exact: true }).fill('Brow');
      await page.getByLabel(en['register.family_name'], { exact: true }).fill('Ser');
      await page.locator('input[autocomplete="new-password"]').fill('quiet meadow lantern 7412');
      // The widget puts its solved payload in the hidden "captcha" field once the proof of work is done.
      await page.waitForFunction(() => {
        const field = document.querySelector<HTMLInputElement>('input[name="captcha"]');
        return Boolean(field && field.value.length > 20);
      }, undefined, { timeout: 20_000 });
      await Promise.all([
        page.waitForURL((u) => u.pathname.endsWith('/register')),
        page.getByRole('button', { name: en['register.submit'], exact: true }).click(),
      ]);
      await page.getByRole('heading', { name: en['verify.title'] }).waitFor();

      const mail = await mailbox.next(email, /verify/i);
      const { code } = codeAndLink(mail, ts.issuer);
      assert.ok(code, 'the mail carries a 6-digit code');
      const codeInput = page.locator('input[autocomplete="one-time-code"]');
      await codeInput.fill(code!);
      await Promise.all([
        page.waitForURL((u) => u.href.startsWith(rp.redirectUri)),
        page.getByRole('button', { name: en['verify.submit'], exact: true }).click(),
      ]);
      const callback = new URL(page.url());
      assert.equal(callback.searchParams.get('state'), state);
      const tokens = await oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce });
      const user = await ts.server.services.repos.users.findByEmail('default', email);
      assert.ok(user?.email_verified, 'the code verified the address');
      assert.equal(tokens.claims()?.sub, user.id);
      assert.deepEqual(cspViolations, [], 'registration works under the Content-Security-Policy');
    } finally {
      await context.close();
    }
  });
});
