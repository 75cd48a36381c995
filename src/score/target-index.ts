/**
 * The target set's inverted-file index for NormSim_inf (docs/scoring.md, "NormSim_inf at scale").
 *
 * NormSim_inf is a maximum over every target row: 2·M·D per record, 3.2 GFLOP at the paper's
 * M = 2.1 million, D = 768. Target image features are clustered (classes, tight and loose ones), and a
 * record's most similar target row almost always lies in one of the clusters whose centres are nearest
 * to it. So `target build` clusters the rows once (spherical k-means, centres compared by inner
 * product), stores them grouped by cluster with each cluster's centre, and the engine visits only each
 * record's `probes` nearest clusters. The result is a lower bound of the exact maximum (it is the
 * maximum over a subset of the rows), equal to it whenever the best row lies in a visited cluster;
 * probes >= clusters visits every row and is exact. BENCHMARKS.md measures what the default gives up.
 */
import { ClipsieveError } from "../common/errors.ts";
import { float16BitsToFloat32 } from "../io/float16.ts";
import type { ScoringEngine } from "./engine.ts";
import { createRandom, shuffleInPlace } from "./random.ts";
import type { TargetIndex } from "./types.ts";

/** Targets with at least this many rows are indexed (and stored as float16) by `target build` by default. */
export const INDEX_MIN_ROWS = 200_000;
/** k-means rounds over the training sample. */
export const DEFAULT_INDEX_ITERATIONS = 8;
/** Training rows per cluster (the sample is at most this times the clusters, and all rows when fewer). */
const SAMPLE_ROWS_PER_CLUSTER = 48;
/** k-means rounds when a large cluster is split. */
const SPLIT_ITERATIONS = 4;
/** Rows per block when every row is assigned. */
const ASSIGN_BLOCK_ROWS = 16_384;

/** About sqrt(M) clusters: as many clusters as rows per cluster, which balances the two search steps. */
export function defaultClusters(rows: number): number {
  return Math.max(1, Math.round(Math.sqrt(rows)));
}

/**
 * Clusters a record visits by default: 1/48 of them, at least 16 (all when fewer). On the study's
 * clustered targets 16 to 48 probes gave the exact stage-2 selection but for 2 of 2,457 decisions at
 * 1 million rows and none at 2.1 million (BENCHMARKS.md, "NormSim_inf at scale"); 1/48 keeps a margin
 * over what was measured, for targets less cleanly clustered than the study's.
 */
export function defaultProbes(clusters: number): number {
  return Math.min(clusters, Math.max(16, Math.ceil(clusters / 48)));
}

function invalid(what: string): ClipsieveError {
  return new ClipsieveError("TARGET_SET_INVALID", `target index: ${what}`);
}

/** Throws TARGET_SET_INVALID unless the index fits a target of `rows` x `dim`. */
export function checkTargetIndex(index: TargetIndex, rows: number, dim: number): void {
  const { clusters, centroids, offsets, probes } = index;
  if (!Number.isSafeInteger(clusters) || clusters < 1)
    throw invalid(`clusters must be >= 1, got ${clusters}`);
  if (!Number.isSafeInteger(probes) || probes < 1) throw invalid(`probes must be >= 1, got ${probes}`);
  if (centroids.length !== clusters * dim) {
    throw invalid(`${centroids.length} centre values, expected ${clusters} x ${dim}`);
  }
  if (offsets.length !== clusters + 1 || offsets[0] !== 0 || offsets[clusters] !== rows) {
    throw invalid(`offsets must run from 0 to ${rows} over ${clusters + 1} entries`);
  }
  for (let k = 0; k < clusters; k++) {
    if (offsets[k + 1] < offsets[k]) throw invalid(`offsets decrease at cluster ${k}`);
  }
}

/**
 * The `probes` clusters with the largest |<f, centre>| (NormSim_inf takes |<f, t>|), ties to the lower
 * cluster: a quickselect of the cut-off value, then one pass. O(clusters) per record. `scratch` (at
 * least `dots.length` long) is reordered; a caller picking for many records passes one to reuse.
 */
export function probedClusters(
  dots: Float32Array,
  probes: number,
  scratch: Float32Array = new Float32Array(dots.length),
): Int32Array {
  const n = dots.length;
  const out = new Int32Array(Math.min(probes, n));
  if (out.length === n) {
    for (let k = 0; k < n; k++) out[k] = k;
    return out;
  }
  for (let k = 0; k < n; k++) scratch[k] = Math.abs(dots[k]);
  const cut = kthLargest(scratch, out.length);
  let filled = 0;
  for (let k = 0; k < n && filled < out.length; k++) if (Math.abs(dots[k]) > cut) out[filled++] = k;
  for (let k = 0; k < n && filled < out.length; k++) if (Math.abs(dots[k]) === cut) out[filled++] = k;
  return out;
}

/**
 * The queries of each cluster, from `visits` (query q's `probes` clusters at q * probes ...): a
 * counting sort, so that cluster k's visitors are `visitors[first[k] .. first[k + 1] - 1]`, in query
 * order. The NormSim_inf index and the dedup step's segments both read their clusters this way.
 */
export function visitorsByCluster(
  visits: Int32Array,
  probes: number,
  clusters: number,
): { first: Int32Array; visitors: Int32Array } {
  const first = new Int32Array(clusters + 1);
  for (let v = 0; v < visits.length; v++) first[visits[v] + 1]++;
  for (let k = 0; k < clusters; k++) first[k + 1] += first[k];
  const visitors = new Int32Array(visits.length);
  const fill = first.slice(0, clusters);
  for (let v = 0; v < visits.length; v++) visitors[fill[visits[v]]++] = Math.floor(v / probes);
  return { first, visitors };
}

/** The k-th largest value (1-based) of `values`, which it reorders (Hoare's selection). */
function kthLargest(values: Float32Array, k: number): number {
  let lo = 0;
  let hi = values.length - 1;
  const target = k - 1;
  while (lo < hi) {
    const pivot = values[(lo + hi) >>> 1];
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (values[i] > pivot) i++;
      while (values[j] < pivot) j--;
      if (i <= j) {
        const t = values[i];
        values[i] = values[j];
        values[j] = t;
        i++;
        j--;
      }
    }
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else break;
  }
  return values[target];
}

export interface IndexBuildOptions {
  clusters: number;
  /** k-means rounds over the sample. Default DEFAULT_INDEX_ITERATIONS. */
  iterations?: number;
  /** Seed of the sample and the first centres. Default 0. */
  seed?: number;
  /** Called as the work advances: the phase, work done and the phase's total. */
  onProgress?: (phase: "train" | "assign", done: number, total: number) => void;
}

export interface BuiltIndex {
  centroids: Float32Array;
  offsets: Int32Array;
  /** order[p] = the input row stored at position p (rows grouped by cluster, in input order within one). */
  order: Int32Array;
}

/**
 * Spherical k-means over the unit rows of `store` (float32, or float16 bit patterns): trained on a
 * seeded sample, then every row is assigned to its nearest centre and the centres become the
 * normalised means of their rows. The engine's `nearest` does every product.
 */
export async function buildTargetIndex(
  engine: Pick<ScoringEngine, "nearest">,
  store: Float32Array | Uint16Array,
  rows: number,
  dim: number,
  options: IndexBuildOptions,
): Promise<BuiltIndex> {
  const clusters = Math.min(options.clusters, rows);
  if (!Number.isSafeInteger(clusters) || clusters < 1) {
    throw new ClipsieveError("CONFIG_INVALID", `clusters must be an integer >= 1, got ${options.clusters}`);
  }
  const iterations = options.iterations ?? DEFAULT_INDEX_ITERATIONS;
  const random = createRandom(options.seed ?? 0, 0);

  // The training sample: distinct rows, in a seeded random order; its first rows are the first centres.
  const ids = new Int32Array(rows);
  for (let i = 0; i < rows; i++) ids[i] = i;
  shuffleInPlace(ids, random);
  const sampleRows = Math.min(rows, Math.max(clusters, clusters * SAMPLE_ROWS_PER_CLUSTER));
  const sample = gatherRows(store, dim, Array.from(ids.subarray(0, sampleRows)));
  const centroids = sample.slice(0, clusters * dim);

  for (let round = 0; round < iterations; round++) {
    const { index, best } = await engine.nearest(sample, sampleRows, dim, centroids, clusters);
    const sums = new Float64Array(clusters * dim);
    const sizes = new Int32Array(clusters);
    for (let i = 0; i < sampleRows; i++) {
      const k = index[i];
      sizes[k]++;
      addRow(sums, k, sample, i, dim);
    }
    // An empty cluster restarts at the sample row worst served by its centre, so none stays wasted.
    // (Sorted only in a round that left a cluster empty.)
    const worst = sizes.includes(0) ? Array.from(best.keys()).sort((a, b) => best[a] - best[b] || a - b) : [];
    let next = 0;
    for (let k = 0; k < clusters; k++) {
      if (sizes[k] === 0) addRow(sums, k, sample, worst[next++], dim);
      normaliseInto(centroids, k, sums, dim);
    }
    options.onProgress?.("train", round + 1, iterations);
  }

  // Every row to its nearest trained centre (float16 rows are widened inside onnxruntime). The centres
  // stay the sample's means: the sample has SAMPLE_ROWS_PER_CLUSTER rows per cluster, and recomputing
  // them from every row would read every row into JavaScript once more.
  const cluster = new Int32Array(rows);
  for (let start = 0; start < rows; start += ASSIGN_BLOCK_ROWS) {
    const count = Math.min(ASSIGN_BLOCK_ROWS, rows - start);
    const block = store.subarray(start * dim, (start + count) * dim);
    const { index } = await engine.nearest(block, count, dim, centroids, clusters);
    for (let i = 0; i < count; i++) cluster[start + i] = index[i];
    options.onProgress?.("assign", start + count, rows);
  }
  const split = await splitLargeClusters(engine, store, dim, cluster, centroids, clusters, random);
  const offsets = new Int32Array(split.clusters + 1);
  for (let i = 0; i < rows; i++) offsets[cluster[i] + 1]++;
  for (let k = 0; k < split.clusters; k++) offsets[k + 1] += offsets[k];
  const order = new Int32Array(rows);
  const fill = offsets.slice(0, split.clusters);
  for (let i = 0; i < rows; i++) order[fill[cluster[i]]++] = i;
  return { centroids: split.centroids, offsets, order };
}

/**
 * Splits every cluster of more than twice the mean size by a k-means of its own rows into clusters of
 * about the mean size (renumbering `cluster` in place). Why: k-means on image features leaves a few
 * large, diffuse clusters whose centres lie near the features' common direction, so they rank among
 * the nearest for almost every record; unsplit, visiting 6 % of the clusters read a third of the rows.
 */
export async function splitLargeClusters(
  engine: Pick<ScoringEngine, "nearest">,
  store: Float32Array | Uint16Array,
  dim: number,
  cluster: Int32Array,
  centroids: Float32Array,
  clusters: number,
  random: ReturnType<typeof createRandom>,
): Promise<{ centroids: Float32Array; clusters: number }> {
  const rows = cluster.length;
  const mean = Math.max(1, Math.ceil(rows / clusters));
  const members: number[][] = Array.from({ length: clusters }, () => []);
  for (let i = 0; i < rows; i++) members[cluster[i]].push(i);
  const centres: Float32Array[] = [];
  for (let k = 0; k < clusters; k++) centres.push(centroids.subarray(k * dim, (k + 1) * dim));
  for (let k = 0; k < clusters; k++) {
    const ids = members[k];
    if (ids.length <= 2 * mean) continue;
    const parts = Math.ceil(ids.length / mean);
    const data = gatherRows(store, dim, ids);
    const order = Int32Array.from(ids.keys());
    shuffleInPlace(order, random);
    const local = new Float32Array(parts * dim);
    for (let p = 0; p < parts; p++) local.set(data.subarray(order[p] * dim, (order[p] + 1) * dim), p * dim);
    let assigned: Float32Array = new Float32Array(ids.length);
    for (let round = 0; round < SPLIT_ITERATIONS; round++) {
      assigned = (await engine.nearest(data, ids.length, dim, local, parts)).index;
      const sums = new Float64Array(parts * dim);
      for (let j = 0; j < ids.length; j++) addRow(sums, assigned[j], data, j, dim);
      for (let p = 0; p < parts; p++) normaliseInto(local, p, sums, dim);
    }
    // Part 0 keeps the cluster's number; the others get new ones at the end.
    const numbers = [k];
    for (let p = 1; p < parts; p++) numbers.push(centres.length + p - 1);
    for (let p = 0; p < parts; p++) {
      const centre = local.slice(p * dim, (p + 1) * dim);
      if (p === 0) centres[k] = centre;
      else centres.push(centre);
    }
    for (const [j, id] of ids.entries()) cluster[id] = numbers[assigned[j]];
  }
  const out = new Float32Array(centres.length * dim);
  for (const [k, centre] of centres.entries()) out.set(centre, k * dim);
  return { centroids: out, clusters: centres.length };
}

/** The rows `ids` of a float32 or float16 store, as one float32 matrix (one conversion, not one per row). */
function gatherRows(store: Float32Array | Uint16Array, dim: number, ids: readonly number[]): Float32Array {
  const out =
    store instanceof Uint16Array ? new Uint16Array(ids.length * dim) : new Float32Array(ids.length * dim);
  for (const [j, id] of ids.entries()) out.set(store.subarray(id * dim, (id + 1) * dim), j * dim);
  return out instanceof Uint16Array ? float16BitsToFloat32(out) : out;
}

function addRow(sums: Float64Array, k: number, data: Float32Array, row: number, dim: number): void {
  const base = k * dim;
  const from = row * dim;
  for (let d = 0; d < dim; d++) sums[base + d] += data[from + d];
}

function normaliseInto(centroids: Float32Array, k: number, sums: Float64Array, dim: number): void {
  const base = k * dim;
  let norm = 0;
  for (let d = 0; d < dim; d++) norm += sums[base + d] * sums[base + d];
  norm = Math.sqrt(norm);
  if (norm === 0) return;
  for (let d = 0; d < dim; d++) centroids[base + d] = sums[base + d] / norm;
}

/**
 * Puts the rows of `store` in `order` (row p becomes input row order[p]) in place, one cycle of the
 * permutation at a time, so a target of millions of rows is never held twice.
 */
export function reorderRows(store: Float32Array | Uint16Array, dim: number, order: Int32Array): void {
  const done = new Uint8Array(order.length);
  const held = store.slice(0, dim);
  for (let start = 0; start < order.length; start++) {
    if (done[start] || order[start] === start) continue;
    held.set(store.subarray(start * dim, (start + 1) * dim));
    let p = start;
    for (;;) {
      done[p] = 1;
      const from = order[p];
      if (from === start) {
        store.set(held, p * dim);
        break;
      }
      store.copyWithin(p * dim, from * dim, (from + 1) * dim);
      p = from;
    }
  }
}
