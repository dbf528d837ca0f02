import { existsSync } from 'node:fs';
import { en } from '../../src/i18n/en.ts';
import { chromium, type Browser, type BrowserContext, type BrowserContextOptions, type Page } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const missing = !existsSync(CHROMIUM);

/**
 * Without Chromium a browser test is skipped locally, but in CI a missing browser is a failure, and
 * one at once: the file stops as it loads, before its hooks start a server that nothing would stop.
 */
if (missing && process.env.CI) throw new Error(`Chromium not found at ${CHROMIUM}; install it or set CHROMIUM_PATH (CI=1: browser tests must run)`);
export const skipWithoutChromium: string | false =
  missing ? `Chromium not found at ${CHROMIUM} (set CHROMIUM_PATH); in CI this fails instead` : false;

/** Debian's Chromium, headless, with what it needs to run as root in a container and nothing that phones home. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/**
 * A fresh context and page that record the browser's Content-Security-Policy complaints, so a test
 * can assert the pages work under their own policy.
 */
export async function watchedPage(browser: Browser, options: BrowserContextOptions = {}): Promise<{ context: BrowserContext; page: Page; cspViolations: string[] }> {
  const context = await browser.newContext(options);
  context.setDefaultTimeout(10_000);
  const page = await context.newPage();
  const cspViolations: string[] = [];
  page.on('console', (msg) => {
    if (/Content Security Policy|Refused to/i.test(msg.text())) cspViolations.push(msg.text());
  });
  return { context, page, cspViolations };
}

/** Opens the account console at `issuer` and signs `user` in on the provider's login page (English). */
export async function signInToConsole(page: Page, issuer: string, user: { email: string; password: string }): Promise<void> {
  await page.goto(`${issuer}/account`);
  await page.getByLabel(en['login.email'], { exact: true }).fill(user.email);
  await page.getByLabel(en['login.password'], { exact: true }).fill(user.password);
  await Promise.all([
    page.waitForURL(`${issuer}/account`),
    page.getByRole('button', { name: en['login.submit'], exact: true }).click(),
  ]);
}
