/**
 * Partitioning by a locality-sensitive hash of the image embedding, so that near-copies land in the
 * same input partition and the dedup step (whose scope is a partition) compares them: the option
 * `--partition-by lsh` of `simulate` and `load`.
 *
 * Sign random projections (SimHash): `bits` seeded Gaussian directions, a record's bucket is the
 * pattern of signs of its (centred) embedding's projections, and its partition the bucket modulo the
 * partition count. Two images at angle theta fall on the same side of one direction with probability
 * 1 - theta / pi (0.94 at cosine 0.98), so of all `bits`: (1 - theta / pi)^bits. CLIP image
 * embeddings share a common direction (they lie in a narrow cone), so the projections are centred on
 * the mean of a sample of the stream first; without that, most records would share one bucket.
 *
 * What it costs: partitions are no longer balanced by key (a popular topic's images crowd the same
 * partitions), and a copy lands apart from its original whenever a hyperplane separates them
 * (measured in BENCHMARKS.md, "Dedup").
 */
import { createRandom } from "../score/random.ts";

export interface LshPartitioner {
  readonly partitions: number;
  readonly bits: number;
  partitionOf(image: Float32Array): number;
}

/** Hyperplanes for `partitions` partitions: the fewest bits that give each partition a bucket. */
export function lshBits(partitions: number): number {
  return Math.max(1, Math.ceil(Math.log2(Math.max(2, partitions))));
}

/**
 * A partitioner over `partitions` partitions, centred on the mean of `sample` (rows x dim unit
 * embeddings, e.g. the stream's first records); `seed` chooses the directions.
 */
export function createLshPartitioner(
  sample: Float32Array,
  rows: number,
  dim: number,
  partitions: number,
  seed = 0,
): LshPartitioner {
  if (!Number.isSafeInteger(partitions) || partitions < 1) {
    throw new RangeError(`partitions must be >= 1, got ${partitions}`);
  }
  const bits = lshBits(partitions);
  const mean = new Float64Array(dim);
  for (let i = 0; i < rows; i++) for (let d = 0; d < dim; d++) mean[d] += sample[i * dim + d] / rows;
  const rng = createRandom(seed, 7);
  const gauss = () => {
    const u = (rng.nextUint32() + 1) / 4294967297;
    const v = rng.nextUint32() / 4294967296;
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  };
  const planes = Array.from({ length: bits }, () => Float64Array.from({ length: dim }, gauss));
  // Each hyperplane passes through the sample's mean: sign(<x - mean, p>) = sign(<x, p> - <mean, p>).
  const offsets = planes.map((p) => p.reduce((s, v, d) => s + v * mean[d], 0));
  return {
    partitions,
    bits,
    partitionOf(image: Float32Array): number {
      let bucket = 0;
      for (let b = 0; b < bits; b++) {
        const p = planes[b];
        let s = 0;
        for (let d = 0; d < dim; d++) s += image[d] * p[d];
        if (s > offsets[b]) bucket |= 1 << b;
      }
      return bucket % partitions;
    },
  };
}

/** Images the partitioner is centred on: the stream's (or the pool's) first ones. */
export const LSH_SAMPLE_ROWS = 2000;

/**
 * A partitioner centred on the first LSH_SAMPLE_ROWS of `count` images (`image(i)`, unit rows of
 * `dim`): what `simulate --partition-by lsh` and `load --partition-by lsh` use.
 */
export function lshPartitionerOf(
  image: (i: number) => Float32Array,
  count: number,
  dim: number,
  partitions: number,
): LshPartitioner {
  const rows = Math.min(LSH_SAMPLE_ROWS, count);
  const sample = new Float32Array(rows * dim);
  for (let i = 0; i < rows; i++) sample.set(image(i), i * dim);
  return createLshPartitioner(sample, rows, dim, partitions);
}
