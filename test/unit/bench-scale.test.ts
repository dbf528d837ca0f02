import assert from 'node:assert/strict';
import { test } from 'node:test';
import { familiesFor, ROWS_PER_FAMILY } from '../../bench/seed-scale.ts';
import { formatSweepComparison, keyLines } from '../../bench/plans.ts';

test('seed-scale: families needed to reach a row count, never negative', () => {
  assert.equal(ROWS_PER_FAMILY, 10);
  assert.equal(familiesFor(10_000_000, 10_000), 999_000);
  assert.equal(familiesFor(10_005, 10_000), 1, 'a partial family rounds up');
  assert.equal(familiesFor(10_000, 10_000), 0);
  assert.equal(familiesFor(5_000, 10_000), 0, 'a table already larger gets nothing');
});

test('plans: the key lines of a plan are its nodes, buffers and execution time', () => {
  const plan = [
    'Index Scan using oidc_payloads_pkey on oidc_payloads  (cost=0.56..8.58 rows=1 width=425) (actual time=0.05..0.05 rows=1 loops=1)',
    "  Index Cond: ((model = 'AccessToken'::text) AND (id = 'x'::text))",
    '  Filter: ((expires_at IS NULL) OR (expires_at > now()))',
    '  Buffers: shared hit=5',
    'Planning Time: 0.208 ms',
    'Execution Time: 0.075 ms',
  ];
  assert.deepEqual(keyLines(plan), [plan[0], plan[3], plan[5]]);
});

test('plans: the sweeper comparison names batch size, first and last batch and the rate', () => {
  const text = formatSweepComparison([
    { name: 'before', batch: 1000, batchMs: [10, 20, 30], rowsPerSecond: 50_000 },
    { name: 'after', batch: 2000, batchMs: [5], rowsPerSecond: 400_000 },
  ]);
  assert.equal(
    text,
    'before: 1000 rows a batch, 3 batches, first 10 ms, last 30 ms, 50000 rows/s (ms, every 1th batch: 10 20 30)\n' +
      'after: 2000 rows a batch, 1 batches, first 5 ms, last 5 ms, 400000 rows/s (ms, every 1th batch: 5)',
  );
});
