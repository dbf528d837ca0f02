import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as oidc from 'openid-client';
import { createUser, registerClient, rpConfig, signIn } from '../helpers/rp.ts';
import { startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';

const isInvalidGrant = (err: oidc.ResponseBodyError) => err.error === 'invalid_grant';

describe('refresh tokens', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer();
  });
  after(() => stopAndDestroy(ts));

  async function offlineSignIn(firstParty: boolean, metadata: Record<string, unknown> = {}) {
    const user = await createUser(ts);
    const client = await registerClient(ts, metadata, firstParty);
    const config = await rpConfig(ts, client);
    const { tokens, consentShown } = await signIn(ts, config, user, {
      scope: 'openid email offline_access',
      prompt: 'consent',
    });
    return { user, config, tokens, consentShown };
  }

  it('is issued with offline_access, rotates on every use, and replay revokes the whole grant', async () => {
    const { config, tokens, consentShown } = await offlineSignIn(false);
    assert.ok(consentShown, 'third-party clients get the consent page');
    assert.ok(tokens.refresh_token, 'offline_access with prompt=consent yields a refresh token');
    const first = tokens.refresh_token!;

    const second = await oidc.refreshTokenGrant(config, first);
    assert.ok(second.refresh_token);
    assert.notEqual(second.refresh_token, first, 'every use rotates');
    assert.ok(second.access_token);
    const third = await oidc.refreshTokenGrant(config, second.refresh_token!);
    assert.ok(third.refresh_token);

    // Replaying a rotated token: refused, and everything of the grant is revoked with it.
    await assert.rejects(oidc.refreshTokenGrant(config, first), isInvalidGrant);
    await assert.rejects(oidc.refreshTokenGrant(config, third.refresh_token!), isInvalidGrant);
    const introspected = await oidc.tokenIntrospection(config, third.access_token);
    assert.equal(introspected.active, false);
  });

  it('rotation keeps the remaining lifetime: the new token expires when the one it replaces would have', async () => {
    const { config, tokens } = await offlineSignIn(true);
    const refreshExp = async (token: string) => {
      const info = await oidc.tokenIntrospection(config, token, { token_type_hint: 'refresh_token' });
      assert.equal(info.active, true);
      return info.exp!;
    };
    const issued = await refreshExp(tokens.refresh_token!);
    const ttl = 1_209_600; // REFRESH_TOKEN_TTL_SECONDS' default, which this server runs with
    assert.ok(Math.abs(issued - (Math.floor(Date.now() / 1000) + ttl)) <= 5, 'the first refresh token lives the full TTL');

    // Move time instead of waiting: the stored token now has 10 minutes left, as if it were old.
    const { db, box } = ts.server.services;
    const storedId = box.digest(tokens.refresh_token!, 'oidc-token-id');
    const row = await db('oidc_payloads').where({ model: 'RefreshToken', id: storedId }).first();
    assert.ok(row, 'the refresh token row');
    const payload = typeof row.payload === 'string' ? JSON.parse(row.payload) : row.payload;
    const aged = Math.floor(Date.now() / 1000) + 600;
    await db('oidc_payloads')
      .where({ model: 'RefreshToken', id: storedId })
      .update({ payload: JSON.stringify({ ...payload, iat: aged - ttl, exp: aged }), expires_at: new Date(aged * 1000) });
    assert.equal(await refreshExp(tokens.refresh_token!), aged);

    const rotated = await oidc.refreshTokenGrant(config, tokens.refresh_token!);
    assert.notEqual(rotated.refresh_token, tokens.refresh_token);
    // remainingTTL is counted in whole seconds at the moment of rotation: allow the second it may tick.
    const rotatedExp = await refreshExp(rotated.refresh_token!);
    assert.ok(rotatedExp >= aged - 1 && rotatedExp <= aged, `rotated token expires at ${rotatedExp}, the original at ${aged} (not a fresh ${ttl} s)`);
    const again = await oidc.refreshTokenGrant(config, rotated.refresh_token!);
    const againExp = await refreshExp(again.refresh_token!);
    assert.ok(againExp >= aged - 2 && againExp <= aged, 'every further rotation keeps it too');
  });

  it('is not issued to a client not allowed the refresh_token grant', async () => {
    const { tokens } = await offlineSignIn(true, { grant_types: ['authorization_code'] });
    assert.equal(tokens.refresh_token, undefined);
  });

  it('first-party clients get one without a consent screen; public clients too (rotated)', async () => {
    const { config, tokens, consentShown } = await offlineSignIn(true, { token_endpoint_auth_method: 'none' });
    assert.equal(consentShown, false, 'first-party clients skip the consent page');
    assert.ok(tokens.refresh_token);
    const next = await oidc.refreshTokenGrant(config, tokens.refresh_token!);
    assert.notEqual(next.refresh_token, tokens.refresh_token);
  });

  it('of two concurrent redemptions of one refresh token exactly one wins', async () => {
    const { config, tokens } = await offlineSignIn(true);
    const results = await Promise.allSettled([
      oidc.refreshTokenGrant(config, tokens.refresh_token!),
      oidc.refreshTokenGrant(config, tokens.refresh_token!),
    ]);
    const won = results.filter((r) => r.status === 'fulfilled');
    const lost = results.filter((r) => r.status === 'rejected');
    assert.equal(won.length, 1, 'exactly one redemption succeeds');
    assert.equal(lost.length, 1);
    assert.equal(((lost[0] as PromiseRejectedResult).reason as oidc.ResponseBodyError).error, 'invalid_grant');
    // The loser was a reuse: the grant is revoked, and with it what the winner was issued.
    const winner = (won[0] as PromiseFulfilledResult<oidc.TokenEndpointResponse>).value;
    assert.equal((await oidc.tokenIntrospection(config, winner.access_token)).active, false);
    await assert.rejects(oidc.refreshTokenGrant(config, winner.refresh_token!), (e: oidc.ResponseBodyError) => e.error === 'invalid_grant');
  });

  it('of two concurrent redemptions of one code exactly one wins', async () => {
    const user = await createUser(ts);
    const client = await registerClient(ts, {}, true);
    const config = await rpConfig(ts, client);
    // signIn redeems the code itself; run the flow and redeem the same callback twice in parallel instead.
    const { HttpBrowser } = await import('../helpers/browser-http.ts');
    const { submitLogin, REDIRECT_URI } = await import('../helpers/rp.ts');
    const browser = new HttpBrowser();
    const verifier = oidc.randomPKCECodeVerifier();
    const page = await browser.follow(
      oidc.buildAuthorizationUrl(config, {
        redirect_uri: REDIRECT_URI,
        scope: 'openid',
        state: 'c',
        code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
        code_challenge_method: 'S256',
      }),
    );
    const login = await submitLogin(browser, page.url, await page.res.text(), user.email, user.password);
    const cb = await browser.follow(new URL(login.headers.get('location')!, page.url), {}, (u) => u.href.startsWith(REDIRECT_URI));
    const results = await Promise.allSettled([
      oidc.authorizationCodeGrant(config, cb.url, { pkceCodeVerifier: verifier, expectedState: 'c' }),
      oidc.authorizationCodeGrant(config, cb.url, { pkceCodeVerifier: verifier, expectedState: 'c' }),
    ]);
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
    assert.equal(results.filter((r) => r.status === 'rejected').length, 1);
  });
});
