import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import * as oidc from 'openid-client';
import { generate } from 'otplib';
import { HttpBrowser, formField } from '../helpers/browser-http.ts';
import { createUser, registerClient, rejectsWithOAuthError, rpConfig, signIn, submitLogin } from '../helpers/rp.ts';
import { startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';
import { accountConsole } from '../helpers/account-console.ts';

/**
 * Two-step verification in the account console (/account): setting up an authenticator app,
 * recovery codes and removing either, through the console's own forms (CSRF, per-user limit), with
 * the real MFA service and store behind them.
 */

const PERIOD = 30;
/** The authenticator app's code `steps` time steps from now. */
const codeAt = (secret: string, steps = 0) => generate({ secret, epoch: Math.floor(Date.now() / 1000) + steps * PERIOD });
/** A well-formed code that is not the current one (nor one either side). */
async function wrongCode(secret: string) {
  const near = new Set([await codeAt(secret, -1), await codeAt(secret), await codeAt(secret, 1)]);
  for (const c of ['000000', '111111', '222222', '333333']) if (!near.has(c)) return c;
  throw new Error('unreachable');
}

/** The secret as the page shows it for typing by hand (groups of four), without the spaces. */
const shownSecret = (html: string) => /<code class="totp-secret">([^<]*)<\/code>/.exec(html)?.[1]?.replace(/\s/g, '');
/** The factor id the confirm form posts. */
const confirmFactor = (html: string) => /action="[^"]*\/mfa\/totp\/confirm"[\s\S]*?name="factor" value="([^"]+)"/.exec(html)?.[1];
/** Rows of the factors table: id and type. */
const factorRows = (html: string) =>
  html
    .split('<tr class="factor"')
    .slice(1)
    .map((row) => ({ type: /data-type="([^"]+)"/.exec(row)?.[1], id: /name="factor" value="([^"]+)"/.exec(row)?.[1] }));
const alertOf = (html: string) => /<div class="alert" role="alert">([^<]*)<\/div>/.exec(html)?.[1];
const recoveryCodesOf = (html: string) => [...html.matchAll(/<li><code>([^<]+)<\/code><\/li>/g)].map((m) => m[1]!);

describe('account console: two-step verification', () => {
  let ts: TestServer;

  before(async () => {
    ts = await startTestServer({ AUTH_API_RATE_LIMIT_PER_IP: '10000' });
  });
  after(() => stopAndDestroy(ts));

  const { consoleUrl, open, post, followRedirect, consoleSignIn: signInTo } = accountConsole(() => ts);
  const csrfOf = (html: string) => formField(html, 'csrf')!;
  const mfa = () => ts.server.services.mfa;
  const events = (userId: string, type: string) => ts.server.services.db('events').where({ subject_id: userId, type });
  /** Every factor row of the user, pending ones too. */
  const factorIds = (userId: string) => ts.server.services.db('mfa_factors').where({ user_id: userId }).pluck('id');

  /** Signs `user` in to the console in a new browser through the login page; the browser and the console page. */
  async function consoleSignIn(user: { email: string; password: string }) {
    const browser = new HttpBrowser();
    return { browser, page: await signInTo(browser, user) };
  }

  async function signedInConsole() {
    const user = await createUser(ts);
    return { user, ...(await consoleSignIn(user)) };
  }

  /** Set up: the enrollment page and the secret shown on it. */
  async function enroll(browser: HttpBrowser, page: string) {
    const res = await post(browser, '/mfa/totp/enroll', { csrf: csrfOf(page) });
    assert.equal(res.status, 200);
    const html = await res.text();
    const secret = shownSecret(html);
    assert.ok(secret, 'the secret is shown for typing by hand');
    return { html, secret, factorId: confirmFactor(html)! };
  }

  it('sets up an authenticator app: QR code and secret once, the right code confirms it, a mail and an event follow', async () => {
    const { user, browser, page } = await signedInConsole();
    assert.match(page, /<h2 id="mfa-title">Two-step verification<\/h2>/);
    assert.ok(page.includes('Two-step verification is not set up.'));
    assert.ok(page.includes('>Set up an authenticator app</button>'));
    assert.ok(page.includes('>Create recovery codes</button>'));
    assert.ok(page.includes('>Add a passkey</button>') && page.includes('>Add a security key</button>'), 'security keys and passkeys can be added');

    const { html, secret, factorId } = await enroll(browser, page);
    assert.match(html, /<img class="qr" src="data:image\/png;base64,[A-Za-z0-9+/=]+" alt="QR code to add this account to your authenticator app"/);
    assert.match(secret, /^[A-Z2-7]{32}$/, '160 bits in base32');
    assert.match(html, /<code class="totp-secret">([A-Z2-7]{4} ){7}[A-Z2-7]{4}<\/code>/, 'in groups of four');
    assert.match(html, /<input id="totp_code" name="code" type="text" inputmode="numeric"[^>]* autocomplete="one-time-code"/);
    assert.equal(factorRows(html).length, 0, 'nothing is enrolled before it is confirmed');
    assert.deepEqual(await mfa().list(user.id), []);

    // The secret is in that answer only: the console page never shows it again.
    const reopened = await open(browser);
    assert.ok(!reopened.html.includes(secret) && !shownSecret(reopened.html) && !reopened.html.includes('data:image/png'));

    const confirmed = await post(browser, '/mfa/totp/confirm', { csrf: csrfOf(html), factor: factorId, code: await codeAt(secret) });
    assert.equal(confirmed.headers.get('location'), `${consoleUrl()}?done=mfa_totp`);
    const done = await followRedirect(confirmed, browser);
    assert.equal(done.status, 200, 'the console keeps its sign-in');
    assert.ok(done.html.includes('Authenticator app added.'));
    assert.deepEqual(factorRows(done.html), [{ type: 'totp', id: factorId }]);
    assert.ok(done.html.includes('>Set up a new authenticator app</button>'));
    assert.ok(!done.html.includes(secret) && !shownSecret(done.html), 'the secret is not shown after enrollment');
    assert.ok(!done.html.includes(secret.match(/.{4}/g)!.join(' ')));

    const listed = await mfa().list(user.id);
    assert.deepEqual(listed.map((f) => [f.id, f.type]), [[factorId, 'totp']]);
    const enrolled = await events(user.id, 'user.mfa_enrolled');
    assert.equal(enrolled.length, 1);
    assert.deepEqual({ type: enrolled[0].actor_type, id: enrolled[0].actor_id }, { type: 'user', id: user.id }, 'the signed-in user acts');
    assert.ok(!JSON.stringify(enrolled).includes(secret));
    assert.ok(await ts.server.services.db('outbox').where({ recipient: user.email, template: 'mfa-enrolled' }).first(), 'the user is mailed');
  });

  it('a wrong code enrolls nothing and asks again without showing the secret; the current code then confirms it', async () => {
    const { user, browser, page } = await signedInConsole();
    const { html, secret, factorId } = await enroll(browser, page);

    const wrong = await post(browser, '/mfa/totp/confirm', { csrf: csrfOf(html), factor: factorId, code: await wrongCode(secret) });
    assert.equal(wrong.status, 400);
    const again = await wrong.text();
    assert.equal(alertOf(again), 'That code is not right. Enter the current code from your authenticator app.');
    assert.equal(confirmFactor(again), factorId, 'the same enrollment is asked for again');
    assert.match(again, /autocomplete="one-time-code"/);
    assert.ok(!again.includes(secret) && !again.includes('data:image/png'), 'the secret is not shown again');
    assert.ok(again.includes('>Set up an authenticator app</button>'), 'or start over');
    assert.deepEqual(await mfa().list(user.id), []);
    assert.equal((await events(user.id, 'user.mfa_enrolled')).length, 0);

    const malformed = await post(browser, '/mfa/totp/confirm', { csrf: csrfOf(html), factor: factorId, code: 'abc' });
    assert.equal(malformed.status, 400);
    assert.equal(alertOf(await malformed.text()), 'Enter the 6-digit code from your authenticator app.');

    const code = await codeAt(secret);
    const right = await post(browser, '/mfa/totp/confirm', { csrf: csrfOf(again), factor: factorId, code: `${code.slice(0, 3)} ${code.slice(3)}` });
    assert.equal(right.headers.get('location'), `${consoleUrl()}?done=mfa_totp`);
    assert.deepEqual((await mfa().list(user.id)).map((f) => f.id), [factorId]);
  });

  it('five wrong codes lock the enrollment: an error and a fresh "Set up"; an unknown enrollment is an error too', async () => {
    const { user, browser, page } = await signedInConsole();
    const { html, secret, factorId } = await enroll(browser, page);
    const bad = await wrongCode(secret);
    for (let i = 0; i < 4; i++) {
      const res = await post(browser, '/mfa/totp/confirm', { csrf: csrfOf(html), factor: factorId, code: bad });
      assert.equal(res.status, 400);
      await res.arrayBuffer();
    }
    const locked = await post(browser, '/mfa/totp/confirm', { csrf: csrfOf(html), factor: factorId, code: bad });
    assert.equal(locked.status, 429);
    const lockedHtml = await locked.text();
    assert.equal(alertOf(lockedHtml), 'Too many wrong codes. Please set up the app again.');
    assert.equal(confirmFactor(lockedHtml), undefined, 'no confirm form for a locked enrollment');
    assert.ok(lockedHtml.includes('>Set up an authenticator app</button>'));
    const stillLocked = await post(browser, '/mfa/totp/confirm', { csrf: csrfOf(html), factor: factorId, code: await codeAt(secret) });
    assert.equal(stillLocked.status, 429, 'the right code no longer confirms it');
    await stillLocked.arrayBuffer();
    assert.deepEqual(await mfa().list(user.id), []);

    const unknown = await post(browser, '/mfa/totp/confirm', { csrf: csrfOf(html), factor: randomUUID(), code: await codeAt(secret) });
    assert.equal(unknown.status, 404);
    assert.equal(alertOf(await unknown.text()), 'This setup has expired. Please set up the app again.');

    // A fresh enrollment starts afresh.
    const fresh = await enroll(browser, html);
    assert.notEqual(fresh.factorId, factorId);
    const ok = await post(browser, '/mfa/totp/confirm', { csrf: csrfOf(fresh.html), factor: fresh.factorId, code: await codeAt(fresh.secret) });
    assert.equal(ok.status, 303);
    assert.deepEqual((await mfa().list(user.id)).map((f) => f.id), [fresh.factorId]);
  });

  it('creates 10 recovery codes, shown once; they work at sign-in; new ones replace them', async () => {
    const { user, browser, page } = await signedInConsole();
    const res = await post(browser, '/mfa/recovery-codes', { csrf: csrfOf(page) });
    assert.equal(res.status, 200);
    const html = await res.text();
    const codes = recoveryCodesOf(html);
    assert.equal(codes.length, 10);
    for (const c of codes) assert.match(c, /^[a-z0-9]{5}-[a-z0-9]{5}$/);
    assert.ok(html.includes('They are shown only once'));
    assert.ok(html.includes('Any recovery codes you had before no longer work.'));
    assert.deepEqual(factorRows(html).map((r) => r.type), ['recovery']);
    assert.ok(html.includes('10 unused codes left'));
    assert.ok(await ts.server.services.db('outbox').where({ recipient: user.email, template: 'mfa-enrolled' }).first());

    const reopened = await open(browser);
    assert.equal(recoveryCodesOf(reopened.html).length, 0, 'the codes are not shown again');
    for (const c of codes) assert.ok(!reopened.html.includes(c));
    assert.ok(reopened.html.includes('>Create new recovery codes</button>'));

    assert.equal(await mfa().useRecoveryCode(user.id, codes[0]!), 'ok');
    assert.equal(await mfa().useRecoveryCode(user.id, codes[0]!), 'invalid', 'each code works once');
    assert.ok((await open(browser)).html.includes('9 unused codes left'));

    const renewed = await post(browser, '/mfa/recovery-codes', { csrf: csrfOf(reopened.html) });
    const newCodes = recoveryCodesOf(await renewed.text());
    assert.equal(newCodes.length, 10);
    assert.equal(await mfa().useRecoveryCode(user.id, codes[1]!), 'invalid', 'the old set stopped working');
    assert.equal(await mfa().useRecoveryCode(user.id, newCodes[0]!), 'ok');
  });

  it('removes a factor; the user is mailed, other sessions end; an unknown or another user\'s factor is a 404', async () => {
    const { user, browser, page } = await signedInConsole();
    const { html, secret, factorId } = await enroll(browser, page);
    await followRedirect(await post(browser, '/mfa/totp/confirm', { csrf: csrfOf(html), factor: factorId, code: await codeAt(secret) }), browser);
    const codes = await post(browser, '/mfa/recovery-codes', { csrf: csrfOf(html) });
    await codes.arrayBuffer();
    const recoveryId = (await mfa().list(user.id)).find((f) => f.type === 'recovery')!.id;

    // Another user's factor cannot be named.
    const stranger = await createUser(ts);
    await mfa().regenerateRecoveryCodes(stranger.id, undefined);
    const theirFactor = (await mfa().list(stranger.id))[0]!.id;
    const current = await open(browser);
    assert.deepEqual(factorRows(current.html).map((r) => r.type).sort(), ['recovery', 'totp']);
    const foreign = await post(browser, '/mfa/remove', { csrf: csrfOf(current.html), factor: theirFactor });
    assert.equal(foreign.status, 404);
    assert.equal(alertOf(await foreign.text()), 'That sign-in step no longer exists.');
    assert.equal((await mfa().list(stranger.id)).length, 1);

    const removed = await post(browser, '/mfa/remove', { csrf: csrfOf(current.html), factor: factorId });
    assert.equal(removed.headers.get('location'), `${consoleUrl()}?done=mfa_removed`);
    const after = await followRedirect(removed, browser);
    assert.equal(after.status, 200, 'the console keeps its sign-in');
    assert.ok(after.html.includes('The sign-in step was removed.'));
    assert.deepEqual(factorRows(after.html), [{ type: 'recovery', id: recoveryId }]);
    assert.deepEqual((await mfa().list(user.id)).map((f) => f.type), ['recovery']);
    assert.equal((await events(user.id, 'user.mfa_removed')).length, 1);
    assert.ok(await ts.server.services.db('outbox').where({ recipient: user.email, template: 'mfa-removed' }).first());

    // Recovery codes alone ask for no second step: a sign-in elsewhere, which the next removal ends.
    const config = await rpConfig(ts, await registerClient(ts, {}));
    const other = await signIn(ts, config, user, { browser: new HttpBrowser(), scope: 'openid email offline_access', prompt: 'consent' });
    assert.ok(other.tokens.refresh_token);
    const removedCodes = await post(browser, '/mfa/remove', { csrf: csrfOf(after.html), factor: recoveryId });
    assert.equal(removedCodes.status, 303);
    assert.deepEqual(await mfa().list(user.id), []);
    await rejectsWithOAuthError(oidc.refreshTokenGrant(config, other.tokens.refresh_token!), 'invalid_grant');
    assert.equal((await open(browser)).status, 200, 'the console itself stays signed in');

    const again = await post(browser, '/mfa/remove', { csrf: csrfOf(current.html), factor: factorId });
    assert.equal(again.status, 404);
    await again.arrayBuffer();
    const garbage = await post(browser, '/mfa/remove', { csrf: csrfOf(current.html), factor: 'not-an-id' });
    assert.equal(garbage.status, 404);
    await garbage.arrayBuffer();
  });

  it('refuses every two-step post without or with a wrong CSRF token (403) and changes nothing', async () => {
    const { user, browser, page } = await signedInConsole();
    const { html, secret, factorId } = await enroll(browser, page);
    for (const csrf of [undefined, 'x']) {
      const withToken = (fields: Record<string, string>) => (csrf === undefined ? fields : { ...fields, csrf });
      for (const [path, fields] of [
        ['/mfa/totp/enroll', {}],
        ['/mfa/totp/confirm', { factor: factorId, code: await codeAt(secret) }],
        ['/mfa/recovery-codes', {}],
        ['/mfa/remove', { factor: factorId }],
      ] as const) {
        const res = await post(browser, path, withToken(fields));
        assert.equal(res.status, 403, `${path} without a valid token`);
        const body = await res.text();
        assert.ok(body.includes('Your form expired.'));
        assert.ok(!body.includes(secret));
      }
    }
    assert.deepEqual(await factorIds(user.id), [factorId], 'no enrollment made or replaced, no codes made');
    assert.deepEqual(await mfa().list(user.id), []);
    assert.equal((await events(user.id, 'user.mfa_enrolled')).length, 0);
    // The pending enrollment is untouched: the right code still confirms it.
    const ok = await post(browser, '/mfa/totp/confirm', { csrf: csrfOf(html), factor: factorId, code: await codeAt(secret) });
    assert.equal(ok.status, 303);
  });

  it('a later sign-in to the console asks for the authenticator; the page is in Vietnamese for a Vietnamese user', async () => {
    const { user, browser, page } = await signedInConsole();
    const { html, secret, factorId } = await enroll(browser, page);
    await followRedirect(await post(browser, '/mfa/totp/confirm', { csrf: csrfOf(html), factor: factorId, code: await codeAt(secret) }), browser);
    await ts.server.services.db('users').where({ id: user.id }).update({ locale: 'vi' });

    const b = new HttpBrowser();
    const login = await open(b);
    const submitted = await submitLogin(b, login.url, login.html, user.email, user.password);
    const step = await b.follow(new URL(submitted.headers.get('location')!, login.url));
    assert.match(step.url.pathname, /^\/interaction\/[^/]+\/mfa$/, 'the password leads to the second step');
    const mfaPage = await step.res.text();
    // The confirmation spent its step: the app's next code is the one a person would type now.
    const res = await b.postForm(step.url, { csrf: formField(mfaPage, 'csrf')!, method: 'totp', code: await codeAt(secret, 1) });
    const shown = await followRedirect(res, b);
    assert.equal(shown.url.href, consoleUrl());
    assert.match(shown.html, /<h2 id="mfa-title">Xác minh hai bước<\/h2>/);
    assert.ok(shown.html.includes('Ứng dụng xác thực'));
    assert.deepEqual(factorRows(shown.html).map((r) => r.type), ['totp']);
    assert.ok(!shown.html.includes(secret));
  });
});
