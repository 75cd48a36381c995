import type { Command } from "commander";
import { formatEmbedBench, runEmbedBench } from "../../embed/bench.ts";
import { parseInteger } from "../flags.ts";

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
      const threads = opts.threads === undefined ? undefined : parseInteger("--threads", opts.threads, 1);
      const report = await runEmbedBench({ quick: opts.quick, threads });
      console.log(opts.json ? JSON.stringify(report) : formatEmbedBench(report));
    });
}
