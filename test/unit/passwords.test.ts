import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import argon2 from 'argon2';
import { createPasswordHasher } from '../../src/domain/authn/passwords.ts';

// A small cost keeps the test fast; the comparison is of costs, not their size.
const cost = { memoryCost: 1024, timeCost: 1, parallelism: 1 };

describe('password hasher', () => {
  const hasher = createPasswordHasher(cost);

  it('a hash made at the current cost verifies and needs no rehash', async () => {
    const hash = await hasher.hash('correct horse');
    assert.deepEqual(await hasher.verify(hash, 'correct horse'), { ok: true, needsRehash: false });
    assert.deepEqual(await hasher.verify(hash, 'wrong horse'), { ok: false, needsRehash: false });
  });

  it('a hash made at another cost verifies and is due a rehash, as argon2.needsRehash says', async () => {
    for (const older of [
      { memoryCost: 2048, timeCost: 1, parallelism: 1 },
      { memoryCost: 1024, timeCost: 2, parallelism: 1 },
      { memoryCost: 1024, timeCost: 1, parallelism: 2 },
    ]) {
      const hash = await argon2.hash('correct horse', { type: argon2.argon2id, ...older });
      assert.deepEqual(await hasher.verify(hash, 'correct horse'), { ok: true, needsRehash: true }, JSON.stringify(older));
    }
  });

  it('another variant at the current cost gets the library\'s own answer', async () => {
    const hash = await argon2.hash('correct horse', { type: argon2.argon2i, ...cost });
    const expected = argon2.needsRehash(hash, cost);
    assert.deepEqual(await hasher.verify(hash, 'correct horse'), { ok: true, needsRehash: expected });
  });

  it('an unknown account costs a verification and never matches', async () => {
    assert.deepEqual(await hasher.verify(null, 'anything'), { ok: false, needsRehash: false });
  });
});
