import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as oidc from 'openid-client';
import { HttpBrowser, formAction, formField } from './browser-http.ts';
import type { TestServer } from './server.ts';
import { DEFAULT_SCOPE } from '../../src/domain/tenants/tenant-scope.ts';

export const REDIRECT_URI = 'http://127.0.0.1:9/cb';
export const POST_LOGOUT_URI = 'http://127.0.0.1:9/logged-out';

export interface Registered {
  clientId: string;
  clientSecret?: string;
}

let counter = 0;
export function uniqueEmail(prefix = 'user'): string {
  return `${prefix}.${Date.now()}.${counter++}.${randomBytes(3).toString('hex')}@example.test`;
}

/**
 * An authorization request as a relying party builds it (code + PKCE S256, state, nonce); `redeem`
 * takes the callback URL and has openid-client check state and nonce and redeem the code.
 */
export async function authorizationRequest(
  config: oidc.Configuration,
  opts: { redirectUri?: string; scope?: string; params?: Record<string, string> } = {},
) {
  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const nonce = oidc.randomNonce();
  const url = oidc.buildAuthorizationUrl(config, {
    redirect_uri: opts.redirectUri ?? REDIRECT_URI,
    scope: opts.scope ?? 'openid',
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
    ...opts.params,
  });
  const redeem = (callback: URL) =>
    oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce });
  return { url, verifier, state, nonce, redeem };
}

export async function createUser(ts: TestServer, password = 'correct horse battery staple', extra: Record<string, unknown> = {}) {
  const email = uniqueEmail();
  const user = await ts.server.services.accounts.create({
    email,
    password,
    emailVerified: true,
    givenName: 'Ada',
    familyName: 'Lovelace',
    ...extra,
  });
  return { email, password, id: user.id };
}

export async function registerClient(ts: TestServer, metadata: Record<string, unknown>, firstParty = false) {
  const out = await ts.server.services.clients.register(DEFAULT_SCOPE, {
    metadata: {
      redirect_uris: [REDIRECT_URI],
      post_logout_redirect_uris: [POST_LOGOUT_URI],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      ...metadata,
    },
    firstParty,
  });
  return { clientId: out.client_id, clientSecret: out.client_secret as string | undefined };
}

/** openid-client configuration for a registered client (plain HTTP is allowed on loopback). */
export async function rpConfig(ts: TestServer, client: Registered) {
  const auth = client.clientSecret ? oidc.ClientSecretBasic(client.clientSecret) : oidc.None();
  return oidc.discovery(new URL(ts.issuer), client.clientId, undefined, auth, {
    execute: [oidc.allowInsecureRequests],
  });
}

/** Submits the login form of the page in `html` at `pageUrl`. */
export async function submitLogin(browser: HttpBrowser, pageUrl: URL, html: string, email: string, password: string) {
  const action = formAction(html, '/login');
  const csrf = formField(html, 'csrf');
  assert.ok(action && csrf, 'login form with CSRF token expected');
  return browser.postForm(new URL(action, pageUrl), { csrf, email, password });
}

/**
 * The full authorization code + PKCE flow through the real login page: authorize, sign in,
 * consent when asked, and redeem the code with openid-client.
 */
export async function signIn(
  ts: TestServer,
  config: oidc.Configuration,
  user: { email: string; password: string },
  opts: { scope?: string; prompt?: string; browser?: HttpBrowser; params?: Record<string, string> } = {},
) {
  const browser = opts.browser ?? new HttpBrowser();
  const request = await authorizationRequest(config, {
    scope: opts.scope ?? 'openid email profile',
    params: { ...(opts.prompt ? { prompt: opts.prompt } : {}), ...opts.params },
  });
  const isCallback = (u: URL) => u.href.startsWith(REDIRECT_URI);
  let consentShown = false;
  let logins = 0;
  let step = await browser.follow(request.url, {}, isCallback);
  for (let i = 0; i < 4 && !isCallback(step.url); i++) {
    const html = await step.res.text();
    if (html.includes('autocomplete="current-password"')) {
      logins++;
      const res = await submitLogin(browser, step.url, html, user.email, user.password);
      assert.equal(res.status, 303, `login should redirect, got ${res.status}`);
      step = await browser.follow(new URL(res.headers.get('location')!, step.url), {}, isCallback);
    } else if (html.includes('/confirm')) {
      consentShown = true;
      const res = await browser.postForm(new URL(formAction(html, '/confirm')!, step.url), { csrf: formField(html, 'csrf')! });
      step = await browser.follow(new URL(res.headers.get('location')!, step.url), {}, isCallback);
    } else {
      assert.fail(`unexpected page at ${step.url.href}: ${step.res.status} ${html.slice(0, 300)}`);
    }
  }
  assert.ok(isCallback(step.url), 'flow should end at the redirect_uri');
  const tokens = await request.redeem(step.url);
  return { tokens, browser, callbackUrl: step.url, verifier: request.verifier, consentShown, logins };
}

/**
 * Asserts that `promise` (an openid-client call) fails with the authorization server's error
 * answer `error` at HTTP `status`, e.g. a refused refresh token: invalid_grant, 400.
 */
export async function rejectsWithOAuthError(promise: Promise<unknown>, error: string, status = 400): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof oidc.ResponseBodyError, `an OAuth error answer expected, got ${String(err)}`);
    assert.equal(err.error, error, err.error_description);
    assert.equal(err.status, status);
    return true;
  });
}
