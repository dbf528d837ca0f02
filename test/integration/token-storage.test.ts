import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import * as oidc from 'openid-client';
import { allRowsAsText } from '../helpers/db.ts';
import { authorizationRequest, createUser, REDIRECT_URI, registerClient, rpConfig, signIn } from '../helpers/rp.ts';
import { onPostgres, startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';

const run = promisify(execFile);
const isInvalidGrant = (err: oidc.ResponseBodyError) => err.error === 'invalid_grant';

/**
 * Opaque tokens and codes are stored under a keyed digest of their value: whoever reads a dump of
 * the database finds no token that works, while the tokens themselves keep working.
 */
describe(`bearer values at rest (${onPostgres ? 'PostgreSQL, pg_dump' : 'PGlite, every row as text'})`, () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer();
  });
  after(() => stopAndDestroy(ts));

  /** What a dump of the database holds: pg_dump on PostgreSQL, every table's rows on PGlite. */
  async function dump(): Promise<string> {
    if (onPostgres) {
      const { stdout } = await run('/usr/bin/pg_dump', ['--data-only', ts.store.env.DATABASE_URL!], { maxBuffer: 64 * 1024 * 1024 });
      assert.match(stdout, /COPY public\.oidc_payloads/, 'the dump holds the token table');
      return stdout;
    }
    return allRowsAsText(ts.server.services.db);
  }

  it('a dump after a sign-in, a refresh token, a client_credentials token and an unredeemed code holds none of them; all still work', async () => {
    const user = await createUser(ts);
    const client = await registerClient(ts, { grant_types: ['authorization_code', 'refresh_token', 'client_credentials'] }, true);
    const config = await rpConfig(ts, client);
    const { tokens, browser } = await signIn(ts, config, user, { scope: 'openid email offline_access', prompt: 'consent' });
    assert.ok(tokens.refresh_token, 'offline_access gives a refresh token');
    assert.equal(tokens.access_token.split('.').length, 1, 'the access token is opaque');

    // A second authorization in the same browser session: its code is issued, not yet redeemed.
    const second = await authorizationRequest(config);
    const callback = await browser.follow(second.url, {}, (u) => u.href.startsWith(REDIRECT_URI));
    const code = callback.url.searchParams.get('code');
    assert.ok(code, 'a code was issued');

    const machine = await oidc.clientCredentialsGrant(config);
    assert.equal(machine.access_token.split('.').length, 1, 'the client_credentials token is opaque');

    const text = await dump();
    assert.ok(text.includes(client.clientId), 'the dump does show the rows (sanity check)');
    const values = { access_token: tokens.access_token, refresh_token: tokens.refresh_token!, code, client_credentials: machine.access_token };
    for (const [what, value] of Object.entries(values)) assert.equal(text.includes(value), false, `the dump holds no ${what}`);

    // They all still work: introspection, the code, refresh (rotating), revocation, reuse detection.
    assert.equal((await oidc.tokenIntrospection(config, tokens.access_token)).active, true);
    const info = await oidc.tokenIntrospection(config, machine.access_token);
    assert.equal(info.active, true);
    assert.equal(info.client_id, client.clientId);
    const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token!);
    assert.ok(refreshed.refresh_token && refreshed.refresh_token !== tokens.refresh_token, 'rotated');
    assert.equal((await oidc.tokenIntrospection(config, refreshed.access_token)).active, true);

    await oidc.tokenRevocation(config, machine.access_token);
    assert.equal((await oidc.tokenIntrospection(config, machine.access_token)).active, false, 'revoked');

    const redeemed = await second.redeem(callback.url);
    assert.equal((await oidc.tokenIntrospection(config, redeemed.access_token)).active, true);

    // Presenting the rotated refresh token again is reuse: refused, and the grant is revoked with it.
    await assert.rejects(oidc.refreshTokenGrant(config, tokens.refresh_token!), isInvalidGrant);
    await assert.rejects(oidc.refreshTokenGrant(config, refreshed.refresh_token!), isInvalidGrant);
    assert.equal((await oidc.tokenIntrospection(config, refreshed.access_token)).active, false);
    assert.equal((await oidc.tokenIntrospection(config, redeemed.access_token)).active, false, 'the same grant');
    await assert.rejects(
      second.redeem(callback.url),
      isInvalidGrant,
      'a code works once',
    );
  });
});
