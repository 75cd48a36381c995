/**
 * The target-set artifact (spec §5): target image embeddings T (M x D) for NormSim_inf and T^T T (D x D)
 * for NormSim_2, with the teacher's name, D, M, a format version and a content hash.
 *
 * The file is a plain .npz (a zip of .npy members), so numpy opens it as is:
 *   embeddings.npy  float32 (M, D), rows L2-normalised
 *   gram.npy        float32 (D, D), T^T T
 *   manifest.npy    uint8 (bytes,): UTF-8 JSON of TargetManifest
 *     z = np.load("in1k.target.npz"); json.loads(z["manifest"].tobytes())
 *
 * contentHash = sha256 over "clipsieve-target-set\0<model>\0<D>\0<M>\0" followed by the little-endian
 * float32 bytes of the embeddings; gramSha256 = sha256 of the gram's float32 bytes. Both are checked on
 * read, so a flipped byte anywhere in the numbers is reported rather than silently scored with.
 */
import { createHash } from "node:crypto";
import { basename } from "node:path";
import { ClipsieveError, isClipsieveError } from "../common/errors.ts";
import type { NdArray } from "../io/index.ts";
import { listNpzKeys, readEmbeddingMatrix, readNpz, writeNpz } from "../io/index.ts";
import { createScoringEngine, type ScoringEngine } from "./engine.ts";
import { normaliseRows } from "./normalise.ts";
import type { TargetSet } from "./types.ts";

export const TARGET_SET_FORMAT = "clipsieve.target-set";
export const TARGET_SET_VERSION = 1;
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
}

export interface LoadedTarget extends TargetSet {
  /** The artifact's manifest; absent for a bare .npy/.npz of embeddings. */
  manifest?: TargetManifest;
}

const MEMBER_EMBEDDINGS = "embeddings";
const MEMBER_GRAM = "gram";
const MEMBER_MANIFEST = "manifest";

function bytesOf(data: Float32Array): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

export function targetContentHash(
  model: string,
  dim: number,
  rows: number,
  embeddings: Float32Array,
): string {
  return createHash("sha256")
    .update(`clipsieve-target-set\0${model}\0${dim}\0${rows}\0`, "utf8")
    .update(bytesOf(embeddings))
    .digest("hex");
}

function sha256(data: Float32Array): string {
  return createHash("sha256").update(bytesOf(data)).digest("hex");
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

/** Writes the artifact; returns the manifest written. */
export async function writeTargetSet(
  path: string,
  target: TargetSet,
  options: { sources?: string[]; createdAt?: Date } = {},
): Promise<TargetManifest> {
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
  };
  const manifestBytes = new TextEncoder().encode(JSON.stringify(manifest));
  await writeNpz(path, {
    [MEMBER_EMBEDDINGS]: { dtype: "<f4", shape: [target.rows, target.dim], data: target.embeddings },
    [MEMBER_GRAM]: { dtype: "<f4", shape: [target.dim, target.dim], data: target.gram },
    [MEMBER_MANIFEST]: { dtype: "|u1", shape: [manifestBytes.length], data: manifestBytes },
  });
  return manifest;
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
  return { ...m, sources: Array.isArray(m.sources) ? m.sources : [] } as TargetManifest;
}

function float32Member(
  path: string,
  name: string,
  member: NdArray | undefined,
  shape: number[],
): Float32Array {
  if (!member) throw invalid(path, `no ${name}.npy member`);
  if (!(member.data instanceof Float32Array))
    throw invalid(path, `${name} is ${member.dtype}, expected float32`);
  if (member.shape.length !== shape.length || member.shape.some((s, i) => s !== shape[i])) {
    throw invalid(
      path,
      `${name} has shape (${member.shape.join(", ")}), the manifest says (${shape.join(", ")})`,
    );
  }
  return member.data;
}

/** Reads a target-set artifact and verifies its hashes. */
export async function readTargetSet(path: string): Promise<LoadedTarget> {
  const keys = await listNpzKeys(path);
  for (const member of [MEMBER_MANIFEST, MEMBER_EMBEDDINGS, MEMBER_GRAM]) {
    if (!keys.includes(member)) {
      throw invalid(path, `not a target-set artifact: no ${member}.npy member (members: ${keys.join(", ")})`);
    }
  }
  const arrays = await readNpz(path, [MEMBER_MANIFEST, MEMBER_EMBEDDINGS, MEMBER_GRAM]);
  const manifest = parseManifest(path, arrays[MEMBER_MANIFEST]);
  const { model, dim, rows } = manifest;
  const embeddings = float32Member(path, MEMBER_EMBEDDINGS, arrays[MEMBER_EMBEDDINGS], [rows, dim]);
  const gram = float32Member(path, MEMBER_GRAM, arrays[MEMBER_GRAM], [dim, dim]);
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
  return { model, dim, rows, embeddings, gram, contentHash, manifest };
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
  options: { key?: string; engine?: Pick<ScoringEngine, "gram"> } = {},
): Promise<LoadedTarget> {
  if (await isTargetArtifact(path)) return readTargetSet(path);
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
