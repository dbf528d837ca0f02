import assert from 'node:assert/strict';
import type * as oidc from 'openid-client';
import { generate } from 'otplib';
import { HttpBrowser, formField } from './browser-http.ts';
import { authorizationRequest, createUser, REDIRECT_URI, submitLogin } from './rp.ts';
import type { TestServer } from './server.ts';

const PERIOD = 30;

/** The authenticator app's code `steps` time steps from now (one step either side is accepted). */
export const codeAt = (secret: string, steps = 0) => generate({ secret, epoch: Math.floor(Date.now() / 1000) + steps * PERIOD });

/**
 * Enrols and confirms an authenticator for `userId` (the confirmation spends the previous step's
 * code, so the current one is free for a sign-in). `currentSessionUid` is the session the change
 * keeps, as when the account console enrols it (the others end).
 */
export async function enrolTotp(ts: TestServer, userId: string, currentSessionUid?: string): Promise<string> {
  const { mfa } = ts.server.services;
  const { factorId, secret } = await mfa.enrollTotp(userId);
  await mfa.confirmTotp(userId, factorId, await codeAt(secret, -1), currentSessionUid);
  return secret;
}

/** A new user with a confirmed authenticator, and its secret. */
export async function userWithTotp(ts: TestServer, extra: Record<string, unknown> = {}) {
  const user = await createUser(ts, undefined, extra);
  return { ...user, secret: await enrolTotp(ts, user.id) };
}

/** Authorize and post the password on the real login page; `next` is where the sign-in goes on to. */
export async function afterPassword(config: oidc.Configuration, user: { email: string; password: string }) {
  const browser = new HttpBrowser();
  const request = await authorizationRequest(config, { scope: 'openid email' });
  const isCallback = (u: URL) => u.href.startsWith(REDIRECT_URI);
  const page = await browser.follow(request.url, {}, isCallback);
  const res = await submitLogin(browser, page.url, await page.res.text(), user.email, user.password);
  assert.equal(res.status, 303);
  // Through the provider's resume: to the client's callback, or to the page of the next step.
  const step = await browser.follow(new URL(res.headers.get('location')!, page.url), {}, isCallback);
  await step.res.arrayBuffer();
  return { browser, request, next: step.url, isCallback };
}

/** The second-factor page at `url` showing `method` (the first offered one when none). */
async function secondFactorPage(browser: HttpBrowser, url: URL, method?: string): Promise<string> {
  const page = await browser.request(method && method !== 'totp' ? new URL(`${url.pathname}?method=${method}`, url) : url);
  const html = await page.text();
  assert.equal(page.status, 200, html.slice(0, 300));
  return html;
}

/** Posts `code` on the second-factor page at `url` (its recovery form with `method: 'recovery'`, and so on). */
export async function postSecondFactor(browser: HttpBrowser, url: URL, code: string, method: 'totp' | 'recovery' | 'sms' | 'email' = 'totp') {
  const html = await secondFactorPage(browser, url, method);
  return browser.postForm(url, { csrf: formField(html, 'csrf')!, method, code });
}

/** Presses "Send a code" of a method whose code is sent on request (sms, email) on the second-factor page at `url`. */
export async function sendSecondFactorCode(browser: HttpBrowser, url: URL, method: 'sms' | 'email') {
  const html = await secondFactorPage(browser, url, method);
  return browser.postForm(url, { csrf: formField(html, 'csrf')!, method, action: 'send' });
}
