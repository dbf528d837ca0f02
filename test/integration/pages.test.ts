import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { en } from '../../src/i18n/en.ts';
import { vi } from '../../src/i18n/vi.ts';
import { HttpBrowser } from '../helpers/browser-http.ts';
import { alertText, authorizationUrl, inputTag, local, openLoginPage, postLogin } from '../helpers/login-page.ts';
import { createUser, registerClient, REDIRECT_URI } from '../helpers/rp.ts';
import { startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';

const escapeHtml = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');

function assertSecurityHeaders(res: Response, what: string) {
  const csp = res.headers.get('content-security-policy');
  assert.ok(csp, `${what}: Content-Security-Policy expected`);
  assert.match(csp, /(^|;)\s*frame-ancestors 'none'\s*(;|$)/, `${what}: frame-ancestors 'none' expected in ${csp}`);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/, `${what}: no unsafe script sources`);
  assert.equal(res.headers.get('x-content-type-options'), 'nosniff', `${what}: nosniff`);
  assert.equal(res.headers.get('referrer-policy'), 'no-referrer', `${what}: Referrer-Policy`);
}

/**
 * Runs the whole browser flow (authorize, sign in, resume) with `headers` on every request and
 * returns every Set-Cookie line seen, plus the responses' HSTS headers.
 */
async function cookiesOfSignIn(ts: TestServer, clientId: string, headers: Record<string, string>) {
  const user = await createUser(ts);
  const page = await openLoginPage(ts, clientId, { headers });
  const setCookies = [...page.setCookies];
  const login = await postLogin(page, { email: user.email, password: user.password });
  assert.equal(login.status, 303, `sign-in should redirect, got ${login.status} ${login.alert}`);
  setCookies.push(...login.res.headers.getSetCookie());
  const hsts = [login.res.headers.get('strict-transport-security')];
  let next = local(ts, login.location!, page.action);
  for (let i = 0; i < 5; i++) {
    const res = await page.browser.request(next, { headers });
    await res.arrayBuffer();
    setCookies.push(...res.headers.getSetCookie());
    hsts.push(res.headers.get('strict-transport-security'));
    const location = res.headers.get('location');
    assert.ok(location, `redirect expected from ${next.pathname}, got ${res.status}`);
    if (location.startsWith(REDIRECT_URI)) {
      assert.ok(new URL(location).searchParams.get('code'), 'the flow ends with a code');
      return { setCookies, hsts };
    }
    next = local(ts, location, next);
  }
  assert.fail('the flow did not reach the redirect_uri');
}

const cookieName = (line: string) => line.slice(0, line.indexOf('='));
const attributes = (line: string) =>
  line
    .split(';')
    .slice(1)
    .map((a) => a.trim().toLowerCase());

describe('pages', () => {
  let ts: TestServer;
  // Behind a TLS-terminating proxy: https issuer, X-Forwarded-Proto trusted.
  let proxied: TestServer;
  let clientId: string;
  let proxiedClientId: string;

  before(async () => {
    [ts, proxied] = await Promise.all([
      startTestServer(),
      startTestServer({ ISSUER: 'https://idp.example.test', TRUST_PROXY: 'true' }),
    ]);
    clientId = (await registerClient(ts, { token_endpoint_auth_method: 'none', client_name: 'Plain App' }, true)).clientId;
    proxiedClientId = (await registerClient(proxied, { token_endpoint_auth_method: 'none' }, true)).clientId;
  });
  after(() => Promise.all([stopAndDestroy(ts), stopAndDestroy(proxied)]));

  describe('language', () => {
    it('renders Vietnamese with ui_locales=vi, including the error message after a failed sign-in', async () => {
      const page = await openLoginPage(ts, clientId, { params: { ui_locales: 'vi' } });
      assert.match(page.html, /<html lang="vi">/);
      assert.ok(page.html.includes(`<label for="password">${vi['login.password']}</label>`), 'Vietnamese password label');
      assert.ok(page.html.includes(vi['login.subtitle'].replace('{client}', 'Plain App')));
      assert.ok(!page.html.includes(en['login.password']), 'no English label');
      const failed = await postLogin(page, { email: 'nobody@example.test', password: 'wrong' });
      assert.equal(failed.alert, vi['error.invalid_credentials']);
    });

    it('renders Vietnamese from Accept-Language: vi', async () => {
      for (const acceptLanguage of ['vi', 'vi-VN,vi;q=0.9', 'fr;q=0.9, vi;q=0.8, de;q=0.7']) {
        const page = await openLoginPage(ts, clientId, { headers: { 'accept-language': acceptLanguage } });
        assert.match(page.html, /<html lang="vi">/, `lang=vi for Accept-Language: ${acceptLanguage}`);
        assert.ok(page.html.includes(vi['login.password']), `Vietnamese for Accept-Language: ${acceptLanguage}`);
      }
      // Pages of our own outside an interaction too: the 404 page.
      const notFound = await fetch(new URL('/no-such-page', ts.issuer), { headers: { 'accept-language': 'vi', accept: 'text/html' } });
      assert.equal(notFound.status, 404);
      assert.equal(notFound.headers.get('content-language'), 'vi');
      assert.ok((await notFound.text()).includes(`<title>${vi['notfound.title']}</title>`));
    });

    it('renders English otherwise, and ui_locales wins over Accept-Language', async () => {
      const cases: Array<{ params?: Record<string, string>; headers?: Record<string, string> }> = [
        {},
        { headers: { 'accept-language': 'fr-FR, de;q=0.5' } },
        { params: { ui_locales: 'xx' } },
        { params: { ui_locales: 'en' }, headers: { 'accept-language': 'vi' } },
      ];
      for (const c of cases) {
        const page = await openLoginPage(ts, clientId, c);
        const label = JSON.stringify(c);
        assert.match(page.html, /<html lang="en">/, label);
        assert.ok(page.html.includes(`<label for="password">${en['login.password']}</label>`), label);
        assert.ok(!page.html.includes(vi['login.password']), label);
      }
      const viOverEn = await openLoginPage(ts, clientId, { params: { ui_locales: 'vi' }, headers: { 'accept-language': 'en' } });
      assert.match(viOverEn.html, /<html lang="vi">/);
    });
  });

  describe('security headers', () => {
    it('sends CSP frame-ancestors none, nosniff and Referrer-Policy on pages, redirects, errors and APIs', async () => {
      const user = await createUser(ts);
      const browser = new HttpBrowser();
      const authorize = await browser.request(authorizationUrl(ts, clientId));
      assertSecurityHeaders(authorize, 'authorization redirect');
      const loginPage = await browser.request(new URL(authorize.headers.get('location')!, ts.issuer));
      assertSecurityHeaders(loginPage, 'login page');
      const page = await openLoginPage(ts, clientId);
      assertSecurityHeaders((await postLogin(page, { email: user.email, password: 'wrong' })).res, 'failed sign-in');
      assertSecurityHeaders((await postLogin(page, { csrf: 'bad', email: user.email, password: 'x' })).res, 'CSRF error page');
      assertSecurityHeaders((await postLogin(page, { email: user.email, password: user.password })).res, 'sign-in redirect');

      const providerError = await fetch(authorizationUrl(ts, 'no-such-client'), { headers: { accept: 'text/html' } });
      assert.equal(providerError.status, 400);
      assertSecurityHeaders(providerError, 'provider error page');
      const notFound = await fetch(new URL('/nope', ts.issuer), { headers: { accept: 'text/html' } });
      assert.equal(notFound.status, 404);
      assertSecurityHeaders(notFound, '404 page');
      // Refused by the plain request checks (a NUL, a repeated parameter): the headers are set before them.
      for (const path of ['/nope?q=%00', '/healthz?a=1&a=2']) {
        const refused = await fetch(new URL(path, ts.issuer), { headers: { accept: 'text/html' } });
        assert.equal(refused.status, 400, path);
        assertSecurityHeaders(refused, path);
      }
      for (const path of ['/.well-known/openid-configuration', '/jwks', '/healthz', '/assets/app.css']) {
        const res = await fetch(new URL(path, ts.issuer));
        assert.equal(res.status, 200, path);
        assertSecurityHeaders(res, path);
      }
    });
  });

  describe('cookies', () => {
    /**
     * The provider's interaction and session cookies: all present, HttpOnly, SameSite=Lax, Secure as
     * expected. With an https issuer (`secure`) they carry the prefixes browsers enforce: __Host- for
     * the session (Path=/, no Domain), __Secure- for the interaction cookies (their Path is the interaction's).
     */
    function assertSessionCookies(setCookies: string[], secure: boolean) {
      const names = new Set(setCookies.map(cookieName));
      const expected = secure ? ['__Secure-interaction', '__Secure-interaction_resume', '__Host-session'] : ['_interaction', '_interaction_resume', '_session'];
      for (const name of expected) assert.ok(names.has(name), `${name} cookie expected in ${[...names].join(', ')}`);
      for (const line of setCookies) {
        const attrs = attributes(line);
        assert.ok(attrs.includes('httponly'), `HttpOnly: ${line}`);
        assert.ok(attrs.includes('samesite=lax'), `SameSite=Lax: ${line}`);
        assert.equal(attrs.includes('secure'), secure, `${secure ? '' : 'not '}Secure: ${line}`);
        if (cookieName(line).startsWith('__Host-')) {
          assert.ok(attrs.includes('path=/') && !attrs.some((a) => a.startsWith('domain=')), `__Host-: Path=/ and no Domain: ${line}`);
        }
      }
    }

    it('sets the interaction and session cookies HttpOnly and SameSite=Lax (not Secure over plain HTTP)', async () => {
      // X-Forwarded-Proto is not trusted without TRUST_PROXY: still plain HTTP.
      const { setCookies, hsts } = await cookiesOfSignIn(ts, clientId, { 'x-forwarded-proto': 'https' });
      assertSessionCookies(setCookies, false);
      assert.deepEqual(hsts.filter(Boolean), [], 'no HSTS over plain HTTP');
    });

    it('marks them Secure behind HTTPS (TRUST_PROXY=true, X-Forwarded-Proto: https) and sends HSTS', async () => {
      const { setCookies, hsts } = await cookiesOfSignIn(proxied, proxiedClientId, { 'x-forwarded-proto': 'https' });
      assertSessionCookies(setCookies, true);
      assert.ok(hsts.length > 0 && hsts.every((h) => h?.startsWith('max-age=')), 'HSTS behind https');
    });

    it('with an https ISSUER, cookies are Secure and HSTS is sent even when the proxy says nothing of https', async () => {
      const { setCookies, hsts } = await cookiesOfSignIn(proxied, proxiedClientId, {});
      assertSessionCookies(setCookies, true);
      assert.ok(hsts.length > 0 && hsts.every((h) => h?.startsWith('max-age=')), 'HSTS on every answer');
      for (const path of ['/healthz', '/nope', '/api/v1/me']) {
        const res = await fetch(new URL(path, `http://127.0.0.1:${proxied.port}`));
        assert.ok(res.headers.get('strict-transport-security')?.startsWith('max-age='), `HSTS on ${path}`);
      }

      // Our own cookies (the account console's sign-in, the forms' CSRF cookie): __Host-, Secure, Path=/.
      const ours: string[] = [];
      for (const path of ['/account', '/register']) {
        const res = await fetch(new URL(path, `http://127.0.0.1:${proxied.port}`), { redirect: 'manual', headers: { accept: 'text/html' } });
        await res.arrayBuffer();
        ours.push(...res.headers.getSetCookie());
      }
      assert.deepEqual(ours.map(cookieName).sort(), ['__Host-idp_account_signin', '__Host-idp_csrf']);
      for (const line of ours) {
        const attrs = attributes(line);
        assert.ok(attrs.includes('secure') && attrs.includes('path=/') && attrs.includes('httponly'), line);
        assert.ok(!attrs.some((a) => a.startsWith('domain=')), `no Domain: ${line}`);
      }
    });

    it('over a plain http ISSUER our own cookies keep their bare names and are not Secure', async () => {
      const res = await fetch(new URL('/register', ts.issuer), { headers: { accept: 'text/html' } });
      await res.arrayBuffer();
      const csrf = res.headers.getSetCookie().find((c) => cookieName(c) === 'idp_csrf');
      assert.ok(csrf && !attributes(csrf).includes('secure'), `plain idp_csrf expected: ${csrf}`);
    });
  });

  describe('repeated query parameters', () => {
    it('answers 400 (never 500) on our pages, the console, the interaction and the APIs; the provider refuses its own with invalid_request', async () => {
      const page = await openLoginPage(ts, clientId);
      const html = (path: string) => page.browser.request(new URL(path, ts.issuer));
      for (const path of [
        '/register?ui_locales=en&ui_locales=vi',
        '/forgot-password?ui_locales=en&ui_locales=vi',
        '/verify-email?email=a@b.test&email=c@d.test',
        '/reset-password?token=a&token=b',
        '/account?done=profile&done=password',
        `/interaction/${page.uid}?ui_locales=en&ui_locales=vi`,
      ]) {
        const res = await html(path);
        assert.equal(res.status, 400, path);
        assert.match(res.headers.get('content-type') ?? '', /text\/html/, `${path}: the error page`);
        await res.arrayBuffer();
      }
      for (const path of ['/api/v1/users?limit=1&limit=2', '/api/v1/me?x=1&x=2', '/api/v1/auth/captcha?x=1&x=2']) {
        const res = await fetch(new URL(path, ts.issuer));
        assert.equal(res.status, 400, path);
        const body = (await res.json()) as { error: string; message: string };
        assert.equal(body.error, 'IDENT_VALIDATION');
        assert.match(body.message, /repeated/);
      }
      // The interaction itself is untouched: the page still opens without the repeat.
      assert.equal((await html(`/interaction/${page.uid}?ui_locales=vi`)).status, 200);

      // The provider's authorization endpoint sends invalid_request back to the relying party.
      const auth = authorizationUrl(ts, clientId);
      auth.search += '&ui_locales=en&ui_locales=vi';
      const res = await fetch(auth, { redirect: 'manual' });
      assert.equal(res.status, 303);
      const back = new URL(res.headers.get('location')!);
      assert.equal(`${back.origin}${back.pathname}`, REDIRECT_URI);
      assert.equal(back.searchParams.get('error'), 'invalid_request');
      // With no client to send it to, the provider's own error page answers 400 (rendered in a locale, not a 500).
      const unknown = await fetch(new URL('/auth?client_id=nope&ui_locales=en&ui_locales=vi', ts.issuer), { headers: { accept: 'text/html' } });
      assert.equal(unknown.status, 400);
    });
  });

  describe('escaping', () => {
    // The login page loads the WebAuthn scripts (the passkey control); any other script is injected.
    const OTHER_SCRIPT = /<script(?! src="\/assets\/(webauthn(-browser)?|forms)\.js"><\/script>)/;

    it('escapes a client_name with markup on the login and consent pages', async () => {
      const name = `<script>alert("pwned")</script><img src=x onerror=alert(1)>`;
      const firstParty = await registerClient(ts, { token_endpoint_auth_method: 'none', client_name: name }, true);
      const page = await openLoginPage(ts, firstParty.clientId);
      assert.ok(page.html.includes(escapeHtml(name)), 'the name is shown, escaped');
      assert.doesNotMatch(page.html, OTHER_SCRIPT, 'no script element but our own');
      assert.ok(!page.html.includes('<img'), 'no injected element');

      // A third-party client gets the consent page, which shows the name too.
      const user = await createUser(ts);
      const thirdParty = await registerClient(ts, { token_endpoint_auth_method: 'none', client_name: name });
      const consentFlow = await openLoginPage(ts, thirdParty.clientId);
      const login = await postLogin(consentFlow, { email: user.email, password: user.password });
      assert.equal(login.status, 303);
      const { res, url } = await consentFlow.browser.follow(local(ts, login.location!, consentFlow.action));
      const consent = await res.text();
      assert.ok(url.pathname.startsWith('/interaction/'), 'the consent page is shown');
      assert.ok(consent.includes('/confirm'), 'consent form expected');
      assert.ok(consent.includes(escapeHtml(name)), 'the name is shown on the consent page, escaped');
      assert.ok(!consent.includes('<script') && !consent.includes('<img'));
    });

    it('escapes the email echoed back into the form after a failed sign-in', async () => {
      const page = await openLoginPage(ts, clientId);
      const email = `"><script>alert(1)</script>`;
      const failed = await postLogin(page, { email, password: 'wrong' });
      assert.equal(failed.status, 401);
      assert.doesNotMatch(failed.html, OTHER_SCRIPT, 'no script element but our own');
      const input = inputTag(failed.html, 'email');
      assert.ok(input, 'the email input is still one element');
      assert.ok(input.includes(`value="${escapeHtml(email)}"`), `escaped value expected in ${input}`);
      assert.equal(alertText(failed.html), en['error.invalid_credentials']);
    });
  });
});
