import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import type * as oidc from 'openid-client';
import { AdminApi, adminToken, marker, startAdminServer } from '../helpers/admin.ts';
import { formAction, formField, HttpBrowser } from '../helpers/browser-http.ts';
import { alertText } from '../helpers/login-page.ts';
import { codeAndLink, fastMailSettings, startMailbox, type Mailbox } from '../helpers/mailbox.ts';
import { authorizationRequest, createUser, REDIRECT_URI, registerClient, rpConfig, signIn, uniqueEmail } from '../helpers/rp.ts';
import { stopAndDestroy, type TestServer } from '../helpers/server.ts';
import { accountConsole } from '../helpers/account-console.ts';
import { callUserApi } from '../helpers/user-api.ts';
import { enrolTotp } from '../helpers/mfa.ts';
import {
  federate as federateAt, registerUpstream, signInUpstream, startFederation as startFederationAt, startUpstreamOp, type UpstreamOp,
} from '../helpers/upstream-op.ts';

const isCallback = (u: URL) => u.href.startsWith(REDIRECT_URI);

describe('federation: signing in through an upstream OpenID Connect provider', () => {
  let ts: TestServer;
  let api: AdminApi;
  let rp: oidc.Configuration;
  let mailbox: Mailbox;
  let upstream: UpstreamOp;
  const alias = 'acme';
  const displayName = 'Acme SSO';
  let providerId: string;

  before(async () => {
    mailbox = await startMailbox();
    ts = await startAdminServer(fastMailSettings(mailbox.url));
    api = new AdminApi(ts, await adminToken(ts));
    ({ upstream, providerId } = await registerUpstream(ts, api, { alias, displayName }, 'our-broker'));
    rp = await rpConfig(ts, await registerClient(ts, { token_endpoint_auth_method: 'none' }, true));
  });

  after(async () => {
    await upstream?.stop();
    await stopAndDestroy(ts);
    await mailbox?.stop();
  });

  /** An upstream account with a verified address of the provider's domain, unless told otherwise. */
  function upstreamAccount(claims: { email?: string; email_verified?: boolean } = {}) {
    const sub = marker('up');
    const email = claims.email ?? uniqueEmail('fed').replace(/@.*/, '@acme.test');
    upstream.accounts.set(sub, { email, email_verified: true, given_name: 'Ada', family_name: 'Lovelace', ...claims });
    return { sub, email };
  }

  const idp = () => ({ alias, displayName, issuer: upstream.issuer });
  /** From the RP's authorization request to our login page, then "Continue with Acme SSO" to the upstream. */
  const startFederation = (browser?: HttpBrowser) => startFederationAt(rp, idp(), browser);
  /** The whole way: upstream sign-in as `sub`, back through our callback, to wherever we send the browser. */
  const federate = (sub: string, browser?: HttpBrowser) => federateAt(rp, idp(), sub, browser);

  async function tokensAt(step: { url: URL }, request: Awaited<ReturnType<typeof authorizationRequest>>) {
    assert.ok(isCallback(step.url), `expected the RP's callback, got ${step.url.href}`);
    return request.redeem(step.url);
  }

  it('first sign-in creates a verified account without a password, linked to the upstream subject; the next one finds it', async () => {
    const { sub, email } = upstreamAccount();
    const first = await federate(sub);
    const tokens = await tokensAt(first.step, first.request);
    const claims = tokens.claims()!;
    assert.deepEqual(claims.amr, ['fed']);
    const user = await ts.server.services.db('users').where({ id: claims.sub }).first();
    assert.equal(user.email, email);
    assert.equal(user.email_verified, true);
    assert.equal(user.password_hash, null, 'no password to guess');
    assert.equal(user.given_name, 'Ada');
    const links = await ts.server.services.db('federated_identities').where({ user_id: claims.sub });
    assert.deepEqual(links.map((l: { subject: string; provider_id: string }) => [l.subject, l.provider_id]), [[sub, providerId]]);
    const events = (await ts.server.services.db('events').where({ subject_id: claims.sub })).map((e: { type: string }) => e.type);
    assert.ok(events.includes('user.created') && events.includes('user.identity_linked') && events.includes('user.signed_in'), events.join());
    const signedIn = await ts.server.services.db('events').where({ subject_id: claims.sub, type: 'user.signed_in' }).first();
    assert.equal(signedIn.payload.provider, alias);

    const again = await federate(sub);
    assert.equal((await tokensAt(again.step, again.request)).claims()!.sub, claims.sub, 'the same local subject');
    assert.equal(Number((await ts.server.services.db('users').whereRaw('lower(email) = ?', [email]).count({ n: '*' }))[0]!.n), 1);
  });

  it('an unverified upstream email is never used: refused, no account made', async () => {
    const { sub, email } = upstreamAccount({ email_verified: false });
    const { step } = await federate(sub);
    assert.equal(step.res.status, 409);
    assert.match(alertText(await step.res.text()) ?? '', /did not confirm an email address/);
    assert.equal(await ts.server.services.db('users').whereRaw('lower(email) = ?', [email]).first(), undefined);
  });

  it('an address outside the provider\'s domains is refused (403)', async () => {
    const { sub } = upstreamAccount({ email: uniqueEmail('other') });
    const { step } = await federate(sub);
    assert.equal(step.res.status, 403);
    assert.match(alertText(await step.res.text()) ?? '', /does not serve your email address/);
  });

  it('an existing account with the same email is linked only after its password is given', async () => {
    const password = 'correct horse battery staple';
    const email = uniqueEmail('local').replace(/@.*/, '@acme.test');
    const local = await createUser(ts, password, { email, emailVerified: true });
    const { sub } = upstreamAccount({ email });
    const { browser, step, request } = await federate(sub);
    assert.equal(step.res.status, 200);
    const html = await step.res.text();
    assert.match(html, /Link your account/);
    const action = new URL(formAction(html, '/federated/link')!, step.url);
    const csrf = formField(html, 'csrf')!;
    assert.equal(await ts.server.services.db('federated_identities').where({ user_id: local.id }).first(), undefined, 'no link on the email match alone');

    const wrong = await browser.postForm(action, { csrf, method: 'password', password: 'not the password' });
    assert.equal(wrong.status, 401);
    assert.equal(await ts.server.services.db('federated_identities').where({ user_id: local.id }).first(), undefined);

    const right = await browser.postForm(action, { csrf, method: 'password', password });
    assert.equal(right.status, 303, await right.text());
    const end = await browser.follow(new URL(right.headers.get('location')!, action), {}, isCallback);
    const claims = (await tokensAt(end, request)).claims()!;
    assert.equal(claims.sub, local.id, 'signed in to the existing account');
    assert.deepEqual(claims.amr, ['pwd', 'fed']);
    assert.equal((await ts.server.services.db('federated_identities').where({ user_id: local.id })).length, 1);

    // From then on the upstream alone signs in to it.
    const later = await federate(sub);
    assert.equal((await tokensAt(later.step, later.request)).claims()!.sub, local.id);
  });

  it('an unverified account someone registered with that address: a mailed code links it and voids their password', async () => {
    const email = uniqueEmail('prehijack').replace(/@.*/, '@acme.test');
    // Someone registered the victim's address and chose a password; the address was never proven.
    const squatted = await createUser(ts, 'squatter password 123', { email, emailVerified: false });
    // As self-registration leaves it: the password was chosen before anyone proved the address.
    await ts.server.services.db('users').where({ id: squatted.id }).update({ password_unverified_owner: true });
    const { sub } = upstreamAccount({ email });
    const { browser, step, request } = await federate(sub);
    const html = await step.res.text();
    const action = new URL(formAction(html, '/federated/link')!, step.url);
    const csrf = formField(html, 'csrf')!;
    const sent = await browser.postForm(action, { csrf, method: 'send-code' });
    assert.equal(sent.status, 200);
    const { code } = codeAndLink(await mailbox.next(email), ts.issuer);
    const res = await browser.postForm(action, { csrf, method: 'code', code: code! });
    assert.equal(res.status, 303, await res.text());
    const end = await browser.follow(new URL(res.headers.get('location')!, action), {}, isCallback);
    const claims = (await tokensAt(end, request)).claims()!;
    assert.equal(claims.sub, squatted.id);
    const user = await ts.server.services.db('users').where({ id: squatted.id }).first();
    assert.equal(user.email_verified, true);
    assert.equal(user.password_hash, null, "the squatter's password no longer works");
  });

  it('a callback is used once, and only by the browser that started the sign-in', async () => {
    const { sub } = upstreamAccount();
    const started = await startFederation();
    const callback = await signInUpstream(started.browser, started.upstreamStart, sub);

    // Someone else's browser presented with the callback URL (a login CSRF attempt) gets nowhere.
    const other = new HttpBrowser();
    const stolen = await other.follow(callback, {}, isCallback);
    assert.ok(!isCallback(stolen.url), 'the other browser is not signed in');
    assert.ok(stolen.res.status >= 400, `refused: ${stolen.res.status}`);

    // The callback's state was spent by that attempt: a replay finds nothing either.
    const replay = await started.browser.request(callback);
    assert.equal(replay.status, 400);
    assert.match(await replay.text(), /expired or was already used/);
  });

  it('whoever started a sign-in cannot finish it with someone else\'s upstream sign-in (a forwarded authorization URL)', async () => {
    const victim = upstreamAccount();
    // The attacker starts at our login page and hands the upstream authorization URL to the victim.
    const attacker = await startFederation();
    const victimBrowser = new HttpBrowser();
    const callback = await signInUpstream(victimBrowser, attacker.upstreamStart, victim.sub);
    const landed = await victimBrowser.follow(callback, {}, isCallback);
    assert.equal(landed.res.status, 400, 'the victim\'s browser does not hold the starting browser\'s binding');
    // The attacker's own browser then tries to finish the interaction it started.
    const finish = await attacker.browser.follow(new URL(`${attacker.loginUrl.pathname.replace(/\/?$/, '')}/federated`, attacker.loginUrl), {}, isCallback);
    assert.ok(!isCallback(finish.url), 'the attacker is not signed in as the victim');
    assert.equal(await ts.server.services.db('users').whereRaw('lower(email) = ?', [victim.email]).first(), undefined, 'no account was made for the victim');
  });

  it('from /account a signed-in user links an upstream account (another address is fine), signs in with it, and unlinks it', async () => {
    const password = 'correct horse battery staple';
    const local = await createUser(ts, password);
    const pages = accountConsole(() => ts);
    const browser = new HttpBrowser();
    const html = await pages.consoleSignIn(browser, { email: local.email, password });
    assert.match(html, new RegExp(`Link ${displayName}`));
    const start = await browser.postForm(new URL(formAction(html, `/identities/link/${alias}`)!, ts.issuer), { csrf: formField(html, 'csrf')! });
    assert.equal(start.status, 303);
    const { sub } = upstreamAccount();
    const callback = await signInUpstream(browser, new URL(start.headers.get('location')!), sub);
    const landed = await browser.follow(callback);
    assert.equal(landed.url.pathname, '/account');
    const page = await landed.res.text();
    assert.match(page, /The sign-in service was linked/);
    const [link] = await ts.server.services.db('federated_identities').where({ user_id: local.id });
    assert.equal(link?.subject, sub);

    // The upstream now signs in to this account, and the account API lists the link.
    const later = await federate(sub);
    assert.equal((await tokensAt(later.step, later.request)).claims()!.sub, local.id);
    const { tokens } = await signIn(ts, rp, { email: local.email, password });
    const listed = await callUserApi(ts, 'GET', '/api/v1/me/identities', tokens.access_token);
    assert.equal(listed.status, 200);
    assert.deepEqual(listed.body!.data.map((l: { provider: { alias: string } }) => l.provider.alias), [alias]);

    // Unlinked from the console: it no longer signs in to this account.
    const shown = await pages.open(browser);
    const unlinked = await browser.postForm(new URL(formAction(shown.html, '/identities/unlink')!, ts.issuer), { csrf: formField(shown.html, 'csrf')!, identity: link!.id });
    assert.match((await pages.followRedirect(unlinked, browser)).html, /The sign-in service was unlinked/);
    assert.equal(await ts.server.services.db('federated_identities').where({ user_id: local.id }).first(), undefined);
  });

  it('an account whose only way in is its upstream cannot unlink it (409 IDENT_LAST_SIGN_IN_METHOD)', async () => {
    const { sub } = upstreamAccount();
    const { step, request } = await federate(sub);
    const tokens = await tokensAt(step, request);
    const listed = await callUserApi(ts, 'GET', '/api/v1/me/identities', tokens.access_token);
    assert.equal(listed.status, 200, JSON.stringify(listed.body));
    const [only] = listed.body!.data;
    const refused = await callUserApi(ts, 'DELETE', `/api/v1/me/identities/${only.id}`, tokens.access_token);
    assert.equal(refused.status, 409);
    assert.equal(refused.body!.error, 'IDENT_LAST_SIGN_IN_METHOD');
    assert.equal((await callUserApi(ts, 'GET', '/api/v1/me/identities', tokens.access_token)).body!.data.length, 1, 'nothing changed');
    assert.equal((await callUserApi(ts, 'DELETE', '/api/v1/me/identities/8a4c7a2e-0d6b-4f1e-9a53-3b1f0c2d9e77', tokens.access_token)).status, 404);
  });

  it('MFA: the local second factor is asked after the upstream unless the provider is trusted for MFA and the upstream says mfa', async () => {
    const password = 'correct horse battery staple';
    const email = uniqueEmail('mfa').replace(/@.*/, '@acme.test');
    const local = await createUser(ts, password, { email, emailVerified: true });
    await enrolTotp(ts, local.id);
    const { sub } = upstreamAccount({ email });
    upstream.accounts.get(sub)!.amr = ['pwd', 'otp', 'mfa'];
    // Linked once (password proof); the account asks for its authenticator from then on.
    const first = await federate(sub);
    const html = await first.step.res.text();
    const linked = await first.browser.postForm(new URL(formAction(html, '/federated/link')!, first.step.url), { csrf: formField(html, 'csrf')!, method: 'password', password });
    assert.equal(linked.status, 303);

    const untrusted = await federate(sub);
    assert.match(untrusted.step.url.pathname, /\/mfa$/, 'by default the upstream\'s word is not taken: the local factor is asked');

    assert.equal((await api.patch(`/identity-providers/${providerId}`, { trustUpstreamMfa: true })).status, 200);
    try {
      const trusted = await federate(sub);
      const claims = (await tokensAt(trusted.step, trusted.request)).claims()!;
      assert.equal(claims.sub, local.id);
      assert.deepEqual(claims.amr, ['fed', 'pwd', 'otp', 'mfa']);
      assert.equal(claims.acr, 'mfa');
    } finally {
      await api.patch(`/identity-providers/${providerId}`, { trustUpstreamMfa: false });
    }
  });

  it('a plain OAuth 2.0 provider (authorize, token and a user endpoint, no ID token used): mapped by its claim mapping', async () => {
    const gh = 'gh-like';
    const secret = `oauth2-secret-${marker()}`;
    const plain = await startUpstreamOp({ clientId: 'our-oauth2', clientSecret: secret, redirectUri: `${ts.issuer}/api/v1/auth/oauth2/${gh}/callback` });
    try {
      const created = await api.post('/identity-providers', {
        alias: gh, type: 'oauth2', displayName: 'Plain OAuth', clientId: 'our-oauth2', clientSecret: secret,
        authorizationEndpoint: `${plain.issuer}/auth`, tokenEndpoint: `${plain.issuer}/token`, userinfoEndpoint: `${plain.issuer}/me`,
        scopes: ['openid', 'email'], claimMapping: { subject: 'sub', emailVerified: 'email_verified' },
      });
      assert.equal(created.status, 201, created.text);
      const sub = marker('gh');
      const email = uniqueEmail('gh');
      plain.accounts.set(sub, { email, email_verified: true });
      const browser = new HttpBrowser();
      const request = await authorizationRequest(rp, { scope: 'openid' });
      const page = await browser.follow(request.url, {}, isCallback);
      const html = await page.res.text();
      const start = await browser.postForm(new URL(formAction(html, `/federate/${gh}`)!, page.url), { csrf: formField(html, 'csrf')! });
      assert.equal(start.status, 303);
      const location = new URL(start.headers.get('location')!);
      assert.equal(location.searchParams.get('nonce'), null, 'no OpenID Connect nonce for a plain OAuth 2.0 provider');
      const callback = await signInUpstream(browser, location, sub);
      assert.equal(callback.pathname, `/api/v1/auth/oauth2/${gh}/callback`);
      const end = await browser.follow(callback, {}, isCallback);
      const claims = (await tokensAt(end, request)).claims()!;
      assert.deepEqual(claims.amr, ['fed']);
      assert.equal((await ts.server.services.db('users').where({ id: claims.sub }).first()).email, email);
      await api.delete(`/identity-providers/${created.body.id}`);
    } finally {
      await plain.stop();
    }
  });

  it('home-realm discovery: an address of the provider\'s domain typed on the login page goes to the provider', async () => {
    const browser = new HttpBrowser();
    const request = await authorizationRequest(rp, { scope: 'openid' });
    const page = await browser.follow(request.url, {}, isCallback);
    const html = await page.res.text();
    const res = await browser.postForm(new URL(formAction(html, '/login')!, page.url), { csrf: formField(html, 'csrf')!, email: 'someone@ACME.test', password: '' });
    assert.equal(res.status, 303);
    assert.equal(new URL(res.headers.get('location')!).origin, upstream.issuer);
  });

  it('an upstream that does not answer: an error page, quickly; never a hang or a 500', async () => {
    const down = await api.post('/identity-providers', {
      alias: marker('down'), type: 'oidc', displayName: 'Down SSO', issuer: 'http://127.0.0.1:9', clientId: 'c', clientSecret: 's',
    });
    assert.equal(down.status, 201);
    const browser = new HttpBrowser();
    const request = await authorizationRequest(rp, { scope: 'openid' });
    const page = await browser.follow(request.url, {}, isCallback);
    const html = await page.res.text();
    const started = Date.now();
    const res = await browser.postForm(new URL(formAction(html, `/federate/${down.body.alias}`)!, page.url), { csrf: formField(html, 'csrf')! });
    assert.equal(res.status, 503);
    assert.match(alertText(await res.text()) ?? '', /did not answer/);
    assert.ok(Date.now() - started < 11_000);
    await api.delete(`/identity-providers/${down.body.id}`);
  });

  it('an upstream that accepts the connection and never answers: the page comes within the 10-second deadline, 503', async () => {
    const sockets = new Set<net.Socket>();
    const silent = net.createServer((socket) => { sockets.add(socket); socket.on('error', () => {}); });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const hung = await api.post('/identity-providers', {
        alias: marker('hung'), type: 'oidc', displayName: 'Hung SSO', issuer: `http://127.0.0.1:${(silent.address() as net.AddressInfo).port}`, clientId: 'c', clientSecret: 's',
      });
      const browser = new HttpBrowser();
      const request = await authorizationRequest(rp, { scope: 'openid' });
      const page = await browser.follow(request.url, {}, isCallback);
      const html = await page.res.text();
      const started = Date.now();
      const res = await browser.postForm(new URL(formAction(html, `/federate/${hung.body.alias}`)!, page.url), { csrf: formField(html, 'csrf')! });
      assert.equal(res.status, 503);
      // Not a speed check: the deadline holds, where an unbounded call would hang the page.
      assert.ok(Date.now() - started < 15_000, 'answered within the deadline');
      await api.delete(`/identity-providers/${hung.body.id}`);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });
});
