import assert from 'node:assert/strict';
import type http from 'node:http';
import { exportJWK, generateKeyPair, SignJWT, type JWTPayload } from 'jose';
import Provider from 'oidc-provider';
import * as oidc from 'openid-client';
import { formAction, formField, HttpBrowser } from './browser-http.ts';
import { authorizationRequest, REDIRECT_URI } from './rp.ts';
import { marker, type AdminApi } from './admin.ts';
import { listenOn, portOf, type TestServer } from './server.ts';

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
    /**
     * A real ID token of `login` for our client: a sign-in at the upstream as that client (code,
     * PKCE, its development forms) with openid-client, the callback never reaching us.
     */
    async idToken(login: string): Promise<string> {
      const rp = await oidc.discovery(new URL(issuer), client.clientId, client.clientSecret, undefined, { execute: [oidc.allowInsecureRequests] });
      const request = await authorizationRequest(rp, { redirectUri: client.redirectUri, scope: 'openid email' });
      const callback = await signInUpstream(new HttpBrowser(), request.url, login);
      return (await request.redeem(callback)).id_token!;
    },
    /** A JWT signed with the upstream's own key, for the checks other than the signature. */
    async mint(claims: JWTPayload): Promise<string> {
      return new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: 'upstream' }).sign(privateKey);
    },
    async stop() {
      listening.closeAllConnections();
      await new Promise((resolve) => listening.close(resolve));
    },
  };
}

export type UpstreamOp = Awaited<ReturnType<typeof startUpstreamOp>>;

/**
 * An upstream provider that knows our server as its client `brokerClientId`, registered with our
 * server (admin API) as the OpenID Connect identity provider `idp.alias` for acme.test addresses.
 */
export async function registerUpstream(ts: TestServer, api: AdminApi, idp: { alias: string; displayName: string }, brokerClientId: string) {
  const clientSecret = `upstream-secret-${marker()}`;
  const upstream = await startUpstreamOp({ clientId: brokerClientId, clientSecret, redirectUri: `${ts.issuer}/api/v1/auth/oidc/${idp.alias}/callback` });
  const created = await api.post('/identity-providers', {
    alias: idp.alias, type: 'oidc', displayName: idp.displayName, issuer: upstream.issuer, clientId: brokerClientId, clientSecret, allowedDomains: ['acme.test'],
  });
  assert.equal(created.status, 201, created.text);
  return { upstream, providerId: created.body.id as string };
}

const isCallback = (u: URL) => u.href.startsWith(REDIRECT_URI);

/**
 * From the relying party's authorization request to our login page, then "Continue with
 * <displayName>" to the upstream: where the upstream was asked to sign the person in.
 */
export async function startFederation(rp: oidc.Configuration, idp: { alias: string; displayName: string; issuer: string }, browser = new HttpBrowser()) {
  const request = await authorizationRequest(rp, { scope: 'openid email profile' });
  const page = await browser.follow(request.url, {}, isCallback);
  const html = await page.res.text();
  assert.match(html, new RegExp(`Continue with ${idp.displayName}`), 'the login page offers the provider');
  const action = formAction(html, `/federate/${idp.alias}`)!;
  const res = await browser.postForm(new URL(action, page.url), { csrf: formField(html, 'csrf')! });
  assert.equal(res.status, 303, await res.text());
  const location = new URL(res.headers.get('location')!);
  assert.equal(location.origin, idp.issuer, 'sent to the upstream');
  assert.equal(location.searchParams.get('code_challenge_method'), 'S256');
  assert.ok(location.searchParams.get('state') && location.searchParams.get('nonce'));
  return { browser, request, upstreamStart: location, loginUrl: page.url };
}

/** The whole way: upstream sign-in as `sub`, back through our callback, to wherever we send the browser. */
export async function federate(rp: oidc.Configuration, idp: { alias: string; displayName: string; issuer: string }, sub: string, browser?: HttpBrowser) {
  const started = await startFederation(rp, idp, browser);
  const callback = await signInUpstream(started.browser, started.upstreamStart, sub);
  const step = await started.browser.follow(callback, {}, isCallback);
  return { ...started, callback, step };
}

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
