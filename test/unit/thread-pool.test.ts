import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { concurrencyGate, HASHES_AT_ONCE, sizeThreadPool } from '../../src/infra/thread-pool.ts';

/** A piece of work that runs until released, recording when it started. */
function pending(started: string[], name: string) {
  let release!: () => void;
  const done = new Promise<void>((resolve) => (release = resolve));
  return { run: async () => { started.push(name); await done; return name; }, release };
}

describe('thread pool sizing and the hash gate', () => {
  it('runs at most `limit` pieces of work at once, the rest in arrival order', async () => {
    const gate = concurrencyGate(2);
    const started: string[] = [];
    const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((n) => pending(started, n));
    const results = [gate(a!.run), gate(b!.run), gate(c!.run), gate(d!.run)];
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(started, ['a', 'b'], 'two at once');
    b!.release();
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(started, ['a', 'b', 'c'], 'a freed slot goes to the first in line');
    a!.release();
    c!.release();
    d!.release();
    assert.deepEqual(await Promise.all(results), ['a', 'b', 'c', 'd']);
  });

  it('frees the slot of work that fails', async () => {
    const gate = concurrencyGate(1);
    await assert.rejects(gate(async () => { throw new Error('boom'); }), /boom/);
    assert.equal(await gate(async () => 'next'), 'next');
  });

  it('sizes the pool one above the hashes at once, unless the operator set UV_THREADPOOL_SIZE', () => {
    const env: NodeJS.ProcessEnv = {};
    sizeThreadPool(env);
    assert.equal(env.UV_THREADPOOL_SIZE, String(HASHES_AT_ONCE + 1));
    assert.ok(HASHES_AT_ONCE >= 1 && HASHES_AT_ONCE + 1 <= 4, 'never above libuv\'s default of 4');
    const operator: NodeJS.ProcessEnv = { UV_THREADPOOL_SIZE: '16' };
    sizeThreadPool(operator);
    assert.equal(operator.UV_THREADPOOL_SIZE, '16');
  });
});
