import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as oidc from 'openid-client';
import { HttpBrowser } from '../helpers/browser-http.ts';
import { createUser, registerClient, rejectsWithOAuthError, rpConfig, signIn } from '../helpers/rp.ts';
import { startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';
import { callUserApi } from '../helpers/user-api.ts';
import { DEFAULT_SCOPE } from '../../src/domain/tenants/tenant-scope.ts';

/** The signed-in user's own account through /api/v1/me and /api/v1/auth/logout-all, with real tokens. */
describe('account API (/api/v1/me)', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer({ ME_API_RATE_LIMIT_PER_USER: '1000' });
  });
  after(() => stopAndDestroy(ts));

  const call = (method: string, path: string, token: string | undefined, body?: unknown) => callUserApi(ts, method, path, token, body);

  /** A user signed in through a relying party in a browser of its own (user agent `agent`). */
  async function signedIn(user: { email: string; password: string }, agent: string, scope = 'openid email profile offline_access') {
    const client = await registerClient(ts, { scope: 'openid email profile offline_access' }, true);
    const config = await rpConfig(ts, client);
    const browser = new HttpBrowser();
    const request = browser.request.bind(browser);
    browser.request = (url, init = {}) => request(url, { ...init, headers: { ...Object.fromEntries(new Headers(init.headers)), 'user-agent': agent } });
    const { tokens } = await signIn(ts, config, user, { scope, prompt: 'consent', browser });
    return { config, tokens, accessToken: tokens.access_token };
  }

  it('needs a valid bearer token: none, garbage, or an admin-style JWT are 401 with WWW-Authenticate', async () => {
    for (const token of [undefined, 'not-a-token', 'eyJhbGciOiJFUzI1NiJ9.e30.c2ln']) {
      const res = await call('GET', '/api/v1/me', token);
      assert.equal(res.status, 401);
      assert.equal(res.body?.error, 'IDENT_UNAUTHENTICATED');
      assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer realm="account"/);
    }
  });

  it('GET /me answers the profile without secrets; PATCH /me changes names, locale and time zone', async () => {
    const user = await createUser(ts);
    const { accessToken } = await signedIn(user, 'ProfileTest/1.0');
    const me = await call('GET', '/api/v1/me', accessToken);
    assert.equal(me.status, 200);
    assert.equal(me.body!.email, user.email);
    assert.equal(me.body!.givenName, 'Ada');
    assert.ok(!JSON.stringify(me.body).includes('argon2'), 'no password hash');
    assert.equal(me.headers.get('cache-control'), 'no-store');

    const patched = await call('PATCH', '/api/v1/me', accessToken, { givenName: 'Augusta', locale: 'vi', timezone: 'Asia/Ho_Chi_Minh' });
    assert.equal(patched.status, 200);
    assert.equal(patched.body!.givenName, 'Augusta');
    assert.equal(patched.body!.timezone, 'Asia/Ho_Chi_Minh');
    const row = await ts.server.services.repos.users.findById(user.id);
    assert.equal(row!.given_name, 'Augusta');
    assert.equal(row!.locale, 'vi');

    for (const bad of [{ timezone: 'Mars/Olympus' }, { email: 'x@y.test' }, { givenName: 'a\u0000b' }, { locale: '??' }]) {
      const res = await call('PATCH', '/api/v1/me', accessToken, bad);
      assert.equal(res.status, 400, JSON.stringify(bad));
      assert.equal(res.body!.error, 'IDENT_VALIDATION');
    }
    assert.equal((await ts.server.services.repos.users.findById(user.id))!.given_name, 'Augusta', 'bad input changed nothing');
    const event = await ts.server.services.db('events').where({ subject_id: user.id, type: 'user.updated' }).first();
    assert.ok(event, 'user.updated recorded');
  });

  it('PATCH /me needs the profile scope', async () => {
    const user = await createUser(ts);
    const { accessToken } = await signedIn(user, 'Scoped/1.0', 'openid email');
    const res = await call('PATCH', '/api/v1/me', accessToken, { givenName: 'X' });
    assert.equal(res.status, 403);
    assert.equal(res.body!.error, 'IDENT_FORBIDDEN');
  });

  it('lists sessions with device and last use; revoking one ends it and its refresh tokens', async () => {
    const user = await createUser(ts);
    const laptop = await signedIn(user, 'Laptop/1.0');
    const phone = await signedIn(user, 'Phone/2.0');
    const list = await call('GET', '/api/v1/me/sessions', laptop.accessToken);
    assert.equal(list.status, 200);
    const sessions = list.body!.data as Array<Record<string, any>>;
    assert.equal(sessions.length, 2);
    const mine = sessions.find((s) => s.current)!;
    const other = sessions.find((s) => !s.current)!;
    assert.equal(mine.userAgent, 'Laptop/1.0');
    assert.equal(other.userAgent, 'Phone/2.0');
    assert.ok(Date.parse(other.lastUsedAt) > 0 && other.ip);
    assert.equal(other.clients.length, 1);

    // Another user cannot end this user's session, and an unknown id is 404.
    const stranger = await signedIn(await createUser(ts), 'Stranger/1.0');
    assert.equal((await call('DELETE', `/api/v1/me/sessions/${other.id}`, stranger.accessToken)).body!.error, 'IDENT_SESSION_NOT_FOUND');
    assert.equal((await call('DELETE', '/api/v1/me/sessions/nope', laptop.accessToken)).status, 404);

    assert.equal((await call('DELETE', `/api/v1/me/sessions/${other.id}`, laptop.accessToken)).status, 204);
    await rejectsWithOAuthError(oidc.refreshTokenGrant(phone.config, phone.tokens.refresh_token!), 'invalid_grant');
    assert.equal((await call('GET', '/api/v1/me', phone.accessToken)).status, 401, 'its access token is gone too');
    assert.equal((await call('GET', '/api/v1/me', laptop.accessToken)).status, 200, 'the other session is untouched');
    const after = await call('GET', '/api/v1/me/sessions', laptop.accessToken);
    assert.deepEqual((after.body!.data as Array<{ id: string }>).map((s) => s.id), [mine.id]);
  });

  it('changes the password with the current one; other sessions end, this one stays', async () => {
    const user = await createUser(ts);
    const here = await signedIn(user, 'Here/1.0');
    const elsewhere = await signedIn(user, 'Elsewhere/1.0');

    const wrong = await call('POST', '/api/v1/me/password', here.accessToken, { currentPassword: 'not it', newPassword: 'violet harbour lantern 93' });
    assert.equal(wrong.status, 400);
    assert.equal(wrong.body!.error, 'IDENT_CURRENT_PASSWORD_INVALID');
    const weak = await call('POST', '/api/v1/me/password', here.accessToken, { currentPassword: user.password, newPassword: 'password1' });
    assert.equal(weak.status, 400);
    assert.equal(weak.body!.error, 'IDENT_PASSWORD_POLICY');

    const ok = await call('POST', '/api/v1/me/password', here.accessToken, { currentPassword: user.password, newPassword: 'violet harbour lantern 93' });
    assert.equal(ok.status, 204);
    assert.equal((await call('GET', '/api/v1/me', here.accessToken)).status, 200, 'the current session keeps working');
    assert.ok(await oidc.refreshTokenGrant(here.config, here.tokens.refresh_token!), 'and its refresh token');
    await rejectsWithOAuthError(oidc.refreshTokenGrant(elsewhere.config, elsewhere.tokens.refresh_token!), 'invalid_grant');
    assert.equal((await call('GET', '/api/v1/me', elsewhere.accessToken)).status, 401);

    // The new password signs in, the old one does not.
    const auth = ts.server.services.accounts;
    assert.equal((await auth.authenticate(user.email, user.password)).ok, false);
    assert.equal((await auth.authenticate(user.email, 'violet harbour lantern 93')).ok, true);
    const mail = await ts.server.services.db('outbox').where({ recipient: user.email, template: 'password-changed' }).first();
    assert.ok(mail, 'a password-changed mail is queued');
    const events = await ts.server.services.db('events').where({ subject_id: user.id, type: 'user.password_changed' });
    assert.equal(events.length, 1);
    assert.ok(!JSON.stringify(events[0].payload).includes('violet'), 'no password in the event');
  });

  it('logout-all ends every session and token of the caller', async () => {
    const user = await createUser(ts);
    const a = await signedIn(user, 'A/1.0');
    const b = await signedIn(user, 'B/1.0');
    assert.equal((await call('POST', '/api/v1/auth/logout-all', a.accessToken)).status, 204);
    for (const s of [a, b]) {
      assert.equal((await call('GET', '/api/v1/me', s.accessToken)).status, 401);
      await rejectsWithOAuthError(oidc.refreshTokenGrant(s.config, s.tokens.refresh_token!), 'invalid_grant');
    }
    assert.equal((await ts.server.services.repos.payloads.listSessions(user.id)).length, 0);
  });

  it('a suspended user is locked out of /me at once', async () => {
    const user = await createUser(ts);
    const { accessToken } = await signedIn(user, 'S/1.0');
    await ts.server.services.userAdmin.suspend(DEFAULT_SCOPE, user.id);
    assert.equal((await call('GET', '/api/v1/me', accessToken)).status, 401);
  });

  it('rejects wrong media types, malformed JSON and wrong methods with the envelope', async () => {
    const user = await createUser(ts);
    const { accessToken } = await signedIn(user, 'M/1.0');
    const text = await fetch(new URL('/api/v1/me', ts.issuer), { method: 'PATCH', headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'text/plain' }, body: 'x' });
    assert.equal(text.status, 415);
    const broken = await fetch(new URL('/api/v1/me', ts.issuer), { method: 'PATCH', headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'application/json' }, body: '{' });
    assert.equal(broken.status, 400);
    assert.equal(((await broken.json()) as { error: string }).error, 'IDENT_VALIDATION');
    const put = await call('PUT', '/api/v1/me', accessToken, {});
    assert.equal(put.status, 405);
    assert.equal(put.body!.error, 'IDENT_METHOD_NOT_ALLOWED');
  });

  it('is described in /api/v1/openapi.json with the admin API, from the same schemas that validate it', async () => {
    const doc = (await (await fetch(new URL('/api/v1/openapi.json', ts.issuer))).json()) as Record<string, any>;
    assert.equal(doc.components.securitySchemes.user.scheme, 'bearer');
    assert.deepEqual(doc.paths['/api/v1/me'].patch.security, [{ user: ['openid', 'profile'] }]);
    assert.deepEqual(doc.paths['/api/v1/me'].get.security, [{ user: ['openid'] }]);
    assert.equal(doc.paths['/api/v1/me/password'].post['x-first-party-only'], true, 'account management is marked first-party only');
    assert.equal(doc.paths['/api/v1/me'].get['x-first-party-only'], undefined);
    assert.deepEqual(doc.paths['/api/v1/auth/register'].post.security, [], 'anonymous');
    const register = doc.paths['/api/v1/auth/register'].post;
    assert.deepEqual(Object.keys(register.requestBody.content['application/json'].schema.properties).sort(),
      ['captcha', 'client_id', 'email', 'familyName', 'givenName', 'locale', 'password']);
    assert.ok(register.responses['202']);
    assert.deepEqual(doc.paths['/api/v1/me/sessions/{id}'].delete.parameters.map((p: { name: string }) => p.name), ['id']);
    assert.ok(doc.paths['/api/v1/users'].get, 'the admin API is in the same document');
  });
});
