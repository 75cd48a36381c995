import { mulberry32 } from "../helpers/records.ts";

/** Seeded randomness for the policy tests (mulberry32 + Box-Muller), so every run sees the same stream. */
export const seededUniform: (seed: number) => () => number = mulberry32;

export function seededGauss(seed: number): () => number {
  const uniform = seededUniform(seed);
  return () => {
    const u = uniform() || Number.MIN_VALUE;
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * uniform());
  };
}

/** Fraction of `sorted` (ascending) that is >= t, by binary search. */
export function fractionAtOrAbove(sorted: Float64Array, t: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! < t) lo = mid + 1;
    else hi = mid;
  }
  return (sorted.length - lo) / sorted.length;
}
