/**
 * `clipsieve bench-dedup`: precision and recall of the dedup step on a simulated stream with planted
 * near-copies and a contaminated reference set, over thresholds, and the index against exact search
 * (src/bench/dedup-study.ts; BENCHMARKS.md, "Dedup"). No Kafka: the filter's emulator decides.
 */
import type { Command } from "commander";
import {
  type DedupStudyOptions,
  formatDedupStudy,
  formatIndexRecall,
  runDedupStudy,
  runIndexRecall,
} from "../../bench/dedup-study.ts";
import { DEFAULT_DEDUP_PROBES, DEFAULT_DEDUP_THRESHOLD } from "../../dedup/index.ts";
import { createScoringEngine } from "../../score/engine.ts";
import { SIM_PROFILES } from "../../simulate/generator.ts";
import { integerOption, numberOption, parseChoice } from "../flags.ts";

export const DEDUP_STUDY_DEFAULTS = {
  count: 40_000,
  dim: 768,
  seed: 0,
  partitions: 4,
  referenceRows: 2000,
  contaminated: 200,
  thresholds: [0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99],
  horizon: 100_000,
  windowSize: 4096,
  bankSize: 4096,
  indexRows: 1_000_000,
};

function thresholdList(text: string): number[] {
  return text.split(",").map((t) => numberOption("--thresholds", { min: 0, exclusive: true })(t));
}

export function registerBenchDedupCommand(program: Command): void {
  const d = DEDUP_STUDY_DEFAULTS;
  program
    .command("bench-dedup")
    .description(
      "Precision and recall of near_duplicate and near_reference on a simulated stream with planted copies, over thresholds; the index against exact search",
    )
    .option("--count <n>", "simulated records", integerOption("--count", 1), d.count)
    .option("--dim <d>", "embedding dimension", integerOption("--dim", 8), d.dim)
    .option("--seed <s>", "simulation seed", integerOption("--seed", 0), d.seed)
    .option(
      "--profile <name>",
      `generator: ${SIM_PROFILES.join(", ")}`,
      (t) => parseChoice("--profile", t, SIM_PROFILES),
      "crawl",
    )
    .option(
      "--partitions <n>",
      "input partitions (dedup scopes)",
      integerOption("--partitions", 1),
      d.partitions,
    )
    .option(
      "--partition-by <how>",
      "uid (as a keyed producer spreads records) or lsh (src/dedup/lsh.ts)",
      (t) => parseChoice("--partition-by", t, ["uid", "lsh"] as const),
      "uid",
    )
    .option(
      "--reference-rows <n>",
      "rows of the reference set",
      integerOption("--reference-rows", 1),
      d.referenceRows,
    )
    .option(
      "--contaminated <n>",
      "reference rows planted as near-copies of stream images",
      integerOption("--contaminated", 0),
      d.contaminated,
    )
    .option("--thresholds <list>", "cosine thresholds of the curve", thresholdList, d.thresholds)
    .option(
      "--threshold <t>",
      "the default threshold (both reasons)",
      numberOption("--threshold", { min: 0, exclusive: true }),
      DEFAULT_DEDUP_THRESHOLD,
    )
    .option(
      "--horizon <n>",
      "accepted records per partition compared with",
      integerOption("--horizon", 1),
      d.horizon,
    )
    .option(
      "--probes <n>",
      "clusters visited per indexed segment",
      integerOption("--probes", 1),
      DEFAULT_DEDUP_PROBES,
    )
    .option("--window-size <n>", "records per window", integerOption("--window-size", 1), d.windowSize)
    .option("--bank-size <n>", "negative bank rows", integerOption("--bank-size", 0), d.bankSize)
    .option(
      "--index-rows <n>",
      "then the index against exact search over a history of this many rows (0: skip)",
      integerOption("--index-rows", 0),
      d.indexRows,
    )
    .option("--json", "print the result as JSON")
    .action(async (opts: Omit<DedupStudyOptions, "progress"> & { json?: boolean; indexRows: number }) => {
      const engine = await createScoringEngine({});
      try {
        const { json, indexRows, ...options } = opts;
        const progress = (l: string) => process.stderr.write(`${l}\n`);
        const result = await runDedupStudy(engine, { ...options, progress });
        const index =
          indexRows > 0
            ? await runIndexRecall(engine, {
                rows: indexRows,
                dim: options.dim,
                queries: 500,
                probes: [1, 2, 4],
              })
            : undefined;
        console.log(
          json
            ? JSON.stringify({ ...result, index })
            : [formatDedupStudy(result), ...(index ? ["", formatIndexRecall(index)] : [])].join("\n"),
        );
      } finally {
        await engine.close();
      }
    });
}
