import assert from 'node:assert/strict';
import type { HttpBrowser } from './browser-http.ts';
import { submitLogin } from './rp.ts';
import type { TestServer } from './server.ts';

export interface ConsolePage {
  status: number;
  url: URL;
  html: string;
}

/**
 * Drives the account console (/account) over HTTP in a browser of the test's choosing. `server`
 * is read at each call: test files start their server in `before`.
 */
export function accountConsole(server: () => TestServer) {
  const consoleUrl = () => `${server().issuer}/account`;

  /** GET /account, following redirects: the console page, or the provider's login page. */
  async function open(b: HttpBrowser): Promise<ConsolePage> {
    const step = await b.follow(consoleUrl());
    return { status: step.res.status, url: step.url, html: await step.res.text() };
  }

  const post = (b: HttpBrowser, path: string, fields: Record<string, string>) => b.postForm(`${consoleUrl()}${path}`, fields);

  /** Follows a 303 from a console post and returns the page it leads to. */
  async function followRedirect(res: Response, b: HttpBrowser): Promise<ConsolePage> {
    assert.equal(res.status, 303);
    const step = await b.follow(new URL(res.headers.get('location')!, server().issuer));
    return { status: step.res.status, url: step.url, html: await step.res.text() };
  }

  const isLoginPage = (p: { url: URL; html: string }) =>
    p.url.pathname.startsWith('/interaction/') && p.html.includes('autocomplete="current-password"');

  /** Signs `user` in to the console in `browser` through the provider's login page; the console page's html. */
  async function consoleSignIn(browser: HttpBrowser, user: { email: string; password: string }): Promise<string> {
    const login = await open(browser);
    assert.ok(isLoginPage(login), 'the console sends a browser without a session to the login page');
    const submitted = await submitLogin(browser, login.url, login.html, user.email, user.password);
    const shown = await followRedirect(submitted, browser);
    assert.equal(shown.status, 200);
    assert.equal(shown.url.href, consoleUrl());
    assert.ok(shown.html.includes(user.email));
    return shown.html;
  }

  return { consoleUrl, open, post, followRedirect, isLoginPage, consoleSignIn };
}
