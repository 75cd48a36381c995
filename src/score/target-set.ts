/**
 * The target-set artifact (spec §5): target image embeddings T (M x D) for NormSim_inf and T^T T (D x D)
 * for NormSim_2, with the teacher's name, D, M, a format version and a content hash.
 *
 * The file is a plain .npz (a zip of .npy members), so numpy opens it as is:
 *   embeddings.npy     float32 (M, D), or float16 when the manifest's storage is "float16"; unit rows
 *   gram.npy           float32 (D, D), T^T T of the full-precision rows
 *   manifest.npy       uint8 (bytes,): UTF-8 JSON of TargetManifest
 *   ivf_centroids.npy  float32 (C, D)  } only with an index (./target-index.ts): the rows are then
 *   ivf_offsets.npy    int32 (C + 1,)  } stored grouped by cluster, cluster k at offsets[k]..offsets[k+1]
 *     z = np.load("in1k.target.npz"); json.loads(z["manifest"].tobytes())
 *
 * contentHash = sha256 over "clipsieve-target-set\0<model>\0<D>\0<M>\0" (then "float16\0" for float16
 * storage) followed by the embeddings' little-endian bytes as stored; gramSha256 = sha256 of the gram's
 * bytes; indexSha256 = sha256 of the centroids' then the offsets' bytes. All are checked on read, so a
 * flipped byte anywhere in the numbers is reported rather than silently scored with. Version 1 artifacts
 * (float32, no index) read as before and keep their hashes.
 */
import { createHash, type Hash } from "node:crypto";
import { basename } from "node:path";
import { ClipsieveError, isClipsieveError } from "../common/errors.ts";
import type { NdArray } from "../io/index.ts";
import { listNpzKeys, readEmbeddingMatrix, readNpz, writeNpz } from "../io/index.ts";
import { createScoringEngine, type ScoringEngine } from "./engine.ts";
import { normaliseRows } from "./normalise.ts";
import { checkTargetIndex } from "./target-index.ts";
import type { TargetIndex, TargetSet, TargetStorage } from "./types.ts";

export const TARGET_SET_FORMAT = "clipsieve.target-set";
export const TARGET_SET_VERSION = 2;
/** The model name given to a target read from a bare embeddings file, which does not record its teacher. */
export const UNKNOWN_MODEL = "unknown";

export interface TargetManifest {
  format: typeof TARGET_SET_FORMAT;
  version: number;
  model: string;
  dim: number;
  rows: number;
  /** ISO 8601. */
  createdAt: string;
  contentHash: string;
  gramSha256: string;
  /** Basenames of the files the rows came from, in order (informational). */
  sources: string[];
  /** How the rows are stored (absent in version 1: float32). */
  storage?: TargetStorage;
  /** The NormSim_inf index, when there is one. */
  index?: TargetIndexManifest;
}

/** What the manifest says of an index (its arrays are members of their own). */
export interface TargetIndexManifest {
  kind: "ivf";
  clusters: number;
  /** Clusters a record visits by default (a run may ask for more or fewer). */
  probes: number;
  /** k-means rounds and seed it was trained with (informational). */
  iterations: number;
  seed: number;
  /** sha256 of the centroids' float32 bytes followed by the offsets' int32 bytes. */
  sha256: string;
}

export interface LoadedTarget extends TargetSet {
  /** The artifact's manifest; absent for a bare .npy/.npz of embeddings. */
  manifest?: TargetManifest;
}

const MEMBER_EMBEDDINGS = "embeddings";
const MEMBER_GRAM = "gram";
const MEMBER_MANIFEST = "manifest";
const MEMBER_CENTROIDS = "ivf_centroids";
const MEMBER_OFFSETS = "ivf_offsets";

function bytesOf(data: ArrayBufferView): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** Most bytes one Hash.update takes: Node refuses 2 GiB or more at once (a 2.1-million-row target is 3.2 GB). */
const HASH_CHUNK = 2 ** 30;

function hashBytes(hash: Hash, data: ArrayBufferView): Hash {
  const bytes = bytesOf(data);
  for (let at = 0; at < bytes.length; at += HASH_CHUNK) hash.update(bytes.subarray(at, at + HASH_CHUNK));
  return hash;
}

/** How rows held as `embeddings` are stored. */
export function storageOf(embeddings: Float32Array | Uint16Array): TargetStorage {
  return embeddings instanceof Uint16Array ? "float16" : "float32";
}

export function targetContentHash(
  model: string,
  dim: number,
  rows: number,
  embeddings: Float32Array | Uint16Array,
): string {
  const storage = storageOf(embeddings) === "float16" ? "float16\0" : "";
  const hash = createHash("sha256").update(
    `clipsieve-target-set\0${model}\0${dim}\0${rows}\0${storage}`,
    "utf8",
  );
  return hashBytes(hash, embeddings).digest("hex");
}

function sha256(...parts: ArrayBufferView[]): string {
  const hash = createHash("sha256");
  for (const part of parts) hashBytes(hash, part);
  return hash.digest("hex");
}

/** Makes a target set from already L2-normalised rows: computes T^T T with the engine and the hash. */
export async function makeTargetSet(
  engine: Pick<ScoringEngine, "gram">,
  model: string,
  embeddings: Float32Array,
  rows: number,
  dim: number,
): Promise<TargetSet> {
  const gram = await engine.gram(embeddings, rows, dim);
  return { model, dim, rows, embeddings, gram, contentHash: targetContentHash(model, dim, rows, embeddings) };
}

/** Writes the artifact; returns the manifest written. `index` says how the target's index was made. */
export async function writeTargetSet(
  path: string,
  target: TargetSet,
  options: { sources?: string[]; createdAt?: Date; index?: { iterations: number; seed: number } } = {},
): Promise<TargetManifest> {
  const storage = storageOf(target.embeddings);
  const manifest: TargetManifest = {
    format: TARGET_SET_FORMAT,
    version: TARGET_SET_VERSION,
    model: target.model,
    dim: target.dim,
    rows: target.rows,
    createdAt: (options.createdAt ?? new Date()).toISOString(),
    contentHash: targetContentHash(target.model, target.dim, target.rows, target.embeddings),
    gramSha256: sha256(target.gram),
    sources: (options.sources ?? []).map((p) => basename(p)),
    storage,
  };
  const members: Record<string, NdArray> = {
    [MEMBER_EMBEDDINGS]: {
      dtype: storage === "float16" ? "<f2" : "<f4",
      shape: [target.rows, target.dim],
      data: target.embeddings,
    },
    [MEMBER_GRAM]: { dtype: "<f4", shape: [target.dim, target.dim], data: target.gram },
  };
  if (target.index) {
    const { clusters, probes, centroids, offsets } = target.index;
    checkTargetIndex(target.index, target.rows, target.dim);
    manifest.index = {
      kind: "ivf",
      clusters,
      probes,
      iterations: options.index?.iterations ?? 0,
      seed: options.index?.seed ?? 0,
      sha256: sha256(centroids, offsets),
    };
    members[MEMBER_CENTROIDS] = { dtype: "<f4", shape: [clusters, target.dim], data: centroids };
    members[MEMBER_OFFSETS] = { dtype: "<i4", shape: [clusters + 1], data: offsets };
  }
  const manifestBytes = new TextEncoder().encode(JSON.stringify(manifest));
  members[MEMBER_MANIFEST] = { dtype: "|u1", shape: [manifestBytes.length], data: manifestBytes };
  await writeNpz(path, members);
  return manifest;
}

/** The bytes a loaded target holds: its rows as stored, the gram, and the index's centres and offsets. */
export function targetMemoryBytes(manifest: {
  rows: number;
  dim: number;
  storage?: TargetStorage | undefined;
  index?: { clusters: number } | undefined;
}): {
  rows: number;
  gram: number;
  index: number;
  total: number;
} {
  const rows = manifest.rows * manifest.dim * (manifest.storage === "float16" ? 2 : 4);
  const gram = manifest.dim * manifest.dim * 4;
  const index = manifest.index ? manifest.index.clusters * (manifest.dim + 1) * 4 + 4 : 0;
  return { rows, gram, index, total: rows + gram + index };
}

/** One line: how the rows are stored, their memory, and the index a record searches. */
export function describeTargetLayout(manifest: TargetManifest): string {
  const memory = targetMemoryBytes(manifest);
  const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
  const stored = `rows stored as ${manifest.storage ?? "float32"} (${mib(memory.rows)}; gram ${mib(memory.gram)})`;
  if (!manifest.index) return `${stored}; NormSim_inf visits every row (exact)`;
  const { clusters, probes } = manifest.index;
  return (
    `${stored}; index: ${clusters} clusters (${mib(memory.index)}), a record visits ${probes} ` +
    `(${((100 * Math.min(probes, clusters)) / clusters).toFixed(1)}% of the clusters)`
  );
}

function invalid(path: string, what: string): ClipsieveError {
  return new ClipsieveError("TARGET_SET_INVALID", `target set ${path}: ${what}`);
}

function parseManifest(path: string, member: NdArray): TargetManifest {
  if (!(member.data instanceof Uint8Array)) throw invalid(path, "manifest is not a uint8 array");
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(member.data));
  } catch (err) {
    throw new ClipsieveError("TARGET_SET_INVALID", `target set ${path}: manifest is not UTF-8 JSON`, {
      cause: err,
    });
  }
  const m = parsed as Partial<TargetManifest>;
  if (m.format !== TARGET_SET_FORMAT) throw invalid(path, `manifest format is ${JSON.stringify(m.format)}`);
  if (typeof m.version !== "number" || m.version > TARGET_SET_VERSION) {
    throw invalid(
      path,
      `format version ${m.version} is newer than this clipsieve reads (${TARGET_SET_VERSION})`,
    );
  }
  const fields: [keyof TargetManifest, string][] = [
    ["model", "string"],
    ["dim", "number"],
    ["rows", "number"],
    ["createdAt", "string"],
    ["contentHash", "string"],
    ["gramSha256", "string"],
  ];
  for (const [key, type] of fields) {
    if (typeof m[key] !== type) throw invalid(path, `manifest field "${key}" is missing or not a ${type}`);
  }
  if (m.storage !== undefined && m.storage !== "float32" && m.storage !== "float16") {
    throw invalid(path, `manifest storage ${JSON.stringify(m.storage)} is not float32 or float16`);
  }
  if (m.index !== undefined) {
    const ix = m.index as Partial<TargetIndexManifest>;
    if (ix.kind !== "ivf" || typeof ix.clusters !== "number" || typeof ix.probes !== "number") {
      throw invalid(path, "manifest index is not an ivf index with clusters and probes");
    }
    if (typeof ix.sha256 !== "string") throw invalid(path, "manifest index has no sha256");
  }
  return { ...m, sources: Array.isArray(m.sources) ? m.sources : [] } as TargetManifest;
}

function typedMember<T extends Float32Array | Uint16Array | Int32Array>(
  path: string,
  name: string,
  member: NdArray | undefined,
  shape: number[],
  type: { new (length: number): T; readonly name: string },
  dtype: string,
): T {
  if (!member) throw invalid(path, `no ${name}.npy member`);
  if (!(member.data instanceof type) || member.dtype !== dtype) {
    throw invalid(path, `${name} is ${member.dtype}, expected ${dtype}`);
  }
  if (member.shape.length !== shape.length || member.shape.some((s, i) => s !== shape[i])) {
    throw invalid(
      path,
      `${name} has shape (${member.shape.join(", ")}), the manifest says (${shape.join(", ")})`,
    );
  }
  return member.data as T;
}

/**
 * Reads a target-set artifact and verifies its hashes. `probes` overrides the index's default number of
 * clusters a record visits (at least 1; the clusters or more: every row, exact).
 */
export async function readTargetSet(path: string, options: { probes?: number } = {}): Promise<LoadedTarget> {
  const keys = await listNpzKeys(path);
  for (const member of [MEMBER_MANIFEST, MEMBER_EMBEDDINGS, MEMBER_GRAM]) {
    if (!keys.includes(member)) {
      throw invalid(path, `not a target-set artifact: no ${member}.npy member (members: ${keys.join(", ")})`);
    }
  }
  const manifest = parseManifest(path, (await readNpz(path, [MEMBER_MANIFEST]))[MEMBER_MANIFEST]);
  const indexed = manifest.index !== undefined;
  const arrays = await readNpz(
    path,
    [MEMBER_EMBEDDINGS, MEMBER_GRAM, ...(indexed ? [MEMBER_CENTROIDS, MEMBER_OFFSETS] : [])],
    { halfBits: true },
  );
  const { model, dim, rows } = manifest;
  const storage = manifest.storage ?? "float32";
  const embeddings =
    storage === "float16"
      ? typedMember(path, MEMBER_EMBEDDINGS, arrays[MEMBER_EMBEDDINGS], [rows, dim], Uint16Array, "<f2")
      : typedMember(path, MEMBER_EMBEDDINGS, arrays[MEMBER_EMBEDDINGS], [rows, dim], Float32Array, "<f4");
  const gram = typedMember(path, MEMBER_GRAM, arrays[MEMBER_GRAM], [dim, dim], Float32Array, "<f4");
  const contentHash = targetContentHash(model, dim, rows, embeddings);
  if (contentHash !== manifest.contentHash) {
    throw invalid(
      path,
      `content hash mismatch (file says ${manifest.contentHash}, data hashes to ${contentHash}): the file is corrupt or was edited`,
    );
  }
  if (sha256(gram) !== manifest.gramSha256) {
    throw invalid(path, "gram (T^T T) hash mismatch: the file is corrupt or was edited");
  }
  let index: TargetIndex | undefined;
  if (manifest.index) {
    const { clusters, probes } = manifest.index;
    const centroids = typedMember(
      path,
      MEMBER_CENTROIDS,
      arrays[MEMBER_CENTROIDS],
      [clusters, dim],
      Float32Array,
      "<f4",
    );
    const offsets = typedMember(
      path,
      MEMBER_OFFSETS,
      arrays[MEMBER_OFFSETS],
      [clusters + 1],
      Int32Array,
      "<i4",
    );
    if (sha256(centroids, offsets) !== manifest.index.sha256) {
      throw invalid(path, "index hash mismatch: the file is corrupt or was edited");
    }
    index = { clusters, centroids, offsets, probes: options.probes ?? probes };
    checkTargetIndex(index, rows, dim);
  }
  return { model, dim, rows, embeddings, gram, contentHash, manifest, ...(index ? { index } : {}) };
}

/** loadTarget's options from a run's config: `targetProbes` overrides the index's default. */
export function targetLoadOptions(config: { targetProbes?: number | undefined }): { probes?: number } {
  return config.targetProbes !== undefined ? { probes: config.targetProbes } : {};
}

async function isTargetArtifact(path: string): Promise<boolean> {
  if (!path.toLowerCase().endsWith(".npz")) return false;
  try {
    return (await listNpzKeys(path)).includes(MEMBER_MANIFEST);
  } catch (err) {
    // Let the full reader report what is wrong with the file.
    if (isClipsieveError(err)) return false;
    throw err;
  }
}

/**
 * Loads a target set: a target-set artifact (hashes verified), or a bare .npy/.npz (`key` picks the
 * array) of target image embeddings, which is normalised, given the model "unknown" and its gram computed
 * with `engine` (a cpu engine made for the purpose when none is given).
 */
export async function loadTarget(
  path: string,
  options: { key?: string; engine?: Pick<ScoringEngine, "gram">; probes?: number } = {},
): Promise<LoadedTarget> {
  if (await isTargetArtifact(path)) {
    return readTargetSet(path, options.probes !== undefined ? { probes: options.probes } : {});
  }
  const matrix = await readEmbeddingMatrix(path, options.key ? { key: options.key } : {});
  normaliseRows(matrix.data, matrix.rows, matrix.dim, options.key ? `${path} (${options.key})` : path);
  if (options.engine)
    return makeTargetSet(options.engine, UNKNOWN_MODEL, matrix.data, matrix.rows, matrix.dim);
  const engine = await createScoringEngine({ device: "cpu" });
  try {
    return await makeTargetSet(engine, UNKNOWN_MODEL, matrix.data, matrix.rows, matrix.dim);
  } finally {
    await engine.close();
  }
}
