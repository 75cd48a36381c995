import { access, readFile } from "node:fs/promises";
import { basename, extname } from "node:path";
import type { Command } from "commander";
import { ClipsieveError } from "../../common/errors.ts";
import { createLogger } from "../../common/logger.ts";
import {
  type ColumnData,
  listNpzKeys,
  type Matrix,
  readEmbeddingMatrix,
  readParquetColumns,
  writeTable,
} from "../../io/index.ts";
import { drawsFromBatches, makeDraws, wholePoolDraw } from "../../score/draws.ts";
import { createScoringEngine, DEVICES, type ScoringEngine } from "../../score/engine.ts";
import { normaliseRows } from "../../score/normalise.ts";
import { SCORE_NAMES, type ScoreName } from "../../score/registry.ts";
import { type LoadedTarget, loadTarget, UNKNOWN_MODEL } from "../../score/target-set.ts";
import { type Device, type Draw, NORMALISERS, type Normaliser } from "../../score/types.ts";
import { scorePoolColumns } from "../../score/window-scores.ts";
import { parseChoice, parseInteger, parseNumber } from "../flags.ts";
import { createProgress } from "../progress.ts";

const TABLE_EXTENSIONS = [".parquet", ".arrow", ".jsonl"];

interface ScoreOptions {
  embeddings: string[];
  metadata?: string[];
  imageKey: string;
  textKey: string;
  target?: string;
  targetKey?: string;
  tau: string;
  batchSize: string;
  draws: string;
  seed: string;
  partitions?: string;
  normaliser: string;
  device: string;
  model?: string;
  out: string;
}

export function parseDevice(text: string): Device {
  if (!(DEVICES as readonly string[]).includes(text)) {
    throw new ClipsieveError("CONFIG_INVALID", `--device ${text}: expected one of ${DEVICES.join(", ")}`);
  }
  return text as Device;
}

/**
 * Each shard is its own pool, as in the official code, and shard i (0-based, in --embeddings order) is
 * drawn with seed --seed + i. Scoring shard i alone with --seed (s + i) therefore reproduces its scores
 * from a many-shard run.
 */
export function shardSeed(seed: number, shardIndex: number): number {
  return seed + shardIndex;
}

/** The golden files' `batches`: a list of draws, each a list of batches of row indices; or a case file. */
async function readPartitions(path: string): Promise<number[][][]> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(path, "utf8"));
  } catch (err) {
    throw new ClipsieveError(
      "INPUT_FILE_INVALID",
      `--partitions ${path}: not readable JSON (${String(err)})`,
      {
        cause: err,
      },
    );
  }
  const batches =
    parsed !== null && typeof parsed === "object" && !Array.isArray(parsed)
      ? (parsed as { batches?: unknown }).batches
      : parsed;
  if (!Array.isArray(batches)) {
    throw new ClipsieveError(
      "INPUT_FILE_INVALID",
      `--partitions ${path}: expected a JSON list of draws (lists of batches of row indices) or an object with "batches"`,
    );
  }
  return batches as number[][][];
}

async function requireFiles(flag: string, files: string[]): Promise<void> {
  for (const file of files) {
    try {
      await access(file);
    } catch {
      throw new ClipsieveError("INPUT_FILE_INVALID", `${flag} ${file}: no such readable file`);
    }
  }
}

interface ScoreSettings {
  tau: number;
  batchSize: number;
  draws: number;
  seed: number;
  normaliser: Normaliser;
  device: Device;
}

function parseSettings(opts: ScoreOptions): ScoreSettings {
  return {
    tau: parseNumber("--tau", opts.tau, { min: 0, exclusive: true, hint: "(0.01 in the paper)" }),
    batchSize: parseInteger("--batch-size", opts.batchSize, 1),
    draws: parseInteger("--draws", opts.draws, 1),
    // every shard's seed (--seed + i) must stay an exact integer
    seed: parseInteger("--seed", opts.seed, 0, Number.MAX_SAFE_INTEGER - opts.embeddings.length),
    device: parseDevice(opts.device),
    normaliser: parseChoice("--normaliser", opts.normaliser, NORMALISERS),
  };
}

function checkShardNames(files: string[]): void {
  const seen = new Map<string, string>();
  for (const file of files) {
    const name = basename(file);
    const other = seen.get(name);
    if (other !== undefined) {
      throw new ClipsieveError(
        "CONFIG_INVALID",
        `--embeddings ${other} and ${file} share the basename ${name}, which the "shard" column must tell apart`,
      );
    }
    seen.set(name, file);
  }
}

/** Reads a shard's image and text matrices, checks they pair up, and L2-normalises both in place. */
async function readShard(
  file: string,
  imageKey: string,
  textKey: string,
): Promise<{ image: Matrix; text: Matrix }> {
  const image = await readEmbeddingMatrix(file, { key: imageKey });
  const text = await readEmbeddingMatrix(file, { key: textKey });
  if (image.rows !== text.rows) {
    throw new ClipsieveError(
      "INPUT_FILE_INVALID",
      `${file}: ${imageKey} has ${image.rows} rows but ${textKey} has ${text.rows}; row i of each must be pair i`,
    );
  }
  if (image.dim !== text.dim) {
    throw new ClipsieveError(
      "EMBEDDING_DIMENSION_MISMATCH",
      `${file}: ${imageKey} is ${image.dim}-dimensional but ${textKey} is ${text.dim}-dimensional`,
    );
  }
  normaliseRows(image.data, image.rows, image.dim, `${file} (${imageKey})`);
  normaliseRows(text.data, text.rows, text.dim, `${file} (${textKey})`);
  return { image, text };
}

function checkTarget(target: LoadedTarget, targetPath: string, file: string, dim: number): void {
  if (target.dim !== dim) {
    throw new ClipsieveError(
      "TARGET_MISMATCH",
      `target ${targetPath} is ${target.dim}-dimensional but ${file} holds ${dim}-dimensional embeddings`,
    );
  }
}

async function readUids(metadataFile: string, embeddingsFile: string, rows: number): Promise<ColumnData> {
  const { uid } = await readParquetColumns(metadataFile, ["uid"]);
  if (!uid) throw new ClipsieveError("INPUT_FILE_INVALID", `${metadataFile}: no "uid" column`);
  if (uid.length !== rows) {
    throw new ClipsieveError(
      "INPUT_FILE_INVALID",
      `${metadataFile} has ${uid.length} rows but ${embeddingsFile} has ${rows}: metadata rows must line up with embedding rows`,
    );
  }
  return uid;
}

/** A bare target .npz is read by --target-key, else by --image-key when it has that array. */
async function targetKey(opts: ScoreOptions): Promise<string | undefined> {
  if (opts.targetKey || !opts.target?.toLowerCase().endsWith(".npz")) return opts.targetKey;
  return (await listNpzKeys(opts.target)).includes(opts.imageKey) ? opts.imageKey : undefined;
}

function concatFloat32(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** The engine's columns are Float32Arrays already: no copy then. */
function asFloat32(column: ArrayLike<number>): Float32Array {
  return column instanceof Float32Array ? column : Float32Array.from(column);
}

interface ShardScores {
  rows: number;
  /** Every score the registry computes (src/score/registry.ts), by name, in registry order. */
  scores: Partial<Record<ScoreName, ArrayLike<number>>>;
  uids?: ColumnData;
}

async function scoreShard(
  engine: ScoringEngine,
  file: string,
  opts: ScoreOptions,
  draws: (n: number) => Draw[],
  tau: number,
  target: LoadedTarget | undefined,
  scaleToBatch?: number,
): Promise<ShardScores> {
  const { image, text } = await readShard(file, opts.imageKey, opts.textKey);
  if (target && opts.target) checkTarget(target, opts.target, file, image.dim);
  const n = image.rows;
  const pool = {
    dim: image.dim,
    scoredRows: n,
    bankRows: 0,
    image: image.data,
    text: text.data,
    ...(scaleToBatch === undefined ? {} : { scaleToBatch }),
  };
  return { rows: n, scores: await scorePoolColumns(engine, pool, draws(n), tau, target) };
}

async function runScore(opts: ScoreOptions): Promise<void> {
  const settings = parseSettings(opts);
  const shards = opts.embeddings;
  if (!TABLE_EXTENSIONS.includes(extname(opts.out).toLowerCase())) {
    throw new ClipsieveError("CONFIG_INVALID", `--out ${opts.out}: expected ${TABLE_EXTENSIONS.join(", ")}`);
  }
  if (opts.metadata && opts.metadata.length !== shards.length) {
    throw new ClipsieveError(
      "CONFIG_INVALID",
      `${shards.length} --embeddings files but ${opts.metadata.length} --metadata files: give one metadata file per shard, in the same order`,
    );
  }
  if (settings.normaliser === "pool" && opts.partitions) {
    throw new ClipsieveError(
      "CONFIG_INVALID",
      "--normaliser pool takes every row of a shard as one batch: it has no draws for --partitions to fix",
    );
  }
  if (opts.partitions && shards.length !== 1) {
    throw new ClipsieveError(
      "CONFIG_INVALID",
      `--partitions fixes the draws of one pool, but ${shards.length} --embeddings shards were given: score one shard at a time`,
    );
  }
  checkShardNames(shards);
  await requireFiles("--embeddings", shards);
  await requireFiles("--metadata", opts.metadata ?? []);
  if (opts.target) await requireFiles("--target", [opts.target]);
  const fixedBatches = opts.partitions ? await readPartitions(opts.partitions) : undefined;

  const engine = await createScoringEngine({ device: settings.device, logger: createLogger("score") });
  // A line for every shard when stderr is not a terminal: shards are few and slow.
  const progress = createProgress({ label: "score", total: shards.length, unit: "shards", lineEveryMs: 0 });
  let scoredRows = 0;
  try {
    const target = opts.target
      ? await loadTarget(opts.target, { key: await targetKey(opts), engine })
      : undefined;
    if (target && opts.model && target.model !== UNKNOWN_MODEL && target.model !== opts.model) {
      throw new ClipsieveError(
        "TARGET_MISMATCH",
        `target ${opts.target} was made with ${target.model}, but --model is ${opts.model}`,
      );
    }
    const parts: ShardScores[] = [];
    const shardNames: string[] = [];
    for (const [index, file] of shards.entries()) {
      const draws = (n: number): Draw[] =>
        settings.normaliser === "pool"
          ? [wholePoolDraw(n)]
          : fixedBatches
            ? drawsFromBatches(fixedBatches, n)
            : makeDraws(n, {
                seed: shardSeed(settings.seed, index),
                draws: settings.draws,
                batchSize: settings.batchSize,
              });
      const scaleTo = settings.normaliser === "pool" ? settings.batchSize : undefined;
      const scores = await scoreShard(engine, file, opts, draws, settings.tau, target, scaleTo);
      if (opts.metadata) scores.uids = await readUids(opts.metadata[index], file, scores.rows);
      parts.push(scores);
      shardNames.push(basename(file));
      scoredRows += scores.rows;
      progress.update(index + 1, `${file}: ${scores.rows} rows (total ${scoredRows})`);
    }
    progress.stop();
    const columns = assembleColumns(parts, shardNames);
    await writeTable(opts.out, columns);
    const total = parts.reduce((n, p) => n + p.rows, 0);
    const how =
      settings.normaliser === "pool"
        ? `pool normaliser scaled to b=${settings.batchSize}`
        : fixedBatches
          ? `draws from ${opts.partitions}`
          : `K=${settings.draws}, b=${settings.batchSize}, seed=${settings.seed}`;
    console.log(
      `scored ${total} rows in ${shards.length} shard(s) (${how}, tau=${settings.tau}${target ? `, target ${target.contentHash.slice(0, 12)}` : ""}) -> ${opts.out}`,
    );
  } finally {
    progress.stop();
    await engine.close();
  }
}

function assembleColumns(parts: ShardScores[], shardNames: string[]): Record<string, ColumnData> {
  const total = parts.reduce((n, p) => n + p.rows, 0);
  const row = new Int32Array(total);
  const shard: string[] = new Array(total);
  let offset = 0;
  for (const [index, part] of parts.entries()) {
    for (let i = 0; i < part.rows; i++) {
      row[offset + i] = i;
      shard[offset + i] = shardNames[index];
    }
    offset += part.rows;
  }
  const columns: Record<string, ColumnData> = { row, shard };
  if (parts.length > 0 && parts[0].uids) {
    columns.uid = parts.flatMap((p) => Array.from(p.uids as ArrayLike<string | null>));
  }
  for (const name of SCORE_NAMES) {
    if (parts.length > 0 && parts[0].scores[name]) {
      columns[name] = concatFloat32(parts.map((p) => asFloat32(p.scores[name] as ArrayLike<number>)));
    }
  }
  return columns;
}

/** `clipsieve score`: s-CLIPLoss, CLIPScore and NormSim for DataComp-style shards, offline. */
export function registerScoreCommand(program: Command): void {
  program
    .command("score")
    .description(
      "Score precomputed embedding shards offline (each shard is its own pool, as in the paper) and write a table",
    )
    .requiredOption(
      "--embeddings <shards...>",
      "per-shard embeddings: .npz (DataComp), .npy, Arrow IPC or Parquet",
    )
    .option(
      "--metadata <shards...>",
      "per-shard .parquet with a uid column, rows lining up with --embeddings",
    )
    .option("--image-key <name>", "image embedding array/column", "l14_img")
    .option("--text-key <name>", "text embedding array/column", "l14_txt")
    .option("--target <file>", "target set for NormSim: a `clipsieve target build` artifact, or a .npy/.npz")
    .option("--target-key <name>", "array of a bare target .npz (default: its only array, or --image-key)")
    .option("--tau <t>", "temperature (0.01 for OpenAI CLIP, 0.07 for DFN-P)", "0.01")
    .option("--batch-size <b>", "contrastive batch size", "32768")
    .option("--draws <k>", "number of random partitions (K)", "10")
    .option("--seed <n>", "draw seed; shard i (0-based) is drawn with seed + i", "0")
    .option("--partitions <draws.json>", "explicit draws (golden-file `batches` format); one shard only")
    .option(
      "--normaliser <name>",
      "draws (the paper's K partitions) or pool (each shard as one batch, scaled to --batch-size, as run --normaliser pool; --draws and --seed then do not apply)",
      "draws",
    )
    .option("--device <device>", "execution provider: cpu | cuda | webgpu", "cpu")
    .option("--model <teacher>", "teacher of the embeddings; a target made with another teacher is an error")
    .requiredOption("--out <file>", "scores table: .parquet, .arrow or .jsonl")
    .action(runScore);
}
