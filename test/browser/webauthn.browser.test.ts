import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as oidc from 'openid-client';
import type { Browser, BrowserContext, CDPSession, Page } from 'playwright-core';
import { en } from '../../src/i18n/en.ts';
import { authorizationRequest, createUser, registerClient } from '../helpers/rp.ts';
import { startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';
import { launchChromium, signInToConsole, skipWithoutChromium, watchedPage } from '../helpers/chromium.ts';
import { startCallbackServer, type CallbackServer } from '../helpers/callback-server.ts';
import { createTenant, registerClientIn } from '../helpers/tenants.ts';

/**
 * Security keys and passkeys end to end: registered in the account console and used at sign-in in
 * Chromium, with its virtual authenticators (DevTools protocol, WebAuthn domain) standing in for
 * the key and the platform authenticator; openid-client is the relying party. The issuer is
 * http://localhost:PORT: an IP address cannot be a WebAuthn relying-party ID, localhost can.
 */
describe('security keys and passkeys in a real browser', { skip: skipWithoutChromium }, () => {
  let ts: TestServer;
  let rp: CallbackServer;
  let browser: Browser;
  let config: oidc.Configuration;
  let issuer: string;

  before(async () => {
    [ts, rp, browser] = await Promise.all([
      startTestServer((port) => ({ ISSUER: `http://localhost:${port}` })),
      startCallbackServer(),
      launchChromium(),
    ]);
    issuer = `http://localhost:${ts.port}`;
    const client = await registerClient(ts, { token_endpoint_auth_method: 'none', redirect_uris: [rp.redirectUri] }, true);
    config = await oidc.discovery(new URL(issuer), client.clientId, undefined, oidc.None(), { execute: [oidc.allowInsecureRequests] });
  });
  after(async () => {
    await browser?.close();
    await rp?.close();
    await stopAndDestroy(ts);
  });

  interface Authenticator {
    cdp: CDPSession;
    authenticatorId: string;
  }

  /** A page with a virtual authenticator: a USB security key, or a platform authenticator holding passkeys. */
  async function pageWith(kind: 'security-key' | 'platform'): Promise<{ context: BrowserContext; page: Page; authenticator: Authenticator; cspViolations: string[] }> {
    const { context, page, cspViolations } = await watchedPage(browser);
    const cdp = await context.newCDPSession(page);
    await cdp.send('WebAuthn.enable');
    const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: kind === 'platform'
        ? { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true }
        : { protocol: 'ctap2', transport: 'usb', hasResidentKey: false, hasUserVerification: false, automaticPresenceSimulation: true },
    });
    return { context, page, authenticator: { cdp, authenticatorId }, cspViolations };
  }

  const consoleSignIn = (page: Page, user: { email: string; password: string }) => signInToConsole(page, issuer, user);

  /** Registers a credential from the console's two-step section; waits for the notice. */
  async function addInConsole(page: Page, button: 'account.mfa.webauthn.add_passkey' | 'account.mfa.webauthn.add_key', name?: string) {
    if (name) await page.getByLabel(en['account.mfa.webauthn.name'], { exact: true }).fill(name);
    await page.getByRole('button', { name: en[button], exact: true }).click();
    await page.getByRole('status').filter({ hasText: en['account.mfa.done.webauthn'] }).waitFor();
  }

  /** A new authorization request in `page`, without the provider's session (the console's sign-in is forgotten). */
  async function authorize(page: Page, params: Record<string, string> = {}, rpConfig = config) {
    await page.context().clearCookies();
    const request = await authorizationRequest(rpConfig, { redirectUri: rp.redirectUri, scope: 'openid', params });
    const response = await page.goto(request.url.href);
    assert.equal(response?.status(), 200);
    assert.match(new URL(page.url()).pathname, /^\/interaction\//);
    return request;
  }

  const toCallback = (page: Page) => page.waitForURL((u) => u.href.startsWith(rp.redirectUri));

  it('a security key added in the console is asked for after the password: amr pwd, hwk, mfa; a cloned key (counter going back) is refused', async () => {
    const user = await createUser(ts);
    const { context, page, authenticator, cspViolations } = await pageWith('security-key');
    try {
      await consoleSignIn(page, user);
      await addInConsole(page, 'account.mfa.webauthn.add_key', 'Blue key');
      const row = page.locator('tr.factor[data-type="webauthn"]');
      assert.equal(await row.count(), 1);
      assert.match((await row.textContent())!, /Blue key[\s\S]*Security key/);

      const request = await authorize(page);
      await page.getByLabel(en['login.email'], { exact: true }).fill(user.email);
      await page.getByLabel(en['login.password'], { exact: true }).fill(user.password);
      await Promise.all([page.waitForURL(/\/mfa$/), page.getByRole('button', { name: en['login.submit'], exact: true }).click()]);
      await Promise.all([toCallback(page), page.getByRole('button', { name: en['mfa.webauthn_submit'], exact: true }).click()]);
      const claims = (await request.redeem(new URL(page.url()))).claims()!;
      assert.equal(claims.sub, user.id);
      assert.deepEqual(claims.amr, ['pwd', 'hwk', 'mfa']);
      assert.equal(claims.acr, 'phr', 'a security key is phishing-resistant');

      // The same key, cloned with its counter from before: its next counter does not exceed the stored one.
      const { credentials } = await authenticator.cdp.send('WebAuthn.getCredentials', { authenticatorId: authenticator.authenticatorId });
      assert.equal(credentials.length, 1);
      await authenticator.cdp.send('WebAuthn.clearCredentials', { authenticatorId: authenticator.authenticatorId });
      await authenticator.cdp.send('WebAuthn.addCredential', { authenticatorId: authenticator.authenticatorId, credential: { ...credentials[0]!, signCount: 0 } });
      await authorize(page);
      await page.getByLabel(en['login.email'], { exact: true }).fill(user.email);
      await page.getByLabel(en['login.password'], { exact: true }).fill(user.password);
      await Promise.all([page.waitForURL(/\/mfa$/), page.getByRole('button', { name: en['login.submit'], exact: true }).click()]);
      await page.getByRole('button', { name: en['mfa.webauthn_submit'], exact: true }).click();
      await page.getByRole('alert').filter({ hasText: en['error.webauthn_invalid'] }).waitFor();
      assert.match(new URL(page.url()).pathname, /\/mfa$/, 'still asked for the second factor');
      const events = await ts.server.services.db('events').where({ subject_id: user.id, type: 'user.sign_in_failed' }).select('payload');
      assert.ok(events.some((e) => (typeof e.payload === 'string' ? JSON.parse(e.payload) : e.payload).reason === 'authenticator_counter'), 'the regression is recorded');
      assert.deepEqual(cspViolations, [], 'the pages work under their own Content-Security-Policy');
    } finally {
      await context.close();
    }
  });

  it('a passkey signs in without a password: amr swk and mfa, acr phr when asked for; once removed it is refused', async () => {
    const user = await createUser(ts);
    const { context, page, cspViolations } = await pageWith('platform');
    try {
      await consoleSignIn(page, user);
      await addInConsole(page, 'account.mfa.webauthn.add_passkey');
      assert.match((await page.locator('tr.factor[data-type="webauthn"]').textContent())!, /Passkey/);

      const request = await authorize(page, { acr_values: 'phr' });
      await Promise.all([toCallback(page), page.getByRole('button', { name: en['login.passkey'], exact: true }).click()]);
      const claims = (await request.redeem(new URL(page.url()))).claims()!;
      assert.equal(claims.sub, user.id);
      assert.deepEqual(claims.amr, ['swk', 'mfa']);
      assert.equal(claims.acr, 'phr');

      // Removed in the console (the provider's session from the passkey sign-in lets the console in).
      await page.goto(`${issuer}/account`);
      await page.getByRole('button', { name: en['account.mfa.remove_named'].replace('{name}', 'Passkey'), exact: true }).click();
      await page.getByRole('status').filter({ hasText: en['account.mfa.done.removed'] }).waitFor();

      // The authenticator still holds it; the provider no longer knows it: the generic answer.
      await authorize(page);
      await page.getByRole('button', { name: en['login.passkey'], exact: true }).click();
      await page.getByRole('alert').filter({ hasText: en['error.passkey_invalid'] }).waitFor();
      assert.match(new URL(page.url()).pathname, /^\/interaction\/[^/]+\/passkey$/);
      assert.deepEqual(cspViolations, []);
    } finally {
      await context.close();
    }
  });

  it('a passkey of one tenant\'s account does not sign in through another tenant\'s client', async () => {
    const user = await createUser(ts);
    const other = await createTenant(ts, 'passkeys');
    const client = await registerClientIn(ts, other.id, { token_endpoint_auth_method: 'none', redirect_uris: [rp.redirectUri] });
    const otherConfig = await oidc.discovery(new URL(issuer), client.clientId, undefined, oidc.None(), { execute: [oidc.allowInsecureRequests] });
    const { context, page } = await pageWith('platform');
    try {
      await consoleSignIn(page, user);
      await addInConsole(page, 'account.mfa.webauthn.add_passkey');
      await authorize(page, {}, otherConfig);
      await page.getByRole('button', { name: en['login.passkey'], exact: true }).click();
      await page.getByRole('alert').filter({ hasText: en['error.passkey_invalid'] }).waitFor();
      assert.match(new URL(page.url()).pathname, /^\/interaction\/[^/]+\/passkey$/, 'the generic answer: unknown in that tenant');
    } finally {
      await context.close();
    }
  });

  it('a passkey without user verification does not sign in, even when the browser is told not to ask for it', async () => {
    const user = await createUser(ts);
    const { context, page, authenticator } = await pageWith('platform');
    try {
      await consoleSignIn(page, user);
      await addInConsole(page, 'account.mfa.webauthn.add_passkey');
      await authenticator.cdp.send('WebAuthn.setUserVerified', { authenticatorId: authenticator.authenticatorId, isUserVerified: false });
      // A tampered page: the options it gets say user verification is not needed.
      await page.route('**/passkey/options', async (route) => {
        const response = await route.fetch();
        const options = await response.json();
        await route.fulfill({ response, json: { ...options, userVerification: 'discouraged' } });
      });
      await authorize(page);
      await page.getByRole('button', { name: en['login.passkey'], exact: true }).click();
      await page.getByRole('alert').filter({ hasText: en['error.passkey_invalid'] }).waitFor();
      assert.match(new URL(page.url()).pathname, /\/passkey$/, 'the assertion reached the provider and was refused');
    } finally {
      await context.close();
    }
  });
});
