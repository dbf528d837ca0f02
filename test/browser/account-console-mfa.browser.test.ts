import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { generate } from 'otplib';
import type { Browser } from 'playwright-core';
import { en } from '../../src/i18n/en.ts';
import { createUser } from '../helpers/rp.ts';
import { startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';
import { launchChromium, signInToConsole, skipWithoutChromium, watchedPage } from '../helpers/chromium.ts';

describe('two-step verification in the account console, in a real browser', { skip: skipWithoutChromium }, () => {
  let ts: TestServer;
  let browser: Browser;

  before(async () => {
    [ts, browser] = await Promise.all([startTestServer(), launchChromium()]);
  });
  after(async () => {
    await browser?.close();
    await stopAndDestroy(ts);
  });

  it('sets up an authenticator app from the QR page and creates recovery codes, under the page\'s own CSP', async () => {
    const user = await createUser(ts);
    const { context, page, cspViolations } = await watchedPage(browser);
    try {
      await signInToConsole(page, ts.issuer, user);

      await page.getByRole('button', { name: en['account.mfa.totp.setup'], exact: true }).click();
      const qr = page.getByRole('img', { name: en['account.mfa.enroll.qr_alt'], exact: true });
      await qr.waitFor();
      // The data: URL image is allowed by the CSP and decodes to a picture.
      const width = await qr.evaluate((img: HTMLImageElement) => img.decode().then(() => img.naturalWidth, () => 0));
      assert.ok(width > 0, 'the QR code renders');
      const secret = (await page.locator('code.totp-secret').textContent())!.replace(/\s/g, '');
      assert.match(secret, /^[A-Z2-7]{32}$/);

      const codeInput = page.getByLabel(en['account.mfa.enroll.code'], { exact: true });
      assert.equal(await codeInput.getAttribute('autocomplete'), 'one-time-code');
      assert.equal(await codeInput.getAttribute('inputmode'), 'numeric');
      await codeInput.fill(await generate({ secret }));
      await page.getByRole('button', { name: en['account.mfa.enroll.confirm'], exact: true }).click();
      await page.getByRole('status').filter({ hasText: en['account.mfa.done.totp'] }).waitFor();
      assert.equal(await page.locator('tr.factor[data-type="totp"]').count(), 1);
      assert.ok(!(await page.content()).includes(secret), 'the secret is gone from the page');

      await page.getByRole('button', { name: en['account.mfa.codes.create'], exact: true }).click();
      await page.locator('ol.codes').waitFor();
      assert.equal(await page.locator('ol.codes li').count(), 10);
      assert.deepEqual(cspViolations, [], 'the console works under its own Content-Security-Policy');
    } finally {
      await context.close();
    }
  });
});
