import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createLocalJWKSet, jwtVerify } from 'jose';
import * as oidc from 'openid-client';
import { HttpBrowser, formAction, formField } from '../helpers/browser-http.ts';
import { finishAuthorization, startAuthorization } from '../helpers/authorization.ts';
import { loginStatus } from '../helpers/login-page.ts';
import { codeAndLink, fastMailSettings, startMailbox, waitFor, type Mailbox } from '../helpers/mailbox.ts';
import { authorizationRequest, rpConfig, signIn, submitLogin, uniqueEmail, REDIRECT_URI, type Registered } from '../helpers/rp.ts';
import { startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';
import { createIdentityProviderIn, createResourceServerIn, createTenant, createUserIn, registerClientIn, type TestTenant } from '../helpers/tenants.ts';
import { federate, startUpstreamOp, type UpstreamOp } from '../helpers/upstream-op.ts';

// Issue 16, sign-in side: the client's tenant (or, for a multi_tenant platform client, the
// `organization` parameter's) decides where a user signs in, registers and resets a password;
// single sign-on never crosses tenants; every token names its user's tenant.

const strongPassword = () => `Ten-${randomBytes(12).toString('base64url')}-4`;
const isCallback = (u: URL) => u.href.startsWith(REDIRECT_URI);
const SUBJECT = { verify: /^Verify your email address$/, reset: /^Reset your password$/ };
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const AT_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

describe('sign-in in the client\'s tenant', () => {
  let ts: TestServer;
  let mailbox: Mailbox;
  let jwks: ReturnType<typeof createLocalJWKSet>;
  let a: TestTenant;
  let b: TestTenant;
  let clientA: Registered;
  let clientB: Registered;
  // One address in both tenants, with a different password in each.
  const email = uniqueEmail('both');
  const passwordA = strongPassword();
  const passwordB = strongPassword();
  let userA: { id: string };
  let userB: { id: string };
  const API_A = 'https://api-a.example.test';
  const API_B = 'https://api-b.example.test';
  const OPAQUE_A = 'https://opaque-a.example.test';
  const OPAQUE_B = 'https://opaque-b.example.test';

  before(async () => {
    mailbox = await startMailbox();
    ts = await startTestServer({ ...fastMailSettings(mailbox.url), CAPTCHA_PROVIDER: 'none', AUTH_API_RATE_LIMIT_PER_IP: '10000' });
    jwks = createLocalJWKSet(await (await fetch(new URL('/.well-known/jwks.json', ts.issuer))).json());
    a = await createTenant(ts, 'acme');
    b = await createTenant(ts, 'globex');
    clientA = await registerClientIn(ts, a.id, { client_name: 'Acme App' });
    clientB = await registerClientIn(ts, b.id, { client_name: 'Globex App' });
    userA = await createUserIn(ts, a.id, email, passwordA);
    userB = await createUserIn(ts, b.id, email, passwordB);
    await createResourceServerIn(ts, a.id, { identifier: API_A, scopes: ['read'], accessTokenFormat: 'jwt' });
    await createResourceServerIn(ts, b.id, { identifier: API_B, scopes: ['read'], accessTokenFormat: 'jwt' });
    await createResourceServerIn(ts, a.id, { identifier: OPAQUE_A, scopes: ['read'], accessTokenFormat: 'opaque' });
    await createResourceServerIn(ts, b.id, { identifier: OPAQUE_B, scopes: ['read'], accessTokenFormat: 'opaque' });
  });
  after(async () => {
    await stopAndDestroy(ts);
    await mailbox.stop();
  });

  /** Signs in through `client` and checks sub and tenant_id in the ID token, userinfo, a JWT and an introspected opaque token. */
  async function assertTenantTokens(client: Registered, password: string, expected: { sub: string; tenantId: string }, jwtApi: string, opaqueApi: string) {
    const config = await rpConfig(ts, client);
    const first = await signIn(ts, config, { email, password }, { scope: 'openid email read', params: { resource: jwtApi } });
    const idClaims = first.tokens.claims()!;
    assert.equal(idClaims.sub, expected.sub);
    assert.equal(idClaims.tenant_id, expected.tenantId, 'the ID token names the tenant');
    const { payload } = await jwtVerify(first.tokens.access_token, jwks, { issuer: ts.issuer, audience: jwtApi, typ: 'at+jwt' });
    assert.equal(payload.sub, expected.sub);
    assert.equal(payload.tenant_id, expected.tenantId, 'the JWT access token names the tenant');

    // The same browser again (single sign-on within the tenant), for the opaque resource and userinfo.
    const second = await signIn(ts, config, { email, password: 'never-asked' }, { scope: 'openid email read', browser: first.browser, params: { resource: opaqueApi } });
    assert.equal(second.logins, 0, 'the session of the same tenant signs in without a password');
    assert.equal(second.tokens.access_token.split('.').length, 1, 'opaque');
    const introspected = await oidc.tokenIntrospection(config, second.tokens.access_token);
    assert.equal(introspected.active, true);
    assert.equal(introspected.sub, expected.sub);
    assert.equal(introspected.tenant_id, expected.tenantId, 'introspection names the tenant');

    const userinfoTokens = await signIn(ts, config, { email, password: 'never-asked' }, { scope: 'openid email', browser: first.browser });
    const info = await oidc.fetchUserInfo(config, userinfoTokens.tokens.access_token, expected.sub);
    assert.equal(info.tenant_id, expected.tenantId, 'userinfo names the tenant');
    assert.equal(info.email, email);
    return first.browser;
  }

  it('one address in two tenants: each tenant\'s client signs in its own user (sub and tenant_id in ID token, userinfo, JWT and introspection); A\'s password does not work through B\'s client', async () => {
    assert.notEqual(userA.id, userB.id);
    await assertTenantTokens(clientA, passwordA, { sub: userA.id, tenantId: a.id }, API_A, OPAQUE_A);
    await assertTenantTokens(clientB, passwordB, { sub: userB.id, tenantId: b.id }, API_B, OPAQUE_B);
    assert.equal(await loginStatus(ts, clientB.clientId, email, passwordA), 401, "A's password through B's client");
    assert.equal(await loginStatus(ts, clientA.clientId, email, passwordB), 401, "B's password through A's client");
    // A user of the default tenant with another address is unknown to both tenants' clients.
    const other = await ts.server.services.accounts.create({ email: uniqueEmail('dflt'), password: passwordA, emailVerified: true });
    assert.equal(await loginStatus(ts, clientA.clientId, other.email, passwordA), 401, "a default-tenant user through A's client");
  });

  it('no single sign-on across tenants: a session of A starting B\'s authorization gets the login page (prompt=none: login_required), and B\'s user then replaces the session', async () => {
    const configA = await rpConfig(ts, clientA);
    const configB = await rpConfig(ts, clientB);
    const { browser } = await signIn(ts, configA, { email, password: passwordA });

    // prompt=none: the client hears login_required rather than getting A's account.
    const silent = await authorizationRequest(configB, { scope: 'openid', params: { prompt: 'none' } });
    const quiet = await browser.follow(silent.url, {}, isCallback);
    assert.ok(isCallback(quiet.url), 'answered at the redirect_uri');
    assert.equal(quiet.url.searchParams.get('error'), 'login_required');
    assert.equal(quiet.url.searchParams.get('code'), null);

    // Without prompt: the login page, not a code for A's account.
    const request = await authorizationRequest(configB, { scope: 'openid' });
    const page = await browser.follow(request.url, {}, isCallback);
    assert.ok(!isCallback(page.url), 'no code without signing in');
    const html = await page.res.text();
    assert.ok(html.includes('autocomplete="current-password"'), 'the login page');
    const posted = await submitLogin(browser, page.url, html, email, passwordB);
    assert.equal(posted.status, 303);
    // oidc-provider ends the session of the other account first (a self-posting logout form).
    let step = await browser.follow(new URL(posted.headers.get('location')!, page.url), {}, isCallback);
    for (let i = 0; i < 3 && !isCallback(step.url); i++) {
      const body = await step.res.text();
      const logout = formAction(body, '/session/end/confirm');
      assert.ok(logout, `the logout confirmation expected at ${step.url.href}: ${body.slice(0, 300)}`);
      const res = await browser.postForm(new URL(logout, step.url), { xsrf: formField(body, 'xsrf')!, logout: 'yes' });
      step = await browser.follow(new URL(res.headers.get('location')!, step.url), {}, isCallback);
    }
    assert.ok(isCallback(step.url), 'the flow ends at the redirect_uri');
    const tokens = await request.redeem(step.url);
    assert.equal(tokens.claims()!.sub, userB.id);
    assert.equal(tokens.claims()!.tenant_id, b.id);

    // The session is B's now: A's client asks for a sign-in again.
    const back = await authorizationRequest(configA, { scope: 'openid', params: { prompt: 'none' } });
    const answer = await browser.follow(back.url, {}, isCallback);
    assert.equal(answer.url.searchParams.get('error'), 'login_required');
  });

  it('a multi_tenant platform client signs in the tenant its organization parameter names (slug or id); an unknown or missing organization is invalid_request', async () => {
    const platform = await registerClientIn(ts, 'default', { client_name: 'Platform', multi_tenant: true });
    const config = await rpConfig(ts, platform);
    for (const organization of [b.slug, b.id]) {
      const { tokens } = await signIn(ts, config, { email, password: passwordB }, { scope: 'openid', params: { organization } });
      assert.equal(tokens.claims()!.sub, userB.id, `organization=${organization}`);
      assert.equal(tokens.claims()!.tenant_id, b.id, 'the user\'s tenant, not the platform client\'s');
    }
    const viaA = await signIn(ts, config, { email, password: passwordA }, { scope: 'openid', params: { organization: a.slug } });
    assert.equal(viaA.tokens.claims()!.tenant_id, a.id);

    const refused = async (params: Record<string, string>, client = platform) => {
      const request = await authorizationRequest(await rpConfig(ts, client), { scope: 'openid', params });
      const answer = await new HttpBrowser().follow(request.url, {}, isCallback);
      assert.ok(isCallback(answer.url), `refused at the redirect_uri, got ${answer.url.href}`);
      return { error: answer.url.searchParams.get('error'), description: answer.url.searchParams.get('error_description') };
    };
    assert.deepEqual(await refused({ organization: 'no-such-tenant' }), { error: 'invalid_request', description: 'organization names no tenant' });
    const missing = await refused({});
    assert.equal(missing.error, 'invalid_request');
    assert.match(missing.description ?? '', /^organization is required/);
    // A single-tenant client: its own tenant may be named, another is refused.
    assert.deepEqual(await refused({ organization: b.slug }, clientA), { error: 'invalid_request', description: "organization names another tenant than the client's" });
    const own = await signIn(ts, await rpConfig(ts, clientA), { email, password: passwordA }, { scope: 'openid', params: { organization: a.slug } });
    assert.equal(own.tokens.claims()!.tenant_id, a.id);
  });

  it('registration through B\'s client creates the user in B, though A has that address', async () => {
    const address = uniqueEmail('reg');
    await createUserIn(ts, a.id, address, strongPassword());
    const flow = await startAuthorization(ts, clientB, { scope: 'openid email' });
    const href = /<a href="([^"]+)">Create an account<\/a>/.exec(flow.loginHtml)?.[1];
    assert.equal(href, `/interaction/${flow.uid}/register`);
    const pageUrl = new URL(href!, flow.loginUrl);
    const page = await (await flow.browser.request(pageUrl)).text();
    const registered = await flow.browser.postForm(new URL(formAction(page, '/register')!, pageUrl), {
      csrf: formField(page, 'csrf')!, email: address, password: strongPassword(),
    });
    const registeredHtml = await registered.text();
    assert.equal(registered.status, 200, registeredHtml.slice(0, 300));
    const created = await waitFor('the user in B', () => ts.server.services.repos.users.findByEmail(b.id, address));
    assert.equal(created.tenant_id, b.id);

    const { code } = codeAndLink(await mailbox.next(address, SUBJECT.verify), ts.issuer);
    const verified = await flow.browser.postForm(new URL(formAction(registeredHtml, '/verify-email')!, flow.loginUrl), {
      csrf: formField(registeredHtml, 'csrf')!, email: address, code: code!,
    });
    const tokens = await finishAuthorization(flow, verified, flow.loginUrl);
    assert.equal(tokens.claims()!.sub, created.id);
    assert.equal(tokens.claims()!.tenant_id, b.id);
    // A's account with that address is untouched.
    const inA = await ts.server.services.repos.users.findByEmail(a.id, address);
    assert.ok(inA && inA.id !== created.id);
  });

  it('a password reset asked from B\'s sign-in resets B\'s account only', async () => {
    const address = uniqueEmail('reset');
    const oldA = strongPassword();
    const oldB = strongPassword();
    await createUserIn(ts, a.id, address, oldA);
    await createUserIn(ts, b.id, address, oldB);
    const flow = await startAuthorization(ts, clientB);
    const forgotHref = /<a href="([^"]+)">Forgot password\?<\/a>/.exec(flow.loginHtml)?.[1];
    assert.equal(forgotHref, `/forgot-password?interaction=${flow.uid}`);
    const forgot = await (await flow.browser.request(new URL(forgotHref!, flow.loginUrl))).text();
    const csrf = formField(forgot, 'csrf')!;
    const requested = await flow.browser.postForm(new URL('/forgot-password', ts.issuer), { csrf, interaction: flow.uid, email: address });
    const requestedHtml = await requested.text();
    assert.equal(requested.status, 200, requestedHtml.slice(0, 300));

    const { code } = codeAndLink(await mailbox.next(address, SUBJECT.reset), ts.issuer);
    const step = await flow.browser.postForm(new URL('/reset-password', ts.issuer), { csrf, interaction: flow.uid, email: address, code: code! });
    const stepHtml = await step.text();
    assert.equal(step.status, 200, stepHtml.slice(0, 300));
    const session = formField(stepHtml, 'session');
    assert.ok(session, 'the code of B\'s account opens the new-password step');
    const fresh = strongPassword();
    const done = await flow.browser.postForm(new URL('/reset-password', ts.issuer), { csrf, interaction: flow.uid, session: session!, password: fresh });
    assert.equal(done.status, 200);
    await done.arrayBuffer();

    assert.equal(await loginStatus(ts, clientB.clientId, address, fresh), 303, 'B signs in with the new password');
    assert.equal(await loginStatus(ts, clientB.clientId, address, oldB), 401, "B's old password is gone");
    assert.equal(await loginStatus(ts, clientA.clientId, address, oldA), 303, "A's password still works");
    assert.equal(await loginStatus(ts, clientA.clientId, address, fresh), 401, "A's account did not get B's new password");
    assert.equal(mailbox.all(address).filter((m) => SUBJECT.reset.test(m.subject)).length, 1, 'one reset mail: B\'s account only');
  });

  it('the account API names the tenant by client_id: a reset code asked for B\'s client works for B only', async () => {
    const address = uniqueEmail('api');
    const oldA = strongPassword();
    await createUserIn(ts, a.id, address, oldA);
    await createUserIn(ts, b.id, address, strongPassword());
    const post = (path: string, body: unknown) => fetch(new URL(path, ts.issuer), {
      method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json' }, body: JSON.stringify(body),
    });
    assert.equal((await post('/api/v1/auth/password-reset/request', { email: address, client_id: clientB.clientId })).status, 202);
    const { code } = codeAndLink(await mailbox.next(address, SUBJECT.reset), ts.issuer);
    const fresh = strongPassword();
    // The code is B's: without the client (the default tenant) or with A's client it is no code at all.
    for (const other of [{}, { client_id: clientA.clientId }]) {
      const res = await post('/api/v1/auth/password-reset/confirm', { email: address, code, password: fresh, ...other });
      assert.equal(res.status, 400, JSON.stringify(other));
      await res.arrayBuffer();
    }
    const ok = await post('/api/v1/auth/password-reset/confirm', { email: address, code, password: fresh, client_id: clientB.clientId });
    assert.equal(ok.status, 200, await ok.text());
    assert.equal(await loginStatus(ts, clientB.clientId, address, fresh), 303);
    assert.equal(await loginStatus(ts, clientA.clientId, address, oldA), 303);
    const unknown = await post('/api/v1/auth/password-reset/request', { email: address, client_id: 'no-such-client' });
    assert.equal(unknown.status, 400);
    assert.equal(((await unknown.json()) as { error: string }).error, 'IDENT_VALIDATION');
  });
  it('refresh keeps the user\'s tenant (a multi_tenant client\'s tokens name the organization\'s tenant, not its own)', async () => {
    const platform = await registerClientIn(ts, 'default', { client_name: 'Platform offline', multi_tenant: true });
    const config = await rpConfig(ts, platform);
    const { tokens } = await signIn(ts, config, { email, password: passwordB }, {
      scope: 'openid offline_access read', prompt: 'consent', params: { organization: b.slug, resource: API_B },
    });
    assert.equal((await jwtVerify(tokens.access_token, jwks, { audience: API_B })).payload.tenant_id, b.id);
    assert.ok(tokens.refresh_token, 'a refresh token');
    const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token!, { resource: API_B });
    const { payload } = await jwtVerify(refreshed.access_token, jwks, { audience: API_B });
    assert.equal(payload.sub, userB.id);
    assert.equal(payload.tenant_id, b.id, 'the refreshed token names the user\'s tenant');
    assert.equal(refreshed.claims()?.tenant_id ?? b.id, b.id);
  });

  it('token exchange never crosses tenants: A\'s user token is refused to B\'s service and exchanged by A\'s, naming A', async () => {
    const machine = async (tenantId: string) => rpConfig(ts, await registerClientIn(ts, tenantId, {
      grant_types: ['client_credentials', TOKEN_EXCHANGE], redirect_uris: [], post_logout_redirect_uris: [], response_types: [],
    }, false));
    const { tokens } = await signIn(ts, await rpConfig(ts, clientA), { email, password: passwordA }, { scope: 'openid read', params: { resource: OPAQUE_A } });
    const exchange = (config: oidc.Configuration) =>
      oidc.genericGrantRequest(config, TOKEN_EXCHANGE, { subject_token: tokens.access_token, subject_token_type: AT_TYPE, resource: OPAQUE_A });

    const serviceB = await machine(b.id);
    await assert.rejects(exchange(serviceB), (e: oidc.ResponseBodyError) => {
      assert.equal(e.error, 'invalid_request');
      assert.equal(e.error_description, "subject_token belongs to another tenant than the client's");
      return true;
    });
    const serviceA = await machine(a.id);
    const exchanged = await exchange(serviceA);
    const introspected = await oidc.tokenIntrospection(serviceA, exchanged.access_token);
    assert.equal(introspected.active, true);
    assert.equal(introspected.sub, userA.id);
    assert.equal(introspected.tenant_id, a.id);
  });
});

describe('federated sign-in in the client\'s tenant', () => {
  let ts: TestServer;
  let upstream: UpstreamOp;
  let a: TestTenant;
  let b: TestTenant;
  let configA: oidc.Configuration;
  let configB: oidc.Configuration;
  const idp = { alias: 'corp', displayName: 'Corp SSO', issuer: '' };

  before(async () => {
    ts = await startTestServer({ CAPTCHA_PROVIDER: 'none' });
    const clientSecret = `upstream-secret-${randomBytes(8).toString('hex')}`;
    upstream = await startUpstreamOp({ clientId: 'our-broker', clientSecret, redirectUri: `${ts.issuer}/api/v1/auth/oidc/${idp.alias}/callback` });
    idp.issuer = upstream.issuer;
    a = await createTenant(ts, 'fed-a');
    b = await createTenant(ts, 'fed-b');
    await createIdentityProviderIn(ts, b.id, { alias: idp.alias, type: 'oidc', displayName: idp.displayName, issuer: upstream.issuer, clientId: 'our-broker', clientSecret });
    configA = await rpConfig(ts, await registerClientIn(ts, a.id, { token_endpoint_auth_method: 'none' }));
    configB = await rpConfig(ts, await registerClientIn(ts, b.id, { token_endpoint_auth_method: 'none' }));
  });
  after(async () => {
    await upstream?.stop();
    await stopAndDestroy(ts);
  });

  it('only the provider\'s tenant offers it; its sign-in provisions the account in that tenant, whatever another tenant holds', async () => {
    const pageOf = async (config: oidc.Configuration) => {
      const request = await authorizationRequest(config, { scope: 'openid' });
      return (await (await new HttpBrowser().follow(request.url)).res.text());
    };
    assert.doesNotMatch(await pageOf(configA), /Continue with Corp SSO/, "A's login page does not offer B's provider");
    assert.match(await pageOf(configB), /Continue with Corp SSO/);

    // The upstream account's address is an account in A already: B's sign-in neither sees nor links it.
    const address = uniqueEmail('fed');
    const inA = await createUserIn(ts, a.id, address, strongPassword());
    const sub = `up-${randomBytes(6).toString('hex')}`;
    upstream.accounts.set(sub, { email: address, email_verified: true, given_name: 'Ada', family_name: 'Lovelace' });
    const { step, request } = await federate(configB, idp, sub);
    assert.ok(isCallback(step.url), `the RP's callback expected, got ${step.url.href}`);
    const claims = (await request.redeem(step.url)).claims()!;
    assert.equal(claims.tenant_id, b.id);
    assert.notEqual(claims.sub, inA.id);
    const created = await ts.server.services.repos.users.findByEmail(b.id, address);
    assert.equal(created?.id, claims.sub, 'provisioned in B');
    const links = await ts.server.services.db('federated_identities').where({ user_id: claims.sub });
    assert.deepEqual(links.map((l: { tenant_id: string }) => l.tenant_id), [b.id]);
    assert.equal((await ts.server.services.db('federated_identities').where({ user_id: inA.id })).length, 0, "A's account is not linked");
  });
});
