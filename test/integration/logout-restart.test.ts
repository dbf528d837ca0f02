import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as oidc from 'openid-client';
import { formAction, formField, type HttpBrowser } from '../helpers/browser-http.ts';
import { authorizationRequest, createUser, registerClient, rpConfig, signIn, POST_LOGOUT_URI, REDIRECT_URI } from '../helpers/rp.ts';
import { startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';

/** A signed-in browser of a new user at a new first-party client. */
async function signedIn(ts: TestServer) {
  const user = await createUser(ts);
  const client = await registerClient(ts, {}, true);
  const config = await rpConfig(ts, client);
  const { tokens, browser } = await signIn(ts, config, user);
  return { user, config, tokens, browser };
}

/** An authorization with prompt=none in `browser`: the callback, redeemed (throws the error it carries). */
async function silentAuthorization(config: oidc.Configuration, browser: HttpBrowser) {
  const request = await authorizationRequest(config, { params: { prompt: 'none' } });
  const step = await browser.follow(request.url, {}, (u) => u.href.startsWith(REDIRECT_URI));
  assert.ok(step.url.href.startsWith(REDIRECT_URI), `prompt=none answers at the redirect_uri, got ${step.url.href}`);
  return request.redeem(step.url);
}

describe('logout', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer();
  });
  after(() => stopAndDestroy(ts));

  it('an unregistered post_logout_redirect_uri is refused with an error page, no redirect', async () => {
    const { config, tokens, browser } = await signedIn(ts);
    const bad = await browser.request(
      oidc.buildEndSessionUrl(config, { id_token_hint: tokens.id_token!, post_logout_redirect_uri: 'http://127.0.0.1:9/evil' }),
    );
    assert.equal(bad.status, 400);
    assert.equal(bad.headers.get('location'), null);
    // The session is still there.
    const silent = await silentAuthorization(config, browser);
    assert.ok(silent.access_token);
  });

  it('RP-initiated logout returns to the registered post_logout_redirect_uri and ends the session in that browser', async () => {
    const { user, config, tokens, browser } = await signedIn(ts);
    // Before logout the session signs in without a page (the control for the check below).
    const before = await silentAuthorization(config, browser);
    assert.equal(before.claims()!.sub, user.id);

    const page = await browser.request(
      oidc.buildEndSessionUrl(config, { id_token_hint: tokens.id_token!, post_logout_redirect_uri: POST_LOGOUT_URI, state: 'bye' }),
    );
    assert.equal(page.status, 200);
    const html = await page.text();
    const action = formAction(html, '/session/end');
    assert.ok(action, 'logout confirmation form');
    const confirm = await browser.postForm(new URL(action!, ts.issuer), { xsrf: formField(html, 'xsrf')!, logout: 'yes' });
    assert.equal(confirm.status, 303);
    const done = await browser.follow(new URL(confirm.headers.get('location')!, ts.issuer), {}, (u) =>
      u.href.startsWith(POST_LOGOUT_URI));
    assert.ok(done.url.href.startsWith(POST_LOGOUT_URI));
    assert.equal(done.url.searchParams.get('state'), 'bye');

    // The same browser has no session any more: a silent authorization is refused with login_required.
    await assert.rejects(silentAuthorization(config, browser), (err: unknown) => {
      assert.ok(err instanceof oidc.AuthorizationResponseError, String(err));
      assert.equal(err.error, 'login_required');
      return true;
    });
    // And an interactive one shows the password page again.
    const again = await signIn(ts, config, user, { browser });
    assert.equal(again.logins, 1, 'the password was asked for');
    assert.equal(again.tokens.claims()!.sub, user.id);
  });
});

describe('restart', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer();
  });
  after(() => stopAndDestroy(ts));

  it('users, clients, keys and refresh tokens survive a restart', async () => {
    const user = await createUser(ts);
    const client = await registerClient(ts, {}, true);
    const config = await rpConfig(ts, client);
    const { tokens } = await signIn(ts, config, user, { scope: 'openid offline_access', prompt: 'consent' });
    const jwksBefore = await (await fetch(new URL('/jwks', ts.issuer))).json();

    await ts.stop();
    ts = await startTestServer({}, { store: ts.store, port: ts.port });

    const jwksAfter = await (await fetch(new URL('/jwks', ts.issuer))).json();
    assert.deepEqual(jwksAfter, jwksBefore, 'same keys after restart');
    const config2 = await rpConfig(ts, client);
    const refreshed = await oidc.refreshTokenGrant(config2, tokens.refresh_token!);
    assert.ok(refreshed.access_token);
    // The ID token from before the restart still verifies against the published keys.
    assert.equal(refreshed.claims()?.sub, user.id);
    const again = await signIn(ts, config2, user);
    assert.equal(again.tokens.claims()!.sub, user.id);
  });
});
