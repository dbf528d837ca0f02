import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { openLoginPage, postLogin } from '../helpers/login-page.ts';
import { registerClient, uniqueEmail } from '../helpers/rp.ts';
import { onPostgres, startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';

const BOUND = 10;

/**
 * The in-process store (no REDIS_URL) is bounded by MEMORY_STORE_MAX_ENTRIES. Full, it keeps
 * every lockout it holds and refuses the work that would need a new one: 503 IDENT_UNAVAILABLE.
 * A failed sign-in for an unknown address keeps its lockout counter there.
 */
describe('a full in-process store refuses new work instead of forgetting lockouts', {
  skip: onPostgres && 'MEMORY_STORE_MAX_ENTRIES bounds the in-process store; with REDIS_URL the bound is Redis maxmemory (noeviction)',
}, () => {
  let ts: TestServer;
  let clientId: string;
  before(async () => {
    ts = await startTestServer({ MEMORY_STORE_MAX_ENTRIES: String(BOUND), LOCKOUT_THRESHOLD: '2' });
    clientId = (await registerClient(ts, { token_endpoint_auth_method: 'none' }, true)).clientId;
  });
  after(() => stopAndDestroy(ts));

  const attempt = async (email: string, headers: Record<string, string> = {}) =>
    postLogin(await openLoginPage(ts, clientId), { email, password: 'wrong password' }, headers);

  it('a locked unknown address stays locked while new failed sign-ins answer 503', async () => {
    const target = uniqueEmail('locked');
    assert.equal((await attempt(target)).status, 401);
    assert.equal((await attempt(target)).status, 429, 'locked after LOCKOUT_THRESHOLD failures');

    // Failed sign-ins for other unknown addresses each need a counter of their own, until none fits.
    let refused;
    for (let i = 0; i < BOUND + 2 && !refused; i++) {
      const answer = await attempt(uniqueEmail('filler'));
      if (answer.status === 503) refused = answer;
      else assert.equal(answer.status, 401, `filler ${i}`);
    }
    assert.ok(refused, 'the store filled up and the next failed sign-in was refused');
    assert.equal(refused.location, null, 'nobody is signed in');

    assert.equal((await attempt(target)).status, 429, 'the lockout was not forgotten to make room');

    const json = await attempt(uniqueEmail('another'), { accept: 'application/json' });
    assert.equal(json.status, 503);
    const body = JSON.parse(json.html) as Record<string, string>;
    assert.equal(body.error, 'IDENT_UNAVAILABLE');
    assert.ok(body.message && body.requestId, 'the error envelope');
    assert.equal(json.res.headers.get('retry-after'), '60');
  });
});
