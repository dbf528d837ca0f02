import assert from 'node:assert/strict';
import { test } from 'node:test';
import { connectionSettings } from '../../bench/options.ts';

test('bench --connections: default both 10 and 64, refresh at the first', () => {
  assert.deepEqual(connectionSettings(undefined), { connectionsList: [10, 64], connections: 10 });
  assert.deepEqual(connectionSettings(''), { connectionsList: [10, 64], connections: 10 });
});

test('bench --connections: a list in the given order, duplicates dropped, a single value as before', () => {
  assert.deepEqual(connectionSettings('64, 10,64'), { connectionsList: [64, 10], connections: 64 });
  assert.deepEqual(connectionSettings('32'), { connectionsList: [32], connections: 32 });
});

test('bench --connections: anything but whole numbers ≥ 1 is refused', () => {
  for (const bad of ['0', '10,', 'ten', '1.5', '10,,64', '-4']) assert.throws(() => connectionSettings(bad), /--connections/, bad);
});
