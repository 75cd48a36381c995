import type { Command } from "commander";
import { ClipsieveError } from "../../common/errors.ts";
import { formatBenchReport, formatShardReport, runBench, runShardBench } from "../../score/bench.ts";
import { DEVICES } from "../../score/engine.ts";
import type { Device } from "../../score/types.ts";

/** `clipsieve bench [--json] [--shard]`: the scoring engine's speed on this machine (BENCHMARKS.md). */
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
    .option("--device <device>", `execution provider (${DEVICES.join(", ")})`, "cpu")
    .option("--threads <n>", "onnxruntime intra-op threads (default: all CPUs)")
    .action(async (opts: { json?: boolean; shard?: boolean; device: string; threads?: string }) => {
      if (!DEVICES.includes(opts.device as Device)) {
        throw new ClipsieveError(
          "CONFIG_INVALID",
          `--device must be one of ${DEVICES.join(", ")}, got ${opts.device}`,
        );
      }
      const threads = opts.threads === undefined ? undefined : Number(opts.threads);
      if (threads !== undefined && !(Number.isInteger(threads) && threads > 0)) {
        throw new ClipsieveError(
          "CONFIG_INVALID",
          `--threads must be a positive integer, got ${opts.threads}`,
        );
      }
      const options = { device: opts.device as Device, threads };
      if (opts.shard) {
        const report = await runShardBench(options);
        console.log(opts.json ? JSON.stringify(report) : formatShardReport(report));
      } else {
        const report = await runBench(options);
        console.log(opts.json ? JSON.stringify(report) : formatBenchReport(report));
      }
    });
}
