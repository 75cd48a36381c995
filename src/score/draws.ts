/**
 * Draws: K seeded random partitions of a pool's rows into contrastive batches (spec §2 and §5).
 *
 * Draw k (k = 0..K-1): the identity permutation 0..n-1 is shuffled by Fisher–Yates with the generator
 * `createRandom(seed, k)` (./random.ts), then cut into consecutive batches of `batchSize`; the last
 * batch holds the remainder. Same seed and n give the same draws on any machine.
 */
import { ClipsieveError } from "../common/errors.ts";
import { checkSeed, createRandom, shuffleInPlace } from "./random.ts";
import type { Draw, DrawSpec } from "./types.ts";

function checkCount(value: number, what: string, min: number): void {
  if (!Number.isSafeInteger(value) || value < min) {
    throw new ClipsieveError("CONFIG_INVALID", `${what} must be an integer >= ${min}, got ${value}`);
  }
}

/** Cuts a permutation into consecutive batches of `batchSize` (views into `order`, no copies). */
function cut(order: Int32Array, batchSize: number): Draw {
  const batches: Draw = [];
  for (let start = 0; start < order.length; start += batchSize) {
    batches.push(order.subarray(start, Math.min(start + batchSize, order.length)));
  }
  return batches;
}

export function makeDraws(n: number, spec: DrawSpec): Draw[] {
  checkCount(n, "pool size n", 0);
  checkCount(spec.draws, "draws (K)", 1);
  checkCount(spec.batchSize, "batch size", 1);
  checkSeed(spec.seed);
  if (n > 2 ** 31 - 1) throw new ClipsieveError("CONFIG_INVALID", `pool size ${n} exceeds 2^31 - 1 rows`);
  const draws: Draw[] = [];
  for (let k = 0; k < spec.draws; k++) {
    const order = new Int32Array(n);
    for (let i = 0; i < n; i++) order[i] = i;
    draws.push(cut(shuffleInPlace(order, createRandom(spec.seed, k)), spec.batchSize));
  }
  return draws;
}

/** One draw of one batch: every row of a pool of n, in pool order (the pool normaliser's). */
export function wholePoolDraw(n: number): Draw {
  return [Int32Array.from({ length: n }, (_, i) => i)];
}

/**
 * Checks that every draw is a partition of 0..n-1 into non-empty batches; throws DRAWS_INVALID naming
 * the draw, the batch and the row at fault.
 */
export function validateDraws(draws: readonly Draw[], n: number): void {
  const seenIn = new Int32Array(n);
  draws.forEach((draw, k) => {
    seenIn.fill(-1);
    let count = 0;
    draw.forEach((batch, j) => {
      if (batch.length === 0) throw new ClipsieveError("DRAWS_INVALID", `draw ${k}: batch ${j} is empty`);
      for (const row of batch) {
        if (!Number.isInteger(row) || row < 0 || row >= n) {
          throw new ClipsieveError(
            "DRAWS_INVALID",
            `draw ${k}, batch ${j}: row ${row} is outside the pool's rows 0..${n - 1}`,
          );
        }
        if (seenIn[row] !== -1) {
          throw new ClipsieveError(
            "DRAWS_INVALID",
            `draw ${k}: row ${row} appears twice (batches ${seenIn[row]} and ${j})`,
          );
        }
        seenIn[row] = j;
      }
      count += batch.length;
    });
    if (count !== n) {
      const missing = seenIn.indexOf(-1);
      throw new ClipsieveError(
        "DRAWS_INVALID",
        `draw ${k} covers ${count} of the pool's ${n} rows (row ${missing} is in no batch)`,
      );
    }
  });
}

/**
 * Draws given explicitly, as the golden files' `batches` (and `--partitions` files) hold them: a list
 * of draws, each a list of batches of row indices. Validated as partitions of 0..n-1.
 */
export function drawsFromBatches(batches: number[][][], n: number): Draw[] {
  checkCount(n, "pool size n", 0);
  if (!Array.isArray(batches) || batches.length === 0) {
    throw new ClipsieveError("DRAWS_INVALID", "batches must be a non-empty list of draws");
  }
  const draws = batches.map((draw, k) => {
    if (!Array.isArray(draw)) throw new ClipsieveError("DRAWS_INVALID", `draw ${k} is not a list of batches`);
    return draw.map((batch, j) => {
      if (!Array.isArray(batch)) {
        throw new ClipsieveError("DRAWS_INVALID", `draw ${k}: batch ${j} is not a list of row indices`);
      }
      const rows = Int32Array.from(batch);
      batch.forEach((row, i) => {
        if (rows[i] !== row) {
          throw new ClipsieveError(
            "DRAWS_INVALID",
            `draw ${k}, batch ${j}: ${JSON.stringify(row)} is not a row index`,
          );
        }
      });
      return rows;
    });
  });
  validateDraws(draws, n);
  return draws;
}
