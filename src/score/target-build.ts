/**
 * `target build`'s work: a target set from shards of millions of rows, held once. The shards' shapes
 * are read first (headers only for .npy/.npz), the one buffer of the stored rows is allocated, and
 * each shard in turn is read, normalised, added into T^T T and copied in (rounded to float16 when the
 * target is stored so); then, for an indexed target, the rows are clustered and put in cluster order in
 * place (./target-index.ts).
 */
import { ClipsieveError } from "../common/errors.ts";
import { float32ToFloat16Bits } from "../io/float16.ts";
import { readEmbeddingMatrix, readEmbeddingShape } from "../io/index.ts";
import type { ScoringEngine } from "./engine.ts";
import { normaliseRows } from "./normalise.ts";
import {
  buildTargetIndex,
  DEFAULT_INDEX_ITERATIONS,
  defaultClusters,
  defaultProbes,
  INDEX_MIN_ROWS,
  reorderRows,
} from "./target-index.ts";
import { targetContentHash } from "./target-set.ts";
import type { TargetSet, TargetStorage } from "./types.ts";

export interface TargetBuildOptions {
  model: string;
  /** .npz array or Arrow/Parquet column to read from every file. */
  key?: string;
  /** Default: float16 when indexed, float32 otherwise. */
  storage?: TargetStorage;
  /** Clusters of the NormSim_inf index; 0: no index. Default: sqrt(M) from INDEX_MIN_ROWS rows on, else 0. */
  clusters?: number;
  /** Clusters a record visits by default. Default: defaultProbes(clusters). */
  probes?: number;
  iterations?: number;
  seed?: number;
  onProgress?: (phase: "read" | "train" | "assign", done: number, total: number) => void;
}

export interface BuiltTarget {
  target: TargetSet;
  /** How the index was trained, for the manifest (absent without an index). */
  index?: { iterations: number; seed: number };
}

/** Resolves the defaults: whether to index, how many clusters, and the storage. */
export function targetLayout(
  rows: number,
  options: Pick<TargetBuildOptions, "storage" | "clusters">,
): { storage: TargetStorage; clusters: number } {
  const clusters = Math.min(rows, options.clusters ?? (rows >= INDEX_MIN_ROWS ? defaultClusters(rows) : 0));
  if (!Number.isSafeInteger(clusters) || clusters < 0) {
    throw new ClipsieveError("CONFIG_INVALID", `clusters must be an integer >= 0, got ${options.clusters}`);
  }
  return { storage: options.storage ?? (clusters > 0 ? "float16" : "float32"), clusters };
}

export async function buildTargetFromFiles(
  engine: Pick<ScoringEngine, "gram" | "nearest">,
  files: string[],
  options: TargetBuildOptions,
): Promise<BuiltTarget> {
  const readOptions = options.key ? { key: options.key } : {};
  const shapes = [];
  for (const file of files) shapes.push({ file, ...(await readEmbeddingShape(file, readOptions)) });
  const dim = shapes[0]?.dim ?? 0;
  for (const shape of shapes) {
    if (shape.dim !== dim) {
      throw new ClipsieveError(
        "EMBEDDING_DIMENSION_MISMATCH",
        `${shape.file} has ${shape.dim}-dimensional rows, ${files[0]} has ${dim}: a target set has one dimension`,
      );
    }
  }
  const rows = shapes.reduce((sum, s) => sum + s.rows, 0);
  if (rows === 0) throw new ClipsieveError("INPUT_FILE_INVALID", `no target rows in ${files.join(", ")}`);
  const { storage, clusters } = targetLayout(rows, options);

  const embeddings = storage === "float16" ? new Uint16Array(rows * dim) : new Float32Array(rows * dim);
  const gram = new Float32Array(dim * dim);
  let filled = 0;
  for (const { file, rows: expected } of shapes) {
    const matrix = await readEmbeddingMatrix(file, readOptions);
    if (matrix.rows !== expected || matrix.dim !== dim) {
      throw new ClipsieveError("INPUT_FILE_INVALID", `${file} changed while the target was built`);
    }
    normaliseRows(matrix.data, matrix.rows, dim, options.key ? `${file} (${options.key})` : file);
    const part = await engine.gram(matrix.data, matrix.rows, dim);
    for (let i = 0; i < gram.length; i++) gram[i] += part[i];
    if (embeddings instanceof Uint16Array) embeddings.set(float32ToFloat16Bits(matrix.data), filled * dim);
    else embeddings.set(matrix.data, filled * dim);
    filled += matrix.rows;
    options.onProgress?.("read", filled, rows);
  }

  return finishTarget(engine, options.model, embeddings, rows, dim, gram, { clusters }, options);
}

/**
 * A target set from unit rows already in memory (float32; a simulated target, a test's rows):
 * `buildTargetFromFiles` for one matrix. Float32 storage keeps `data` itself (put in cluster order when
 * indexed); with float16 storage the float32 rows can go once this returns.
 */
export async function buildTargetFromRows(
  engine: Pick<ScoringEngine, "gram" | "nearest">,
  data: Float32Array,
  rows: number,
  dim: number,
  options: Omit<TargetBuildOptions, "key">,
): Promise<BuiltTarget> {
  const { storage, clusters } = targetLayout(rows, options);
  const gram = await engine.gram(data, rows, dim);
  const embeddings = storage === "float16" ? float32ToFloat16Bits(data) : data;
  options.onProgress?.("read", rows, rows);
  return finishTarget(engine, options.model, embeddings, rows, dim, gram, { clusters }, options);
}

/** Indexes the stored rows (in place) when asked, and hashes them. */
async function finishTarget(
  engine: Pick<ScoringEngine, "nearest">,
  model: string,
  embeddings: Float32Array | Uint16Array,
  rows: number,
  dim: number,
  gram: Float32Array,
  { clusters }: { clusters: number },
  options: Pick<TargetBuildOptions, "probes" | "iterations" | "seed" | "onProgress">,
): Promise<BuiltTarget> {
  if (options.probes !== undefined && !(Number.isSafeInteger(options.probes) && options.probes >= 1)) {
    throw new ClipsieveError("CONFIG_INVALID", `probes must be an integer >= 1, got ${options.probes}`);
  }
  const target: TargetSet = { model, dim, rows, embeddings, gram, contentHash: "" };
  let index: BuiltTarget["index"];
  if (clusters > 0) {
    const iterations = options.iterations ?? DEFAULT_INDEX_ITERATIONS;
    const seed = options.seed ?? 0;
    const built = await buildTargetIndex(engine, embeddings, rows, dim, {
      clusters,
      iterations,
      seed,
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    });
    reorderRows(embeddings, dim, built.order);
    // Splitting large clusters adds clusters: the default probes are a share of the final count.
    const final = built.offsets.length - 1;
    target.index = {
      clusters: final,
      centroids: built.centroids,
      offsets: built.offsets,
      probes: options.probes ?? defaultProbes(final),
    };
    index = { iterations, seed };
  }
  target.contentHash = targetContentHash(model, dim, rows, embeddings);
  return { target, ...(index ? { index } : {}) };
}
