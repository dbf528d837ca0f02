import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import * as oidc from 'openid-client';
import { HttpBrowser, formAction, formField } from '../helpers/browser-http.ts';
import { loginStatus } from '../helpers/login-page.ts';
import { createUser, registerClient, rejectsWithOAuthError, rpConfig, signIn, submitLogin } from '../helpers/rp.ts';
import { startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';
import { accountConsole } from '../helpers/account-console.ts';

const FIREFOX_LINUX = 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0';
const CHROME_WINDOWS =
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36';

/** A browser that announces a user agent, as the sessions list shows it. */
class Browser extends HttpBrowser {
  readonly userAgent: string;
  constructor(userAgent: string) {
    super();
    this.userAgent = userAgent;
  }
  override request(url: string | URL, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    headers.set('user-agent', this.userAgent);
    return super.request(url, { ...init, headers });
  }
}

/** Rows of the sessions table: the public session id, the device label and the "this device" marker. */
function sessionRows(html: string) {
  return html
    .split('<tr class="session')
    .slice(1)
    .map((row) => ({
      id: /name="session" value="([^"]+)"/.exec(row)?.[1],
      device: /<span class="device"[^>]*>([^<]*)<\/span>/.exec(row)?.[1],
      current: row.startsWith(' current'),
      ip: /<td>([^<]*)<\/td>/.exec(row)?.[1],
    }));
}

describe('account console (/account)', () => {
  let ts: TestServer;

  before(async () => {
    // Each test signs in a browser of its own from 127.0.0.1: the per-IP limit of anonymous visits
    // is under test in its own describe below, not here.
    ts = await startTestServer({ AUTH_API_RATE_LIMIT_PER_IP: '10000' });
  });
  after(() => stopAndDestroy(ts));

  const { consoleUrl, open, post, followRedirect, isLoginPage, consoleSignIn } = accountConsole(() => ts);
  const csrfOf = (html: string) => formField(html, 'csrf')!;
  const findUser = (id: string) => ts.server.services.repos.users.findById(id);

  /** A new user signed in to the console in a Firefox browser of their own. */
  async function signedInConsole() {
    const user = await createUser(ts);
    const browser = new Browser(FIREFOX_LINUX);
    const page = await consoleSignIn(browser, user);
    return { user, browser, page };
  }

  /** The same user signed in to another relying party from another device, with a refresh token. */
  async function signInElsewhere(user: { email: string; password: string }) {
    const config = await rpConfig(ts, await registerClient(ts, {}));
    const signedIn = await signIn(ts, config, user, {
      browser: new Browser(CHROME_WINDOWS),
      scope: 'openid email offline_access',
      prompt: 'consent',
    });
    return { ...signedIn, config };
  }

  it('signs in through the provider like a relying party and shows the profile', async () => {
    const user = await createUser(ts);
    const browser = new Browser(FIREFOX_LINUX);
    // A fresh browser is sent to the provider's authorization endpoint (code + PKCE S256).
    const first = await browser.request(consoleUrl());
    assert.equal(first.status, 303);
    assert.equal(first.headers.get('cache-control'), 'no-store');
    const authorize = new URL(first.headers.get('location')!);
    assert.equal(`${authorize.origin}${authorize.pathname}`, `${ts.issuer}/auth`);
    assert.equal(authorize.searchParams.get('client_id'), 'account-console');
    assert.equal(authorize.searchParams.get('redirect_uri'), `${ts.issuer}/account/callback`);
    assert.equal(authorize.searchParams.get('code_challenge_method'), 'S256');
    assert.ok(authorize.searchParams.get('state') && authorize.searchParams.get('nonce'));
    const signinCookie = first.headers.getSetCookie().find((c) => c.startsWith('idp_account_signin='));
    assert.match(signinCookie ?? '', /path=\/(;|$)/i);
    assert.match(signinCookie ?? '', /httponly/i);
    assert.match(signinCookie ?? '', /samesite=lax/i);
    // The checks travel sealed: neither the state nor anything readable is in the cookie.
    const sealed = browser.cookies.get(new URL(ts.issuer).host)!.get('idp_account_signin')!;
    assert.match(sealed, /^v1\./);
    assert.ok(!sealed.includes(authorize.searchParams.get('state')!));

    const login = await browser.follow(authorize);
    const loginHtml = await login.res.text();
    assert.ok(isLoginPage({ url: login.url, html: loginHtml }), 'the provider asks for the password');
    const submitted = await submitLogin(browser, login.url, loginHtml, user.email, user.password);
    assert.equal(submitted.status, 303);

    // The provider redirects back to the callback (no consent screen: a first-party client).
    const toCallback = await browser.follow(new URL(submitted.headers.get('location')!, login.url), {}, (u) =>
      u.pathname === '/account/callback');
    assert.equal(toCallback.url.pathname, '/account/callback');
    const callback = await browser.request(toCallback.url);
    assert.equal(callback.status, 303);
    assert.equal(callback.headers.get('location'), consoleUrl());
    const sessionCookie = callback.headers.getSetCookie().find((c) => c.startsWith('idp_account='));
    assert.ok(sessionCookie, 'a console session cookie');
    assert.match(sessionCookie!, /path=\/(;|$)/i);
    assert.match(sessionCookie!, /httponly/i);
    assert.match(sessionCookie!, /samesite=lax/i);
    assert.doesNotMatch(sessionCookie!, /secure/i, 'not Secure over plain http');

    // The store holds the tokens sealed, under the MAC of the cookie's id, for the token's life.
    const cookieId = browser.cookies.get(new URL(ts.issuer).host)!.get('idp_account')!;
    const { box, ephemeral } = ts.server.services;
    const stored = await ephemeral.get(`account-console:${box.mac('account-console:session', cookieId).toString('base64url')}`);
    assert.match(stored ?? '', /^v1\./);
    // A JWT is two base64url JSON segments joined by a dot, each starting `eyJ` (`{"`); three
    // letters alone turn up by chance in the ciphertext now and then (a CI run failed on that).
    assert.doesNotMatch(stored!, /eyJ[\w-]+\.eyJ/, 'no readable ID token');
    assert.equal(await ephemeral.get(`account-console:${cookieId}`), undefined);

    const shown = await open(browser);
    assert.equal(shown.status, 200);
    assert.equal(shown.url.href, consoleUrl());
    const page = shown.html;
    assert.ok(page.includes(user.email));
    assert.equal(formField(page, 'given_name'), 'Ada');
    assert.equal(formField(page, 'family_name'), 'Lovelace');
    assert.ok(page.includes('autocomplete="current-password"') && page.includes('autocomplete="new-password"'));

    // The callback is one-time: replaying it finds no pending sign-in.
    const replay = await browser.request(toCallback.url);
    assert.equal(replay.status, 400);
    assert.ok((await replay.text()).includes('The sign-in took too long'));
  });

  it('updates the profile; the chosen language takes over the console', async () => {
    const { user, browser, page } = await signedInConsole();
    const saved = await post(browser, '/profile', {
      csrf: csrfOf(page),
      given_name: '  Augusta Ada ',
      family_name: 'King',
      locale: 'vi',
      // The legacy name ICU lists: accepted as an alias and stored under the current IANA name.
      timezone: 'Asia/Saigon',
    });
    assert.equal(saved.headers.get('location'), `${consoleUrl()}?done=profile`);
    const after = await followRedirect(saved, browser);
    assert.equal(after.status, 200);
    assert.ok(after.html.includes('Hồ sơ của bạn đã được lưu.'), 'flash message, in Vietnamese');
    assert.equal(formField(after.html, 'given_name'), 'Augusta Ada');
    assert.ok(after.html.includes('<option selected>Asia/Ho_Chi_Minh</option>'));
    for (const current of ['Asia/Kolkata', 'Europe/Kyiv']) assert.ok(after.html.includes(`<option>${current}</option>`), current);
    for (const legacy of ['Asia/Saigon', 'Asia/Calcutta', 'Europe/Kiev']) assert.ok(!after.html.includes(`>${legacy}<`), `${legacy} is not offered`);
    const row = await findUser(user.id);
    assert.equal(row!.given_name, 'Augusta Ada');
    assert.equal(row!.family_name, 'King');
    assert.equal(row!.locale, 'vi');
    assert.equal(row!.timezone, 'Asia/Ho_Chi_Minh');
  });

  it('back to no language preference, the console follows the browser (English) again', async () => {
    const { user, browser, page } = await signedInConsole();
    await ts.server.services.db('users').where({ id: user.id }).update({ locale: 'vi' });
    const reset = await post(browser, '/profile', { csrf: csrfOf(page), given_name: 'Ada', family_name: 'Lovelace', locale: '', timezone: 'UTC' });
    const after = (await followRedirect(reset, browser)).html;
    assert.ok(after.includes('Your profile was saved.'));
    const row = await findUser(user.id);
    assert.equal(row!.locale, null);
    assert.equal(row!.timezone, 'UTC');
  });

  it('refuses bad profile input with a 400 page and changes nothing', async () => {
    const { user, browser, page } = await signedInConsole();
    const before = await findUser(user.id);
    for (const bad of [
      { timezone: 'Mars/Olympus_Mons' },
      { locale: 'fr' },
      { given_name: 'A\u0001B' },
      { family_name: 'x'.repeat(201) },
    ]) {
      const res = await post(browser, '/profile', { csrf: csrfOf(page), given_name: 'Mallory', family_name: 'King', locale: 'en', timezone: 'UTC', ...bad });
      assert.equal(res.status, 400, JSON.stringify(bad));
      const html = await res.text();
      assert.ok(html.includes('class="field-error"'), 'the error is shown in the form');
      assert.ok(html.includes('aria-invalid="true"'));
    }
    // A field sent twice is refused too, not a 500.
    const twice = await browser.request(`${consoleUrl()}/profile`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `csrf=${encodeURIComponent(csrfOf(page))}&given_name=a&given_name=b`,
    });
    assert.equal(twice.status, 400);
    const row = await findUser(user.id);
    assert.equal(row!.given_name, before!.given_name, 'nothing changed by refused input');
    assert.equal(row!.family_name, before!.family_name);
    assert.equal(row!.locale, before!.locale);
    assert.equal(row!.timezone, before!.timezone);
  });

  it('refuses a password change without the right current password, with a weak or without a new one', async () => {
    const { user, browser, page } = await signedInConsole();
    const hashBefore = (await findUser(user.id))!.password_hash;

    const wrong = await post(browser, '/password', { csrf: csrfOf(page), current_password: 'not my password', new_password: 'Plinth quasar marmalade 42' });
    assert.equal(wrong.status, 400);
    assert.ok((await wrong.text()).includes('The current password is incorrect.'));

    const weak = await post(browser, '/password', { csrf: csrfOf(page), current_password: user.password, new_password: 'abc' });
    assert.equal(weak.status, 400);
    const weakHtml = await weak.text();
    assert.ok(weakHtml.includes('This new password cannot be used:'));
    assert.ok(weakHtml.includes('It is too short.'));

    const missing = await post(browser, '/password', { csrf: csrfOf(page), current_password: user.password });
    assert.equal(missing.status, 400);
    assert.equal((await findUser(user.id))!.password_hash, hashBefore, 'nothing changed');
  });

  it('changes the password: the console keeps its sign-in, a mail is queued, only the new password signs in', async () => {
    const { user, browser, page } = await signedInConsole();
    const newPassword = 'Plinth quasar marmalade 42';
    const changed = await post(browser, '/password', { csrf: csrfOf(page), current_password: user.password, new_password: newPassword });
    assert.equal(changed.headers.get('location'), `${consoleUrl()}?done=password`);
    const after = await followRedirect(changed, browser);
    assert.equal(after.status, 200, 'the console keeps its sign-in');
    assert.ok(after.html.includes('Your password was changed.'));
    const mail = await ts.server.services.db('outbox').where({ recipient: user.email, template: 'password-changed' }).first();
    assert.ok(mail, 'the password-changed mail is queued');

    const client = await registerClient(ts, {}, true);
    assert.equal(await loginStatus(ts, client.clientId, user.email, user.password), 401, 'the old password no longer signs in');
    const ok = await signIn(ts, await rpConfig(ts, client), { email: user.email, password: newPassword }, { browser: new HttpBrowser() });
    assert.equal(ok.tokens.claims()!.sub, user.id);
  });

  it('lists the sessions with their devices and revokes another one', async () => {
    const { user, browser } = await signedInConsole();
    const other = await signInElsewhere(user);
    assert.ok(other.tokens.refresh_token);

    const page = (await open(browser)).html;
    const rows = sessionRows(page);
    assert.equal(rows.length, 2, 'this browser and the other one');
    const mine = rows.find((r) => r.current);
    const theirs = rows.find((r) => !r.current);
    assert.equal(mine?.device, 'Firefox on Linux');
    assert.equal(theirs?.device, 'Chrome on Windows');
    assert.equal(theirs?.ip, '127.0.0.1');
    assert.ok(page.includes('This device'));
    assert.ok(page.includes(`title="${CHROME_WINDOWS}"`), 'the full user agent is at hand');

    const revoked = await post(browser, '/sessions/revoke', { csrf: csrfOf(page), session: theirs!.id! });
    assert.equal(revoked.headers.get('location'), `${consoleUrl()}?done=revoked`);
    await rejectsWithOAuthError(oidc.refreshTokenGrant(other.config, other.tokens.refresh_token!), 'invalid_grant');

    const after = await followRedirect(revoked, browser);
    assert.equal(after.status, 200, 'the console still works');
    assert.ok(after.html.includes('That session was signed out.'));
    assert.deepEqual(sessionRows(after.html).map((r) => r.current), [true]);

    // A session that is not (or no longer) the user's: a 404 page, not a 500.
    const gone = await post(browser, '/sessions/revoke', { csrf: csrfOf(page), session: theirs!.id! });
    assert.equal(gone.status, 404);
    assert.ok((await gone.text()).includes('That session has already ended.'));
  });

  it('refuses a post without or with a wrong CSRF token (403, no change)', async () => {
    const { user, browser, page } = await signedInConsole();
    const before = await findUser(user.id);
    const withoutToken = await post(browser, '/profile', { given_name: 'Mallory' });
    assert.equal(withoutToken.status, 403);
    const wrongToken = await post(browser, '/profile', { csrf: randomBytes(32).toString('base64url'), given_name: 'Mallory' });
    assert.equal(wrongToken.status, 403);
    assert.ok((await wrongToken.text()).includes('Your form expired.'));
    const wrongRevokeAll = await post(browser, '/sessions/revoke-all', { csrf: 'x' });
    assert.equal(wrongRevokeAll.status, 403);
    const wrongLogout = await post(browser, '/logout', { csrf: 'x' });
    assert.equal(wrongLogout.status, 403);
    assert.equal((await findUser(user.id))!.given_name, before!.given_name);
    assert.equal((await open(browser)).status, 200, 'still signed in');
    assert.equal((await ts.server.services.repos.payloads.listSessions(user.id)).length, 1, 'the session is still there');

    // The token of one console session does not work for another.
    const stranger = new Browser(CHROME_WINDOWS);
    const res = await post(stranger, '/profile', { csrf: csrfOf(page), given_name: 'Mallory' });
    assert.equal(res.status, 303, 'no console session: off to sign in');
    assert.equal(res.headers.get('location'), consoleUrl());
    assert.equal((await findUser(user.id))!.given_name, before!.given_name);
  });

  it('signing out without a console session still reaches the provider, which asks to confirm', async () => {
    const stranger = new Browser(CHROME_WINDOWS);
    const logout = await post(stranger, '/logout', {});
    assert.equal(logout.status, 303);
    const endSession = new URL(logout.headers.get('location')!);
    assert.equal(endSession.pathname, '/session/end');
    assert.equal(endSession.searchParams.get('client_id'), 'account-console');
    assert.equal(endSession.searchParams.get('id_token_hint'), null);
    assert.equal((await stranger.request(endSession)).status, 200);
  });

  it('does not take a console cookie without its stored session', async () => {
    const { browser } = await signedInConsole();
    for (const value of [randomBytes(32).toString('base64url'), 'garbage', '%00']) {
      const forged = new Browser(CHROME_WINDOWS);
      forged.cookies.set(new URL(ts.issuer).host, new Map([['idp_account', value]]));
      const res = await forged.request(consoleUrl());
      assert.equal(res.status, 303, `cookie ${value}`);
      assert.ok(res.headers.get('location')!.startsWith(`${ts.issuer}/auth?`), 'back to sign-in');
      const posted = await post(forged, '/sessions/revoke-all', { csrf: 'x' });
      assert.equal(posted.status, 303);
    }
    assert.equal((await open(browser)).status, 200, 'the real session is untouched');
  });

  it('answers a callback without a pending sign-in, or a cancelled one, with a 400 page', async () => {
    const stray = await new HttpBrowser().request(`${ts.issuer}/account/callback?code=abc&state=def`);
    assert.equal(stray.status, 400);
    // A sign-in cookie not sealed by this server (forged, or another's garbage) is no sign-in either.
    for (const value of ['v1.AAAA.BBBB.CCCC', 'garbage', `v1.${'A'.repeat(2000)}.B.C`]) {
      const forged = new HttpBrowser();
      forged.cookies.set(new URL(ts.issuer).host, new Map([['idp_account_signin', value]]));
      assert.equal((await forged.request(`${ts.issuer}/account/callback?code=abc&state=def`)).status, 400, value.slice(0, 20));
    }

    // Cancel on the login page: the provider answers access_denied to the callback.
    const b = new HttpBrowser();
    const login = await open(b);
    assert.ok(isLoginPage(login));
    const abort = await b.postForm(new URL(formAction(login.html, '/abort')!, login.url), { csrf: formField(login.html, 'csrf')! });
    const done = await followRedirect(abort, b);
    assert.equal(done.status, 400);
    assert.equal(done.url.pathname, '/account/callback');
    assert.ok(done.html.includes('Signing in did not complete.'));
  });

  it('signs out of the console through the provider (RP-initiated logout)', async () => {
    const { browser, page } = await signedInConsole();
    const res = await post(browser, '/logout', { csrf: csrfOf(page) });
    assert.equal(res.status, 303);
    const endSession = new URL(res.headers.get('location')!);
    assert.equal(`${endSession.origin}${endSession.pathname}`, `${ts.issuer}/session/end`);
    assert.ok(endSession.searchParams.get('id_token_hint'));
    assert.equal(endSession.searchParams.get('post_logout_redirect_uri'), `${ts.issuer}/account/signed-out`);
    const confirmPage = await browser.follow(endSession);
    const html = await confirmPage.res.text();
    const confirm = await browser.postForm(new URL(formAction(html, '/session/end')!, ts.issuer), {
      xsrf: formField(html, 'xsrf')!,
      logout: 'yes',
    });
    const signedOut = await followRedirect(confirm, browser);
    assert.equal(signedOut.url.href, `${ts.issuer}/account/signed-out`);
    assert.ok(signedOut.html.includes('You are signed out'));
    assert.ok(signedOut.html.includes(`href="${consoleUrl()}"`));

    const again = await open(browser);
    assert.ok(isLoginPage(again), 'the provider session ended too: the password is asked again');
  });

  it('signs out everywhere: every session ends, the console session too', async () => {
    const { user, browser, page } = await signedInConsole();
    const other = await signInElsewhere(user);

    const res = await post(browser, '/sessions/revoke-all', { csrf: csrfOf(page) });
    assert.equal(res.headers.get('location'), `${ts.issuer}/account/signed-out`);
    assert.ok(res.headers.getSetCookie().some((c) => /^idp_account=;/.test(c)), 'the console cookie is cleared');
    await rejectsWithOAuthError(oidc.refreshTokenGrant(other.config, other.tokens.refresh_token!), 'invalid_grant');
    assert.deepEqual(await ts.server.services.repos.payloads.listSessions(user.id), []);

    const again = await open(browser);
    assert.ok(isLoginPage(again), 'next /account goes back to the login page');
  });

  it('revoking the current session from the list ends the console session', async () => {
    const { browser, page } = await signedInConsole();
    const mine = sessionRows(page).find((r) => r.current)!;
    const res = await post(browser, '/sessions/revoke', { csrf: csrfOf(page), session: mine.id! });
    assert.equal(res.headers.get('location'), `${ts.issuer}/account/signed-out`);
    assert.ok(isLoginPage(await open(browser)));
  });

  it('ends console access at once when the sessions end elsewhere', async () => {
    const { user, browser } = await signedInConsole();
    await ts.server.services.selfService.logoutAll(user.id);
    const res = await browser.request(consoleUrl());
    assert.equal(res.status, 303);
    assert.ok(res.headers.get('location')!.startsWith(`${ts.issuer}/auth?`), 'back to sign-in');
    assert.ok(res.headers.getSetCookie().some((c) => /^idp_account=;/.test(c)), 'the dead console session is dropped');
  });

  it('ignores unknown flash flags', async () => {
    const { browser } = await signedInConsole();
    for (const flag of ['constructor', '__proto__', 'nope']) {
      const res = await browser.request(`${consoleUrl()}?done=${flag}`);
      assert.equal(res.status, 200, flag);
      assert.doesNotMatch(await res.text(), /role="status"/);
    }
  });

  it('lets go of a user suspended while signed in', async () => {
    const { user, browser } = await signedInConsole();
    await ts.server.services.db('users').where({ id: user.id }).update({ status: 'suspended' });
    const res = await browser.request(consoleUrl());
    assert.equal(res.status, 403);
    assert.ok((await res.text()).includes('This account cannot sign in.'));
    assert.ok(res.headers.getSetCookie().some((c) => /^idp_account=;/.test(c)));
  });
});

describe('account console behind a proxy', () => {
  let ts: TestServer | undefined;
  after(() => stopAndDestroy(ts));

  it('makes its back-channel calls to the internal origin, not to the public ISSUER', async () => {
    // The public name does not resolve here: only the browser (mapped below) can reach it.
    ts = await startTestServer((bound) => ({ ISSUER: `http://idp.invalid:${bound}` }));
    const port = ts.port;
    const publicIssuer = `http://idp.invalid:${port}`;
    const user = await createUser(ts);
    const internal = `127.0.0.1:${port}`;

    /** A browser whose DNS maps the public name onto the server. */
    class ProxiedBrowser extends HttpBrowser {
      override request(url: string | URL, init: RequestInit = {}) {
        const target = new URL(url);
        if (target.host === `idp.invalid:${port}`) target.host = internal;
        return super.request(target, init);
      }
    }
    const b = new ProxiedBrowser();
    const login = await b.follow(`${publicIssuer}/account`);
    assert.equal(login.url.host, `idp.invalid:${port}`, 'the browser is sent to the public name');
    const html = await login.res.text();
    const submitted = await submitLogin(b, login.url, html, user.email, user.password);
    const step = await b.follow(new URL(submitted.headers.get('location')!, login.url));
    assert.equal(step.url.href, `${publicIssuer}/account`);
    assert.equal(step.res.status, 200);
    assert.ok((await step.res.text()).includes(user.email));
  });
});

describe('account console rate limit', () => {
  let ts: TestServer;
  before(async () => {
    // TRUST_PROXY: each test comes from an address of its own (X-Forwarded-For), so budgets do not mix.
    ts = await startTestServer({ ME_API_RATE_LIMIT_PER_USER: '3', AUTH_API_RATE_LIMIT_PER_IP: '5', TRUST_PROXY: 'true' });
  });
  after(() => stopAndDestroy(ts));

  it('anonymous visits store nothing (the sign-in state is sealed in its cookie) and are limited per IP', async () => {
    const { ephemeral, db } = ts.server.services;
    // Watch every write to the shared store (the limiter keeps its own counters apart).
    const writes: string[] = [];
    const store = ephemeral as unknown as Record<string, (...args: unknown[]) => unknown>;
    const originals = new Map<string, (...args: unknown[]) => unknown>();
    for (const name of ['set', 'setIfAbsent', 'take', 'incr', 'compareAndSwap', 'del']) {
      const original = store[name]!;
      originals.set(name, original);
      store[name] = (...args: unknown[]) => {
        writes.push(`${name} ${String(args[0])}`);
        return original.apply(ephemeral, args);
      };
    }
    const payloads = async () => Number((await db('oidc_payloads').count({ n: '*' }))[0]!.n);
    const rowsBefore = await payloads();
    const statuses: number[] = [];
    try {
      for (let i = 0; i < 7; i++) {
        const res = await fetch(`${ts.issuer}/account`, { redirect: 'manual', headers: { 'x-forwarded-for': '203.0.113.77', accept: 'text/html' } });
        statuses.push(res.status);
        if (res.status === 429) assert.ok(Number(res.headers.get('retry-after')) > 0, 'Retry-After');
        await res.arrayBuffer();
      }
    } finally {
      for (const [name, original] of originals) store[name] = original;
    }
    assert.deepEqual(writes, [], 'nothing written to the ephemeral store');
    assert.equal(await payloads(), rowsBefore, 'nothing written to the database');
    assert.deepEqual(statuses, [303, 303, 303, 303, 303, 429, 429], 'AUTH_API_RATE_LIMIT_PER_IP=5 visits a minute, then 429');
    // Another address has a budget of its own.
    const other = await fetch(`${ts.issuer}/account`, { redirect: 'manual', headers: { 'x-forwarded-for': '203.0.113.78' } });
    assert.equal(other.status, 303);
  });

  it('limits form posts per user (ME_API_RATE_LIMIT_PER_USER): past it a 429 page and no change', async () => {
    const user = await createUser(ts);
    const b = new HttpBrowser();
    const login = await b.follow(`${ts.issuer}/account`);
    const submitted = await submitLogin(b, login.url, await login.res.text(), user.email, user.password);
    const consolePage = await b.follow(new URL(submitted.headers.get('location')!, login.url));
    const csrf = formField(await consolePage.res.text(), 'csrf')!;
    for (let i = 1; i <= 3; i++) {
      const res = await b.postForm(`${ts.issuer}/account/profile`, { csrf, given_name: `Name ${i}` });
      assert.equal(res.status, 303, `post ${i}`);
      await res.arrayBuffer();
    }
    const limited = await b.postForm(`${ts.issuer}/account/profile`, { csrf, given_name: 'Name 4' });
    assert.equal(limited.status, 429);
    await limited.arrayBuffer();
    assert.equal((await ts.server.services.repos.users.findById(user.id))!.given_name, 'Name 3');
  });
});
