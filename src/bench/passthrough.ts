/**
 * The end-to-end benchmark's baseline: the filter's own source, decoder, backpressure, window cut
 * (src/window/cut.ts), output building and transactional sink (the parts `buildPipeline` wires), with
 * every record accepted and no scoring or policy. What the filter costs is then the difference between the two, measured on the
 * same broker, records and machine.
 *
 * It also times what the filter's metrics do not split: decoding, and, from the client's request timings,
 * the broker's Produce requests against the transaction's commit requests (AddOffsetsToTxn,
 * TxnOffsetCommit, EndTxn).
 */
import { concatMap, from, lastValueFrom, Subject } from "rxjs";
import { systemClock } from "../common/clock.ts";
import type { Logger } from "../common/logger.ts";
import type { DecodedRecord, RecordOutcome } from "../common/record.ts";
import { createDecoder } from "../decode/decoder.ts";
import { createKafkaClient } from "../kafka/index.ts";
import { Backpressure } from "../pipeline/backpressure.ts";
import type { RunConfig } from "../pipeline/config.ts";
import { maxUndelivered } from "../pipeline/settings.ts";
import { createKafkaSink } from "../sink/kafka-sink.ts";
import { buildWindowOutputs, nextOffsets, type OutMessage } from "../sink/outputs.ts";
import { type OutputTopics, outputTopicsOf } from "../sink/topics.ts";
import { createKafkaSource } from "../source/kafka-source.ts";
import { cutWindows } from "../window/cut.ts";
import { planWindow } from "../window/window.ts";

export interface StageSeconds {
  decode: number;
  /** Building the output records of a window (headers, score records, manifest). */
  outputs: number;
  /** sink.deliver: the whole transaction. */
  deliver: number;
  /** Of which: Produce requests (summed request durations). */
  produceRequests: number;
  /** Of which: AddOffsetsToTxn + TxnOffsetCommit + EndTxn requests. */
  commitRequests: number;
  windows: number;
}

export interface Passthrough {
  start(): Promise<void>;
  close(): Promise<void>;
  done: Promise<void>;
  stages: StageSeconds;
  /** Wall time (ms epoch) of the first fetched batch; 0 before. */
  readonly firstFetchAt: number;
}

/**
 * A window's outputs as the passthrough writes them: every record accepted (or dead-lettered), with
 * the filter's headers, scores records and manifest (no bank: nothing is scored). The client floor
 * writes the same records.
 */
export function passthroughOutputs(
  records: DecodedRecord[],
  config: RunConfig,
  topics: OutputTopics,
): { outcomes: RecordOutcome[]; messages: Map<string, OutMessage[]> } {
  const plan = planWindow(records, undefined, {
    dim: config.dim ?? 768,
    baseSeed: config.seed,
    draws: 1,
    batchSize: config.batchSize,
    tau: config.tau,
    plannedAt: Date.now(),
  });
  const outcomes: RecordOutcome[] = records.map((record) =>
    record.failure
      ? { record, decision: "dead_letter", reason: record.failure.code }
      : { record, decision: "accepted", reason: "passed" },
  );
  const messages = buildWindowOutputs(
    outcomes,
    topics,
    { windowId: plan.id, seed: plan.seed, policyVersion: "passthrough" },
    plan.manifest,
  );
  return { outcomes, messages };
}

export async function buildPassthrough(
  config: RunConfig,
  logger: Logger,
  hooks: { onWindowDelivered?(w: { outcomes: readonly RecordOutcome[]; deliveredAt: number }): void } = {},
): Promise<Passthrough> {
  const stages: StageSeconds = {
    decode: 0,
    outputs: 0,
    deliver: 0,
    produceRequests: 0,
    commitRequests: 0,
    windows: 0,
  };
  const kafka = createKafkaClient({
    clientId: `clipsieve-passthrough-${config.instanceId}`,
    brokers: config.brokers,
    logger,
    adapter: config.kafkaClient,
    onRequest: (kind, seconds) => {
      if (kind === "produce") stages.produceRequests += seconds;
      else stages.commitRequests += seconds;
    },
  });
  const dim = config.dim ?? 768;
  const decoder = await createDecoder({
    format: config.format,
    schemaRegistryUrl: config.schemaRegistry,
    expectedDim: dim,
    expectedModel: config.model,
  });
  const sink = createKafkaSink({
    kafka,
    delivery: config.delivery,
    groupId: config.group,
    transactionalId: `clipsieve-${config.group}-${config.instanceId}`,
    transactionTimeoutMs: config.transactionTimeoutMs,
    logger,
  });
  const topics = outputTopicsOf(config);
  const records$ = new Subject<DecodedRecord>();
  const backpressure = new Backpressure(maxUndelivered(config), systemClock);
  let stopping = false;
  let firstFetchAt = 0;
  const source = createKafkaSource({
    kafka,
    groupId: config.group,
    topic: config.input,
    logger,
    sessionTimeoutMs: config.sessionTimeoutMs,
    onRecords: async (raws, _generation, heartbeat) => {
      if (firstFetchAt === 0) firstFetchAt = Date.now();
      const t = performance.now();
      const decoded = await decoder.decodeBatch(raws);
      stages.decode += (performance.now() - t) / 1000;
      backpressure.taken(decoded.length);
      for (const r of decoded) records$.next(r);
      await backpressure.waitForRoom(() => !stopping, heartbeat);
    },
  });
  const processWindow = async (records: DecodedRecord[]) => {
    try {
      const t = performance.now();
      const { outcomes, messages } = passthroughOutputs(records, config, topics);
      stages.outputs += (performance.now() - t) / 1000;
      const tDeliver = performance.now();
      await sink.deliver({ messages, offsets: nextOffsets(records) }, source);
      stages.deliver += (performance.now() - tDeliver) / 1000;
      stages.windows++;
      hooks.onWindowDelivered?.({ outcomes, deliveredAt: Date.now() });
    } finally {
      backpressure.released(records.length);
    }
  };
  const windows$ = records$.pipe(
    cutWindows<DecodedRecord>(config),
    concatMap((w) => from(processWindow(w.items))),
  );
  let processing: Promise<unknown> = Promise.resolve();
  let closed = false;
  const { promise: done, resolve: resolveDone, reject: rejectDone } = Promise.withResolvers<void>();
  done.catch(() => {});
  const close = async () => {
    if (closed) return;
    closed = true;
    stopping = true;
    source.pause();
    records$.complete();
    await processing.catch(() => {});
    await source.stop().catch(() => {});
    await sink.close().catch(() => {});
    await decoder.close();
    resolveDone();
  };
  return {
    stages,
    done,
    close,
    get firstFetchAt() {
      return firstFetchAt;
    },
    async start() {
      await sink.connect();
      processing = lastValueFrom(windows$, { defaultValue: undefined }).catch(async (err: unknown) => {
        logger.error({ err }, "the passthrough stopped on an error");
        rejectDone(err);
        await close();
      });
      await source.start();
    },
  };
}
