import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { en } from '../../src/i18n/en.ts';
import { launchChromium, signInToConsole, skipWithoutChromium, watchedPage } from '../helpers/chromium.ts';
import { authorizationUrl } from '../helpers/login-page.ts';
import { createUser, registerClient } from '../helpers/rp.ts';
import { startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';

// The first-hour behaviours that need the page's script: the magic-link form takes the address
// typed for the password, and signing out of the account console is asked once.

describe('first hour in a real browser', { skip: skipWithoutChromium }, () => {
  let ts: TestServer;
  let browser: Browser;

  before(async () => {
    [ts, browser] = await Promise.all([startTestServer({ AUTH_API_RATE_LIMIT_PER_IP: '10000' }), launchChromium()]);
  });
  after(async () => {
    await browser?.close();
    await stopAndDestroy(ts);
  });

  /** A fresh context that records Content-Security-Policy complaints. */
  const newPage = () => watchedPage(browser, { locale: 'en-US' });

  it('the magic-link form takes the address already typed, until it is edited', async () => {
    const { clientId } = await registerClient(ts, { token_endpoint_auth_method: 'none' }, true);
    const { context, page, cspViolations } = await newPage();
    try {
      await page.goto(authorizationUrl(ts, clientId).href);
      await page.getByLabel(en['login.email'], { exact: true }).fill('ada@example.com');
      await page.getByText(en['login.magic'], { exact: true }).click();
      const magic = page.getByLabel(en['login.magic_email'], { exact: true });
      assert.equal(await magic.inputValue(), 'ada@example.com');
      await magic.fill('grace@example.com');
      await page.getByLabel(en['login.email'], { exact: true }).fill('someone.else@example.com');
      assert.equal(await magic.inputValue(), 'grace@example.com', 'an address typed there is kept');
      assert.deepEqual(cspViolations, []);
    } finally {
      await context.close();
    }
  });

  it('signing out of the account console asks once: its button, not the provider page as well', async () => {
    const user = await createUser(ts);
    const { context, page, cspViolations } = await newPage();
    try {
      await signInToConsole(page, ts.issuer, user);
      await Promise.all([
        page.waitForURL(`${ts.issuer}/account/signed-out`),
        page.locator('form[action$="/account/logout"] button').click(),
      ]);
      await page.getByRole('heading', { name: en['account.signed_out.title'] }).waitFor();
      // The provider's session ended too: the console asks for the password again.
      await page.goto(`${ts.issuer}/account`);
      await page.getByLabel(en['login.password'], { exact: true }).waitFor();
      assert.deepEqual(cspViolations, []);
    } finally {
      await context.close();
    }
  });
});
