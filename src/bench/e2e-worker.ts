/**
 * One measured run of the end-to-end benchmark, in its own process so that its peak memory is its
 * own: the filter (`buildPipeline`) or the passthrough, over one input topic, until `expected` records
 * are decided. It prints `READY` once consuming, then one JSON line (WorkerResult) and exits.
 *
 *   node src/bench/e2e-worker.ts '<WorkerJob as JSON>'
 */
import "../common/quiet-warnings.ts";
import { createLogger } from "../common/logger.ts";
import type { RunConfigInput } from "../pipeline/config.ts";
import { resolveRunConfig } from "../pipeline/config.ts";
import { quietKafkajsNotices } from "../simulate/broker.ts";
import { quantile } from "../simulate/tally.ts";
import type { RecordOutcome } from "../sink/outputs.ts";
import { createTopics, type DeliveredWindow, deleteTopics, runFilter, runTopics } from "./filter-run.ts";
import { buildPassthrough, type StageSeconds } from "./passthrough.ts";

export interface WorkerJob {
  mode: "filter" | "passthrough";
  brokers: string[];
  input: string;
  expected: number;
  flags: Partial<RunConfigInput>;
}

export interface WorkerResult {
  mode: "filter" | "passthrough";
  records: number;
  seconds: number;
  recordsPerSecond: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  windows: number;
  /** Seconds summed over windows, by stage (the filter's window metrics, or the passthrough's timers). */
  stages: Record<string, number>;
  peakRssMiB: number;
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
  const outputs = [names.accepted, names.rejected, names.deadLetter, names.scores, names.windowsTopic];
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
  return {
    mode: "filter",
    records: decided,
    seconds,
    recordsPerSecond: decided / seconds,
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
  const result = job.mode === "filter" ? await runFilterJob(job, ready) : await runPassthroughJob(job, ready);
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
}
