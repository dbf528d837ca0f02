/** Pure parsing of the bench's list-valued options (unit-tested in test/unit/bench-options.test.ts). */

/** `--connections=10,64` → the list (deduplicated, in the given order) and the first, which refresh uses. */
export function connectionSettings(raw: string | undefined): { connectionsList: number[]; connections: number } {
  const parts = (raw === undefined || raw.trim() === '' ? '10,64' : raw).split(',').map((p) => p.trim());
  const list = [...new Set(parts.map(Number))];
  if (parts.some((p) => p === '') || list.some((n) => !Number.isInteger(n) || n < 1)) {
    throw new Error('--connections must be a comma-separated list of whole numbers ≥ 1, e.g. 10,64');
  }
  return { connectionsList: list, connections: list[0]! };
}
