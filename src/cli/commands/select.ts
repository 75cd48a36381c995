import { writeFile } from "node:fs/promises";
import { basename, extname } from "node:path";
import type { Command } from "commander";
import { ClipsieveError } from "../../common/errors.ts";
import {
  DEFAULT_DEDUP_PROBES,
  DEFAULT_DEDUP_THRESHOLD,
  DEFAULT_REFERENCE_THRESHOLD,
} from "../../dedup/index.ts";
import { dedupPoolRows } from "../../dedup/offline.ts";
import { readEmbeddingMatrix } from "../../io/embeddings.ts";
import { type ColumnData, readTable, writeUidNpy } from "../../io/index.ts";
import {
  parseKeepRule,
  parseThresholdRule,
  type SelectionPlan,
  selectRows,
  type ThresholdRule,
} from "../../policy/offline-select.ts";
import { createScoringEngine } from "../../score/engine.ts";
import { normaliseRows } from "../../score/normalise.ts";
import { SCORE_NAMES } from "../../score/registry.ts";
import { integerOption, numberOption } from "../flags.ts";

interface SelectOptions {
  scores: string[];
  keep?: string;
  then?: string;
  threshold: ThresholdRule[];
  out: string;
  dedup?: boolean;
  dedupThreshold: number;
  dedupProbes: number;
  reference?: string;
  referenceThreshold: number;
  embeddings?: string[];
  imageKey: string;
}

/**
 * The rows of every --scores file, ranked as one pool (not the engine's score/types.ts `Pool` of
 * embeddings): identity columns plus the score columns the plan reads.
 */
interface ScoreFileRows {
  rows: number;
  scores: Record<string, Float64Array>;
  /** Per row: the scores file, the row within it, and its columns. */
  file: Int32Array;
  fileRow: Int32Array;
  tables: Record<string, ColumnData>[];
}

function isNumeric(column: ColumnData): column is Float32Array | Float64Array | Int32Array {
  return !Array.isArray(column);
}

function ruleScores(plan: SelectionPlan): string[] {
  const names = plan.thresholds.map((t) => t.score);
  if (plan.keep) names.push(plan.keep.score);
  if (plan.thenKeep) names.push(plan.thenKeep.score);
  return [...new Set(names)];
}

async function readScoreFileRows(files: string[], scoreNames: string[]): Promise<ScoreFileRows> {
  const tables: Record<string, ColumnData>[] = [];
  for (const file of files) tables.push(await readTable(file));
  const lengths = tables.map((t, i) => {
    const lens = new Set(Object.values(t).map((c) => c.length));
    if (lens.size > 1)
      throw new ClipsieveError("INPUT_FILE_INVALID", `${files[i]}: columns of different lengths`);
    return lens.size === 0 ? 0 : [...lens][0];
  });
  const rows = lengths.reduce((a, b) => a + b, 0);
  const scores: Record<string, Float64Array> = {};
  for (const name of scoreNames) {
    const all = new Float64Array(rows);
    let offset = 0;
    for (const [i, table] of tables.entries()) {
      const column = table[name];
      if (!column) {
        throw new ClipsieveError(
          "CONFIG_INVALID",
          `${files[i]} has no score column "${name}" (columns: ${Object.keys(table).join(", ")})`,
        );
      }
      if (!isNumeric(column)) {
        throw new ClipsieveError("INPUT_FILE_INVALID", `${files[i]}: column "${name}" is not numeric`);
      }
      all.set(column, offset);
      offset += lengths[i];
    }
    scores[name] = all;
  }
  const file = new Int32Array(rows);
  const fileRow = new Int32Array(rows);
  let offset = 0;
  for (const [i, length] of lengths.entries()) {
    for (let r = 0; r < length; r++) {
      file[offset + r] = i;
      fileRow[offset + r] = r;
    }
    offset += length;
  }
  return { rows, scores, file, fileRow, tables };
}

function uidOf(pool: ScoreFileRows, files: string[], row: number): string {
  const table = pool.tables[pool.file[row]];
  const source = files[pool.file[row]];
  const uids = table.uid;
  if (!uids || isNumeric(uids)) {
    throw new ClipsieveError(
      "INPUT_FILE_INVALID",
      `${source} has no string "uid" column, which a uid .npy needs (score with --metadata, or write .jsonl)`,
    );
  }
  const uid = uids[pool.fileRow[row]];
  if (uid === null || uid === undefined) {
    throw new ClipsieveError("INPUT_FILE_INVALID", `${source} row ${pool.fileRow[row]}: uid is null`);
  }
  return uid;
}

/** One JSON line per kept row: its `row` and `shard` as the score command wrote them, and its uid. */
function keptLine(pool: ScoreFileRows, row: number): string {
  const table = pool.tables[pool.file[row]];
  const at = pool.fileRow[row];
  const line: Record<string, unknown> = { row: table.row ? table.row[at] : at };
  if (table.shard) line.shard = table.shard[at];
  if (table.uid) line.uid = table.uid[at];
  return JSON.stringify(line);
}

async function runSelect(opts: SelectOptions): Promise<void> {
  const format = extname(opts.out).toLowerCase();
  if (format !== ".npy" && format !== ".jsonl") {
    throw new ClipsieveError("CONFIG_INVALID", `--out ${opts.out}: expected .npy (DataComp uids) or .jsonl`);
  }
  const plan: SelectionPlan = { thresholds: opts.threshold };
  if (opts.keep) plan.keep = parseKeepRule(opts.keep, "--keep");
  if (opts.then) plan.thenKeep = parseKeepRule(opts.then, "--then");
  if (!plan.keep && plan.thresholds.length === 0) {
    throw new ClipsieveError("CONFIG_INVALID", "nothing to select by: give --keep and/or --threshold");
  }
  const pool = await readScoreFileRows(opts.scores, ruleScores(plan));
  let kept = selectRows(pool.scores, pool.rows, plan);
  if (opts.dedup || opts.reference) kept = await dedupSelection(pool, opts, kept);
  if (format === ".npy") {
    const uids = Array.from(kept, (row) => uidOf(pool, opts.scores, row));
    await writeFile(opts.out, writeUidNpy(uids));
  } else {
    const lines = Array.from(kept, (row) => keptLine(pool, row));
    await writeFile(opts.out, lines.length > 0 ? `${lines.join("\n")}\n` : "");
  }
  const percent = pool.rows > 0 ? ((100 * kept.length) / pool.rows).toFixed(2) : "0.00";
  console.log(`N=${pool.rows} kept=${kept.length} (${percent}%) -> ${opts.out}`);
}

/**
 * The dedup step over the kept rows, in pool order (src/dedup/offline.ts): each row's image is found
 * through the score table's `shard` (the --embeddings file's name) and `row` columns.
 */
async function dedupSelection(
  pool: ScoreFileRows,
  opts: SelectOptions,
  kept: Int32Array,
): Promise<Int32Array> {
  if (!opts.embeddings || opts.embeddings.length === 0) {
    throw new ClipsieveError(
      "CONFIG_INVALID",
      "--dedup and --reference compare images: give the shards the scores were computed from with --embeddings",
    );
  }
  const shards = new Map<string, { data: Float32Array; rows: number; dim: number }>();
  for (const file of opts.embeddings) {
    const m = await readEmbeddingMatrix(file, { key: opts.imageKey });
    normaliseRows(m.data, m.rows, m.dim, `${file} (${opts.imageKey})`);
    shards.set(basename(file), m);
  }
  const dims = new Set([...shards.values()].map((m) => m.dim));
  if (dims.size !== 1)
    throw new ClipsieveError("INPUT_FILE_INVALID", "--embeddings shards of different dimensions");
  const dim = [...dims][0];
  const image = (row: number): Float32Array => {
    const table = pool.tables[pool.file[row]];
    const at = pool.fileRow[row];
    const shardName = table.shard
      ? String(table.shard[at])
      : shards.size === 1
        ? [...shards.keys()][0]
        : undefined;
    const shard = shardName !== undefined ? shards.get(shardName) : undefined;
    if (!shard) {
      throw new ClipsieveError(
        "INPUT_FILE_INVALID",
        `${opts.scores[pool.file[row]]} row ${at}: its shard ${shardName ?? "(no shard column)"} is not among --embeddings`,
      );
    }
    const r = table.row ? Number(table.row[at]) : at;
    if (!(r >= 0 && r < shard.rows)) {
      throw new ClipsieveError(
        "INPUT_FILE_INVALID",
        `${opts.scores[pool.file[row]]} row ${at}: row ${r} is not in its shard`,
      );
    }
    return shard.data.subarray(r * dim, (r + 1) * dim);
  };
  const uid = (row: number) => {
    const uids = pool.tables[pool.file[row]].uid;
    const u = uids && !isNumeric(uids) ? uids[pool.fileRow[row]] : undefined;
    return u ?? undefined;
  };
  const engine = await createScoringEngine({});
  try {
    const result = await dedupPoolRows(engine, kept, dim, image, uid, {
      dedup: opts.dedup ?? false,
      dedupThreshold: opts.dedupThreshold,
      dedupProbes: opts.dedupProbes,
      referenceThreshold: opts.referenceThreshold,
      ...(opts.reference ? { reference: opts.reference } : {}),
    });
    console.log(
      `dedup: ${result.nearDuplicates} near_duplicate, ${result.nearReferences} near_reference rejected of ${kept.length} selected`,
    );
    return result.kept;
  } finally {
    await engine.close();
  }
}

function collectThreshold(text: string, previous: ThresholdRule[]): ThresholdRule[] {
  return [...previous, parseThresholdRule(text)];
}

/** `clipsieve select`: the paper's / DataComp's offline selection over a whole scored pool. */
export function registerSelectCommand(program: Command): void {
  program
    .command("select")
    .description(
      "Select rows from score tables, ranking all inputs together as one pool: top fractions of N and fixed thresholds",
    )
    .requiredOption("--scores <files...>", "tables written by `clipsieve score` (.parquet, .arrow, .jsonl)")
    .option(
      "--keep <score=fraction>",
      `keep the int(N * fraction) highest rows by a score column (${SCORE_NAMES.join(", ")}, ...), e.g. s_clip_loss=0.3`,
    )
    .option(
      "--then <score=fraction>",
      "then keep the int(N * fraction) highest of those, e.g. normsim_inf=0.2",
    )
    .option(
      "--threshold <rule>",
      "<score>>=<value>: also require score >= value (repeatable, one per score)",
      collectThreshold,
      [],
    )
    .requiredOption("--out <file>", "uids.npy (DataComp: sorted (u8,u8)) or rows.jsonl ({row, shard, uid})")
    .option(
      "--dedup",
      "then drop rows within --dedup-threshold of a row kept before them in pool order (as run --dedup)",
    )
    .option(
      "--dedup-threshold <t>",
      "cosine similarity of a near-duplicate",
      numberOption("--dedup-threshold", { min: 0, exclusive: true }),
      DEFAULT_DEDUP_THRESHOLD,
    )
    .option(
      "--dedup-probes <n>",
      "clusters visited per indexed segment",
      integerOption("--dedup-probes", 1),
      DEFAULT_DEDUP_PROBES,
    )
    .option(
      "--reference <file>",
      "then drop rows within --reference-threshold of a row of this reference set (as run --reference)",
    )
    .option(
      "--reference-threshold <t>",
      "cosine similarity of a near-copy of a reference row",
      numberOption("--reference-threshold", { min: 0, exclusive: true }),
      DEFAULT_REFERENCE_THRESHOLD,
    )
    .option(
      "--embeddings <shards...>",
      "with --dedup / --reference: the shards the scores were computed from (as given to `score`)",
    )
    .option("--image-key <name>", "image embedding array/column of the shards", "l14_img")
    .action(runSelect);
}
