import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runInRequestScope } from '../../src/infra/request-scope.ts';
import {
  closeWriteWindow,
  heldRow,
  holdConsume,
  holdDestroy,
  holdUpsert,
  inWriteWindow,
  openWriteWindow,
  takeHeldWrites,
  writesHeldOnSave,
} from '../../src/oidc/held-writes.ts';
import type { UpsertRow } from '../../src/repos/payload-write-batcher.ts';

const row = (model: string, id: string, grantId: string | null = 'g1'): UpsertRow => ({
  model,
  id,
  payloadJson: JSON.stringify({ kind: model }),
  grant_id: grantId,
  uid: null,
  user_code: null,
  account_id: 'a1',
  expires_at: null,
});

/** The write windows of oidc/held-writes.ts, as the adapter and the middleware drive them. */
describe('write windows', () => {
  it('outside a request there is no window: every write goes out at once', () => {
    assert.equal(openWriteWindow('redemption'), false);
    assert.equal(holdUpsert(() => row('AccessToken', 't1')), false);
    assert.equal(closeWriteWindow(), undefined);
  });

  it('a token request that redeems nothing holds nothing (client_credentials)', () => {
    runInRequestScope({}, () => {
      assert.equal(openWriteWindow('redemption'), true);
      assert.equal(inWriteWindow(), false, 'no window is open before a consume');
      assert.equal(holdUpsert(() => row('ClientCredentials', 'c1', null)), false, 'the token is written at once');
      assert.equal(holdDestroy('ClientCredentials', 'c0'), false);
      assert.equal(closeWriteWindow(), undefined);
    });
  });

  it('a redemption holds its consume and every write after it, and reads see them', () => {
    runInRequestScope({}, () => {
      openWriteWindow('redemption');
      assert.equal(holdConsume('RefreshToken', 'r1'), true);
      assert.equal(inWriteWindow(), true);
      assert.equal(holdConsume('RefreshToken', 'r2'), false, 'one consume per request; a second goes out at once');
      assert.equal(holdUpsert(() => row('RefreshToken', 'r3')), true);
      assert.equal(holdUpsert(() => row('AccessToken', 'a3')), true);
      assert.equal(holdDestroy('AccessToken', 'a3'), true);
      assert.deepEqual(heldRow('RefreshToken', 'r3'), { payloadJson: JSON.stringify({ kind: 'RefreshToken' }) });
      assert.deepEqual(heldRow('AccessToken', 'a3'), { payloadJson: null }, 'a held removal reads as gone');
      assert.equal(writesHeldOnSave('Session'), false, 'only a resumed authorization writes on the session save');
      const held = closeWriteWindow();
      assert.deepEqual(held?.consume, { model: 'RefreshToken', key: 'r1' });
      assert.deepEqual([...held!.upserts.keys()], ['RefreshToken\0r3']);
      assert.deepEqual([...held!.deletes.keys()], ['AccessToken\0a3']);
      assert.equal(inWriteWindow(), false, 'closed');
    });
  });

  it('a resumed authorization holds from the start until the session is saved', () => {
    runInRequestScope({}, () => {
      openWriteWindow('resume');
      assert.equal(inWriteWindow(), true);
      assert.equal(holdDestroy('Interaction', 'i1'), true);
      assert.equal(holdUpsert(() => row('Grant', 'g1', null)), true);
      assert.equal(writesHeldOnSave('Session'), true);
      const taken = takeHeldWrites();
      assert.equal(taken?.upserts.size, 1);
      assert.equal(taken?.deletes.size, 1);
      assert.equal(takeHeldWrites(), undefined, 'taken once');
      assert.equal(closeWriteWindow(), undefined);
    });
  });

  it('concurrent requests keep their own windows', async () => {
    const first = runInRequestScope({}, async () => {
      openWriteWindow('redemption');
      holdConsume('AuthorizationCode', 'code-1');
      await new Promise((resolve) => setImmediate(resolve));
      return closeWriteWindow()?.consume;
    });
    const second = runInRequestScope({}, async () => {
      openWriteWindow('redemption');
      await new Promise((resolve) => setImmediate(resolve));
      return closeWriteWindow();
    });
    assert.deepEqual(await first, { model: 'AuthorizationCode', key: 'code-1' });
    assert.equal(await second, undefined);
  });
});
