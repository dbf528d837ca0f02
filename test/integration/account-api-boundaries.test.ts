import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createUser, registerClient, rpConfig, signIn } from '../helpers/rp.ts';
import { startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';
import { callUserApi } from '../helpers/user-api.ts';
import { DEFAULT_SCOPE } from '../../src/domain/tenants/tenant-scope.ts';

/**
 * What a relying party's token may do with /api/v1/me*: account management only for first-party
 * clients, profile fields only as far as the token's scopes go, and nothing once its client or
 * grant is gone.
 */
describe('account API boundaries (/api/v1/me* by client and scope)', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer({ ME_API_RATE_LIMIT_PER_USER: '1000', LOCKOUT_THRESHOLD: '3' });
  });
  after(() => stopAndDestroy(ts));

  const call = (method: string, path: string, token: string, body?: unknown) => callUserApi(ts, method, path, token, body);

  /** A user's access token from a client (third-party unless `firstParty`), after the real login and consent pages. */
  async function tokenFor(user: { email: string; password: string }, scope: string, firstParty = false) {
    const client = await registerClient(ts, { scope: 'openid email profile offline_access' }, firstParty);
    const { tokens } = await signIn(ts, await rpConfig(ts, client), user, { scope, prompt: 'consent' });
    return { clientId: client.clientId, accessToken: tokens.access_token };
  }

  it('refuses account management to a third-party token (403 before any password is checked; no lockout counting)', async () => {
    const user = await createUser(ts);
    const { accessToken } = await tokenFor(user, 'openid');
    const first = await tokenFor(user, 'openid', true);
    const sessionId = ((await call('GET', '/api/v1/me/sessions', first.accessToken)).body!.data as Array<{ id: string }>)[0]!.id;

    for (const [method, path] of [
      ['GET', '/api/v1/me/sessions'],
      ['DELETE', `/api/v1/me/sessions/${sessionId}`],
      ['POST', '/api/v1/auth/logout-all'],
    ] as const) {
      const res = await call(method, path, accessToken);
      assert.equal(res.status, 403, `${method} ${path}`);
      assert.equal(res.body!.error, 'IDENT_FORBIDDEN');
      assert.match(res.body!.message, /first-party/);
    }
    // More wrong guesses than the lockout threshold: each refused, none counted.
    for (let i = 0; i < 5; i++) {
      const res = await call('POST', '/api/v1/me/password', accessToken, { currentPassword: `guess ${i}`, newPassword: 'violet harbour lantern 93' });
      assert.equal(res.status, 403);
      assert.equal(res.body!.error, 'IDENT_FORBIDDEN');
    }
    const row = (await ts.server.services.repos.users.findById(user.id))!;
    assert.equal(row.failed_attempts, 0, 'no failure recorded');
    assert.equal(row.locked_until, null, 'not locked');
    assert.equal((await ts.server.services.accounts.authenticate(user.email, user.password)).ok, true, 'the user still signs in');

    // Nothing was ended: the first-party token and its session live on.
    const sessions = await call('GET', '/api/v1/me/sessions', first.accessToken);
    assert.equal(sessions.status, 200);
    assert.ok((sessions.body!.data as Array<{ id: string }>).some((s) => s.id === sessionId));
    assert.equal((await call('GET', '/api/v1/me', accessToken)).status, 200, 'the third-party token still reads /me');
  });

  it('a first-party token with openid only may manage the account', async () => {
    const user = await createUser(ts);
    const { accessToken } = await tokenFor(user, 'openid', true);
    assert.equal((await call('GET', '/api/v1/me/sessions', accessToken)).status, 200);
    const wrong = await call('POST', '/api/v1/me/password', accessToken, { currentPassword: 'not it', newPassword: 'violet harbour lantern 93' });
    assert.equal(wrong.body!.error, 'IDENT_CURRENT_PASSWORD_INVALID');
  });

  it('GET /me shows only what the scopes cover: openid alone gives the id, email adds the address, profile the names', async () => {
    const user = await createUser(ts);
    const openidOnly = await call('GET', '/api/v1/me', (await tokenFor(user, 'openid')).accessToken);
    assert.equal(openidOnly.status, 200);
    assert.deepEqual(openidOnly.body, { id: user.id }, 'no email, names, locale, time zone or account dates');

    const emailOnly = await call('GET', '/api/v1/me', (await tokenFor(user, 'openid email')).accessToken);
    assert.deepEqual(emailOnly.body, { id: user.id, email: user.email, emailVerified: true });

    const profile = await call('GET', '/api/v1/me', (await tokenFor(user, 'openid profile')).accessToken);
    assert.deepEqual(Object.keys(profile.body!).sort(), ['familyName', 'givenName', 'id', 'locale', 'timezone']);
    assert.equal(profile.body!.givenName, 'Ada');

    const console = await call('GET', '/api/v1/me', (await tokenFor(user, 'openid email profile', true)).accessToken);
    assert.equal(console.body!.email, user.email);
    assert.ok(console.body!.createdAt && 'passwordChangedAt' in console.body!, 'a first-party client sees the account dates');
  });

  it('PATCH /me of a field the scopes do not cover is 403 naming the scope, and changes nothing', async () => {
    const user = await createUser(ts);
    for (const scope of ['openid', 'openid email']) {
      const { accessToken } = await tokenFor(user, scope);
      for (const body of [{ givenName: 'Mallory' }, { timezone: 'Europe/Paris' }, { locale: 'vi' }]) {
        const res = await call('PATCH', '/api/v1/me', accessToken, body);
        assert.equal(res.status, 403, `${scope}: ${JSON.stringify(body)}`);
        assert.equal(res.body!.error, 'IDENT_FORBIDDEN');
        assert.match(res.headers.get('www-authenticate') ?? '', /error="insufficient_scope", scope="profile"/);
      }
    }
    const row = (await ts.server.services.repos.users.findById(user.id))!;
    assert.deepEqual([row.given_name, row.timezone, row.locale], ['Ada', null, null]);
  });

  it('a token whose grant was revoked, or whose client was deleted, is 401 invalid_token', async () => {
    const user = await createUser(ts);
    const { accessToken } = await tokenFor(user, 'openid email');
    assert.equal((await call('GET', '/api/v1/me', accessToken)).status, 200);
    const at = await ts.server.provider.AccessToken.find(accessToken);
    const grant = await ts.server.provider.Grant.find(at!.grantId!);
    await grant!.destroy();
    const revoked = await call('GET', '/api/v1/me', accessToken);
    assert.equal(revoked.status, 401);
    assert.equal(revoked.body!.error, 'IDENT_UNAUTHENTICATED');
    assert.match(revoked.headers.get('www-authenticate') ?? '', /error="invalid_token"/);

    const other = await tokenFor(user, 'openid', true);
    assert.equal((await call('GET', '/api/v1/me/sessions', other.accessToken)).status, 200);
    await ts.server.services.clients.remove(DEFAULT_SCOPE, other.clientId);
    for (const path of ['/api/v1/me', '/api/v1/me/sessions']) {
      const res = await call('GET', path, other.accessToken);
      assert.equal(res.status, 401, path);
      assert.match(res.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
    }
  });
});

describe('account API budgets per client', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer({ ME_API_RATE_LIMIT_PER_USER: '3' });
  });
  after(() => stopAndDestroy(ts));

  it('a third-party client spends a budget of its own: the user\'s first-party calls still go through', async () => {
    const user = await createUser(ts);
    const tokenOf = async (firstParty: boolean) => {
      const client = await registerClient(ts, { scope: 'openid email' }, firstParty);
      return (await signIn(ts, await rpConfig(ts, client), user, { scope: 'openid', prompt: 'consent' })).tokens.access_token;
    };
    const me = (token: string) => fetch(new URL('/api/v1/me', ts.issuer), { headers: { authorization: `Bearer ${token}` } }).then((r) => r.status);
    const thirdParty = await tokenOf(false);
    const firstParty = await tokenOf(true);
    assert.deepEqual([await me(thirdParty), await me(thirdParty), await me(thirdParty), await me(thirdParty)], [200, 200, 200, 429]);
    assert.equal(await me(firstParty), 200, 'the user\'s own budget is untouched');
  });
});
