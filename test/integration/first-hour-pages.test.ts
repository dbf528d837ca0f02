import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { en } from '../../src/i18n/en.ts';
import { vi } from '../../src/i18n/vi.ts';
import { accountConsole } from '../helpers/account-console.ts';
import { HttpBrowser, formAction, formField } from '../helpers/browser-http.ts';
import { inputTag, openLoginPage, postLogin } from '../helpers/login-page.ts';
import { codeAndLink, fastMailSettings, startMailbox, type Mailbox } from '../helpers/mailbox.ts';
import { createUser, registerClient, signIn, rpConfig } from '../helpers/rp.ts';
import { startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';

// The pages someone meets in their first hour, over HTTP on the real server: what they ask, what
// they link to, and the language they keep.

const h1 = (html: string) => /<h1>([^<]*)<\/h1>/.exec(html)?.[1];
const lang = (html: string) => /<html lang="([^"]+)">/.exec(html)?.[1];
const ENGLISH = { 'accept-language': 'en-US,en;q=0.9' };

describe('first hour: pages', () => {
  let ts: TestServer;
  let mailbox: Mailbox;

  before(async () => {
    mailbox = await startMailbox();
    ts = await startTestServer({ ...fastMailSettings(mailbox.url), AUTH_API_RATE_LIMIT_PER_IP: '10000' });
  });
  after(async () => {
    await stopAndDestroy(ts);
    await mailbox?.stop();
  });

  const { consoleUrl, followRedirect, isLoginPage } = accountConsole(() => ts);

  /** An unverified user and the verification mail's code and link. */
  async function unverifiedUser() {
    const { services } = ts.server;
    const created = await createUser(ts, 'correct horse battery staple', { emailVerified: false });
    const row = (await services.repos.users.findById(created.id))!;
    await services.verification.send(row, 'en');
    const mail = await mailbox.next(created.email, /^Verify your email address$/);
    const { code, link } = codeAndLink(mail, ts.issuer);
    assert.ok(code && link);
    return { ...created, code, link };
  }

  it('/verify-email opened without an address asks for it, instead of "sent to ."', async () => {
    const res = await fetch(`${ts.issuer}/verify-email`, { headers: ENGLISH });
    const html = await res.text();
    assert.equal(res.status, 200);
    assert.ok(html.includes(en['verify.intro_ask']));
    assert.ok(!html.includes(en['verify.intro'].replace('{email}', '')), 'no "sent to ." sentence');
    assert.match(inputTag(html, 'email') ?? '', /type="email"/, 'a visible email field');
    assert.equal(formAction(html, '/verify-email/resend'), undefined, 'no "send a new code" for no address');
    // With the address (the registration page's answer) it is named, and kept hidden.
    const named = await (await fetch(`${ts.issuer}/verify-email?email=ada%40example.com`, { headers: ENGLISH })).text();
    assert.ok(named.includes('ada@example.com. Enter it below'));
    assert.match(inputTag(named, 'email') ?? '', /type="hidden"/);
  });

  it('a used verification link says the address is verified, as does a second click on its button', async () => {
    const user = await unverifiedUser();
    const browser = new HttpBrowser();
    const opened = await browser.request(user.link, { headers: ENGLISH });
    const page = await opened.text();
    const confirm = () => browser.postForm(new URL(formAction(page, '/verify-email')!, user.link), { csrf: formField(page, 'csrf')!, token: formField(page, 'token')! });
    assert.ok((await (await confirm()).text()).includes(en['verify.done']));
    assert.equal((await ts.server.services.repos.users.findById(user.id))!.email_verified, true);

    const twice = await confirm();
    assert.equal(twice.status, 200);
    assert.ok((await twice.text()).includes(en['verify.already_done']), 'the double click');
    const again = await browser.request(user.link, { headers: ENGLISH });
    const html = await again.text();
    assert.equal(again.status, 200);
    assert.ok(html.includes(en['verify.already_done']), 'the link opened again');
    assert.ok(html.includes('href="/account"'), 'leads to sign in');
    // A link nobody issued is still just invalid.
    const forged = await fetch(`${ts.issuer}/verify-email?token=${'A'.repeat(43)}`, { headers: ENGLISH });
    assert.equal(forged.status, 400);
    assert.ok(!(await forged.text()).includes(en['verify.already_done']));
  });

  it('a link opened after the code was typed says the address is verified', async () => {
    const user = await unverifiedUser();
    const browser = new HttpBrowser();
    const form = await (await browser.request(`${ts.issuer}/verify-email?email=${encodeURIComponent(user.email)}`)).text();
    const typed = await browser.postForm(`${ts.issuer}/verify-email`, { csrf: formField(form, 'csrf')!, email: user.email, code: user.code });
    assert.ok((await typed.text()).includes(en['verify.done']));
    const opened = await browser.request(user.link, { headers: ENGLISH });
    assert.ok((await opened.text()).includes(en['verify.already_done']));
  });

  it('the forgot-password page links back to sign in: the pending sign-in, else the account console', async () => {
    const alone = await (await fetch(`${ts.issuer}/forgot-password`, { headers: ENGLISH })).text();
    assert.ok(alone.includes(`<a href="/account">${en['forgot.back_to_sign_in']}</a>`));
    const { clientId } = await registerClient(ts, { token_endpoint_auth_method: 'none' }, true);
    const login = await openLoginPage(ts, clientId, { headers: ENGLISH });
    const forgotHref = /<a href="([^"]*forgot-password[^"]*)"/.exec(login.html)![1]!.replace(/&amp;/g, '&');
    const forgot = await (await login.browser.request(new URL(forgotHref, login.url), { headers: ENGLISH })).text();
    assert.ok(forgot.includes(`<a href="/interaction/${login.uid}">${en['forgot.back_to_sign_in']}</a>`));
  });

  it('the register page states the password rules before anything is submitted', async () => {
    const html = await (await fetch(`${ts.issuer}/register`, { headers: ENGLISH })).text();
    assert.ok(html.includes(en['register.password_rules'].replace('{min}', '8')));
    assert.match(inputTag(html, 'password') ?? '', /minlength="8"/);
    assert.match(inputTag(html, 'password') ?? '', /aria-describedby="password-rules"/);
  });

  it('the magic-link form starts with the address typed before', async () => {
    const { clientId } = await registerClient(ts, { token_endpoint_auth_method: 'none' }, true);
    const login = await openLoginPage(ts, clientId, { headers: ENGLISH });
    assert.match(login.html, /id="magic_email"[^>]*data-copy-from="email"/, 'filled as the address is typed (forms.js)');
    assert.ok(login.html.includes('<script src="/assets/forms.js"></script>'));
    const script = await fetch(`${ts.issuer}/assets/forms.js`);
    assert.equal(script.status, 200);
    assert.match(script.headers.get('content-type') ?? '', /javascript/);
    // After a failed sign-in the page comes back with the address in both forms.
    const failed = await postLogin(login, { email: 'typo@example.com', password: 'wrong password here' });
    assert.match(failed.html, /id="magic_email"[^>]*value="typo@example\.com"/);
  });

  it('signing out of the account console confirms the provider logout by itself; other clients still ask', async () => {
    const user = await createUser(ts);
    const { consoleSignIn, post } = accountConsole(() => ts);
    const browser = new HttpBrowser();
    const page = await consoleSignIn(browser, user);
    const out = await post(browser, '/logout', { csrf: formField(page, 'csrf')! });
    const logout = await browser.follow(new URL(out.headers.get('location')!));
    const html = await logout.res.text();
    assert.equal(h1(html), en['logout.signing_out']);
    assert.match(html, /name="logout" data-auto-click/);
    assert.ok(html.includes('<script src="/assets/forms.js"></script>'));
    assert.ok(!html.includes(en['logout.cancel']));

    // A third-party relying party's logout, even with its ID token, asks the question.
    const config = await rpConfig(ts, await registerClient(ts, {}));
    const other = await signIn(ts, config, user);
    const end = new URL('/session/end', ts.issuer);
    end.searchParams.set('id_token_hint', other.tokens.id_token!);
    const asked = await (await other.browser.follow(end)).res.text();
    assert.equal(h1(asked), en['logout.question']);
    assert.doesNotMatch(asked, /data-auto-click/);
  });

  describe('language', () => {
    it('from a Vietnamese login page (ui_locales=vi, English browser), "forgot password", its mail and the account console stay Vietnamese', async () => {
      const user = await createUser(ts);
      const { clientId } = await registerClient(ts, { token_endpoint_auth_method: 'none' }, true);
      const login = await openLoginPage(ts, clientId, { params: { ui_locales: 'vi' }, headers: ENGLISH });
      assert.equal(lang(login.html), 'vi');
      const forgotHref = /<a href="([^"]*forgot-password[^"]*)"/.exec(login.html)![1]!.replace(/&amp;/g, '&');
      assert.match(forgotHref, /ui_locales=vi/, 'carried in the link');
      const forgot = await (await login.browser.request(new URL(forgotHref, login.url), { headers: ENGLISH })).text();
      assert.equal(lang(forgot), 'vi');
      assert.equal(h1(forgot), vi['forgot.title']);
      // The form posts without ui_locales: the language stays all the same, in the page and the mail.
      const sent = await login.browser.postForm(new URL(formAction(forgot, '/forgot-password')!, login.url), { csrf: formField(forgot, 'csrf')!, email: user.email, interaction: login.uid });
      const reset = await sent.text();
      assert.equal(lang(reset), 'vi');
      const mail = await mailbox.next(user.email, new RegExp(`^${vi['mail.forgot-password.subject']}$`));
      assert.match(mail.text, /^Xin chào/);

      // The account console, opened in the same browser: its login page and the console itself.
      const consoleLogin = await login.browser.follow(consoleUrl(), { headers: ENGLISH });
      const consoleLoginHtml = await consoleLogin.res.text();
      assert.ok(isLoginPage({ url: consoleLogin.url, html: consoleLoginHtml }));
      assert.equal(lang(consoleLoginHtml), 'vi');
      const action = new URL(formAction(consoleLoginHtml, '/login')!, consoleLogin.url);
      const submitted = await login.browser.request(action, {
        method: 'POST',
        headers: { ...ENGLISH, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ csrf: formField(consoleLoginHtml, 'csrf')!, email: user.email, password: user.password }).toString(),
      });
      const shown = await followRedirect(submitted, login.browser);
      assert.equal(shown.url.href, consoleUrl());
      assert.equal(lang(shown.html), 'vi');
    });

    it('without ui_locales the browser decides; a language picked in the profile beats both', async () => {
      const viBrowser = { 'accept-language': 'vi-VN,vi;q=0.9,en;q=0.5' };
      const forgot = await (await fetch(`${ts.issuer}/forgot-password`, { headers: viBrowser })).text();
      assert.equal(lang(forgot), 'vi');
      assert.equal(lang(await (await fetch(`${ts.issuer}/forgot-password`, { headers: ENGLISH })).text()), 'en');

      const user = await createUser(ts);
      const { consoleSignIn } = accountConsole(() => ts);
      const browser = new HttpBrowser();
      await browser.request(`${ts.issuer}/?ui_locales=vi`);
      const page = await consoleSignIn(browser, user);
      assert.equal(lang(page), 'vi', 'carried');
      await ts.server.services.db('users').where({ id: user.id }).update({ locale: 'en' });
      const picked = await browser.follow(consoleUrl(), { headers: viBrowser });
      assert.equal(lang(await picked.res.text()), 'en', 'the picked language wins');
    });
  });
});
