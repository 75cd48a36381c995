/**
 * One measured run of the end-to-end benchmark, in its own process so that its peak memory is its
 * own: the filter (`buildPipeline`) or the passthrough, over one input topic, until `expected` records
 * are decided. It prints `READY` once consuming, then one JSON line (WorkerResult) and exits.
 *
 *   node src/bench/e2e-worker.ts '<WorkerJob as JSON>'
 */
import { outputTopicNames, outputTopicsOf } from "../sink/topics.ts";
import "../common/quiet-warnings.ts";
import { createLogger } from "../common/logger.ts";
import type { RawRecord, RecordOutcome } from "../common/record.ts";
import { createDecoder } from "../decode/decoder.ts";
import { createKafkaClient, type OutboundRecord } from "../kafka/index.ts";
import type { RunConfigInput } from "../pipeline/config.ts";
import { resolveRunConfig } from "../pipeline/config.ts";
import { quietKafkajsNotices } from "../simulate/broker.ts";
import { quantile } from "../simulate/tally.ts";
import { createTopics, type DeliveredWindow, deleteTopics, runFilter, runTopics } from "./filter-run.ts";
import { buildPassthrough, passthroughOutputs, type StageSeconds } from "./passthrough.ts";

export interface WorkerJob {
  /** floor: the bare client writing the passthrough's output records, one transaction per window. */
  mode: "filter" | "passthrough" | "floor";
  brokers: string[];
  input: string;
  expected: number;
  flags: Partial<RunConfigInput>;
}

export interface WorkerResult {
  mode: "filter" | "passthrough" | "floor";
  records: number;
  seconds: number;
  recordsPerSecond: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  windows: number;
  /** Seconds summed over windows, by stage (the filter's window metrics, or the passthrough's timers). */
  stages: Record<string, number>;
  peakRssMiB: number;
  /** The target set's memory (rows, gram, index), when the run measured a target size. */
  targetMiB?: number;
  /** Filter: seconds from the first fetch to the first window's delivery (a history read back counts here). */
  firstWindowSeconds?: number;
  /** Filter: records/s after the first window (its records over the time from its delivery to the last). */
  steadyRecordsPerSecond?: number;
}

function latencies(
  windows: readonly { outcomes: readonly RecordOutcome[]; deliveredAt: number }[],
): number[] {
  const out: number[] = [];
  for (const w of windows) for (const o of w.outcomes) out.push(w.deliveredAt - Number(o.record.timestamp));
  return out;
}

async function runPassthroughJob(job: WorkerJob, ready: () => void): Promise<WorkerResult> {
  const logger = createLogger("bench-passthrough", process.env.CLIPSIEVE_LOG_LEVEL ?? "warn");
  const names = runTopics("clipsieve-bench-pass");
  const outputs = outputTopicNames(names);
  await createTopics(job.brokers, outputs);
  const config = resolveRunConfig({
    flags: { brokers: job.brokers, input: job.input, ...names, ...job.flags },
  });
  const windows: { outcomes: readonly RecordOutcome[]; deliveredAt: number }[] = [];
  let decided = 0;
  let allDecided!: () => void;
  const decidedAll = new Promise<void>((resolve) => {
    allDecided = resolve;
  });
  const pass = await buildPassthrough(config, logger, {
    onWindowDelivered: (w) => {
      windows.push(w);
      decided += w.outcomes.length;
      if (decided >= job.expected) allDecided();
    },
  });
  try {
    await pass.start();
    ready();
    await Promise.race([decidedAll, pass.done]);
  } finally {
    await pass.close();
    await deleteTopics(job.brokers, outputs).catch(() => {});
  }
  const last = windows.length > 0 ? windows[windows.length - 1].deliveredAt : 0;
  const seconds = (last - pass.firstFetchAt) / 1000;
  const lat = latencies(windows);
  const s: StageSeconds = pass.stages;
  return {
    mode: "passthrough",
    records: decided,
    seconds,
    recordsPerSecond: decided / seconds,
    latencyP50Ms: quantile(lat, 0.5),
    latencyP99Ms: quantile(lat, 0.99),
    windows: s.windows,
    stages: {
      decode: s.decode,
      outputs: s.outputs,
      deliver: s.deliver,
      produceRequests: s.produceRequests,
      commitRequests: s.commitRequests,
    },
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
  };
}

/**
 * The client floor: the passthrough's output records for the same input (same bytes and headers),
 * built before the clock starts, then written by the bare transactional client in a loop, one
 * transaction per window of `windowSize` input records. No fetch, decode or pipeline is timed.
 */
async function runFloorJob(job: WorkerJob, ready: () => void): Promise<WorkerResult> {
  const logger = createLogger("bench-floor", process.env.CLIPSIEVE_LOG_LEVEL ?? "warn");
  const names = runTopics("clipsieve-bench-floor");
  const outputs = outputTopicNames(names);
  await createTopics(job.brokers, outputs);
  const config = resolveRunConfig({
    flags: { brokers: job.brokers, input: job.input, ...names, ...job.flags },
  });
  const kafka = createKafkaClient({
    clientId: "clipsieve-bench-floor",
    brokers: job.brokers,
    logger,
    adapter: config.kafkaClient,
  });
  const raws: RawRecord[] = [];
  await kafka.readTopicToEnd(
    job.input,
    (r) => {
      raws.push({
        source: { topic: job.input, partition: r.partition, offset: r.offset },
        key: r.key,
        value: r.value,
        headers: r.headers as RawRecord["headers"],
        timestamp: r.timestamp,
      });
    },
    { timeoutMs: 300_000 },
  );
  raws.sort(
    (a, b) => a.source.partition - b.source.partition || Number(a.source.offset) - Number(b.source.offset),
  );
  const decoder = await createDecoder({ format: config.format, expectedDim: config.dim ?? 768 });
  const topics = outputTopicsOf(config);
  const transactions: Map<string, OutboundRecord[]>[] = [];
  for (let at = 0; at < Math.min(raws.length, job.expected); at += config.windowSize) {
    const records = await decoder.decodeBatch(raws.slice(at, Math.min(at + config.windowSize, job.expected)));
    transactions.push(passthroughOutputs(records, config, topics).messages);
  }
  await decoder.close();
  const records = Math.min(raws.length, job.expected);
  ready();
  const t = performance.now();
  try {
    await kafka.produceInTransactions(transactions, {
      transactionalId: `clipsieve-bench-floor-${names.instanceId}`,
    });
  } finally {
    await deleteTopics(job.brokers, outputs).catch(() => {});
  }
  const seconds = (performance.now() - t) / 1000;
  return {
    mode: "floor",
    records,
    seconds,
    recordsPerSecond: records / seconds,
    latencyP50Ms: 0,
    latencyP99Ms: 0,
    windows: transactions.length,
    stages: {},
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
  };
}

async function runFilterJob(job: WorkerJob, ready: () => void): Promise<WorkerResult> {
  const logger = createLogger("bench-filter", process.env.CLIPSIEVE_LOG_LEVEL ?? "warn");
  const run = await runFilter({
    onStarted: ready,
    brokers: job.brokers,
    input: job.input,
    expected: job.expected,
    flags: job.flags,
    logger,
    prefix: "clipsieve-bench-filter",
  });
  const windows: DeliveredWindow[] = run.windows;
  const decided = windows.reduce((a, w) => a + w.outcomes.length, 0);
  const seconds = (run.lastDeliveredAt - run.firstFetchAt) / 1000;
  const stages: Record<string, number> = {};
  for (const v of (await run.metrics.windowSeconds.get()).values) {
    if (v.metricName?.endsWith("_sum")) stages[String(v.labels.stage)] = v.value;
  }
  const lat = latencies(windows);
  const first = windows[0];
  const afterFirst = decided - (first?.outcomes.length ?? 0);
  return {
    mode: "filter",
    records: decided,
    seconds,
    recordsPerSecond: decided / seconds,
    ...(first
      ? {
          firstWindowSeconds: (first.deliveredAt - run.firstFetchAt) / 1000,
          steadyRecordsPerSecond: afterFirst / ((run.lastDeliveredAt - first.deliveredAt) / 1000),
        }
      : {}),
    latencyP50Ms: quantile(lat, 0.5),
    latencyP99Ms: quantile(lat, 0.99),
    windows: windows.length,
    stages,
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
  };
}

if (import.meta.main) {
  quietKafkajsNotices();
  const job = JSON.parse(process.argv[2] ?? "{}") as WorkerJob;
  const ready = () => process.stdout.write("READY\n");
  const result =
    job.mode === "filter"
      ? await runFilterJob(job, ready)
      : job.mode === "floor"
        ? await runFloorJob(job, ready)
        : await runPassthroughJob(job, ready);
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
}
