import type { Command } from "commander";
import { ClipsieveError } from "../../common/errors.ts";
import { formatEmbedBench, runEmbedBench } from "../../embed/bench.ts";

/** `clipsieve embed-bench [--json] [--quick]`: the embed stage's throughput on this CPU (BENCHMARKS.md). */
export function registerEmbedBenchCommand(program: Command): void {
  program
    .command("embed-bench")
    .description(
      "Measure the embed stage on this CPU: JPEG decode + CLIP preprocessing, tokenization, a tiny and a ViT-B/32-shaped encoder pair, end to end",
    )
    .option("--json", "print one JSON object instead of text")
    .option("--quick", "the tiny encoder pair only (seconds instead of minutes)")
    .option("--threads <n>", "onnxruntime intra-op threads (default: all CPUs)")
    .action(async (opts: { json?: boolean; quick?: boolean; threads?: string }) => {
      const threads = opts.threads === undefined ? undefined : Number(opts.threads);
      if (threads !== undefined && !(Number.isInteger(threads) && threads > 0)) {
        throw new ClipsieveError(
          "CONFIG_INVALID",
          `--threads must be a positive integer, got ${opts.threads}`,
        );
      }
      const report = await runEmbedBench({ quick: opts.quick, threads });
      console.log(opts.json ? JSON.stringify(report) : formatEmbedBench(report));
    });
}
