import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { createWriteBatcher, type UpsertRow, type WriteBatch } from '../../src/repos/payload-write-batcher.ts';

const row = (id: string): UpsertRow => ({
  model: 'AccessToken',
  id,
  payloadJson: '{}',
  grant_id: null,
  uid: null,
  user_code: null,
  account_id: null,
  expires_at: null,
});

/** A statement stand-in the test ends by hand: what each batch held, and how to answer it. */
function statements() {
  const calls: Array<{ batch: WriteBatch; answer(consumed?: string[]): void; fail(err: Error): void }> = [];
  const write = (batch: WriteBatch) =>
    new Promise<Set<string>>((resolve, reject) => {
      calls.push({ batch, answer: (consumed = []) => resolve(new Set(consumed)), fail: reject });
    });
  const ids = (i: number) => [...calls[i]!.batch.upserts.map((r) => r.id), ...calls[i]!.batch.consumes.map((c) => `consume:${c.id}`)];
  return { calls, write, ids };
}

// Past the setImmediate a batch is drained in.
const turn = () => new Promise((resolve) => setImmediate(resolve));
// Past a statement's end: its callers resolve, then what waited for it is drained.
const settle = async () => {
  for (let i = 0; i < 3; i++) await turn();
};

/** A batcher whose first statement (holding write a) is in flight, not yet answered. */
async function withOneInFlight(waitMs?: number) {
  const s = statements();
  const batcher = createWriteBatcher(s.write, waitMs);
  const first = batcher.upsert(row('a'));
  await turn();
  assert.equal(s.calls.length, 1);
  return { s, batcher, first };
}

describe('payload write batcher', () => {
  it('sends a write alone at once', async () => {
    const s = statements();
    const batcher = createWriteBatcher(s.write);
    const written = batcher.upsert(row('a'));
    await turn();
    assert.equal(s.calls.length, 1);
    assert.deepEqual(s.ids(0), ['a']);
    s.calls[0]!.answer();
    await written;
  });

  it('puts the writes issued while a statement is in flight into the next statement, together', async () => {
    const { s, batcher, first } = await withOneInFlight();
    const second = batcher.upsert(row('b'));
    await turn();
    const third = batcher.upsert(row('c'));
    await turn();
    assert.equal(s.calls.length, 1, 'b and c wait for the statement in flight');
    s.calls[0]!.answer();
    await first;
    await settle();
    assert.equal(s.calls.length, 2);
    assert.deepEqual(s.ids(1), ['b', 'c']);
    s.calls[1]!.answer();
    await Promise.all([second, third]);
  });

  it('runs the next batch beside a statement held up longer than the wait', async () => {
    const { s, batcher, first } = await withOneInFlight(10);
    const second = batcher.upsert(row('b'));
    // a is never answered here: b goes only if the wait lets it run beside a.
    const deadline = Date.now() + 2000;
    while (s.calls.length < 2 && Date.now() < deadline) await sleep(5);
    assert.equal(s.calls.length, 2, 'b waited for a past the wait');
    assert.deepEqual(s.ids(1), ['b']);
    s.calls[1]!.answer();
    await second;
    s.calls[0]!.answer();
    await first;
  });

  it('fails only the callers of a failed statement; the writes behind it still go', async () => {
    const { s, batcher, first } = await withOneInFlight();
    const second = batcher.upsert(row('b'));
    await turn();
    s.calls[0]!.fail(new Error('statement failed'));
    await assert.rejects(first, /statement failed/);
    await settle();
    assert.equal(s.calls.length, 2);
    assert.deepEqual(s.ids(1), ['b']);
    s.calls[1]!.answer();
    await second;
  });

  it('runs two consumes of one token one after the other: only the first marks it', async () => {
    const s = statements();
    const batcher = createWriteBatcher(s.write);
    const one = batcher.consume('RefreshToken', 'k');
    const two = batcher.consume('RefreshToken', 'k');
    await turn();
    assert.equal(s.calls.length, 1, 'one statement cannot change a row twice');
    assert.deepEqual(s.ids(0), ['consume:k']);
    s.calls[0]!.answer(['RefreshToken\0k']);
    assert.equal(await one, true);
    await settle();
    assert.equal(s.calls.length, 2);
    assert.deepEqual(s.ids(1), ['consume:k']);
    s.calls[1]!.answer([]);
    assert.equal(await two, false);
  });
});
