/**
 * The scoring engine's vocabulary (see ../../../shared/spec/scoring.md). Matrices are row-major
 * Float32Arrays: row i of an `rows x dim` matrix is `data.subarray(i * dim, (i + 1) * dim)`.
 */

/** onnxruntime execution provider. A provider that cannot load falls back to cpu with one warning. */
export type Device = "cpu" | "cuda" | "webgpu";

/**
 * A pool: the rows to score, followed by extra negative rows (the negative bank) that take part in the
 * normaliser R but are not scored. Both matrices have `scoredRows + bankRows` rows of unit vectors.
 */
export interface Pool {
  dim: number;
  scoredRows: number;
  bankRows: number;
  image: Float32Array;
  text: Float32Array;
  /**
   * Scale each batch's normaliser to a batch of this many rows (the pool normaliser, docs/scoring.md,
   * "The pool normaliser"): a row's off-diagonal terms are weighted (b - 1) / (|B| - 1), so a
   * batch of any size estimates what a random batch of b rows would give. Absent: no scaling (the
   * paper's draws; its last, smaller batch is not scaled either).
   */
  scaleToBatch?: number;
}

/**
 * How a window's s-CLIPLoss normaliser R is estimated (docs/streaming.md, "Fidelity").
 * - `draws`: the paper's: K seeded random partitions of the pool into batches of b, R averaged.
 * - `pool`: every row's R over the whole pool (window + bank), scaled to a batch of b rows. With a
 *   pool larger than b it averages over more rows than one batch holds; each record costs P products
 *   (a window of w records w * P), where K draws cost K * b each.
 */
export const NORMALISERS = ["draws", "pool"] as const;
export type Normaliser = (typeof NORMALISERS)[number];

/** One draw: a partition of the pool's rows 0..n-1 into contrastive batches (row indices). */
export type Draw = Int32Array[];

/** How draws are made from a seed: K seeded random partitions into batches of size b (last one smaller). */
export interface DrawSpec {
  seed: number;
  draws: number;
  batchSize: number;
}

export interface SClipLossResult {
  /** S_ii for each scored row. */
  clipScore: Float32Array;
  /** S_ii - mean over draws of R. */
  sClipLoss: Float32Array;
  /** The mean normaliser R over the K draws. */
  normaliser: Float32Array;
}

export interface NormSimResult {
  normsim2: Float32Array;
  normsimInf: Float32Array;
}

/** How a target set holds its rows: float32 values, or float16 bit patterns (half the memory). */
export type TargetStorage = "float32" | "float16";

/**
 * An inverted-file index over a target set's rows (./target-index.ts): the rows are stored grouped by
 * cluster, cluster k holding rows offsets[k] .. offsets[k+1]-1, and NormSim_inf of a record visits only
 * the `probes` clusters whose centres are nearest to it (every cluster when probes >= clusters: exact).
 */
export interface TargetIndex {
  clusters: number;
  /** clusters x D, row-major, unit rows: each cluster's normalised mean. */
  centroids: Float32Array;
  /** clusters + 1 row offsets, ascending, offsets[0] = 0, offsets[clusters] = M. */
  offsets: Int32Array;
  /** Clusters a record visits. */
  probes: number;
}

/** A target set: target image embeddings (M x D) and their Gram matrix T^T T (D x D). */
export interface TargetSet {
  /** Teacher model that made the embeddings, e.g. "openai/clip-vit-large-patch14". */
  model: string;
  dim: number;
  rows: number;
  /**
   * M x D, row-major: float32 values, or IEEE float16 bit patterns when the artifact stores its rows
   * in half precision (`TargetStorage`).
   */
  embeddings: Float32Array | Uint16Array;
  /** D x D, row-major: T^T T (from the full-precision rows). */
  gram: Float32Array;
  /** sha256 (hex) over the artifact's content (model, dim, rows, storage, embeddings). */
  contentHash: string;
  /** Present when NormSim_inf searches an index instead of every row. */
  index?: TargetIndex;
}
