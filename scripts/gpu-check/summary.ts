/**
 * The summary of a gpu-check run (run.sh): for each run, the bench's own report and then one table
 * of the provider actually used, the MatMul peak, s-CLIPLoss at b = 4096 and b = 32768, the largest
 * difference from the cpu run's scores and what the provider computes in.
 *
 *     node scripts/gpu-check/summary.ts --results DIR --runs cpu,webgpu,cuda,cuda-tf32
 *
 * Reads DIR/<run>.json (`clipsieve bench --json`), DIR/<run>.rc (its exit status) and
 * DIR/<run>.placement.json (placement.ts). Exit status 1 when the cpu run failed or a run that used its
 * GPU provider is outside the tolerance; a provider that did not load is reported, not failed.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { BenchReport } from "../../src/score/bench.ts";
import { formatBenchReport } from "../../src/score/bench.ts";
import { formatScoreComparison, type ScoreComparison } from "../../src/score/bench-scores.ts";
import type { PlacementReport } from "./placement.ts";

type RunReport = BenchReport & { scoreComparison?: ScoreComparison };

/** The requested --device of a run label ("cuda-tf32" is cuda with TF32 left on). */
export function deviceOf(run: string): string {
  return run.split("-")[0];
}

/** What the provider computes the scores in, by run (docs/operations.md, "GPU"). */
function precisionOf(run: string, used: string): string {
  if (used !== deviceOf(run)) return `float32 (fell back to ${used})`;
  switch (run) {
    case "cpu":
      return "float32 (MLAS)";
    case "webgpu":
      return "float32 (WGSL f32 shaders)";
    case "cuda":
      return "float32 (cuBLAS, TF32 off by NVIDIA_TF32_OVERRIDE=0)";
    case "cuda-tf32":
      return "TF32 MatMul/Gemm inputs (10-bit mantissa), float32 sums and the rest";
    default:
      return "float32";
  }
}

/** "WebGpuExecutionProvider 40, CPUExecutionProvider 6" over all the engine's graphs. */
function placementLine(p: PlacementReport | undefined): string {
  if (!p) return "no placement probe";
  if (p.graphs.every((g) => !g.opened)) return "provider did not load";
  const counts = new Map<string, number>();
  for (const g of p.graphs) {
    for (const [provider, ops] of Object.entries(g.nodes)) {
      const all = ops.length === 1 ? /^all (\d+) nodes$/.exec(ops[0]) : null;
      counts.set(provider, (counts.get(provider) ?? 0) + (all ? Number(all[1]) : ops.length));
    }
  }
  return [...counts].map(([provider, n]) => `${provider.replace("ExecutionProvider", "")} ${n}`).join(", ");
}

function readJson<T>(path: string): T | undefined {
  if (!existsSync(path)) return undefined;
  try {
    return JSON.parse(readFileSync(path, "utf8")) as T;
  } catch {
    return undefined;
  }
}

const fixed = (x: number, digits = 0) =>
  x.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });

function main(): number {
  const { values } = parseArgs({
    options: {
      results: { type: "string" },
      runs: { type: "string", default: "cpu,webgpu,cuda,cuda-tf32" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help || values.results === undefined) {
    console.log("usage: node scripts/gpu-check/summary.ts --results DIR [--runs cpu,webgpu,cuda,cuda-tf32]");
    return values.help ? 0 : 2;
  }
  const dir = values.results;
  const runs = values.runs.split(",").filter((r) => r.length > 0);
  const rows: string[][] = [];
  let failed = false;
  for (const run of runs) {
    const report = readJson<RunReport>(join(dir, `${run}.json`));
    const placement = readJson<PlacementReport>(join(dir, `${run}.placement.json`));
    const rcPath = join(dir, `${run}.rc`);
    const rc = existsSync(rcPath) ? readFileSync(rcPath, "utf8").trim() : "not run";
    console.log(`\n== ${run} (--device ${deviceOf(run)}) ==`);
    if (!report) {
      console.log(`bench did not report (exit status ${rc}); see ${join(dir, `${run}.stderr`)}`);
      if (run === "cpu") failed = true;
      rows.push([run, "-", placementLine(placement), "-", "-", "-", "-", "-", "-", `failed (${rc})`, "-"]);
      continue;
    }
    console.log(formatBenchReport(report));
    if (report.scoreComparison) console.log(formatScoreComparison(report.scoreComparison));
    const used = report.machine.provider;
    const onGpu = used !== "cpu";
    const c = report.scoreComparison;
    if (c && onGpu && !c.within) failed = true;
    const s = (b: number) => report.sClipLoss.find((x) => x.batchSize === b);
    const s4 = s(4096);
    const s32 = s(32768);
    rows.push([
      run,
      used,
      placementLine(placement),
      fixed(report.matMulPeak.gflops, 1),
      s4 ? fixed(s4.recordsPerSecond) : "-",
      s4 ? fixed(s4.gflops, 1) : "-",
      s32 ? fixed(s32.recordsPerSecond) : "-",
      s32 ? fixed(s32.gflops, 1) : "-",
      c ? c.maxAbsDifference.toExponential(2) : run === "cpu" ? "(reference)" : "-",
      c ? (c.within ? "within" : "OUTSIDE") : "-",
      precisionOf(run, used),
    ]);
  }
  const header = [
    "run",
    "provider used",
    "nodes per provider",
    "MatMul peak GFLOP/s",
    "b=4096 rec/s",
    "b=4096 GFLOP/s",
    "b=32768 rec/s",
    "b=32768 GFLOP/s",
    "max |diff| vs cpu",
    "tolerance 1e-4",
    "computes in",
  ];
  console.log(`\n== summary ==\n| ${header.join(" | ")} |\n|${header.map(() => " --- |").join("")}`);
  for (const row of rows) console.log(`| ${row.join(" | ")} |`);
  return failed ? 1 : 0;
}

process.exitCode = main();
