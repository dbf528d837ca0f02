/**
 * Browser-side flows for the benchmark: a cookie jar over fetch with manual redirects, the complete
 * sign-in (authorize with PKCE, login form, code, token) and the cheap code flow on an existing
 * session that mints refresh tokens.
 */
import { createHash, randomBytes } from 'node:crypto';

export interface FlowTarget {
  issuer: string;
  clientId: string;
  clientSecret: string;
  redirectUri: string;
}

export class FlowError extends Error {
  readonly step: string;
  readonly status: number;
  constructor(step: string, status: number, detail: string) {
    super(`${step}: HTTP ${status} ${detail}`.slice(0, 400));
    this.step = step;
    this.status = status;
  }
}

/** One browser: cookies of one host, redirects followed by hand. */
export class Browser {
  readonly cookies = new Map<string, string>();

  reset() {
    this.cookies.clear();
  }

  async request(url: URL, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    if (this.cookies.size) headers.set('cookie', [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '));
    if (!headers.has('accept')) headers.set('accept', 'text/html');
    const res = await fetch(url, { ...init, headers, redirect: 'manual' });
    for (const line of res.headers.getSetCookie()) {
      const pair = line.slice(0, line.indexOf(';') >>> 0);
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      if (value === '' || /expires=Thu, 01 Jan 1970/i.test(line)) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
    return res;
  }

  postForm(url: URL, fields: Record<string, string>, headers: Record<string, string> = {}) {
    return this.request(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
      body: new URLSearchParams(fields).toString(),
    });
  }
}

export function basicAuth(id: string, secret: string): string {
  // RFC 6749 2.3.1: form-encode both parts before base64.
  const enc = (s: string) => encodeURIComponent(s).replace(/%20/g, '+');
  return `Basic ${Buffer.from(`${enc(id)}:${enc(secret)}`).toString('base64')}`;
}

/** One refresh_token grant at `issuer`'s /token: the rotated refresh token, or a FlowError. */
export async function rotateRefreshToken(issuer: string, auth: string, refreshToken: string): Promise<string> {
  const res = await fetch(new URL('/token', issuer), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: auth },
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken }).toString(),
  });
  const body = (await res.json()) as { refresh_token?: string };
  if (!res.ok || !body.refresh_token) throw new FlowError('refresh', res.status, JSON.stringify(body));
  return body.refresh_token;
}

function formField(html: string, name: string): string | undefined {
  return new RegExp(`name="${name}"[^>]*value="([^"]*)"`).exec(html)?.[1];
}

function formAction(html: string, contains: string): string | undefined {
  const re = /<form[^>]*action="([^"]+)"/g;
  for (let m = re.exec(html); m; m = re.exec(html)) if (m[1]!.includes(contains)) return m[1]!.replace(/&amp;/g, '&');
  return undefined;
}

async function expectRedirect(step: string, res: Response, base: URL): Promise<URL> {
  const location = res.headers.get('location');
  if (res.status < 300 || res.status >= 400 || !location) {
    throw new FlowError(step, res.status, (await res.text()).slice(0, 300));
  }
  await res.arrayBuffer();
  return new URL(location, base);
}

export interface FlowOptions {
  scope: string;
  prompt?: string;
  /** Used when the login page is shown. */
  user?: { email: string; password: string };
}

export interface FlowResult {
  tokens: { access_token: string; refresh_token?: string; id_token?: string };
  /** Which pages were shown on the way ('login', 'consent'; the bare provider's development login is 'login' too). */
  pages: string[];
}

/**
 * Authorization code + PKCE S256 through whatever pages the server shows (login, consent, or the
 * bare provider's development login: bench/baseline.ts), then the code redeemed at /token with
 * HTTP Basic.
 */
export async function codeFlow(browser: Browser, t: FlowTarget, opts: FlowOptions): Promise<FlowResult> {
  const verifier = randomBytes(32).toString('base64url');
  const state = randomBytes(12).toString('base64url');
  const auth = new URL('/auth', t.issuer);
  auth.search = new URLSearchParams({
    client_id: t.clientId,
    response_type: 'code',
    scope: opts.scope,
    redirect_uri: t.redirectUri,
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
    state,
    ...(opts.prompt ? { prompt: opts.prompt } : {}),
  }).toString();

  const pages: string[] = [];
  let next = await expectRedirect('authorize', await browser.request(auth), auth);
  for (let i = 0; i < 6 && !next.href.startsWith(t.redirectUri); i++) {
    const res = await browser.request(next);
    if (res.status >= 300 && res.status < 400) {
      next = await expectRedirect('redirect', res, next);
      continue;
    }
    const html = await res.text();
    if (res.status !== 200) throw new FlowError(`page ${next.pathname}`, res.status, html.slice(0, 300));
    const csrf = formField(html, 'csrf');
    const login = formAction(html, '/login');
    const confirm = formAction(html, '/confirm');
    // oidc-provider's devInteractions page (bench/baseline.ts): any login, no password check.
    const devLogin = formField(html, 'prompt') === 'login' ? formAction(html, '/interaction/') : undefined;
    if (login && csrf) {
      if (!opts.user) throw new FlowError('login', 200, 'login page shown but no user given');
      pages.push('login');
      const posted = await browser.postForm(new URL(login, next), { csrf, email: opts.user.email, password: opts.user.password });
      next = await expectRedirect('login', posted, next);
    } else if (devLogin) {
      if (!opts.user) throw new FlowError('login', 200, 'login page shown but no user given');
      pages.push('login');
      const posted = await browser.postForm(new URL(devLogin, next), { prompt: 'login', login: opts.user.email, password: opts.user.password });
      next = await expectRedirect('login', posted, next);
    } else if (confirm && csrf) {
      pages.push('consent');
      next = await expectRedirect('consent', await browser.postForm(new URL(confirm, next), { csrf }), next);
    } else {
      throw new FlowError(`page ${next.pathname}`, res.status, `unexpected page: ${html.slice(0, 200)}`);
    }
  }
  if (!next.href.startsWith(t.redirectUri)) throw new FlowError('authorize', 0, 'did not reach the redirect_uri');
  const code = next.searchParams.get('code');
  if (!code || next.searchParams.get('state') !== state) {
    throw new FlowError('callback', 0, `no code: ${next.search.slice(0, 200)}`);
  }

  const tokenRes = await fetch(new URL('/token', t.issuer), {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: basicAuth(t.clientId, t.clientSecret),
      accept: 'application/json',
    },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code,
      redirect_uri: t.redirectUri,
      code_verifier: verifier,
    }).toString(),
  });
  const body = await tokenRes.text();
  if (tokenRes.status !== 200) throw new FlowError('token', tokenRes.status, body.slice(0, 300));
  return { tokens: JSON.parse(body) as FlowResult['tokens'], pages };
}
