/**
 * `clipsieve bench`: how fast the scoring engine runs on this machine, against onnxruntime's own
 * matrix-product peak and the same math in numpy. BENCHMARKS.md records the figures and reads them.
 *
 * Flop counts follow spec §2: one draw of s-CLIPLoss over n rows with batches of b costs 2·n·b·D
 * (the S matrix of each batch serves both directions); NormSim_inf costs 2·M·D per record.
 */
import { execFile } from "node:child_process";
import { availableParallelism, cpus } from "node:os";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import * as ort from "onnxruntime-node";
import { silentLogger } from "../common/logger.ts";
import { makeDraws } from "./draws.ts";
import { createScoringEngine, type ScoringEngine } from "./engine.ts";
import { matMulGraph } from "./graphs.ts";
import { normaliseRows } from "./normalise.ts";
import { sessionOptions } from "./onnx-session.ts";
import { createRandom } from "./random.ts";
import type { Device, Pool, TargetSet } from "./types.ts";

const execFileAsync = promisify(execFile);

export interface BenchOptions {
  device?: Device;
  threads?: number;
  /** Embedding width. Default 768 (ViT-L/14). */
  dim?: number;
  /**
   * When given, the bench adds the scores it computed here, by name (see BENCH_SCORE_NAMES): the
   * same seeded input on every machine and provider, so two runs' scores can be compared value by value.
   */
  scores?: Map<string, Float32Array>;
}

/** The arrays `runBench` puts in `BenchOptions.scores`. */
export const BENCH_SCORE_NAMES = [
  "s_clip_loss_b4096",
  "s_clip_loss_b32768",
  "normsim2",
  "normsim_inf",
] as const;

export interface SClipLossFigures {
  batchSize: number;
  rows: number;
  draws: number;
  seconds: number;
  recordsPerSecond: number;
  gflops: number;
  percentOfPeak: number;
}

export interface NumpyFigures {
  available: boolean;
  /** Why not, when not available. */
  reason?: string;
  numpy?: string;
  blas?: string;
  batchSize?: number;
  rows?: number;
  seconds?: number;
  recordsPerSecond?: number;
  gflops?: number;
}

export interface BenchReport {
  machine: { cpuModel: string; logicalCpus: number; threads: number; provider: Device; onnxruntime: string };
  dim: number;
  matMulPeak: { gflops: number; shape: string };
  sClipLoss: SClipLossFigures[];
  numpy: NumpyFigures;
  normSim: {
    targetRows: number;
    gramSeconds: number;
    normSim2RecordsPerSecond: number;
    normSimInfRecordsPerSecond: number;
    normSimInfGflops: number;
  };
  peakRssMiB: number;
}

export interface ShardReport {
  machine: BenchReport["machine"];
  rows: number;
  dim: number;
  batchSize: number;
  draws: number;
  seconds: number;
  recordsPerSecond: number;
  gflops: number;
  peakRssMiB: number;
  /** The bound: a DataComp shard must score in under 2 GiB. */
  underTwoGiB: boolean;
}

/** Rows of unit vectors from the seeded generator: the same data on every machine and every run. */
export function randomUnitRows(rows: number, dim: number, seed: number): Float32Array {
  const random = createRandom(seed, 0);
  const data = new Float32Array(rows * dim);
  for (let i = 0; i < data.length; i++) data[i] = random.nextUint32() / 2 ** 32 - 0.5;
  normaliseRows(data, rows, dim, "benchmark data");
  return data;
}

function peakRssMiB(): number {
  return process.resourceUsage().maxRSS / 1024;
}

async function bestOf(repeats: number, task: () => Promise<unknown>): Promise<number> {
  let best = Number.POSITIVE_INFINITY;
  for (let i = 0; i < repeats; i++) {
    const start = performance.now();
    await task();
    best = Math.min(best, (performance.now() - start) / 1000);
  }
  return best;
}

/** onnxruntime's best MatMul rate here, over square products and the s-CLIPLoss shape (b x D · D x b). */
async function matMulPeak(device: Device, threads: number, dim: number): Promise<BenchReport["matMulPeak"]> {
  const session = await ort.InferenceSession.create(matMulGraph(), sessionOptions(device, threads));
  let best = { gflops: 0, shape: "" };
  try {
    for (const [m, k, n] of [
      [2048, 2048, 2048],
      [3072, 3072, 3072],
      [4096, dim, 4096],
    ]) {
      const a = new ort.Tensor("float32", randomUnitRows(m, k, 1), [m, k]);
      const b = new ort.Tensor("float32", randomUnitRows(k, n, 2), [k, n]);
      await session.run({ a, b });
      const seconds = await bestOf(5, () => session.run({ a, b }));
      const gflops = (2 * m * k * n) / seconds / 1e9;
      if (gflops > best.gflops) best = { gflops, shape: `${m}x${k} · ${k}x${n}` };
    }
  } finally {
    await session.release();
  }
  return best;
}

function makePool(rows: number, dim: number, seed: number): Pool {
  return {
    dim,
    scoredRows: rows,
    bankRows: 0,
    image: randomUnitRows(rows, dim, seed),
    text: randomUnitRows(rows, dim, seed + 1),
  };
}

/**
 * s-CLIPLoss over `batches` batches of `batchSize` random rows, K = `draws`: best of `repeats`, after
 * one batch that lets onnxruntime's arena and the batch buffers exist before the clock starts.
 */
async function timeSClipLoss(
  engine: ScoringEngine,
  dim: number,
  rows: number,
  batchSize: number,
  draws: number,
  repeats: number,
  scores?: Map<string, Float32Array>,
): Promise<Omit<SClipLossFigures, "percentOfPeak">> {
  const pool = makePool(rows, dim, rows + batchSize);
  if (repeats > 1 || draws > 1) {
    const warm = Math.min(batchSize, rows);
    await engine.sClipLoss(
      {
        ...pool,
        scoredRows: warm,
        image: pool.image.subarray(0, warm * dim),
        text: pool.text.subarray(0, warm * dim),
      },
      makeDraws(warm, { seed: 0, draws: 1, batchSize }),
      0.01,
    );
  }
  const drawList = makeDraws(rows, { seed: 0, draws, batchSize });
  const seconds = await bestOf(repeats, async () => {
    const result = await engine.sClipLoss(pool, drawList, 0.01);
    scores?.set(`s_clip_loss_b${batchSize}`, result.sClipLoss);
  });
  return {
    batchSize,
    rows,
    draws,
    seconds,
    recordsPerSecond: rows / seconds,
    gflops: (2 * rows * batchSize * dim * draws) / seconds / 1e9,
  };
}

/** scripts/bench_numpy.py with python3, when python3 can import numpy. */
async function numpyFigures(rows: number, batchSize: number, dim: number): Promise<NumpyFigures> {
  try {
    await execFileAsync("python3", ["-c", "import numpy"], { timeout: 30_000 });
  } catch {
    return { available: false, reason: "python3 cannot import numpy" };
  }
  const script = fileURLToPath(new URL("../../scripts/bench_numpy.py", import.meta.url));
  try {
    const { stdout } = await execFileAsync(
      "python3",
      [script, "--n", String(rows), "--b", String(batchSize), "--d", String(dim), "--repeats", "3"],
      { timeout: 300_000 },
    );
    const parsed = JSON.parse(stdout) as Record<string, number | string>;
    return {
      available: true,
      numpy: String(parsed.numpy),
      blas: String(parsed.blas),
      batchSize,
      rows,
      seconds: Number(parsed.seconds),
      recordsPerSecond: Number(parsed.records_per_second),
      gflops: Number(parsed.gflops),
    };
  } catch (err) {
    return {
      available: false,
      reason: `scripts/bench_numpy.py failed: ${(err as Error).message.split("\n")[0]}`,
    };
  }
}

async function normSimFigures(
  engine: ScoringEngine,
  dim: number,
  scores?: Map<string, Float32Array>,
): Promise<BenchReport["normSim"]> {
  const targetRows = 100_000;
  const embeddings = randomUnitRows(targetRows, dim, 20);
  let gram: Float32Array = new Float32Array(0);
  const gramSeconds = await bestOf(1, async () => {
    gram = await engine.gram(embeddings, targetRows, dim);
  });
  const target: TargetSet = { model: "benchmark", dim, rows: targetRows, embeddings, gram, contentHash: "" };
  const twoRows = 65_536;
  const infRows = 2_048;
  const image = randomUnitRows(twoRows, dim, 21);
  await engine.normSim(image, 256, target, { two: true, inf: true });
  const twoSeconds = await bestOf(3, async () => {
    // Not `scores?.set(name, await ...)`: optional chaining would skip the call itself without `scores`.
    const { normsim2 } = await engine.normSim(image, twoRows, target, { two: true });
    scores?.set("normsim2", normsim2);
  });
  const infSeconds = await bestOf(2, async () => {
    const { normsimInf } = await engine.normSim(image, infRows, target, { inf: true });
    scores?.set("normsim_inf", normsimInf);
  });
  return {
    targetRows,
    gramSeconds,
    normSim2RecordsPerSecond: twoRows / twoSeconds,
    normSimInfRecordsPerSecond: infRows / infSeconds,
    normSimInfGflops: (2 * infRows * targetRows * dim) / infSeconds / 1e9,
  };
}

function machine(threads: number, provider: Device): BenchReport["machine"] {
  return {
    cpuModel: cpus()[0]?.model ?? "unknown",
    logicalCpus: availableParallelism(),
    threads,
    provider,
    onnxruntime: ort.env.versions.common,
  };
}

/** The standard benchmark: a minute or two on a 2-core machine. */
export async function runBench(options: BenchOptions = {}): Promise<BenchReport> {
  const dim = options.dim ?? 768;
  const threads = options.threads ?? availableParallelism();
  const engine = await createScoringEngine({ device: options.device, threads, logger: silentLogger });
  try {
    const firstPeak = await matMulPeak(engine.provider, threads, dim);
    const scores = options.scores;
    const sClipLoss = [await timeSClipLoss(engine, dim, 4 * 4096, 4096, 1, 5, scores)];
    const numpy = await numpyFigures(4 * 4096, 4096, dim);
    // One pass of 2 batches of 32768 (about 3.3 TFLOP): its first batch is warm-up enough.
    sClipLoss.push(await timeSClipLoss(engine, dim, 2 * 32768, 32768, 1, 1, scores));
    const normSim = await normSimFigures(engine, dim, scores);
    // The peak again at the end: the better of two keeps a busy moment from flattering the ratios.
    const lastPeak = await matMulPeak(engine.provider, threads, dim);
    const matMul = lastPeak.gflops > firstPeak.gflops ? lastPeak : firstPeak;
    return {
      machine: machine(threads, engine.provider),
      dim,
      matMulPeak: matMul,
      sClipLoss: sClipLoss.map((s) => ({ ...s, percentOfPeak: (100 * s.gflops) / matMul.gflops })),
      numpy,
      normSim,
      peakRssMiB: peakRssMiB(),
    };
  } finally {
    await engine.close();
  }
}

/** A DataComp-sized shard: 110,000 rows, D = 768, b = 32768, K = 10 (minutes on 2 cores). */
export async function runShardBench(options: BenchOptions = {}): Promise<ShardReport> {
  const dim = options.dim ?? 768;
  const threads = options.threads ?? availableParallelism();
  const rows = 110_000;
  const batchSize = 32_768;
  const draws = 10;
  const engine = await createScoringEngine({ device: options.device, threads, logger: silentLogger });
  try {
    const figures = await timeSClipLoss(engine, dim, rows, batchSize, draws, 1);
    const peak = peakRssMiB();
    return {
      machine: machine(threads, engine.provider),
      rows,
      dim,
      batchSize,
      draws,
      seconds: figures.seconds,
      recordsPerSecond: figures.recordsPerSecond,
      gflops: figures.gflops,
      peakRssMiB: peak,
      underTwoGiB: peak < 2048,
    };
  } finally {
    await engine.close();
  }
}

const fixed = (x: number, digits = 0) =>
  x.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });

function machineLine(m: BenchReport["machine"]): string {
  return `${m.cpuModel}, ${m.logicalCpus} logical CPUs; onnxruntime ${m.onnxruntime} on ${m.provider}, ${m.threads} threads`;
}

export function formatBenchReport(report: BenchReport): string {
  const lines = [
    `clipsieve bench: ${machineLine(report.machine)}; D = ${report.dim}`,
    `onnxruntime MatMul peak      ${fixed(report.matMulPeak.gflops, 1)} GFLOP/s (${report.matMulPeak.shape})`,
  ];
  for (const s of report.sClipLoss) {
    lines.push(
      `s-CLIPLoss b=${s.batchSize} n=${s.rows} K=${s.draws}: ${fixed(s.recordsPerSecond)} records/s, ` +
        `${fixed(s.gflops, 1)} GFLOP/s = ${fixed(s.percentOfPeak, 1)}% of MatMul peak (${fixed(s.seconds, 2)} s)`,
    );
  }
  const np = report.numpy;
  if (np.available && np.gflops !== undefined && np.recordsPerSecond !== undefined) {
    const ours = report.sClipLoss.find((s) => s.batchSize === np.batchSize);
    const ratio = ours ? ` -> onnxruntime is ${fixed(ours.gflops / np.gflops, 2)}x numpy` : "";
    lines.push(
      `numpy ${np.numpy} + ${np.blas} s-CLIPLoss b=${np.batchSize} n=${np.rows}: ` +
        `${fixed(np.recordsPerSecond)} records/s, ${fixed(np.gflops, 1)} GFLOP/s${ratio}`,
    );
  } else {
    lines.push(`numpy unavailable (${np.reason})`);
  }
  const ns = report.normSim;
  lines.push(
    `Gram T^T T, M=${ns.targetRows}: ${fixed(ns.gramSeconds, 2)} s`,
    `NormSim_2   M=${ns.targetRows}: ${fixed(ns.normSim2RecordsPerSecond)} records/s`,
    `NormSim_inf M=${ns.targetRows}: ${fixed(ns.normSimInfRecordsPerSecond)} records/s, ` +
      `${fixed(ns.normSimInfGflops, 1)} GFLOP/s`,
    `peak RSS ${fixed(report.peakRssMiB)} MiB`,
  );
  return lines.join("\n");
}

export function formatShardReport(report: ShardReport): string {
  return [
    `clipsieve bench --shard: ${machineLine(report.machine)}`,
    `s-CLIPLoss of a DataComp-sized shard: n=${report.rows} D=${report.dim} b=${report.batchSize} K=${report.draws}`,
    `${fixed(report.seconds, 1)} s, ${fixed(report.recordsPerSecond)} records/s (all K draws), ${fixed(report.gflops, 1)} GFLOP/s`,
    `peak RSS ${fixed(report.peakRssMiB)} MiB (${report.underTwoGiB ? "under" : "OVER"} 2 GiB)`,
  ].join("\n");
}
