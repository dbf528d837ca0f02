import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as oidc from 'openid-client';
import { HttpBrowser } from '../helpers/browser-http.ts';
import { createUser, registerClient, rpConfig, signIn, submitLogin, REDIRECT_URI } from '../helpers/rp.ts';
import { startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';

describe('authorization code + PKCE', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer();
  });
  after(() => stopAndDestroy(ts));

  it('signs a user in to a confidential client through the login and consent pages', async () => {
    const user = await createUser(ts);
    const client = await registerClient(ts, { client_name: 'Third Party App' });
    const config = await rpConfig(ts, client);
    const { tokens } = await signIn(ts, config, user);
    const claims = tokens.claims()!;
    assert.equal(claims.sub, user.id);
    // Scope-requested claims go to userinfo when an access token is issued (conformIdTokenClaims).
    assert.equal(claims.email, undefined);
    assert.equal(claims.iss, ts.issuer);
    assert.equal(claims.aud, client.clientId);
    const info = await oidc.fetchUserInfo(config, tokens.access_token, user.id);
    assert.equal(info.email, user.email);
    assert.equal(info.email_verified, true);
    assert.equal(info.given_name, 'Ada');
    assert.equal(info.family_name, 'Lovelace');
    assert.equal(info.name, 'Ada Lovelace');
    assert.equal(tokens.refresh_token, undefined, 'no refresh token without offline_access');
  });

  it('signs a user in to a public client (SPA) with PKCE and no secret', async () => {
    const user = await createUser(ts);
    const client = await registerClient(ts, { token_endpoint_auth_method: 'none' }, true);
    const config = await rpConfig(ts, client);
    const { tokens } = await signIn(ts, config, user, { scope: 'openid' });
    assert.equal(tokens.claims()!.sub, user.id);
    assert.equal(tokens.claims()!.email, undefined, 'email only with the email scope');
  });

  it('reuses the session: a second authorization needs no password', async () => {
    const user = await createUser(ts);
    const client = await registerClient(ts, {}, true);
    const config = await rpConfig(ts, client);
    const first = await signIn(ts, config, user);
    const second = await signIn(ts, config, { email: user.email, password: 'wrong-password-never-used' }, {
      browser: first.browser,
    });
    assert.equal(second.tokens.claims()!.sub, user.id);
  });

  /** A new user signs in through the login page; the callback with its code is not redeemed yet. */
  async function codeNotRedeemed(state: string) {
    const user = await createUser(ts);
    const config = await rpConfig(ts, await registerClient(ts, {}, true));
    const browser = new HttpBrowser();
    const verifier = oidc.randomPKCECodeVerifier();
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: REDIRECT_URI,
      scope: 'openid',
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
    });
    const page = await browser.follow(url);
    const res = await submitLogin(browser, page.url, await page.res.text(), user.email, user.password);
    const cb = await browser.follow(new URL(res.headers.get('location')!, page.url), {}, (u) => u.href.startsWith(REDIRECT_URI));
    return { user, config, cb, verifier };
  }

  it('rejects a code redeemed with the wrong verifier, and a code used twice', async () => {
    // Obtain a code by running the flow manually, then redeem it with a wrong verifier.
    const { config, cb, verifier } = await codeNotRedeemed('s1');
    await assert.rejects(
      oidc.authorizationCodeGrant(config, cb.url, { pkceCodeVerifier: oidc.randomPKCECodeVerifier(), expectedState: 's1' }),
      (err: oidc.ResponseBodyError) => err.error === 'invalid_grant',
    );
    // The failed attempt did not consume the code; the right verifier redeems it once.
    const tokens = await oidc.authorizationCodeGrant(config, cb.url, { pkceCodeVerifier: verifier, expectedState: 's1' });
    assert.ok(tokens.access_token);
    await assert.rejects(
      oidc.authorizationCodeGrant(config, cb.url, { pkceCodeVerifier: verifier, expectedState: 's1' }),
      (err: oidc.ResponseBodyError) => err.error === 'invalid_grant',
    );
    // Reusing the code revoked what it issued.
    const introspected = await oidc.tokenIntrospection(config, tokens.access_token);
    assert.equal(introspected.active, false);
  });

  it('refuses a code whose session ended before it was redeemed (read with the code on PostgreSQL)', async () => {
    const { user, config, cb, verifier } = await codeNotRedeemed('s2');
    // The session ends elsewhere (another instance, the sweeper): its row goes, the code stays.
    const sessions = () => ts.server.services.db('oidc_payloads').where({ model: 'Session', account_id: user.id });
    assert.equal((await sessions().select('id')).length, 1);
    await sessions().delete();
    await assert.rejects(
      oidc.authorizationCodeGrant(config, cb.url, { pkceCodeVerifier: verifier, expectedState: 's2' }),
      (err: oidc.ResponseBodyError) => err.error === 'invalid_grant',
    );
  });

  it('shows an error page, without redirecting, for an unregistered redirect_uri', async () => {
    const client = await registerClient(ts, {}, true);
    const url = new URL('/auth', ts.issuer);
    url.search = new URLSearchParams({
      client_id: client.clientId,
      response_type: 'code',
      scope: 'openid',
      redirect_uri: 'http://127.0.0.1:9/evil',
      code_challenge: 'x'.repeat(43),
      code_challenge_method: 'S256',
    }).toString();
    const res = await fetch(url, { redirect: 'manual' });
    assert.equal(res.status, 400);
    assert.equal(res.headers.get('location'), null);
    const html = await res.text();
    assert.match(html, /redirect_uri/);
    assert.match(html, /role="alert"/);
  });

  it('requires PKCE for confidential clients by default, unless the client opted out', async () => {
    const user = await createUser(ts);
    const strict = await registerClient(ts, {}, true);
    const url = new URL('/auth', ts.issuer);
    url.search = new URLSearchParams({
      client_id: strict.clientId,
      response_type: 'code',
      scope: 'openid',
      redirect_uri: REDIRECT_URI,
      state: 'x',
    }).toString();
    const res = await fetch(url, { redirect: 'manual' });
    assert.equal(res.status, 303);
    const location = new URL(res.headers.get('location')!);
    assert.equal(location.searchParams.get('error'), 'invalid_request');
    assert.match(location.searchParams.get('error_description')!, /PKCE/);

    const legacy = await registerClient(ts, { require_pkce: false }, true);
    const config = await rpConfig(ts, legacy);
    const browser = new HttpBrowser();
    const page = await browser.follow(
      oidc.buildAuthorizationUrl(config, { redirect_uri: REDIRECT_URI, scope: 'openid', state: 'st' }),
    );
    const { submitLogin } = await import('../helpers/rp.ts');
    const login = await submitLogin(browser, page.url, await page.res.text(), user.email, user.password);
    const cb = await browser.follow(new URL(login.headers.get('location')!, page.url), {}, (u) => u.href.startsWith(REDIRECT_URI));
    const tokens = await oidc.authorizationCodeGrant(config, cb.url, { expectedState: 'st' });
    assert.ok(tokens.id_token);
  });

  it('answers prompt=none without a session with login_required', async () => {
    const client = await registerClient(ts, { token_endpoint_auth_method: 'none' }, true);
    const config = await rpConfig(ts, client);
    const verifier = oidc.randomPKCECodeVerifier();
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: REDIRECT_URI,
      scope: 'openid',
      prompt: 'none',
      state: 'pn',
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
    });
    const res = await fetch(url, { redirect: 'manual' });
    assert.equal(res.status, 303);
    const location = new URL(res.headers.get('location')!);
    assert.ok(location.href.startsWith(REDIRECT_URI));
    assert.equal(location.searchParams.get('error'), 'login_required');
    assert.equal(location.searchParams.get('state'), 'pn');
  });
});
