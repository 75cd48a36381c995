/**
 * `clipsieve bench --target-rows M,...`: NormSim_inf at the paper's target scale (BENCHMARKS.md,
 * "NormSim_inf at scale"). For each target size M: a clustered target (`Simulation.clusteredTarget`,
 * D = 768, 1,000 classes, tight and loose), a pool of simulated records, the paper's recipe on it
 * (s-CLIPLoss top 30 %, then NormSim_inf top 20 % of the pool), and NormSim_inf of the stage-1 passers
 * two ways: exact (float32, every row) and as the filter computes it by default at that size
 * (`target build`'s layout: float16 rows and the index from INDEX_MIN_ROWS rows on). Reported: both
 * rates, the stage-2 selection's Jaccard and changed decisions against the exact one, the largest
 * NormSim_inf error, the target's memory and the index's build time.
 */
import { silentLogger } from "../common/logger.ts";
import { keepCount, topRows } from "../policy/offline-select.ts";
import { makeDraws } from "../score/draws.ts";
import { createScoringEngine } from "../score/engine.ts";
import { buildTargetFromRows } from "../score/target-build.ts";
import { targetMemoryBytes } from "../score/target-set.ts";
import type { Device, TargetSet } from "../score/types.ts";
import { createSimulation, SIM_MODEL } from "../simulate/generator.ts";

export const TARGET_SCALE_DEFAULTS = {
  rows: [2_048, 100_000, 1_000_000, 2_100_000],
  pool: 8_192,
  dim: 768,
  seed: 0,
};

export interface TargetScaleOptions {
  rows: readonly number[];
  /** Simulated records in the pool the recipe selects from. */
  pool: number;
  dim: number;
  seed: number;
  device?: Device;
  threads?: number;
  /** Also measure an indexed target with each of these probe counts (the default's trade-off). */
  probes?: readonly number[];
  progress(line: string): void;
}

/** The indexed search at one probe count, against the exact one. */
export interface ProbeFigures {
  probes: number;
  recordsPerSecond: number;
  jaccard: number;
  changedDecisions: number;
  maxError: number;
}

export interface TargetScaleRow {
  targetRows: number;
  /** The default layout at this size. */
  storage: string;
  clusters: number;
  probes: number;
  indexSeconds: number;
  /** Stage-1 passers NormSim_inf was computed for. */
  records: number;
  exactRecordsPerSecond: number;
  exactGflops: number;
  defaultRecordsPerSecond: number;
  /** Stage-2 selection (the recipe's accepted rows) by the default path against the exact one. */
  jaccard: number;
  /** Records of the pool whose decision differs. */
  changedDecisions: number;
  /** Largest |exact - default| NormSim_inf over the passers. */
  maxError: number;
  targetMiB: number;
  /** `probes` other than the default's, on the same index (empty for an exact layout). */
  sweep: ProbeFigures[];
}

export interface TargetScaleReport {
  dim: number;
  pool: number;
  rows: TargetScaleRow[];
}

function jaccard(a: Int32Array, b: Int32Array): number {
  const set = new Set(a);
  let both = 0;
  for (const x of b) if (set.has(x)) both++;
  const union = a.length + b.length - both;
  return union === 0 ? 1 : both / union;
}

export async function runTargetScaleBench(o: TargetScaleOptions): Promise<TargetScaleReport> {
  const engine = await createScoringEngine({
    ...(o.device ? { device: o.device } : {}),
    ...(o.threads ? { threads: o.threads } : {}),
    logger: silentLogger,
  });
  try {
    const sim = createSimulation({ count: o.pool, dim: o.dim, seed: o.seed, order: "shuffled" });
    const image = new Float32Array(o.pool * o.dim);
    const text = new Float32Array(o.pool * o.dim);
    let i = 0;
    for (const record of sim.records()) {
      image.set(record.imageEmbedding, i * o.dim);
      text.set(record.textEmbedding, i * o.dim);
      i++;
    }
    // Stage 1 of the recipe over the pool as one window: s-CLIPLoss, one draw of one batch.
    const pool = { dim: o.dim, scoredRows: o.pool, bankRows: 0, image, text };
    const s = await engine.sClipLoss(
      pool,
      makeDraws(o.pool, { seed: o.seed, draws: 1, batchSize: o.pool }),
      0.01,
    );
    const all = Int32Array.from({ length: o.pool }, (_, r) => r);
    const passers = topRows(s.sClipLoss, all, keepCount(o.pool, 0.3));
    const queries = new Float32Array(passers.length * o.dim);
    for (const [j, row] of passers.entries()) {
      queries.set(image.subarray(row * o.dim, (row + 1) * o.dim), j * o.dim);
    }
    const stageTwo = (values: Float32Array) => {
      // NormSim_inf by pool row (only passers have one), then the recipe's top 20 % of the pool.
      const byRow = new Float32Array(o.pool).fill(Number.NaN);
      passers.forEach((row, j) => {
        byRow[row] = values[j];
      });
      return topRows(byRow, passers, keepCount(o.pool, 0.2));
    };

    const rows: TargetScaleRow[] = [];
    for (const m of o.rows) {
      o.progress(`M = ${m}: generating the clustered target`);
      const { data } = sim.clusteredTarget(m);
      const gram = new Float32Array(o.dim * o.dim);
      const exactTarget: TargetSet = {
        model: SIM_MODEL,
        dim: o.dim,
        rows: m,
        embeddings: data,
        gram,
        contentHash: "",
      };
      await engine.normSim(queries, Math.min(64, passers.length), exactTarget, { inf: true });
      let started = performance.now();
      const exact = (await engine.normSim(queries, passers.length, exactTarget, { inf: true })).normsimInf;
      const exactSeconds = (performance.now() - started) / 1000;
      o.progress(
        `M = ${m}: exact ${Math.round(passers.length / exactSeconds)} records/s; building the default layout`,
      );

      started = performance.now();
      // The default layout never reorders `data` (float32 targets are not indexed by default).
      const built = await buildTargetFromRows(engine, data, m, o.dim, { model: SIM_MODEL });
      const indexSeconds = (performance.now() - started) / 1000;
      const target = built.target;
      await engine.normSim(queries, Math.min(64, passers.length), target, { inf: true });
      const exactKept = stageTwo(exact);
      const exactSet = new Set(exactKept);
      const measure = async (t: TargetSet, probes: number): Promise<ProbeFigures> => {
        const begun = performance.now();
        const values = (await engine.normSim(queries, passers.length, t, { inf: true })).normsimInf;
        const seconds = (performance.now() - begun) / 1000;
        let maxError = 0;
        for (let j = 0; j < passers.length; j++)
          maxError = Math.max(maxError, Math.abs(exact[j] - values[j]));
        const kept = stageTwo(values);
        const keptSet = new Set(kept);
        let changedDecisions = 0;
        for (const row of passers) if (exactSet.has(row) !== keptSet.has(row)) changedDecisions++;
        return {
          probes,
          recordsPerSecond: passers.length / seconds,
          jaccard: jaccard(exactKept, kept),
          changedDecisions,
          maxError,
        };
      };
      const main = await measure(target, target.index?.probes ?? 0);
      const sweep: ProbeFigures[] = [];
      if (target.index) {
        for (const probes of o.probes ?? []) {
          if (probes === target.index.probes) continue;
          const figures = await measure({ ...target, index: { ...target.index, probes } }, probes);
          o.progress(`M = ${m}: ${formatProbes(figures)}`);
          sweep.push(figures);
        }
      }
      const storage = target.embeddings instanceof Uint16Array ? "float16" : "float32";
      const memory = targetMemoryBytes({ rows: m, dim: o.dim, storage, index: target.index });
      const row: TargetScaleRow = {
        targetRows: m,
        storage,
        clusters: target.index?.clusters ?? 0,
        probes: target.index?.probes ?? 0,
        indexSeconds,
        records: passers.length,
        exactRecordsPerSecond: passers.length / exactSeconds,
        exactGflops: (2 * passers.length * m * o.dim) / exactSeconds / 1e9,
        defaultRecordsPerSecond: main.recordsPerSecond,
        jaccard: main.jaccard,
        changedDecisions: main.changedDecisions,
        maxError: main.maxError,
        targetMiB: memory.total / 2 ** 20,
        sweep,
      };
      o.progress(formatTargetScaleRow(row));
      rows.push(row);
    }
    return { dim: o.dim, pool: o.pool, rows };
  } finally {
    await engine.close();
  }
}

const fixed = (x: number, digits = 0) =>
  x.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });

function formatTargetScaleRow(r: TargetScaleRow): string {
  const layout =
    r.clusters > 0 ? `${r.storage}, ${r.clusters} clusters, ${r.probes} probes` : `${r.storage}, every row`;
  return (
    `M=${fixed(r.targetRows)} (${layout}; ${fixed(r.targetMiB, 1)} MiB, built in ${fixed(r.indexSeconds, 1)} s): ` +
    `exact ${fixed(r.exactRecordsPerSecond)} records/s (${fixed(r.exactGflops, 1)} GFLOP/s), ` +
    `default ${fixed(r.defaultRecordsPerSecond)} records/s = ${fixed(r.defaultRecordsPerSecond / r.exactRecordsPerSecond, 1)}x; ` +
    `stage 2 vs exact: Jaccard ${fixed(r.jaccard, 4)}, ${r.changedDecisions} of ${r.records} passers' decisions changed, ` +
    `max |error| ${r.maxError.toExponential(2)}`
  );
}

function formatProbes(f: ProbeFigures): string {
  return (
    `${f.probes} probes: ${fixed(f.recordsPerSecond)} records/s; Jaccard ${fixed(f.jaccard, 4)}, ` +
    `${f.changedDecisions} decisions changed, max |error| ${f.maxError.toExponential(2)}`
  );
}

export function formatTargetScaleReport(report: TargetScaleReport): string {
  return [
    `clipsieve bench --target-rows: D = ${report.dim}, ${report.pool} simulated records, s-CLIPLoss top 30 % then NormSim_inf top 20 %; NormSim_inf of the stage-1 passers`,
    ...report.rows.flatMap((r) => [
      formatTargetScaleRow(r),
      ...r.sweep.map((f) => `  M=${fixed(r.targetRows)}, ${formatProbes(f)}`),
    ]),
  ].join("\n");
}
