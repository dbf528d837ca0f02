import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import Keygrip from 'keygrip';
import { createCookieSigner } from '../../src/oidc/cookie-signer.ts';

// keygrip is what the provider's cookies were signed with before: every cookie it signed must
// still verify, and every signature ours makes must verify under keygrip (an instance not yet
// upgraded, while several run side by side).
describe('the provider cookie signer', () => {
  const data = '_session=Cx3v9kJ0aZ2lQ8mR5tY7uW1eB4nD6fG0hJ2kL4';
  const newest = 'n'.repeat(43);
  const older = 'o'.repeat(43);

  it('signs as keygrip does with the first key', () => {
    const ours = createCookieSigner([newest, older]);
    const theirs = new Keygrip([newest, older]);
    for (const value of [data, '', 'ü€ and spaces', `${data}.sig`]) assert.equal(ours.sign(value), theirs.sign(value));
  });

  it('finds which key signed a cookie, keygrip-signed ones included', () => {
    const ours = createCookieSigner([newest, older]);
    assert.equal(ours.index(data, new Keygrip([newest]).sign(data)), 0);
    assert.equal(ours.index(data, new Keygrip([older]).sign(data)), 1, 'a cookie of the key rotated out of signing still verifies');
    assert.equal(new Keygrip([older, newest]).index(data, ours.sign(data)), 1);
    assert.equal(ours.verify(data, ours.sign(data)), true);
  });

  it('refuses a signature of another key, of other data, altered, shortened, or absent', () => {
    const ours = createCookieSigner([newest]);
    const good = ours.sign(data);
    assert.equal(ours.index(data, new Keygrip(['x'.repeat(43)]).sign(data)), -1);
    assert.equal(ours.index(`${data}x`, good), -1);
    assert.equal(ours.index(data, `${good.slice(0, -1)}${good.endsWith('A') ? 'B' : 'A'}`), -1);
    assert.equal(ours.index(data, good.slice(0, -1)), -1);
    assert.equal(ours.index(data, `${good}=`), -1);
    assert.equal(ours.index(data, ''), -1);
    assert.equal(ours.index(data, undefined as unknown as string), -1);
    assert.equal(ours.verify(data, 'not-a-signature'), false);
  });

  it('needs a key', () => {
    assert.throws(() => createCookieSigner([]), /no cookie keys/);
  });
});
