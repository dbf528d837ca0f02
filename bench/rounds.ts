/**
 * Ratios of two servers that took turns (bench/run.ts interleavedTokenRuns): pure, unit-tested in
 * test/unit/bench-rounds.test.ts.
 */

/** One server's turn in one round: its rate and its CPU µs per request (undefined where unreadable). */
export interface Turn {
  rps: number;
  us: number | undefined;
}

export const median = (xs: number[]) => {
  if (!xs.length) return 0;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

const round3 = (x: number) => Math.round(x * 1000) / 1000;

/**
 * `ours` against `baseline`, turn by turn of the same round: the medians of the rounds' own rate
 * ratios (ours ÷ baseline) and CPU ratios (baseline's µs ÷ ours), each round's two turns having run
 * at one speed of the machine. Undefined unless both took the same number of turns; the CPU ratio
 * is undefined if a turn's CPU is.
 */
export function roundRatios(ours: readonly Turn[] | undefined, baseline: readonly Turn[] | undefined): { ratio: number; cpuRatio: number | undefined } | undefined {
  if (!ours?.length || !baseline || baseline.length !== ours.length) return undefined;
  const rounds = ours.map((x, i) => [x, baseline[i]!] as const);
  const withCpu = rounds.filter(([x, y]) => x.us && y.us);
  return {
    ratio: round3(median(rounds.map(([x, y]) => x.rps / y.rps))),
    cpuRatio: withCpu.length === rounds.length ? round3(median(withCpu.map(([x, y]) => y.us! / x.us!))) : undefined,
  };
}
