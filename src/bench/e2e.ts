/**
 * End to end through Kafka (`clipsieve bench-e2e`): the filter against a passthrough and against the
 * client floor, on the same broker and records, for each Kafka adapter, each run in its own process
 * (src/bench/e2e-worker.ts) so its peak memory is its own.
 *
 * 0. Client floor: the passthrough's output records for the backlog (same bytes and headers), written
 *    by the bare client in a loop, one transaction per window of 4,096 input records: what the
 *    hardware and the client move with no pipeline at all.
 * 1. Backlog: N simulated records (D = 768) are on the input topic before a run starts; records/s is
 *    N over the time from the run's first fetch to its last delivered window.
 * 2. Steady rate: the simulator produces at a fixed rate that both keep up with (half the filter's
 *    backlog rate) while the run consumes; p50/p99 are the times from a record's production to the
 *    commit of its window.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { extname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { createLogger, type Logger } from "../common/logger.ts";
import { HistoryTopic } from "../dedup/index.ts";
import { float32ToFloat16Bits } from "../io/float16.ts";
import { createKafkaClient, KAFKA_ADAPTERS, type KafkaAdapterName } from "../kafka/index.ts";
import type { RunConfigInput } from "../pipeline/config.ts";
import { createScoringEngine } from "../score/engine.ts";
import { describeTargetLayout, type TargetManifest, targetMemoryBytes } from "../score/target-set.ts";
import { brokersOrLocal } from "../simulate/broker.ts";
import { createSimulation } from "../simulate/generator.ts";
import { ensureTopic, produceSimulation } from "../simulate/producer.ts";
import { writeClusteredTarget, writeSimulationTarget } from "../simulate/target.ts";
import type { WorkerJob, WorkerResult } from "./e2e-worker.ts";
import { deleteTopics } from "./filter-run.ts";

/** The worker beside this file: .ts in a checkout, .js once built into dist/. */
const WORKER = fileURLToPath(
  new URL(`./e2e-worker${extname(fileURLToPath(import.meta.url))}`, import.meta.url),
);

export interface E2eOptions {
  brokers?: string;
  /** Records of the backlog runs. */
  count: number;
  dim: number;
  seed: number;
  /** Seconds of the steady-rate runs. */
  steadySeconds: number;
  /** Backlog runs of each kind; the fastest counts. */
  repeats: number;
  /** Kafka adapters to measure (default: all). */
  adapters?: readonly KafkaAdapterName[];
  /**
   * Instead of the standard runs: the filter on the first adapter with the simulation's 2,048-row
   * target, then with a clustered target of each of these sizes, laid out as `target build` would.
   */
  targetRows?: readonly number[];
  /**
   * Instead of the standard runs: the filter on the first adapter with its default settings, then
   * with `--normaliser pool` and each of these bank sizes (the cost of a larger pool).
   */
  poolBanks?: readonly number[];
  /**
   * Instead of the standard runs: the filter on the first adapter with its default settings, then
   * with --dedup and a history already holding each of these numbers of rows (written to the history
   * topic first, read back by the filter before its first window).
   */
  dedupRows?: readonly number[];
  logger: Logger;
  progress(line: string): void;
}

export const E2E_DEFAULTS = { count: 16_384, dim: 768, seed: 0, steadySeconds: 20, repeats: 2 };

export interface E2eRun {
  name: string;
  adapter: KafkaAdapterName;
  phase: "backlog" | "steady";
  result: WorkerResult;
}

export interface E2eReport {
  count: number;
  dim: number;
  /** The filter's settings (run's defaults, two-stage policy with a 2,048-row target set). */
  filter: Record<string, unknown>;
  rate: number;
  runs: E2eRun[];
  totalSeconds: number;
}

/** The filter as `clipsieve run` runs it by default, with the paper's two-stage policy. */
const FILTER_FLAGS: Partial<RunConfigInput> = {
  windowSize: 4096,
  bankSize: 4096,
  draws: 5,
  batchSize: 8192,
  lingerMs: 2000,
  keep: "s_clip_loss=0.3",
  thenKeep: "normsim_inf=0.2",
};

function runWorker(job: WorkerJob, onReady?: () => void): Promise<WorkerResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WORKER, JSON.stringify(job)], {
      stdio: ["ignore", "pipe", "inherit"],
      env: process.env,
    });
    let result: WorkerResult | undefined;
    createInterface({ input: child.stdout }).on("line", (line) => {
      if (line === "READY") onReady?.();
      else if (line.startsWith("{")) result = JSON.parse(line) as WorkerResult;
    });
    child.once("error", reject);
    child.once("exit", (code) => {
      if (code === 0 && result) resolve(result);
      else reject(new Error(`the ${job.mode} run exited with code ${code} before reporting`));
    });
  });
}

export async function runE2eBench(o: E2eOptions): Promise<E2eReport> {
  const started = performance.now();
  const broker = await brokersOrLocal(o.brokers, o.logger, "clipsieve-bench-kafka-");
  const workDir = mkdtempSync(join(tmpdir(), "clipsieve-bench-e2e-"));
  const topics: string[] = [];
  const kafka = createKafkaClient({ clientId: "clipsieve-bench-e2e", brokers: broker.brokers });
  const newTopic = async (what: string) => {
    const t = `clipsieve-bench-${what}-${Math.random().toString(16).slice(2, 8)}`;
    topics.push(t);
    await ensureTopic(kafka, t, 1);
    return t;
  };
  try {
    o.progress(`broker ${broker.brokers.join(",")}${broker.local ? " (local)" : ""}`);
    const sim = createSimulation({ count: o.count, dim: o.dim, seed: o.seed, order: "shuffled" });
    const targetPath = join(workDir, "target.npz");
    const engine = await createScoringEngine({ logger: o.logger });
    try {
      await writeSimulationTarget(sim, targetPath, engine);
    } finally {
      await engine.close();
    }
    const base: Partial<RunConfigInput> = { dim: o.dim, lingerMs: 2000, windowSize: 4096 };
    const filterFlags = { ...base, ...FILTER_FLAGS, target: targetPath };
    const runs: E2eRun[] = [];
    const record = (
      adapter: KafkaAdapterName,
      name: string,
      phase: E2eRun["phase"],
      result: WorkerResult,
    ) => {
      runs.push({ adapter, name, phase, result });
      o.progress(
        `${adapter} ${phase} ${name}: ${result.records} records, ${Math.round(result.recordsPerSecond)} records/s, ` +
          `p50 ${(result.latencyP50Ms / 1000).toFixed(2)} s, p99 ${(result.latencyP99Ms / 1000).toFixed(2)} s, ` +
          `peak RSS ${Math.round(result.peakRssMiB)} MiB`,
      );
    };

    const backlog = await newTopic("backlog");
    const produced = await produceSimulation(sim, {
      kafka,
      topic: backlog,
      format: "json",
      logger: o.logger,
    });
    o.progress(`backlog: ${produced.sent} records (D=${o.dim}) in ${produced.seconds.toFixed(1)} s`);
    const job = (
      mode: WorkerJob["mode"],
      input: string,
      expected: number,
      flags: Partial<RunConfigInput>,
    ): WorkerJob => ({
      mode,
      brokers: broker.brokers,
      input,
      expected,
      flags,
    });
    // The machine may be shared: each backlog run goes `repeats` times and the fastest counts.
    const best = async (name: string, make: () => WorkerJob): Promise<WorkerResult> => {
      const results: WorkerResult[] = [];
      for (let i = 0; i < o.repeats; i++) results.push(await runWorker(make()));
      const top = results.reduce((a, b) => (b.recordsPerSecond > a.recordsPerSecond ? b : a));
      o.progress(`${name}: ${results.map((x) => Math.round(x.recordsPerSecond)).join(", ")} records/s`);
      return top;
    };
    const adapters = o.adapters ?? KAFKA_ADAPTERS;
    // The curves (--target-rows, --pool-banks, --dedup-rows): the filter on the first adapter with its
    // defaults, then with each variant's flags.
    const first = adapters[0] as KafkaAdapterName;
    const onFirst = (name: string, flags: Partial<RunConfigInput> = {}) =>
      best(`${first} ${name}`, () =>
        job("filter", backlog, o.count, { ...filterFlags, kafkaClient: first, ...flags }),
      );
    const curveReport = (curve: Record<string, unknown>): E2eReport => ({
      count: o.count,
      dim: o.dim,
      filter: { ...FILTER_FLAGS, targetRows: sim.options.targetRows, ...curve },
      rate: 0,
      runs,
      totalSeconds: (performance.now() - started) / 1000,
    });
    if (o.targetRows) {
      record(first, `filter, target M = ${sim.options.targetRows}`, "backlog", await onFirst("filter"));
      for (const rows of o.targetRows) {
        const path = join(workDir, `target-${rows}.npz`);
        const started = performance.now();
        const builder = await createScoringEngine({ logger: o.logger });
        let manifest: TargetManifest;
        try {
          manifest = await writeClusteredTarget(sim, path, builder, rows);
        } finally {
          await builder.close();
        }
        o.progress(
          `target M = ${rows}: ${describeTargetLayout(manifest)}; built in ${((performance.now() - started) / 1000).toFixed(0)} s`,
        );
        const name = `filter, target M = ${rows}`;
        const result = await onFirst(name, { target: path });
        record(first, name, "backlog", { ...result, targetMiB: targetMemoryBytes(manifest).total / 2 ** 20 });
        rmSync(path, { force: true });
      }
      return curveReport({ targetCurve: o.targetRows });
    }
    if (o.poolBanks) {
      record(first, `filter, draws, bank ${FILTER_FLAGS.bankSize}`, "backlog", await onFirst("filter"));
      for (const bankSize of o.poolBanks) {
        const name = `filter, pool, bank ${bankSize}`;
        record(first, name, "backlog", await onFirst(name, { normaliser: "pool", bankSize }));
      }
      return curveReport({ poolCurve: o.poolBanks });
    }
    if (o.dedupRows) {
      record(first, "filter", "backlog", await onFirst("filter"));
      for (const rows of o.dedupRows) {
        const historyTopic = `clipsieve-bench-dedup-${Math.random().toString(16).slice(2, 8)}`;
        topics.push(historyTopic);
        const t0 = performance.now();
        const written = await prefillDedupHistory(kafka, sim, historyTopic, `${backlog}/0`, rows);
        o.progress(
          `dedup history of ${rows} rows (${(written / 2 ** 20).toFixed(0)} MiB) written in ${((performance.now() - t0) / 1000).toFixed(0)} s`,
        );
        const name = `filter, --dedup, history ${rows} rows`;
        const flags = { dedup: true, dedupHorizon: Math.max(rows, 1), dedupHistoryTopic: historyTopic };
        record(first, name, "backlog", await onFirst(name, flags));
      }
      return curveReport({ dedupCurve: o.dedupRows });
    }
    const filters = new Map<KafkaAdapterName, WorkerResult>();
    for (const adapter of adapters) {
      const on = { kafkaClient: adapter };
      record(
        adapter,
        "client floor",
        "backlog",
        await best(`${adapter} floor`, () => job("floor", backlog, o.count, { ...base, ...on })),
      );
      record(
        adapter,
        "passthrough",
        "backlog",
        await best(`${adapter} passthrough`, () => job("passthrough", backlog, o.count, { ...base, ...on })),
      );
      const filter = await best(`${adapter} filter`, () =>
        job("filter", backlog, o.count, { ...filterFlags, ...on }),
      );
      filters.set(adapter, filter);
      record(adapter, "filter", "backlog", filter);
    }
    const main = adapters[0] as KafkaAdapterName;
    record(
      main,
      "filter, K = 1",
      "backlog",
      await best("filter, K = 1", () =>
        job("filter", backlog, o.count, { ...filterFlags, draws: 1, kafkaClient: main }),
      ),
    );

    // Steady rate: half of what the slowest filter sustains on a backlog, so no run builds a backlog.
    const slowest = Math.min(...[...filters.values()].map((f) => f.recordsPerSecond));
    const rate = Math.max(1, Math.round(slowest / 2));
    const steadyCount = Math.min(o.count, Math.round(rate * o.steadySeconds));
    const steadySim = createSimulation({
      count: steadyCount,
      dim: o.dim,
      seed: o.seed + 1,
      order: "shuffled",
    });
    for (const adapter of adapters) {
      for (const [name, mode, flags] of [
        ["passthrough", "passthrough", base],
        ["filter", "filter", filterFlags],
      ] as const) {
        const input = await newTopic(`steady-${mode}`);
        let producing: Promise<unknown> | undefined;
        const result = await runWorker(
          job(mode, input, steadyCount, { ...flags, kafkaClient: adapter }),
          () => {
            producing = produceSimulation(steadySim, {
              kafka,
              topic: input,
              format: "json",
              rate,
              logger: o.logger,
            });
          },
        );
        await producing;
        record(adapter, `${name} at ${rate} records/s`, "steady", result);
      }
    }
    return {
      count: o.count,
      dim: o.dim,
      filter: { ...FILTER_FLAGS, targetRows: sim.options.targetRows },
      rate,
      runs,
      totalSeconds: (performance.now() - started) / 1000,
    };
  } finally {
    if (!broker.local) await deleteTopics(broker.brokers, topics).catch(() => {});
    await broker.stop();
    rmSync(workDir, { recursive: true, force: true });
  }
}

/**
 * A dedup history of `rows` rows for `scope` on `topic`, as the filter writes it (history-topic.ts):
 * images of the simulation's clustered target (many classes, realistic for the search), one row each.
 * Returns the bytes written.
 */
async function prefillDedupHistory(
  kafka: ReturnType<typeof createKafkaClient>,
  sim: ReturnType<typeof createSimulation>,
  topic: string,
  scope: string,
  rows: number,
): Promise<number> {
  const dim = sim.options.dim;
  const store = new HistoryTopic(
    kafka,
    { topic, dim, horizon: Math.max(rows, 1) },
    createLogger("bench", "warn"),
  );
  await store.ensure();
  if (rows === 0) return 0;
  const { data } = sim.clusteredTarget(rows);
  const producer = kafka.producer();
  await producer.connect();
  let bytes = 0;
  try {
    const step = 16_384;
    for (let start = 0; start < rows; start += step) {
      const n = Math.min(step, rows - start);
      const bits = float32ToFloat16Bits(data.subarray(start * dim, (start + n) * dim));
      const entries = Array.from({ length: n }, (_, i) => ({
        uid: `history-${start + i}`,
        offset: String(start + i),
      }));
      const messages = store.messages(scope, start, bits, entries);
      for (const m of messages) bytes += (m.value as Buffer).length;
      await producer.send(
        topic,
        messages.map((m) => ({ key: m.key, value: m.value })),
      );
    }
  } finally {
    await producer.disconnect();
  }
  return bytes;
}

const s = (x: number) => `${x.toFixed(2)} s`;

export function formatE2eReport(r: E2eReport): string {
  const backlogOf = (adapter: KafkaAdapterName, mode: WorkerResult["mode"]) =>
    r.runs.find((x) => x.adapter === adapter && x.phase === "backlog" && x.result.mode === mode)?.result;
  const pct = (a: number, b: number | undefined) => (b ? `${Math.round((100 * a) / b)}%` : "-");
  if (r.filter.targetCurve) return formatTargetCurve(r);
  if (r.filter.poolCurve) return formatPoolCurve(r);
  if (r.filter.dedupCurve) return formatDedupCurve(r);
  const lines = [
    `D = ${r.dim}, ${r.count.toLocaleString("en-US")} simulated JSON records (base64 float32 embeddings); filter: ` +
      `window ${r.filter.windowSize}, bank ${r.filter.bankSize}, K = ${r.filter.draws}, b = ${r.filter.batchSize}, ` +
      `--keep ${r.filter.keep} --then ${r.filter.thenKeep}, target set of ${r.filter.targetRows} rows; exactly-once delivery.`,
    "",
    "| adapter | run | records | records/s | of the floor | of the passthrough | p50 latency | p99 latency | peak RSS |",
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const { adapter, name, phase, result } of r.runs) {
    const floor = backlogOf(adapter, "floor")?.recordsPerSecond;
    const pass = backlogOf(adapter, "passthrough")?.recordsPerSecond;
    const backlog = phase === "backlog";
    // On a backlog a record's latency is mostly how long it sat on the topic before the run began.
    const latency = (ms: number) => (phase === "steady" ? `${(ms / 1000).toFixed(2)} s` : "-");
    lines.push(
      `| ${adapter} | ${phase}: ${name} | ${result.records} | ${Math.round(result.recordsPerSecond)} | ` +
        `${backlog && result.mode !== "floor" ? pct(result.recordsPerSecond, floor) : "-"} | ` +
        `${backlog && result.mode === "filter" ? pct(result.recordsPerSecond, pass) : "-"} | ` +
        `${latency(result.latencyP50Ms)} | ${latency(result.latencyP99Ms)} | ${Math.round(result.peakRssMiB)} MiB |`,
    );
  }
  lines.push(
    "",
    "Where the time goes in the backlog runs (seconds, summed over windows; a stage's time can overlap the next fetch's decoding):",
    "",
    "| adapter | run | wall | decode | build outputs | score | policy | deliver | of which Produce requests | of which commit requests |",
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  );
  for (const { adapter, name, phase, result } of r.runs) {
    if (phase !== "backlog" || result.mode === "floor") continue;
    const st = result.stages;
    // librdkafka reports no per-request timings: its requests are batched on its own threads.
    const req = (x: number | undefined) => (x ? s(x) : "-");
    lines.push(
      result.mode === "passthrough"
        ? `| ${adapter} | ${name} | ${s(result.seconds)} | ${s(st.decode)} | ${s(st.outputs)} | - | - | ${s(st.deliver)} | ` +
            `${req(st.produceRequests)} | ${req(st.commitRequests)} |`
        : `| ${adapter} | ${name} | ${s(result.seconds)} | (as the passthrough) | | ${s(st.score ?? 0)} | ${s(st.policy ?? 0)} | ` +
            `${s(st.deliver ?? 0)} | | |`,
    );
  }
  lines.push("", `Benchmark time: ${(r.totalSeconds / 60).toFixed(1)} min.`);
  return lines.join("\n");
}

/** `bench-e2e --target-rows`: the filter's rate against the target set's size. */
function formatTargetCurve(r: E2eReport): string {
  const baseline = r.runs[0]?.result.recordsPerSecond;
  const lines = [
    `D = ${r.dim}, ${r.count.toLocaleString("en-US")} simulated JSON records; filter: window ${r.filter.windowSize}, ` +
      `bank ${r.filter.bankSize}, K = ${r.filter.draws}, b = ${r.filter.batchSize}, --keep ${r.filter.keep} ` +
      `--then ${r.filter.thenKeep}; targets laid out as \`target build\` lays them out at each size; ${r.runs[0]?.adapter}.`,
    "",
    "| run | records/s | of the 2,048-row target's | score time | peak RSS | target memory |",
    "| --- | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const { name, result } of r.runs) {
    const pct = baseline ? `${Math.round((100 * result.recordsPerSecond) / baseline)}%` : "-";
    const score = result.stages.score;
    lines.push(
      `| ${name} | ${Math.round(result.recordsPerSecond)} | ${pct} | ${score !== undefined ? s(score) : "-"} | ` +
        `${Math.round(result.peakRssMiB)} MiB | ${result.targetMiB !== undefined ? `${Math.round(result.targetMiB)} MiB` : "-"} |`,
    );
  }
  lines.push("", `Total ${r.totalSeconds.toFixed(0)} s.`);
  return lines.join("\n");
}

/**
 * `bench-e2e --dedup-rows`: the filter's rate with --dedup over histories of given sizes. The rates
 * are after the first window (whose time holds the history's read-back), the first window's time
 * apart.
 */
function formatDedupCurve(r: E2eReport): string {
  const baseline = r.runs[0]?.result.steadyRecordsPerSecond;
  const lines = [
    `D = ${r.dim}, ${r.count.toLocaleString("en-US")} simulated JSON records; filter: window ${r.filter.windowSize}, ` +
      `bank ${r.filter.bankSize}, K = ${r.filter.draws}, b = ${r.filter.batchSize}, --keep ${r.filter.keep} ` +
      `--then ${r.filter.thenKeep}; the history: images of a clustered target of many classes; ${r.runs[0]?.adapter}.`,
    "",
    "| run | records/s after the first window | of the filter's without dedup | first window (history read back) | dedup time | peak RSS |",
    "| --- | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const { name, result } of r.runs) {
    const rate = result.steadyRecordsPerSecond ?? result.recordsPerSecond;
    const pct = baseline ? `${Math.round((100 * rate) / baseline)}%` : "-";
    const dedup = result.stages.dedup;
    lines.push(
      `| ${name} | ${Math.round(rate)} | ${pct} | ${result.firstWindowSeconds !== undefined ? s(result.firstWindowSeconds) : "-"} | ` +
        `${dedup !== undefined ? s(dedup) : "-"} | ${Math.round(result.peakRssMiB)} MiB |`,
    );
  }
  lines.push("", `Total ${r.totalSeconds.toFixed(0)} s.`);
  return lines.join("\n");
}

/** `bench-e2e --pool-banks`: the filter's rate with the pool normaliser over larger pools. */
function formatPoolCurve(r: E2eReport): string {
  const baseline = r.runs[0]?.result.recordsPerSecond;
  const lines = [
    `D = ${r.dim}, ${r.count.toLocaleString("en-US")} simulated JSON records; filter: window ${r.filter.windowSize}, ` +
      `b = ${r.filter.batchSize}, --keep ${r.filter.keep} --then ${r.filter.thenKeep}; the first run with the ` +
      `default draws (K = ${r.filter.draws}, bank ${r.filter.bankSize}), then --normaliser pool with each bank; ${r.runs[0]?.adapter}.`,
    "",
    "| run | pool / b | records/s | of the default's | score time | peak RSS |",
    "| --- | ---: | ---: | ---: | ---: | ---: |",
  ];
  const window = Number(r.filter.windowSize);
  const b = Number(r.filter.batchSize);
  r.runs.forEach(({ name, result }, i) => {
    const bank = i === 0 ? Number(r.filter.bankSize) : (r.filter.poolCurve as number[])[i - 1];
    const pct = baseline ? `${Math.round((100 * result.recordsPerSecond) / baseline)}%` : "-";
    const score = result.stages.score;
    lines.push(
      `| ${name} | ${((window + bank) / b).toFixed(2)} | ${Math.round(result.recordsPerSecond)} | ${pct} | ` +
        `${score !== undefined ? s(score) : "-"} | ${Math.round(result.peakRssMiB)} MiB |`,
    );
  });
  lines.push("", `Total ${r.totalSeconds.toFixed(0)} s.`);
  return lines.join("\n");
}
