import assert from 'node:assert/strict';
import { HttpBrowser, formAction, formField } from './browser-http.ts';
import { REDIRECT_URI, authorizationRequest, rpConfig, type Registered } from './rp.ts';
import type { TestServer } from './server.ts';

// An authorization held open step by step (for flows other than the password form: registration,
// codes, links), then finished with openid-client redeeming the code.

/** A pending authorization in `browser`, up to its login page. */
export async function startAuthorization(ts: TestServer, client: Registered, opts: { browser?: HttpBrowser; scope?: string } = {}) {
  const browser = opts.browser ?? new HttpBrowser();
  const config = await rpConfig(ts, client);
  const request = await authorizationRequest(config, { scope: opts.scope ?? 'openid email' });
  const page = await browser.follow(request.url);
  const html = await page.res.text();
  assert.equal(page.res.status, 200);
  assert.ok(html.includes('autocomplete="current-password"'), 'the login page');
  return { config, browser, request, loginUrl: page.url, loginHtml: html, uid: page.url.pathname.split('/')[2]! };
}

export type PendingAuthorization = Awaited<ReturnType<typeof startAuthorization>>;

/** From a redirect that completes the interaction to the callback (consent given if asked); redeems the code. */
export async function finishAuthorization(flow: PendingAuthorization, res: Response, base: URL) {
  assert.equal(res.status, 303, 'the step completes the interaction');
  const isCallback = (u: URL) => u.href.startsWith(REDIRECT_URI);
  let step = await flow.browser.follow(new URL(res.headers.get('location')!, base), {}, isCallback);
  for (let i = 0; i < 3 && !isCallback(step.url); i++) {
    const html = await step.res.text();
    const confirm = formAction(html, '/confirm');
    assert.ok(confirm, `consent page expected at ${step.url.href}: ${html.slice(0, 300)}`);
    const answer = await flow.browser.postForm(new URL(confirm, step.url), { csrf: formField(html, 'csrf')! });
    step = await flow.browser.follow(new URL(answer.headers.get('location')!, step.url), {}, isCallback);
  }
  assert.ok(isCallback(step.url), 'the flow ends at the redirect_uri');
  assert.ok(step.url.searchParams.get('code'), 'with an authorization code');
  return flow.request.redeem(step.url);
}
