import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EphemeralStoreFull } from '../../src/infra/ephemeral/index.ts';
import { MemoryStore } from '../../src/infra/ephemeral/memory.ts';

const isFull = (err: unknown) => err instanceof EphemeralStoreFull;

describe('in-process store when full', () => {
  it('never evicts a security record: new ones are refused, the old ones stay and can still change', async () => {
    const store = new MemoryStore(10);
    try {
      await store.incr('lockout:unknown@example.test', 900);
      await store.incr('lockout:unknown@example.test', 900);
      await store.set('otp:lock:someone', '1', 900);
      assert.equal(await store.setIfAbsent('captcha:used:sig-1', '1', 300), true);
      assert.equal(await store.compareAndSwap('otp:otp:someone', undefined, '{"n":0}', 600), true);
      for (let i = 0; i < 6; i++) await store.setIfAbsent(`otp:cooldown:${i}`, '1', 60);

      // Full: every kind of write of a new key is refused.
      await assert.rejects(store.incr('lockout:another@example.test', 900), isFull);
      await assert.rejects(store.set('otp:lock:another', '1', 900), isFull);
      await assert.rejects(store.setIfAbsent('captcha:used:sig-2', '1', 300), isFull);
      await assert.rejects(store.compareAndSwap('otp:otp:another', undefined, '{"n":0}', 600), isFull);

      // Nothing was forgotten to make room, and the records already there keep working.
      assert.equal(await store.get('lockout:unknown@example.test'), '2');
      assert.equal(await store.incr('lockout:unknown@example.test', 900), 3);
      assert.equal(await store.get('otp:lock:someone'), '1');
      assert.equal(await store.setIfAbsent('captcha:used:sig-1', '1', 300), false, 'a replay is still caught');
      assert.equal(await store.compareAndSwap('otp:otp:someone', '{"n":0}', '{"n":1}'), true);

      // Room comes back when a record goes.
      await store.del('otp:cooldown:0');
      assert.equal(await store.setIfAbsent('captcha:used:sig-2', '1', 300), true);
    } finally {
      await store.close();
    }
  });

  it('makes room by dropping cache records, oldest first, and only those', async () => {
    const store = new MemoryStore(10);
    try {
      for (let i = 0; i < 3; i++) await store.set(`console:signin:${i}`, 'sealed', 600, { evictable: true });
      for (let i = 0; i < 7; i++) await store.incr(`lockout:${i}`, 900);
      // Three more security records fit, each in place of a cache record, the oldest first.
      await store.incr('lockout:7', 900);
      assert.equal(await store.get('console:signin:0'), undefined, 'the oldest cache record went');
      assert.equal(await store.get('console:signin:1'), 'sealed');
      await store.incr('lockout:8', 900);
      await store.incr('lockout:9', 900);
      for (let i = 0; i < 3; i++) assert.equal(await store.get(`console:signin:${i}`), undefined);
      await assert.rejects(store.incr('lockout:10', 900), isFull, 'no cache record left to drop');
      await assert.rejects(store.set('console:signin:3', 'sealed', 600, { evictable: true }), isFull, 'a cache record does not push out a security one');
      for (let i = 0; i < 10; i++) assert.equal(await store.get(`lockout:${i}`), '1', `lockout ${i} kept`);
    } finally {
      await store.close();
    }
  });

  it('a cache record overwritten as a security record is no longer evictable', async () => {
    const store = new MemoryStore(10);
    try {
      await store.set('k', 'cache', 600, { evictable: true });
      await store.set('k', 'kept', 600);
      for (let i = 0; i < 9; i++) await store.set(`s:${i}`, '1', 600);
      await assert.rejects(store.set('s:9', '1', 600), isFull);
      assert.equal(await store.get('k'), 'kept');
    } finally {
      await store.close();
    }
  });
});
