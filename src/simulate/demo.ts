/**
 * `clipsieve demo`: a simulated crawl through the real streaming filter, end to end. It brings up a
 * local broker unless given one, produces a labelled stream, runs the filter in this process with the
 * paper's two-stage policy, shows progress, prints a summary, and removes everything it made: the
 * broker and its folder, the target set, and (on a broker it was given) its topics.
 */

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Logger } from "../common/logger.ts";
import { createPipelineMetrics } from "../common/metrics.ts";
import { createKafkaClient } from "../kafka/index.ts";
import { resolveRunConfig } from "../pipeline/config.ts";
import { buildPipeline, type Pipeline } from "../pipeline/pipeline.ts";
import { createScoringEngine } from "../score/engine.ts";
import { outputTopicNames, prefixedOutputTopics } from "../sink/topics.ts";
import { type BrokerHandle, brokersOrLocal } from "./broker.ts";
import { createSimulation, type SimOrder } from "./generator.ts";
import { ensureTopic, produceSimulation } from "./producer.ts";
import { DemoTally, formatSummary } from "./tally.ts";
import { writeSimulationTarget } from "./target.ts";

export interface DemoOptions {
  /** Use these brokers; unset: start a local one. */
  brokers?: string;
  count: number;
  dim: number;
  seed: number;
  order: SimOrder;
  /** Records per second the simulator produces; 0: as fast as it can. */
  rate: number;
  windowSize: number;
  bankSize: number;
  draws: number;
  batchSize: number;
  lingerMs: number;
  keep: string;
  thenKeep: string;
  warmup?: number;
  warmupMode?: string;
  /** Keep the topics made on a broker that was given (a local broker goes with its topics). */
  keepTopics: boolean;
  /** Where progress and the summary go. */
  out: NodeJS.WriteStream | NodeJS.WritableStream;
  /** Progress as one line redrawn in place (a terminal), or a plain line every few seconds. */
  tty: boolean;
  logger: Logger;
  signal?: AbortSignal;
  /** Called once the local broker is up, so a signal handler can kill it at once. */
  onBroker?(broker: BrokerHandle): void;
}

export const DEMO_DEFAULTS = {
  count: 20_000,
  dim: 768,
  seed: 0,
  order: "shuffled" as SimOrder,
  rate: 0,
  windowSize: 4096,
  bankSize: 4096,
  // The pool (window + bank) fits one batch of b, so every draw would be the same batch: K = 1 loses nothing.
  draws: 1,
  batchSize: 8192,
  lingerMs: 1000,
  keep: "s_clip_loss=0.3",
  thenKeep: "normsim_inf=0.2",
};

export interface DemoResult {
  tally: DemoTally;
  runId: string;
  topics: string[];
  brokerWasLocal: boolean;
  summary: string;
  aborted: boolean;
}

const int = (n: number) => n.toLocaleString("en-US");

export async function runDemo(o: DemoOptions): Promise<DemoResult> {
  const write = (s: string) => o.out.write(s);
  const runId = Math.random().toString(16).slice(2, 10);
  const prefix = `clipsieve-demo-${runId}`;
  const outputs = prefixedOutputTopics(prefix);
  const names = { input: `${prefix}.input`, group: `${prefix}-filter`, ...outputs };
  const topics = [names.input, ...outputTopicNames(outputs)];
  const stateTopic = `${names.group}-policy-state`;
  const workDir = mkdtempSync(join(tmpdir(), `${prefix}-`));
  const tally = new DemoTally();
  let broker: BrokerHandle | undefined;
  let pipeline: Pipeline | undefined;
  let progressTimer: NodeJS.Timeout | undefined;
  let aborted = false;

  write(
    `clipsieve demo: ${int(o.count)} simulated image-text records (D=${o.dim}, ${o.order} order, seed ${o.seed})\n` +
      `filter: window ${o.windowSize}, negative bank ${o.bankSize}, b=${o.batchSize}, K=${o.draws}, tau 0.01; ` +
      `policy --keep ${o.keep} --then ${o.thenKeep}, then --dedup (cosine >= 0.95, per partition)\n`,
  );
  try {
    if (!o.brokers) write("starting a local Kafka broker (Java) ...\n");
    broker = await brokersOrLocal(o.brokers, o.logger, `${prefix}-kafka-`);
    o.onBroker?.(broker);
    write(`broker: ${broker.brokers.join(",")}${broker.local ? " (local, stopped at the end)" : ""}\n`);
    write(`topics: ${prefix}.{input,accepted,rejected,dead-letter,scores,windows}\n`);
    const kafka = createKafkaClient({ clientId: prefix, brokers: broker.brokers });
    for (const t of topics) await ensureTopic(kafka, t, 1);

    const sim = createSimulation({ count: o.count, dim: o.dim, seed: o.seed, order: o.order });
    const targetPath = join(workDir, "target.npz");
    const engine = await createScoringEngine({ logger: o.logger });
    try {
      await writeSimulationTarget(sim, targetPath, engine);
    } finally {
      await engine.close();
    }

    const config = resolveRunConfig({
      flags: {
        brokers: broker.brokers,
        group: names.group,
        input: names.input,
        ...outputs,
        stateTopic,
        target: targetPath,
        windowSize: o.windowSize,
        bankSize: o.bankSize,
        draws: o.draws,
        batchSize: o.batchSize,
        lingerMs: o.lingerMs,
        keep: o.keep,
        thenKeep: o.thenKeep,
        warmup: o.warmup,
        warmupMode: o.warmupMode,
        // Near-copies of records accepted earlier are rejected (near_duplicate): the demo's duplicate kind.
        dedup: true,
        instanceId: runId,
      },
    });
    const metrics = createPipelineMetrics(false);
    let allDecided!: () => void;
    const decidedAll = new Promise<void>((resolve) => {
      allDecided = resolve;
    });
    pipeline = await buildPipeline(config, o.logger, metrics, {
      hooks: {
        onWindowDelivered: ({ outcomes, deliveredAt }) => {
          tally.add(outcomes, deliveredAt);
          if (tally.decided >= o.count) allDecided();
        },
      },
    });
    await pipeline.start();

    const started = Date.now();
    let produced = 0;
    let maxLag = 0;
    const progress = async (final = false) => {
      const recordsIn = (await metrics.recordsIn.get()).values.reduce((a, v) => a + v.value, 0);
      const s = tally.snapshot();
      maxLag = Math.max(maxLag, produced - s.decided);
      const secs = (Date.now() - started) / 1000;
      const line =
        `in ${int(recordsIn)}/${int(o.count)} | accepted ${int(s.accepted)}  rejected ${int(s.rejected)}  ` +
        `dead-letter ${int(s.deadLetter)} | ${int(Math.round(s.decided / Math.max(secs, 1e-3)))} records/s | ` +
        `lag ${int(Math.max(0, produced - s.decided))} | ${secs.toFixed(0)} s`;
      write(o.tty ? `\r\x1b[2K${line}${final ? "\n" : ""}` : `${line}\n`);
    };
    progressTimer = setInterval(() => void progress(), o.tty ? 250 : 5000);

    const abortProducing = new AbortController();
    o.signal?.addEventListener("abort", () => abortProducing.abort(), { once: true });
    const producing = produceSimulation(sim, {
      kafka,
      topic: names.input,
      format: "json",
      rate: o.rate,
      signal: abortProducing.signal,
      onProgress: (n) => {
        produced = n;
      },
      logger: o.logger,
    });
    const stopped = new Promise<"aborted">((resolve) => {
      if (o.signal?.aborted) resolve("aborted");
      o.signal?.addEventListener("abort", () => resolve("aborted"), { once: true });
    });
    // The pipeline's `done` rejects when it stops on an error: that ends the demo with the error.
    const outcome = await Promise.race([
      Promise.all([producing, decidedAll]).then(() => "done" as const),
      stopped,
      pipeline.done.then(() => "aborted" as const),
    ]);
    aborted = outcome === "aborted";
    clearInterval(progressTimer);
    progressTimer = undefined;
    await progress(true);
    if (aborted) abortProducing.abort();
    await producing.catch(() => {});
    await pipeline.close(aborted ? 2_000 : 30_000);
    pipeline = undefined;
    let summary = formatSummary(tally);
    if (maxLag > 2 * o.windowSize) {
      summary +=
        `\n\nThe simulator produced faster than the filter decides (lag up to ${int(maxLag)} records), so the ` +
        "latency above is mostly time in the backlog; `--rate <records/s>` below the throughput shows the latency of a filter that keeps up.";
    }
    write(`\n${aborted ? "Stopped early. " : ""}${summary}\n`);
    return { tally, runId, topics, brokerWasLocal: broker.local, summary, aborted };
  } finally {
    if (progressTimer) clearInterval(progressTimer);
    await pipeline?.close(2_000).catch(() => {});
    if (broker && !broker.local && !o.keepTopics) {
      await deleteTopics(
        broker.brokers,
        [...topics, stateTopic, `${outputs.scores}-dedup-history`],
        prefix,
      ).catch((err: unknown) => o.logger.warn({ err }, "could not delete the demo's topics"));
    }
    await broker?.stop();
    rmSync(workDir, { recursive: true, force: true });
  }
}

async function deleteTopics(brokers: string[], topics: string[], clientId: string): Promise<void> {
  const kafka = createKafkaClient({ clientId, brokers });
  const existing = new Set(await kafka.listTopics());
  const ours = topics.filter((t) => existing.has(t));
  if (ours.length > 0) await kafka.deleteTopics(ours);
}
