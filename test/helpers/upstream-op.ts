import assert from 'node:assert/strict';
import type http from 'node:http';
import { exportJWK, generateKeyPair } from 'jose';
import Provider from 'oidc-provider';
import { formAction, formField, type HttpBrowser } from './browser-http.ts';
import { listenOn, portOf } from './server.ts';

/** What an upstream account says about itself (the upstream's claims). */
export interface UpstreamAccount {
  email?: string;
  email_verified?: boolean;
  given_name?: string;
  family_name?: string;
  /** The methods the upstream says the sign-in used (its ID token's amr). */
  amr?: string[];
}

/**
 * A second oidc-provider standing in for an organisation's identity provider: one confidential
 * client (ours), PKCE required, and its development login form (any login name is an account of
 * `accounts`, any password).
 */
export async function startUpstreamOp(client: { clientId: string; clientSecret: string; redirectUri: string }) {
  const listening: http.Server = await listenOn(0);
  const issuer = `http://127.0.0.1:${portOf(listening)}`;
  const accounts = new Map<string, UpstreamAccount>();
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const provider = new Provider(issuer, {
    jwks: { keys: [{ ...(await exportJWK(privateKey)), kid: 'upstream', alg: 'RS256', use: 'sig' }] },
    clients: [{
      client_id: client.clientId,
      client_secret: client.clientSecret,
      redirect_uris: [client.redirectUri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
    }],
    claims: { openid: ['sub', 'amr'], email: ['email', 'email_verified'], profile: ['given_name', 'family_name'] },
    async findAccount(_ctx, id) {
      const account = accounts.get(id);
      return account && { accountId: id, claims: async () => ({ sub: id, ...account }) };
    },
    features: { devInteractions: { enabled: true } },
    cookies: { keys: ['upstream-test-cookie-key'] },
  });
  listening.on('request', provider.callback());
  return {
    issuer,
    accounts,
    async stop() {
      listening.closeAllConnections();
      await new Promise((resolve) => listening.close(resolve));
    },
  };
}

export type UpstreamOp = Awaited<ReturnType<typeof startUpstreamOp>>;

/**
 * Signs in at the upstream as `login` (its development login form, then its consent form) from
 * the page the browser was sent to, and answers where the upstream sent the browser back: our
 * callback URL, not fetched.
 */
export async function signInUpstream(browser: HttpBrowser, start: URL, login: string): Promise<URL> {
  const isOurs = (u: URL) => u.pathname.startsWith('/api/v1/auth/');
  let step = await browser.follow(start, {}, isOurs);
  for (let i = 0; i < 3 && !isOurs(step.url); i++) {
    const html = await step.res.text();
    const action = formAction(html, '/');
    assert.ok(action, `an upstream form at ${step.url.href}: ${html.slice(0, 200)}`);
    const fields: Record<string, string> = { prompt: formField(html, 'prompt') ?? '' };
    if (fields.prompt === 'login') Object.assign(fields, { login, password: 'any' });
    const res = await browser.postForm(new URL(action, step.url), fields);
    step = await browser.follow(new URL(res.headers.get('location')!, step.url), {}, isOurs);
  }
  assert.ok(isOurs(step.url), `the upstream sends the browser back to us, got ${step.url.href}`);
  return step.url;
}
