import type { ScoreRow } from "../../src/score/registry.ts";
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

/** A stream shaped like real scores: s-CLIPLoss around 0 of both signs, NormSim_inf narrow and correlated. */
export function syntheticStream(n: number, seed: number): ScoreRow[] {
  const gauss = seededGauss(seed);
  return Array.from({ length: n }, () => {
    const g1 = gauss();
    const g2 = gauss();
    return {
      clip_score: 0.3 + 0.05 * g2,
      s_clip_loss: 0.02 + 0.05 * g1,
      normsim_inf: 0.6 + 0.03 * (0.3 * g1 + 0.95 * g2),
    };
  });
}
