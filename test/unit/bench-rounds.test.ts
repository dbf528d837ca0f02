import assert from 'node:assert/strict';
import { test } from 'node:test';
import { roundRatios } from '../../bench/rounds.ts';

test('bench rounds: the ratio is the median of each round\'s own ratio', () => {
  // The machine halves its speed after the first two rounds: each round's servers move together.
  const baseline = [{ rps: 1000, us: 100 }, { rps: 1000, us: 100 }, { rps: 500, us: 200 }, { rps: 500, us: 200 }, { rps: 500, us: 200 }];
  const ours = [{ rps: 800, us: 125 }, { rps: 800, us: 125 }, { rps: 400, us: 250 }, { rps: 400, us: 250 }, { rps: 400, us: 250 }];
  assert.deepEqual(roundRatios(ours, baseline), { ratio: 0.8, cpuRatio: 0.8 });
  // A drift and one bad turn of ours: the medians of each side's rates would give 400 ÷ 1000.
  const drift = [{ rps: 1000, us: 100 }, { rps: 1000, us: 100 }, { rps: 500, us: 200 }, { rps: 500, us: 200 }, { rps: 1000, us: 100 }];
  const hiccup = [{ rps: 800, us: 125 }, { rps: 800, us: 125 }, { rps: 400, us: 250 }, { rps: 400, us: 250 }, { rps: 200, us: 500 }];
  assert.deepEqual(roundRatios(hiccup, drift), { ratio: 0.8, cpuRatio: 0.8 });
});

test('bench rounds: no ratio unless both took the same turns; no CPU ratio where a turn\'s CPU is unknown', () => {
  const turn = { rps: 100, us: 10 };
  assert.equal(roundRatios([turn, turn], [turn]), undefined);
  assert.equal(roundRatios(undefined, [turn]), undefined);
  assert.equal(roundRatios([], []), undefined);
  assert.deepEqual(roundRatios([turn, { rps: 50, us: undefined }], [turn, turn]), { ratio: 0.75, cpuRatio: undefined });
});
