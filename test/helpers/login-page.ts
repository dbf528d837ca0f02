import assert from 'node:assert/strict';
import { HttpBrowser, formAction, formField } from './browser-http.ts';
import { REDIRECT_URI } from './rp.ts';
import type { TestServer } from './server.ts';

/**
 * Drives the login page step by step over HTTP, with headers of the test's choosing on every
 * request (Accept-Language, X-Forwarded-For, X-Forwarded-Proto), which signIn() cannot do.
 */

/** An /auth URL for a client; the PKCE challenge is a placeholder, enough to reach the login page. */
export function authorizationUrl(ts: TestServer, clientId: string, params: Record<string, string> = {}): URL {
  const url = new URL('/auth', `http://127.0.0.1:${ts.port}`);
  url.search = new URLSearchParams({
    client_id: clientId,
    response_type: 'code',
    scope: 'openid',
    redirect_uri: REDIRECT_URI,
    code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
    code_challenge_method: 'S256',
    state: 'st',
    ...params,
  }).toString();
  return url;
}

export interface LoginPage {
  browser: HttpBrowser;
  /** The login page, on the test server's own address. */
  url: URL;
  uid: string;
  html: string;
  csrf: string;
  action: URL;
  /** Set-Cookie lines seen on the way to the page. */
  setCookies: string[];
  headers: Record<string, string>;
}

/** The local URL for a Location header (the provider may build it from the issuer or the forwarded proto). */
export function local(ts: TestServer, location: string, base: URL): URL {
  const target = new URL(location, base);
  return new URL(target.pathname + target.search, `http://127.0.0.1:${ts.port}`);
}

/** GET /auth, then the interaction page it redirects to, sending `headers` on both requests. */
export async function openLoginPage(
  ts: TestServer,
  clientId: string,
  opts: { params?: Record<string, string>; headers?: Record<string, string>; browser?: HttpBrowser } = {},
): Promise<LoginPage> {
  const browser = opts.browser ?? new HttpBrowser();
  const headers = opts.headers ?? {};
  const start = authorizationUrl(ts, clientId, opts.params);
  const auth = await browser.request(start, { headers });
  await auth.arrayBuffer();
  assert.equal(auth.status, 303, 'the authorization endpoint should redirect to the interaction');
  const url = local(ts, auth.headers.get('location')!, start);
  const res = await browser.request(url, { headers });
  const html = await res.text();
  assert.equal(res.status, 200, `login page expected, got ${res.status}: ${html.slice(0, 200)}`);
  const action = formAction(html, '/login');
  const csrf = formField(html, 'csrf');
  assert.ok(action && csrf, 'login form with a CSRF token expected');
  const uid = url.pathname.split('/')[2]!;
  return {
    browser,
    url,
    uid,
    html,
    csrf,
    action: new URL(action, url),
    setCookies: [...auth.headers.getSetCookie(), ...res.headers.getSetCookie()],
    headers,
  };
}

export interface LoginAnswer {
  status: number;
  html: string;
  location: string | null;
  alert: string | undefined;
  res: Response;
}

/** POSTs the login form of `page`; fields default to the page's CSRF token. */
export async function postLogin(
  page: LoginPage,
  fields: Record<string, string | undefined>,
  headers: Record<string, string> = {},
): Promise<LoginAnswer> {
  const body = new URLSearchParams();
  for (const [k, v] of Object.entries({ csrf: page.csrf, ...fields })) if (v !== undefined) body.set(k, v);
  const res = await page.browser.request(page.action, {
    method: 'POST',
    headers: { ...page.headers, ...headers, 'content-type': 'application/x-www-form-urlencoded' },
    body: body.toString(),
  });
  const html = await res.text();
  return { status: res.status, html, location: res.headers.get('location'), alert: alertText(html), res };
}

/** Text of the role="alert" element, entities decoded, whitespace collapsed. */
export function alertText(html: string): string | undefined {
  const m = /<div[^>]*role="alert"[^>]*>([\s\S]*?)<\/div>/.exec(html);
  if (!m) return undefined;
  return decodeEntities(m[1]!.replace(/<[^>]+>/g, ' '))
    .replace(/\s+/g, ' ')
    .trim();
}

export function decodeEntities(text: string): string {
  return text
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&amp;/g, '&');
}

/** The <input> element named `name`, as written in the page. */
export function inputTag(html: string, name: string): string | undefined {
  return new RegExp(`<input[^>]*\\bname="${name}"[^>]*>`).exec(html)?.[0];
}

/**
 * One sign-in attempt through the real login page: 303 when the credentials are accepted, 401
 * for wrong ones, 403 for an account that is not active, 429 when locked.
 */
export async function loginStatus(ts: TestServer, clientId: string, email: string, password: string): Promise<number> {
  const page = await openLoginPage(ts, clientId);
  return (await postLogin(page, { email, password })).status;
}
