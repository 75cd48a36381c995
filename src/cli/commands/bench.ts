import type { Command } from "commander";
import {
  formatTargetScaleReport,
  runTargetScaleBench,
  TARGET_SCALE_DEFAULTS,
} from "../../bench/target-scale.ts";
import { ClipsieveError } from "../../common/errors.ts";
import { formatBenchReport, formatShardReport, runBench, runShardBench } from "../../score/bench.ts";
import {
  compareBenchScores,
  formatScoreComparison,
  readBenchScores,
  writeBenchScores,
} from "../../score/bench-scores.ts";
import { DEVICES } from "../../score/engine.ts";
import type { Device } from "../../score/types.ts";
import { integerListOption, integerOption, parseInteger } from "../flags.ts";

interface BenchCliOptions {
  json?: boolean;
  shard?: boolean;
  targetRows?: number[];
  probes?: number[];
  pool: number;
  device: string;
  threads?: string;
  scores?: string;
  compareScores?: string;
}

/**
 * `clipsieve bench [--json] [--shard] [--scores FILE] [--compare-scores FILE]`: the scoring engine's
 * speed on this machine (BENCHMARKS.md); optionally its scores, to check one provider against another.
 */
export function registerBenchCommand(program: Command): void {
  program
    .command("bench")
    .description(
      "Measure the scoring engine: onnxruntime MatMul peak, s-CLIPLoss (b=4096, b=32768), numpy, NormSim, peak RSS",
    )
    .option("--json", "print one JSON object instead of text")
    .option(
      "--shard",
      "instead: score one DataComp-sized shard (110,000 rows, D=768, b=32768, K=10); minutes",
    )
    .option(
      "--target-rows <list>",
      `instead: NormSim_inf at these target sizes, exact and by default (e.g. ${TARGET_SCALE_DEFAULTS.rows.join(",")}); minutes per million rows`,
      integerListOption("--target-rows", 1),
    )
    .option(
      "--probes <list>",
      "with --target-rows: also measure indexed targets visiting these numbers of clusters",
      integerListOption("--probes", 1),
    )
    .option(
      "--pool <n>",
      "with --target-rows: simulated records the paper's recipe selects from",
      integerOption("--pool", 16),
      TARGET_SCALE_DEFAULTS.pool,
    )
    .option("--device <device>", `execution provider (${DEVICES.join(", ")})`, "cpu")
    .option("--threads <n>", "onnxruntime intra-op threads (default: all CPUs)")
    .option("--scores <file.npz>", "also write the scores the bench computed (seeded input) to an .npz")
    .option(
      "--compare-scores <file.npz>",
      "also print the largest difference of this run's scores from those of an earlier --scores run",
    )
    .action(async (opts: BenchCliOptions) => {
      if (!DEVICES.includes(opts.device as Device)) {
        throw new ClipsieveError(
          "CONFIG_INVALID",
          `--device must be one of ${DEVICES.join(", ")}, got ${opts.device}`,
        );
      }
      const threads = opts.threads === undefined ? undefined : parseInteger("--threads", opts.threads, 1);
      if (opts.shard && (opts.scores !== undefined || opts.compareScores !== undefined)) {
        throw new ClipsieveError(
          "CONFIG_INVALID",
          "--scores and --compare-scores go with the standard bench, not --shard",
        );
      }
      // Read the reference first: a wrong file fails before minutes of benchmark, not after.
      const reference =
        opts.compareScores === undefined ? undefined : await readBenchScores(opts.compareScores);
      const scores =
        opts.scores !== undefined || reference !== undefined ? new Map<string, Float32Array>() : undefined;
      const options = { device: opts.device as Device, threads, scores };
      if (opts.targetRows) {
        const report = await runTargetScaleBench({
          ...TARGET_SCALE_DEFAULTS,
          rows: opts.targetRows,
          pool: opts.pool,
          ...(opts.probes ? { probes: opts.probes } : {}),
          device: opts.device as Device,
          ...(threads !== undefined ? { threads } : {}),
          progress: (line) => console.error(line),
        });
        console.log(opts.json ? JSON.stringify(report) : formatTargetScaleReport(report));
      } else if (opts.shard) {
        const report = await runShardBench(options);
        console.log(opts.json ? JSON.stringify(report) : formatShardReport(report));
      } else {
        const report = await runBench(options);
        if (scores && opts.scores !== undefined) {
          await writeBenchScores(opts.scores, {
            meta: {
              provider: report.machine.provider,
              onnxruntime: report.machine.onnxruntime,
              cpuModel: report.machine.cpuModel,
              createdAt: new Date().toISOString(),
            },
            arrays: scores,
          });
        }
        const comparison =
          scores && reference && opts.compareScores !== undefined
            ? compareBenchScores(scores, reference, opts.compareScores)
            : undefined;
        if (opts.json) {
          console.log(JSON.stringify(comparison ? { ...report, scoreComparison: comparison } : report));
        } else {
          const lines = [formatBenchReport(report)];
          if (opts.scores !== undefined) lines.push(`scores written to ${opts.scores}`);
          if (comparison) lines.push(formatScoreComparison(comparison));
          console.log(lines.join("\n"));
        }
      }
    });
}
