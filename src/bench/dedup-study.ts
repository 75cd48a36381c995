/**
 * How well the dedup step finds what the simulator planted (`clipsieve bench-dedup`): the filter's
 * emulator (./emulate.ts: the filter's cut, scorer and policy) decides a simulated stream spread over
 * input partitions (by uid, or by the LSH partitioner of src/dedup/lsh.ts), then the dedup step runs
 * over the policy's decisions window by window at each threshold, with a reference set in which the
 * simulator planted near-copies of some of the stream's aligned images.
 *
 * Ground truth, from the simulator's labels:
 *   near_duplicate  a record the policy accepted whose near-copy cluster has a record the policy
 *                   accepted earlier in the same partition (the step keeps the first: the rest are
 *                   copies). A rejection is right when the record it names is of the same cluster.
 *   near_reference  a record the policy accepted whose image was planted in the reference set; a
 *                   rejection is right when the record is such a one (and the row is its copy).
 * Copies whose earlier accepted cluster-mate is in another partition only are counted apart: no
 * per-partition step can find them, and they are what LSH partitioning is for.
 *
 * The index's recall is measured against exact search on the same decisions (every cluster probed).
 */
import type { RecordOutcome } from "../common/record.ts";
import { buildReference, Deduplicator } from "../dedup/dedup.ts";
import { ScopeHistory } from "../dedup/history.ts";
import { lshPartitionerOf } from "../dedup/lsh.ts";
import type { ScoringEngine } from "../score/engine.ts";
import { createRandom } from "../score/random.ts";
import { makeTargetSet } from "../score/target-set.ts";
import { createSimulation, SIM_MODEL, type SimProfile } from "../simulate/generator.ts";
import { emulateFilter } from "./emulate.ts";

export interface DedupStudyOptions {
  count: number;
  dim: number;
  seed: number;
  profile: SimProfile;
  partitions: number;
  partitionBy: "uid" | "lsh";
  referenceRows: number;
  contaminated: number;
  thresholds: number[];
  /** The default threshold (both reasons), whose row also gets the exact-search comparison. */
  threshold: number;
  horizon: number;
  probes: number;
  windowSize: number;
  bankSize: number;
  progress?: (line: string) => void;
}

export interface DedupStudyRow {
  threshold: number;
  duplicates: { precision: number; recall: number; rejected: number; positives: number };
  references: { precision: number; recall: number; rejected: number; positives: number };
  /** Seconds the step took over the whole stream. */
  seconds: number;
}

export interface DedupStudyResult {
  options: Omit<DedupStudyOptions, "progress">;
  policyAccepted: number;
  /** Copies (as above) whose earlier accepted cluster-mates are all in other partitions. */
  crossPartitionCopies: number;
  /** Largest / mean records per partition. */
  partitionImbalance: number;
  rows: DedupStudyRow[];
  /** At the default threshold: indexed vs exact search, decisions that differ; rows held and bytes. */
  index: { differing: number; exactRejected: number; historyRows: number; historyBytes: number };
}

const ratio = (n: number, d: number) => (d > 0 ? n / d : 1);

export async function runDedupStudy(engine: ScoringEngine, o: DedupStudyOptions): Promise<DedupStudyResult> {
  const say = o.progress ?? (() => {});
  const sim = createSimulation({
    count: o.count,
    dim: o.dim,
    seed: o.seed,
    order: "shuffled",
    profile: o.profile,
  });
  const t = sim.targetEmbeddings();
  const target = await makeTargetSet(engine, SIM_MODEL, t.data, t.rows, t.dim);
  let partitionOf: (r: { uid: string; imageEmbedding: Float32Array }) => number;
  if (o.partitionBy === "lsh") {
    const lsh = lshPartitionerOf((i) => sim.record(i).imageEmbedding, o.count, o.dim, o.partitions);
    partitionOf = (r) => lsh.partitionOf(r.imageEmbedding);
  } else {
    partitionOf = (r) => Number.parseInt(r.uid.slice(0, 8), 16) % o.partitions;
  }
  const reference = sim.referenceSet(o.referenceRows, o.contaminated);
  const planted = new Set(reference.plantedSlots);
  say(`emulating the filter on ${o.count} records (${o.partitions} partitions by ${o.partitionBy}) ...`);
  const windows = await emulateFilter(sim, engine, target, {
    topic: "study",
    windowSize: o.windowSize,
    bankSize: o.bankSize,
    draws: 1,
    batchSize: 8192,
    normaliser: "pool",
    tau: 0.01,
    seed: o.seed,
    keep: "s_clip_loss=0.3",
    thenKeep: "normsim_inf=0.2",
    warmup: 0,
    primeBank: true,
    partitionOf,
  });

  // Labels by uid; the policy's decisions in the order the step sees them.
  const label = new Map<string, { cluster: number; slot: number; kind: string }>();
  for (const r of sim.records()) label.set(r.uid, { cluster: r.cluster, slot: r.slot, kind: r.kind });
  const perPartition = new Map<number, number>();
  const seenInPartition = new Set<string>();
  const seenAnywhere = new Set<number>();
  const isCopy = new Set<string>();
  let crossPartitionCopies = 0;
  let policyAccepted = 0;
  for (const w of windows) {
    // The step takes a window's records in offset order per partition; offsets grow with the stream.
    for (const out of w.outcomes) {
      const p = out.record.source.partition;
      perPartition.set(p, (perPartition.get(p) ?? 0) + 1);
      if (out.decision !== "accepted") continue;
      policyAccepted++;
      const l = label.get(out.record.uid as string);
      if (!l) continue;
      const key = `${p}/${l.cluster}`;
      if (seenInPartition.has(key)) isCopy.add(out.record.uid as string);
      else if (seenAnywhere.has(l.cluster)) crossPartitionCopies++;
      seenInPartition.add(key);
      seenAnywhere.add(l.cluster);
    }
  }
  const counts = [...perPartition.values()];
  const partitionImbalance = Math.max(...counts) / (counts.reduce((a, b) => a + b, 0) / counts.length);
  const refSegment = await buildReference(engine, reference.data, reference.rows, o.dim);

  const runAt = async (threshold: number, probes: number) => {
    const dedup = new Deduplicator({
      engine,
      dim: o.dim,
      reference: refSegment,
      settings: { threshold, referenceThreshold: threshold, horizon: o.horizon, probes },
    });
    const decided: RecordOutcome[][] = [];
    const t0 = performance.now();
    for (const w of windows) {
      const outcomes = w.outcomes.map((x) => ({ ...x }));
      await dedup.apply(outcomes);
      decided.push(outcomes);
    }
    return { decided, seconds: (performance.now() - t0) / 1000, stats: dedup.stats() };
  };

  const score = (decided: RecordOutcome[][], threshold: number, seconds: number): DedupStudyRow => {
    const dup = { tp: 0, rejected: 0 };
    const ref = { tp: 0, rejected: 0 };
    let refPositives = 0;
    for (const out of decided.flat()) {
      const uid = out.record.uid as string;
      const l = label.get(uid);
      const policyAccepted = out.decision === "accepted" || out.copyOf !== undefined;
      if (policyAccepted && l && planted.has(l.slot)) refPositives++;
      if (out.reason === "near_duplicate" && out.copyOf?.kind === "record") {
        dup.rejected++;
        const copied = label.get(out.copyOf.uid ?? "");
        if (l && copied && copied.cluster === l.cluster) dup.tp++;
      } else if (out.reason === "near_reference" && out.copyOf?.kind === "reference") {
        ref.rejected++;
        if (l && reference.plantedSlots[out.copyOf.row] === l.slot) ref.tp++;
      }
    }
    return {
      threshold,
      duplicates: {
        precision: ratio(dup.tp, dup.rejected),
        recall: ratio(dup.tp, isCopy.size),
        rejected: dup.rejected,
        positives: isCopy.size,
      },
      references: {
        precision: ratio(ref.tp, ref.rejected),
        recall: ratio(ref.tp, refPositives),
        rejected: ref.rejected,
        positives: refPositives,
      },
      seconds,
    };
  };

  const rows: DedupStudyRow[] = [];
  let atDefault: Awaited<ReturnType<typeof runAt>> | undefined;
  for (const threshold of [...new Set([...o.thresholds, o.threshold])].sort((a, b) => a - b)) {
    const run = await runAt(threshold, o.probes);
    if (threshold === o.threshold) atDefault = run;
    const row = score(run.decided, threshold, run.seconds);
    rows.push(row);
    say(
      `threshold ${threshold}: near_duplicate P ${row.duplicates.precision.toFixed(3)} R ${row.duplicates.recall.toFixed(3)}, ` +
        `near_reference P ${row.references.precision.toFixed(3)} R ${row.references.recall.toFixed(3)}`,
    );
  }
  const exact = await runAt(o.threshold, Number.MAX_SAFE_INTEGER);
  let differing = 0;
  let exactRejected = 0;
  const indexed = (atDefault as NonNullable<typeof atDefault>).decided.flat();
  exact.decided.flat().forEach((out, i) => {
    if (out.reason === "near_duplicate" || out.reason === "near_reference") exactRejected++;
    if (out.reason !== indexed[i].reason) differing++;
  });
  const { progress: _p, ...options } = o;
  return {
    options,
    policyAccepted,
    crossPartitionCopies,
    partitionImbalance,
    rows,
    index: {
      differing,
      exactRejected,
      historyRows: atDefault?.stats.rows ?? 0,
      historyBytes: atDefault?.stats.embeddingBytes ?? 0,
    },
  };
}

export function formatDedupStudy(r: DedupStudyResult): string {
  const o = r.options;
  const f3 = (x: number) => x.toFixed(3);
  const lines = [
    `Dedup study: ${o.count} ${o.profile} records, D = ${o.dim}, ${o.partitions} partitions by ${o.partitionBy}, ` +
      `window ${o.windowSize}, bank ${o.bankSize}, --keep s_clip_loss=0.3 --then normsim_inf=0.2; ` +
      `reference set ${o.referenceRows} rows (${o.contaminated} planted copies of stream images); horizon ${o.horizon}, probes ${o.probes}`,
    `policy accepted ${r.policyAccepted}; copies whose earlier accepted cluster-mate is in another partition only: ${r.crossPartitionCopies}; ` +
      `largest partition / mean: ${r.partitionImbalance.toFixed(2)}`,
    "",
    "| threshold | near_duplicate precision | recall | rejected | copies | near_reference precision | recall | rejected | planted accepted | step s |",
    "| --------: | -----------------------: | -----: | -------: | -----: | -----------------------: | -----: | -------: | ---------------: | -----: |",
    ...r.rows.map(
      (x) =>
        `| ${x.threshold}${x.threshold === o.threshold ? " (default)" : ""} | ${f3(x.duplicates.precision)} | ${f3(x.duplicates.recall)} | ` +
        `${x.duplicates.rejected} | ${x.duplicates.positives} | ${f3(x.references.precision)} | ${f3(x.references.recall)} | ` +
        `${x.references.rejected} | ${x.references.positives} | ${x.seconds.toFixed(1)} |`,
    ),
    "",
    `Index vs exact search at ${o.threshold}: ${r.index.differing} decisions differ (exact search rejected ${r.index.exactRejected}); ` +
      `history ${r.index.historyRows} rows, ${(r.index.historyBytes / 2 ** 20).toFixed(1)} MiB of float16`,
  ];
  return lines.join("\n");
}

export interface IndexRecallRow {
  probes: number;
  /** Planted copies whose own row the search returned. */
  recall: number;
  queriesPerSecond: number;
}

export interface IndexRecallResult {
  rows: number;
  dim: number;
  queries: number;
  cosine: number;
  /** Seconds to build the history from its rows (what a restart spends after reading them back). */
  buildSeconds: number;
  historyMiB: number;
  byProbes: IndexRecallRow[];
}

/**
 * The index against exact search at scale: a history of `rows` images of a clustered image set (the
 * simulator's clustered target: many classes, tight and loose), queried with near-copies (cosine
 * `cosine`) of random rows of it. Exact search returns each copy's own row; the index, what share.
 */
export async function runIndexRecall(
  engine: ScoringEngine,
  o: { rows: number; dim: number; queries: number; probes: number[]; cosine?: number; seed?: number },
): Promise<IndexRecallResult> {
  const cosine = o.cosine ?? 0.98;
  const sim = createSimulation({ count: 1000, dim: o.dim, seed: o.seed ?? 0, order: "shuffled" });
  const { data } = sim.clusteredTarget(o.rows);
  const entries = Array.from({ length: o.rows }, (_, i) => ({ uid: null, offset: String(i) }));
  const rng = createRandom(o.seed ?? 0, 99);
  const gauss = () => {
    const u = (rng.nextUint32() + 1) / 4294967297;
    return Math.sqrt(-2 * Math.log(u)) * Math.cos((2 * Math.PI * rng.nextUint32()) / 4294967296);
  };
  const truth = Array.from({ length: o.queries }, () => rng.below(o.rows));
  const queries = new Float32Array(o.queries * o.dim);
  // row + w g (g a random unit direction, about orthogonal to the row): cosine 1 / sqrt(1 + w^2).
  const w = Math.sqrt(1 / (cosine * cosine) - 1);
  truth.forEach((row, q) => {
    const g = Float64Array.from({ length: o.dim }, gauss);
    const gn = Math.hypot(...g);
    let n = 0;
    const v = new Float64Array(o.dim);
    for (let d = 0; d < o.dim; d++) {
      v[d] = data[row * o.dim + d] + (w * g[d]) / gn;
      n += v[d] * v[d];
    }
    for (let d = 0; d < o.dim; d++) queries[q * o.dim + d] = v[d] / Math.sqrt(n);
  });
  const byProbes: IndexRecallRow[] = [];
  let buildSeconds = 0;
  let historyMiB = 0;
  for (const probes of o.probes) {
    const history = new ScopeHistory(engine, { dim: o.dim, horizon: o.rows, probes });
    const t0 = performance.now();
    await history.append(data, entries);
    buildSeconds = (performance.now() - t0) / 1000;
    historyMiB = history.embeddingBytes / 2 ** 20;
    await history.search(queries.subarray(0, o.dim), 1);
    const t1 = performance.now();
    const found = await history.search(queries, o.queries);
    const seconds = (performance.now() - t1) / 1000;
    const hits = truth.filter((row, q) => found.seq[q] === row).length;
    byProbes.push({ probes, recall: hits / o.queries, queriesPerSecond: o.queries / seconds });
  }
  return { rows: o.rows, dim: o.dim, queries: o.queries, cosine, buildSeconds, historyMiB, byProbes };
}

export function formatIndexRecall(r: IndexRecallResult): string {
  return [
    `Index against exact search: a history of ${r.rows} rows (D = ${r.dim}, a clustered image set; ${r.historyMiB.toFixed(0)} MiB of float16, built in ${r.buildSeconds.toFixed(1)} s), ` +
      `${r.queries} near-copies (cosine ${r.cosine}) of random rows, searched at once:`,
    "",
    "| probes | copies whose own row is found | queries/s |",
    "| -----: | ----------------------------: | --------: |",
    ...r.byProbes.map(
      (x) => `| ${x.probes} | ${(100 * x.recall).toFixed(1)} % | ${Math.round(x.queriesPerSecond)} |`,
    ),
  ].join("\n");
}
