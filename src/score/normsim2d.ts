/**
 * NormSim_2-D (spec §3): NormSim_2 when no target set is known, the pool's own (shrinking) covariance
 * standing in for the target's. The paper's procedure is a selection; this module gives every row a
 * survival score instead, so that it fits the same "top fraction by a score" machinery as the other
 * scores:
 *
 *   1. Sigma = mean of f f^T over a random `sampleFraction` of the pool.
 *   2. Keep the top int(prefilterFraction * N) rows by the prefilter score (CLIPScore in the paper's
 *      NormSim_2-D, s-CLIPLoss for "s-CLIPLoss ∩ NormSim_2-D"); ties keep the lower index.
 *   3. Over `iterations` rounds, drop the rows with the lowest f^T Sigma f in equal chunks until
 *      int(keepFraction * N) rows remain; after each round Sigma = mean of f f^T over a random
 *      `sampleFraction` of what remains.
 *
 * A row's survival score is its position in the order of elimination, divided by N: rows cut by the
 * prefilter first (lowest prefilter score first), then each round's chunk (lowest f^T Sigma f first),
 * then the survivors by f^T Sigma f under the last Sigma. Higher = kept longer; the top
 * int(keepFraction * N) rows by survival are exactly NormSim_2-D's selection. Ties are eliminated
 * higher index first, matching the spec's "ties keep the lower index".
 *
 * Subsamples: one generator `createRandom(seed, 0)` (./random.ts) for the whole run; a subsample of
 * s out of m candidates is the first s of a partial Fisher–Yates shuffle of 0..m-1 (for i = 0..s-1,
 * swap i with i + below(m - i)), candidates being the pool rows (step 1) or the remaining rows in
 * increasing row order (step 3). s = max(1, floor(m * sampleFraction)). Round t of T drops
 * floor((t+1) * D / T) - floor(t * D / T) rows, D = the rows to drop, T = min(iterations, D).
 */
import { ClipsieveError } from "../common/errors.ts";
import type { ScoringEngine } from "./engine.ts";
import { createRandom, type Random } from "./random.ts";

export interface NormSim2DOptions {
  /** One score per row; higher passes the prefilter. CLIPScore (the paper's default) or s-CLIPLoss. */
  prefilterScore: ArrayLike<number>;
  /** Fraction of the pool kept by the prefilter. Default 0.3. */
  prefilterFraction?: number;
  /** Fraction of the pool NormSim_2-D keeps. Default 0.2. */
  keepFraction?: number;
  /** Rounds of elimination. Default 500 (the paper's, on DataComp-medium). */
  iterations?: number;
  /** Fraction of the rows each Sigma is estimated from. Default 0.1. */
  sampleFraction?: number;
  /** Seed of the subsamples. Default 0. */
  seed?: number;
}

function checkFraction(value: number, what: string): void {
  if (!(value > 0 && value <= 1)) {
    throw new ClipsieveError("CONFIG_INVALID", `NormSim_2-D ${what} must be in (0, 1], got ${value}`);
  }
}

/** The first `count` of a partial Fisher–Yates shuffle of 0..m-1. */
function subsample(m: number, count: number, random: Random): Int32Array {
  const order = new Int32Array(m);
  for (let i = 0; i < m; i++) order[i] = i;
  for (let i = 0; i < count; i++) {
    const j = i + random.below(m - i);
    const tmp = order[i];
    order[i] = order[j];
    order[j] = tmp;
  }
  return order.subarray(0, count);
}

/** Positions of `keys` in elimination order: ascending key, ties higher index (per `rowOf`) first. */
function eliminationOrder(keys: ArrayLike<number>, count: number, rowOf: (i: number) => number): Int32Array {
  const order = new Int32Array(count);
  for (let i = 0; i < count; i++) order[i] = i;
  return order.sort((a, b) => keys[a] - keys[b] || rowOf(b) - rowOf(a));
}

export async function normSim2DSurvival(
  engine: ScoringEngine,
  image: Float32Array,
  rows: number,
  dim: number,
  options: NormSim2DOptions,
): Promise<Float64Array> {
  const prefilterFraction = options.prefilterFraction ?? 0.3;
  const keepFraction = options.keepFraction ?? 0.2;
  const iterations = options.iterations ?? 500;
  const sampleFraction = options.sampleFraction ?? 0.1;
  checkFraction(prefilterFraction, "prefilterFraction");
  checkFraction(keepFraction, "keepFraction");
  checkFraction(sampleFraction, "sampleFraction");
  if (keepFraction > prefilterFraction) {
    throw new ClipsieveError(
      "CONFIG_INVALID",
      `NormSim_2-D keepFraction (${keepFraction}) must not exceed prefilterFraction (${prefilterFraction})`,
    );
  }
  if (!Number.isSafeInteger(iterations) || iterations < 1) {
    throw new ClipsieveError(
      "CONFIG_INVALID",
      `NormSim_2-D iterations must be a positive integer, got ${iterations}`,
    );
  }
  if (image.length < rows * dim) {
    throw new ClipsieveError(
      "EMBEDDING_DIMENSION_MISMATCH",
      `NormSim_2-D image matrix holds ${image.length} values, expected ${rows} rows x ${dim}`,
    );
  }
  const score = options.prefilterScore;
  if (score.length !== rows) {
    throw new ClipsieveError(
      "CONFIG_INVALID",
      `NormSim_2-D has ${score.length} prefilter scores for ${rows} rows`,
    );
  }
  for (let i = 0; i < rows; i++) {
    if (!Number.isFinite(score[i])) {
      throw new ClipsieveError("CONFIG_INVALID", `NormSim_2-D prefilter score of row ${i} is ${score[i]}`);
    }
  }

  const survival = new Float64Array(rows);
  if (rows === 0) return survival;
  let position = 0;
  const eliminate = (row: number) => {
    survival[row] = position++ / rows;
  };
  const random = createRandom(options.seed ?? 0, 0);

  /** Sigma = mean f f^T over a random sampleFraction of the first `count` rows of `matrix`. */
  const covariance = async (matrix: Float32Array, count: number): Promise<Float32Array> => {
    const picked = subsample(count, Math.max(1, Math.floor(count * sampleFraction)), random);
    const sample = new Float32Array(picked.length * dim);
    picked.forEach((row, i) => {
      sample.set(matrix.subarray(row * dim, (row + 1) * dim), i * dim);
    });
    const sigma = await engine.gram(sample, picked.length, dim);
    for (let i = 0; i < sigma.length; i++) sigma[i] /= picked.length;
    return sigma;
  };

  let sigma = await covariance(image, rows);

  // Prefilter: the rows it cuts are eliminated first, lowest score first.
  const byScore = eliminationOrder(score, rows, (i) => i);
  const cut = rows - Math.floor(rows * prefilterFraction);
  for (let i = 0; i < cut; i++) eliminate(byScore[i]);
  let remaining = byScore.slice(cut).sort();
  let matrix = new Float32Array(remaining.length * dim);
  remaining.forEach((row, i) => {
    matrix.set(image.subarray(row * dim, (row + 1) * dim), i * dim);
  });

  const toDrop = remaining.length - Math.floor(rows * keepFraction);
  const rounds = Math.min(iterations, toDrop);
  for (let t = 0; t < rounds; t++) {
    const chunk = Math.floor(((t + 1) * toDrop) / rounds) - Math.floor((t * toDrop) / rounds);
    const count = remaining.length;
    const values = await engine.gramNorm(matrix, count, dim, sigma);
    const current = remaining;
    const order = eliminationOrder(values, count, (i) => current[i]);
    const dropped = new Uint8Array(count);
    for (let i = 0; i < chunk; i++) {
      dropped[order[i]] = 1;
      eliminate(current[order[i]]);
    }
    // Compact in place, keeping increasing row order.
    const kept = new Int32Array(count - chunk);
    let k = 0;
    for (let i = 0; i < count; i++) {
      if (dropped[i]) continue;
      if (k !== i) matrix.copyWithin(k * dim, i * dim, (i + 1) * dim);
      kept[k++] = current[i];
    }
    remaining = kept;
    matrix = matrix.subarray(0, kept.length * dim);
    sigma = await covariance(matrix, kept.length);
  }

  const last = await engine.gramNorm(matrix, remaining.length, dim, sigma);
  const survivors = remaining;
  for (const i of eliminationOrder(last, survivors.length, (j) => survivors[j])) eliminate(survivors[i]);
  return survival;
}
