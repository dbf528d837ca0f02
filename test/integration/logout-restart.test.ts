import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import * as oidc from 'openid-client';
import { formAction, formField } from '../helpers/browser-http.ts';
import { createUser, registerClient, rpConfig, signIn, POST_LOGOUT_URI } from '../helpers/rp.ts';
import { startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';

describe('logout and restart', () => {
  let ts: TestServer | undefined;
  after(() => stopAndDestroy(ts));

  it('RP-initiated logout ends the session and returns to a registered post_logout_redirect_uri only', async () => {
    ts = await startTestServer();
    const user = await createUser(ts);
    const client = await registerClient(ts, {}, true);
    const config = await rpConfig(ts, client);
    const { tokens, browser } = await signIn(ts, config, user);

    // An unregistered post_logout_redirect_uri is refused with an error page, no redirect.
    const bad = await browser.request(
      oidc.buildEndSessionUrl(config, { id_token_hint: tokens.id_token!, post_logout_redirect_uri: 'http://127.0.0.1:9/evil' }),
    );
    assert.equal(bad.status, 400);
    assert.equal(bad.headers.get('location'), null);

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

    // The session is gone: the next authorization asks for the password again.
    const again = await signIn(ts, config, user, { browser });
    assert.equal(again.tokens.claims()!.sub, user.id);
    await assert.rejects(
      signIn(ts, config, { email: user.email, password: 'not-the-password' }, { browser: new (await import('../helpers/browser-http.ts')).HttpBrowser() }),
    );
  });

  it('users, clients, keys and refresh tokens survive a restart', async () => {
    ts ??= await startTestServer();
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
