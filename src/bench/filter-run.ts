/**
 * Run the real streaming filter (`buildPipeline`, the code `clipsieve run` runs) in this process over
 * one input topic until a given number of records is decided, and hand back every window's outcomes
 * in delivery order. The fidelity study and the end-to-end benchmark both measure through this.
 */

import { randomUUID } from "node:crypto";
import type { Logger } from "../common/logger.ts";
import { createPipelineMetrics, type PipelineMetrics } from "../common/metrics.ts";
import type { RecordOutcome } from "../common/record.ts";
import { createKafkaClient } from "../kafka/index.ts";
import { type RunConfig, type RunConfigInput, resolveRunConfig } from "../pipeline/config.ts";
import { buildPipeline } from "../pipeline/pipeline.ts";
import { outputTopicNames, prefixedOutputTopics } from "../sink/topics.ts";

export interface DeliveredWindow {
  id: string;
  outcomes: readonly RecordOutcome[];
  deliveredAt: number;
}

export interface FilterRun {
  windows: DeliveredWindow[];
  metrics: PipelineMetrics;
  config: RunConfig;
  /** Wall time of the pipeline's first fetch (first `records in`) and of the last delivery, ms epoch. */
  firstFetchAt: number;
  lastDeliveredAt: number;
}

/** Output topic names of one run, unique so that runs never see each other's records. */
export function runTopics(prefix: string) {
  const id = randomUUID().slice(0, 8);
  const p = `${prefix}-${id}`;
  return {
    group: `${p}-group`,
    ...prefixedOutputTopics(p),
    stateTopic: `${p}-group-policy-state`,
    instanceId: id,
  };
}

export async function createTopics(brokers: string[], topics: string[], partitions = 1): Promise<void> {
  const kafka = createKafkaClient({ clientId: "clipsieve-bench", brokers });
  await kafka.ensureTopics(topics.map((topic) => ({ topic, numPartitions: partitions })));
}

export async function deleteTopics(brokers: string[], topics: string[]): Promise<void> {
  const kafka = createKafkaClient({ clientId: "clipsieve-bench", brokers });
  const existing = new Set(await kafka.listTopics());
  const ours = topics.filter((t) => existing.has(t));
  if (ours.length > 0) await kafka.deleteTopics(ours, 30_000);
}

/**
 * Filter `input` from the beginning with `flags` (run configuration keys) until `expected` records
 * are decided; output topics are made for the run and deleted after it.
 */
export async function runFilter(options: {
  brokers: string[];
  input: string;
  expected: number;
  flags: Partial<RunConfigInput>;
  logger: Logger;
  prefix?: string;
  /** Called once the filter consumes. */
  onStarted?(): void;
  /** Called after each delivered window (progress). */
  onWindow?(window: DeliveredWindow, decided: number): void;
}): Promise<FilterRun> {
  const names = runTopics(options.prefix ?? "bench");
  const outputs = outputTopicNames(names);
  await createTopics(options.brokers, outputs);
  const config = resolveRunConfig({
    flags: { brokers: options.brokers, input: options.input, ...names, ...options.flags },
  });
  const metrics = createPipelineMetrics(false);
  const windows: DeliveredWindow[] = [];
  let decided = 0;
  let firstFetchAt = 0;
  // The pipeline counts fetched records here first; the time of the first count is when intake began.
  const countIn = metrics.recordsIn.inc.bind(metrics.recordsIn) as (...args: unknown[]) => void;
  (metrics.recordsIn as unknown as { inc: (...args: unknown[]) => void }).inc = (...args) => {
    if (firstFetchAt === 0) firstFetchAt = Date.now();
    countIn(...args);
  };
  let allDecided!: () => void;
  const decidedAll = new Promise<void>((resolve) => {
    allDecided = resolve;
  });
  const pipeline = await buildPipeline(config, options.logger, metrics, {
    hooks: {
      onWindowDelivered: (w) => {
        const window = { id: w.id, outcomes: w.outcomes, deliveredAt: w.deliveredAt };
        windows.push(window);
        decided += w.outcomes.length;
        options.onWindow?.(window, decided);
        if (decided >= options.expected) allDecided();
      },
    },
  });
  try {
    await pipeline.start();
    options.onStarted?.();
    const outcome = await Promise.race([
      decidedAll.then(() => "ok" as const),
      pipeline.done.then(() => "stopped" as const),
    ]);
    if (outcome === "stopped")
      throw new Error(`the filter stopped after ${decided} of ${options.expected} records`);
  } finally {
    await pipeline
      .close(5_000)
      .catch((err: unknown) => options.logger.warn({ err }, "closing the filter failed"));
    // A history topic the caller named (a prefilled one) is the caller's to delete.
    const history = options.flags.dedupHistoryTopic ? [] : [config.dedupHistoryTopic];
    await deleteTopics(options.brokers, [...outputs, names.stateTopic, ...history]).catch((err: unknown) =>
      options.logger.warn({ err }, "could not delete a run's topics"),
    );
  }
  return {
    windows,
    metrics,
    config,
    firstFetchAt,
    lastDeliveredAt: windows.length > 0 ? windows[windows.length - 1].deliveredAt : 0,
  };
}
