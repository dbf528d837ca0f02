import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as oidc from 'openid-client';
import { HttpBrowser } from '../helpers/browser-http.ts';
import { alertText } from '../helpers/login-page.ts';
import { authorizationRequest, createUser, registerClient, rpConfig } from '../helpers/rp.ts';
import { startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';
import { afterPassword, codeAt, postSecondFactor, userWithTotp } from '../helpers/mfa.ts';

/**
 * The second step of a sign-in (MFA_POLICY=optional, the default): an account with a confirmed
 * authenticator proves it after its password, through the real login pages, and the relying party
 * (openid-client) sees it in the ID token's amr.
 */

describe('the second step of a sign-in', () => {
  let ts: TestServer;
  let config: oidc.Configuration;

  before(async () => {
    ts = await startTestServer();
    config = await rpConfig(ts, await registerClient(ts, { token_endpoint_auth_method: 'none' }, true));
  });
  after(() => stopAndDestroy(ts));

  it('asks an account with an authenticator for it after the password; its code completes the sign-in with amr pwd, otp, mfa', async () => {
    const user = await userWithTotp(ts);
    const { browser, request, next, isCallback } = await afterPassword(config, user);
    assert.match(next.pathname, /^\/interaction\/[^/]+\/mfa$/, 'the password leads to the second step, not the client');

    const page = await browser.request(next);
    const html = await page.text();
    assert.equal(page.status, 200);
    assert.match(html, /autocomplete="one-time-code"/);
    assert.doesNotMatch(html, /Use a recovery code/, 'no recovery codes, no such control');

    const wrong = await postSecondFactor(browser, next, (await codeAt(user.secret)) === '000000' ? '111111' : '000000');
    assert.equal(wrong.status, 401);
    assert.equal(alertText(await wrong.text()), 'That code is not right. Please try again.');

    const right = await postSecondFactor(browser, next, await codeAt(user.secret));
    assert.equal(right.status, 303);
    const done = await browser.follow(new URL(right.headers.get('location')!, next), {}, isCallback);
    assert.ok(isCallback(done.url), 'the authorization ends at the client');
    const tokens = await request.redeem(done.url);
    assert.deepEqual(tokens.claims()!.amr, ['pwd', 'otp', 'mfa']);
    assert.equal(tokens.claims()!.sub, user.id);

    // The reference catalogue's User MFA Login, once, naming the factor and never the code.
    const logins = await ts.server.services.db('events').where({ subject_id: user.id, type: 'user.mfa_login' });
    assert.equal(logins.length, 1);
    assert.equal(logins[0].payload.factor.type, 'totp');
    assert.ok(!JSON.stringify(logins).includes(user.secret), 'no secret in the event');
  });

  it('a code is good once: the same code again in its time step is refused', async () => {
    const user = await userWithTotp(ts);
    const code = await codeAt(user.secret);
    const first = await afterPassword(config, user);
    assert.equal((await postSecondFactor(first.browser, first.next, code)).status, 303);
    const second = await afterPassword(config, user);
    const replay = await postSecondFactor(second.browser, second.next, code);
    assert.equal(replay.status, 401, 'the replayed code is refused');
  });

  it('a recovery code stands in for the authenticator, once', async () => {
    const user = await userWithTotp(ts);
    const [code] = await ts.server.services.mfa.regenerateRecoveryCodes(user.id, undefined);
    const first = await afterPassword(config, user);
    assert.match(await (await first.browser.request(first.next)).text(), /Use a recovery code/);
    const used = await postSecondFactor(first.browser, first.next, code!, 'recovery');
    assert.equal(used.status, 303);
    const done = await first.browser.follow(new URL(used.headers.get('location')!, first.next), {}, first.isCallback);
    assert.deepEqual((await first.request.redeem(done.url)).claims()!.amr, ['pwd', 'otp', 'mfa']);

    const second = await afterPassword(config, user);
    assert.equal((await postSecondFactor(second.browser, second.next, code!, 'recovery')).status, 401, 'a used recovery code is refused');
  });

  it('five wrong codes lock the factor: the right code is refused after them', async () => {
    const user = await userWithTotp(ts);
    const { browser, next } = await afterPassword(config, user);
    const near = new Set(await Promise.all([-1, 0, 1].map((s) => codeAt(user.secret, s))));
    const wrong = ['000000', '111111', '222222', '333333', '444444', '555555'].find((c) => !near.has(c))!;
    const statuses = [];
    for (let i = 0; i < 5; i++) statuses.push((await postSecondFactor(browser, next, wrong)).status);
    assert.deepEqual(statuses, [401, 401, 401, 401, 429]);
    const locked = await postSecondFactor(browser, next, await codeAt(user.secret));
    assert.equal(locked.status, 429);
    assert.equal(alertText(await locked.text()), 'Too many wrong codes. Please try again in 15 minutes.');
  });

  it('the second step cannot be reached without the first, nor for another account', async () => {
    const user = await userWithTotp(ts);
    const browser = new HttpBrowser();
    const request = await authorizationRequest(config, { scope: 'openid' });
    const page = await browser.follow(request.url);
    await page.res.arrayBuffer();
    const mfaUrl = new URL(`${page.url.pathname}/mfa`, page.url);
    const direct = await browser.request(mfaUrl);
    assert.equal(direct.status, 303, 'no first factor: back to the sign-in page');
    assert.equal(new URL(direct.headers.get('location')!, page.url).pathname, page.url.pathname);
    const posted = await browser.request(mfaUrl, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ code: await codeAt(user.secret) }).toString() });
    assert.equal(posted.status, 403, 'no CSRF token of this interaction');
  });

  it('an account without an authenticator signs in with its password alone (amr pwd)', async () => {
    const user = await createUser(ts);
    const { next, isCallback, request } = await afterPassword(config, user);
    assert.ok(isCallback(next), `straight to the client, got ${next.pathname}`);
    assert.deepEqual((await request.redeem(next)).claims()!.amr, ['pwd']);
  });
});

describe('MFA_POLICY=off', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer({ MFA_POLICY: 'off' });
  });
  after(() => stopAndDestroy(ts));

  it('never asks for the second step, even of an account with an authenticator', async () => {
    const config = await rpConfig(ts, await registerClient(ts, { token_endpoint_auth_method: 'none' }, true));
    const user = await userWithTotp(ts);
    const { next, isCallback, request } = await afterPassword(config, user);
    assert.ok(isCallback(next), `straight to the client, got ${next.pathname}`);
    assert.deepEqual((await request.redeem(next)).claims()!.amr, ['pwd']);
  });
});
