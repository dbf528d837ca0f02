import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as oidc from 'openid-client';
import { HttpBrowser } from '../helpers/browser-http.ts';
import { authorizationRequest, createUser, REDIRECT_URI, registerClient, rpConfig, signIn, submitLogin } from '../helpers/rp.ts';
import { startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';
import { codeAt, enrolTotp, postSecondFactor } from '../helpers/mfa.ts';

/**
 * Assurance levels (ACR_VALUES, default pwd mfa phr) seen by a relying party (openid-client):
 * discovery lists them, ID tokens carry the level reached as acr beside amr, and acr_values above
 * the session's level is enforced: prompt=none answers interaction_required, an interactive
 * request steps the signed-in user up on the second-factor page without asking for the password
 * again, and a level the account (or the provider) cannot reach answers
 * unmet_authentication_requirements.
 */

const isCallback = (u: URL) => u.href.startsWith(REDIRECT_URI);

/** Enrols an authenticator for `userId`; with `keepSession` its one session stays, as when the account console enrols it. */
async function enrolKeeping(ts: TestServer, userId: string, keepSession = false) {
  const sessions = keepSession ? await ts.server.services.repos.payloads.listSessions(userId) : [];
  assert.equal(sessions.length, keepSession ? 1 : 0);
  return enrolTotp(ts, userId, sessions[0]?.uid);
}

/** Posts the current code on the second-factor page at `url` and follows on towards the client. */
async function passSecondFactor(browser: HttpBrowser, url: URL, secret: string) {
  const res = await postSecondFactor(browser, url, await codeAt(secret));
  assert.equal(res.status, 303);
  return browser.follow(new URL(res.headers.get('location')!, url), {}, isCallback);
}

/** An authorization request in `browser` (which may hold a session), followed to the first page or the callback. */
async function authorize(browser: HttpBrowser, config: oidc.Configuration, params: Record<string, string>) {
  const request = await authorizationRequest(config, { scope: 'openid', params });
  const step = await browser.follow(request.url, {}, isCallback);
  if (!isCallback(step.url)) await step.res.arrayBuffer();
  return { request, step };
}

/** The error a callback URL carries (state checked), or undefined. */
function callbackError(callback: URL, state: string) {
  assert.equal(callback.searchParams.get('state'), state);
  const error = callback.searchParams.get('error');
  return error ? { error, description: callback.searchParams.get('error_description') } : undefined;
}

describe('assurance levels (acr)', () => {
  let ts: TestServer;
  let config: oidc.Configuration;

  before(async () => {
    ts = await startTestServer();
    config = await rpConfig(ts, await registerClient(ts, { token_endpoint_auth_method: 'none' }, true));
  });
  after(() => stopAndDestroy(ts));

  it('discovery lists the configured levels in acr_values_supported and acr among the claims', () => {
    const metadata = config.serverMetadata();
    assert.deepEqual(metadata.acr_values_supported, ['pwd', 'mfa', 'phr']);
    assert.ok(metadata.claims_supported?.includes('acr'));
  });

  it('a password sign-in: acr pwd, amr pwd, without the client asking for acr', async () => {
    const user = await createUser(ts);
    const { tokens } = await signIn(ts, config, user, { scope: 'openid' });
    assert.equal(tokens.claims()!.acr, 'pwd');
    assert.deepEqual(tokens.claims()!.amr, ['pwd']);
  });

  it('a password and an authenticator code: acr mfa, amr pwd otp mfa', async () => {
    const user = await createUser(ts);
    const secret = await enrolKeeping(ts, user.id);
    const browser = new HttpBrowser();
    const { request, step } = await authorize(browser, config, {});
    const res = await submitLogin(browser, step.url, await (await browser.request(step.url)).text(), user.email, user.password);
    const next = await browser.follow(new URL(res.headers.get('location')!, step.url), {}, isCallback);
    await next.res.arrayBuffer();
    assert.match(next.url.pathname, /\/mfa$/);
    const done = await passSecondFactor(browser, next.url, secret);
    const claims = (await request.redeem(done.url)).claims()!;
    assert.equal(claims.acr, 'mfa');
    assert.deepEqual(claims.amr, ['pwd', 'otp', 'mfa']);
  });

  describe('acr_values=mfa for a session signed in with a password only', () => {
    let browser: HttpBrowser;
    let secret: string;
    let sub: string;

    before(async () => {
      const user = await createUser(ts);
      const first = await signIn(ts, config, user, { scope: 'openid' });
      assert.equal(first.tokens.claims()!.acr, 'pwd');
      browser = first.browser;
      sub = first.tokens.claims()!.sub;
      // The authenticator comes after this session's sign-in (the account console's way: it keeps the session).
      secret = await enrolKeeping(ts, user.id, true);
    });

    it('prompt=none answers interaction_required', async () => {
      const { request, step } = await authorize(browser, config, { acr_values: 'mfa', prompt: 'none' });
      assert.ok(isCallback(step.url), `to the client, got ${step.url.href}`);
      assert.equal(callbackError(step.url, request.state)?.error, 'interaction_required');
    });

    it('a client\'s default_acr_values counts as its acr_values', async () => {
      const strict = await rpConfig(ts, await registerClient(ts, { token_endpoint_auth_method: 'none', default_acr_values: ['mfa'] }, true));
      const { request, step } = await authorize(browser, strict, { prompt: 'none' });
      assert.equal(callbackError(step.url, request.state)?.error, 'interaction_required');
    });

    it('acr_values=pwd is satisfied by it: prompt=none issues the code, acr pwd', async () => {
      const { request, step } = await authorize(browser, config, { acr_values: 'pwd', prompt: 'none' });
      assert.ok(isCallback(step.url));
      assert.equal(callbackError(step.url, request.state), undefined);
      const claims = (await request.redeem(step.url)).claims()!;
      assert.equal(claims.acr, 'pwd');
      assert.equal(claims.sub, sub);
    });

    it('interactively steps up on the second-factor page, never the password page; the ID token then says mfa', async () => {
      const { request, step } = await authorize(browser, config, { acr_values: 'mfa' });
      assert.match(step.url.pathname, /^\/interaction\/[^/]+\/mfa$/, `straight to the second factor, got ${step.url.pathname}`);
      const done = await passSecondFactor(browser, step.url, secret);
      assert.ok(isCallback(done.url), `to the client, got ${done.url.href}`);
      const claims = (await request.redeem(done.url)).claims()!;
      assert.equal(claims.acr, 'mfa');
      assert.deepEqual(claims.amr, ['pwd', 'otp', 'mfa']);
      assert.equal(claims.sub, sub);

      // The session now holds mfa: the same request with prompt=none is served.
      const again = await authorize(browser, config, { acr_values: 'mfa', prompt: 'none' });
      assert.equal(callbackError(again.step.url, again.request.state), undefined);
      assert.equal((await again.request.redeem(again.step.url)).claims()!.acr, 'mfa');
    });
  });

  it('acr_values=mfa for an account without a second factor: guided to enrol one, for a session and at a fresh sign-in', async () => {
    const user = await createUser(ts);
    const { browser } = await signIn(ts, config, user, { scope: 'openid' });
    const { step } = await authorize(browser, config, { acr_values: 'mfa' });
    assert.match(step.url.pathname, /^\/interaction\/[^/]+\/mfa\/enroll$/, `straight to the enrolment, got ${step.url.href}`);

    // Without a session: the password is asked, then the same enrolment.
    const fresh = new HttpBrowser();
    const second = await authorize(fresh, config, { acr_values: 'mfa' });
    const res = await submitLogin(fresh, second.step.url, await (await fresh.request(second.step.url)).text(), user.email, user.password);
    const end = await fresh.follow(new URL(res.headers.get('location')!, second.step.url), {}, isCallback);
    await end.res.arrayBuffer();
    assert.match(end.url.pathname, /\/mfa\/enroll$/, `to the enrolment, got ${end.url.href}`);
  });

  it('acr_values=phr: an account with only TOTP signs in with its password, then hears unmet_authentication_requirements; with prompt=none and a session, interaction_required', async () => {
    const user = await createUser(ts);
    await enrolKeeping(ts, user.id);
    const fresh = new HttpBrowser();
    const { request, step } = await authorize(fresh, config, { acr_values: 'phr' });
    assert.match(step.url.pathname, /^\/interaction\//, 'security keys and passkeys make phr attainable: the login page');
    const res = await submitLogin(fresh, step.url, await (await fresh.request(step.url)).text(), user.email, user.password);
    const end = await fresh.follow(new URL(res.headers.get('location')!, step.url), {}, isCallback);
    assert.ok(isCallback(end.url), `to the client, got ${end.url.href}`);
    assert.deepEqual(callbackError(end.url, request.state), { error: 'unmet_authentication_requirements', description: 'no phishing-resistant authenticator enrolled' });

    const plain = await createUser(ts);
    const { browser } = await signIn(ts, config, plain, { scope: 'openid' });
    const none = await authorize(browser, config, { acr_values: 'phr', prompt: 'none' });
    assert.equal(callbackError(none.step.url, none.request.state)?.error, 'interaction_required');
    const interactive = await authorize(browser, config, { acr_values: 'phr' });
    assert.equal(callbackError(interactive.step.url, interactive.request.state)?.error, 'unmet_authentication_requirements');
  });

  it('acr_values listing several levels asks for the weakest: "phr mfa" is met by an mfa step-up', async () => {
    const user = await createUser(ts);
    const first = await signIn(ts, config, user, { scope: 'openid' });
    const secret = await enrolKeeping(ts, user.id, true);
    const { request, step } = await authorize(first.browser, config, { acr_values: 'phr mfa' });
    assert.match(step.url.pathname, /\/mfa$/);
    const done = await passSecondFactor(first.browser, step.url, secret);
    assert.equal((await request.redeem(done.url)).claims()!.acr, 'mfa');
  });
});

describe('MFA_POLICY=off with acr_values=mfa', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer({ MFA_POLICY: 'off', ACR_VALUES: 'pwd mfa' });
  });
  after(() => stopAndDestroy(ts));

  it('the policy does not ask, the client does: an enrolled authenticator is asked for; discovery lists ACR_VALUES', async () => {
    const config = await rpConfig(ts, await registerClient(ts, { token_endpoint_auth_method: 'none' }, true));
    assert.deepEqual(config.serverMetadata().acr_values_supported, ['pwd', 'mfa']);
    const user = await createUser(ts);
    const secret = await enrolKeeping(ts, user.id);
    const { tokens, browser } = await signIn(ts, config, user, { scope: 'openid' });
    assert.equal(tokens.claims()!.acr, 'pwd', 'the policy is off: a password alone');
    const { request, step } = await authorize(browser, config, { acr_values: 'mfa' });
    assert.match(step.url.pathname, /\/mfa$/);
    const done = await passSecondFactor(browser, step.url, secret);
    assert.equal((await request.redeem(done.url)).claims()!.acr, 'mfa');
  });

  it('an account without a second factor is not asked to enrol one: unmet_authentication_requirements', async () => {
    const config = await rpConfig(ts, await registerClient(ts, { token_endpoint_auth_method: 'none' }, true));
    const user = await createUser(ts);
    const { browser } = await signIn(ts, config, user, { scope: 'openid' });
    const { request, step } = await authorize(browser, config, { acr_values: 'mfa' });
    assert.ok(isCallback(step.url), `to the client, got ${step.url.href}`);
    assert.deepEqual(callbackError(step.url, request.state), { error: 'unmet_authentication_requirements', description: 'no second factor enrolled' });
  });
});
