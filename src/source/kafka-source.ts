/**
 * The source: a kafkajs consumer in a group. It commits nothing itself (the sink commits offsets with
 * the outputs), hands each fetched batch to the pipeline, and waits while the pipeline has no room:
 * that wait is the backpressure, and it is explicit here rather than hidden in an operator. While it
 * waits it keeps heartbeating, so a slow window never costs the group membership.
 *
 * Rebalances: before every (re)join, `beforeRejoin` lets the pipeline finish its transaction in flight
 * (src/kafka/rejoin-hook.ts says why kafkajs needs help there). Every join bumps `generation`. Records
 * carry the generation they were fetched in; after a rebalance, kafkajs re-reads each assigned
 * partition from its committed offset, so the pipeline drops everything of an older generation that
 * it has not delivered (never emitted twice).
 */
import type { Consumer, EachBatchPayload, Kafka } from "kafkajs";
import type { Logger } from "../common/logger.ts";
import type { PipelineMetrics } from "../common/metrics.ts";
import type { RawRecord } from "../decode/types.ts";
import { assignerWithRejoinHook } from "../kafka/rejoin-hook.ts";

export interface KafkaSourceOptions {
  kafka: Kafka;
  groupId: string;
  topic: string;
  logger: Logger;
  metrics?: PipelineMetrics;
  /** Receives each fetched batch; resolves when the pipeline has taken it (may wait for room). */
  onRecords(records: RawRecord[], generation: number, heartbeat: () => Promise<void>): Promise<void>;
  /** The consumer stopped for good (kafkajs will not restart it). */
  onCrash?(err: Error): void;
  /** Called after each group (re)join with the new generation. */
  onRebalance?(generation: number): void;
  /**
   * Called after each batch was taken, with its last offset: transaction markers included, and also
   * for batches holding only markers or aborted records, which never reach `onRecords`.
   */
  onFetched?(partition: number, lastOffset: string): void;
  /**
   * Awaited before every (re)join of the group, while the partitions are still this member's: finish
   * (or give up) the transaction in flight here, so the next owner reads offsets that include it.
   */
  beforeRejoin?(): Promise<void>;
  sessionTimeoutMs?: number;
}

export interface KafkaSource {
  readonly consumer: Consumer;
  readonly generation: number;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export function createKafkaSource(opts: KafkaSourceOptions): KafkaSource {
  const consumer = opts.kafka.consumer({
    groupId: opts.groupId,
    readUncommitted: false,
    sessionTimeout: opts.sessionTimeoutMs ?? 30_000,
    heartbeatInterval: 3_000,
    maxBytesPerPartition: 8 * 1024 * 1024,
    maxBytes: 32 * 1024 * 1024,
    ...(opts.beforeRejoin ? { partitionAssigners: [assignerWithRejoinHook(opts.beforeRejoin)] } : {}),
  });
  let generation = 0;
  consumer.on(consumer.events.CRASH, (e) => {
    if (!e.payload.restart) opts.onCrash?.(e.payload.error);
  });
  consumer.on(consumer.events.GROUP_JOIN, (e) => {
    generation++;
    // Lag of partitions this member no longer owns would linger as stale gauges.
    opts.metrics?.consumerLag.reset();
    opts.logger.info(
      { generation, assignment: e.payload.memberAssignment, groupId: opts.groupId },
      "joined consumer group; undelivered records of earlier generations will be re-read",
    );
    opts.onRebalance?.(generation);
  });
  // Batches handed to eachBatch but not taken (the consumer was stopping or the batch went stale in a
  // rebalance): their END_BATCH_PROCESS must not count as progress.
  const notTaken = new Set<string>();
  consumer.on(consumer.events.END_BATCH_PROCESS, (e) => {
    const key = `${e.payload.partition}:${e.payload.lastOffset}`;
    if (!notTaken.delete(key)) opts.onFetched?.(e.payload.partition, e.payload.lastOffset);
    opts.metrics?.consumerLag.set(
      { partition: String(e.payload.partition) },
      Number(e.payload.offsetLagLow ?? e.payload.offsetLag),
    );
  });

  const eachBatch = async ({ batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload) => {
    if (!isRunning() || isStale()) {
      notTaken.add(`${batch.partition}:${batch.lastOffset()}`);
      return;
    }
    const gen = generation;
    const records: RawRecord[] = batch.messages.map((m) => ({
      source: { topic: batch.topic, partition: batch.partition, offset: m.offset },
      key: m.key,
      value: m.value,
      headers: (m.headers ?? {}) as RawRecord["headers"],
      timestamp: m.timestamp,
    }));
    opts.metrics?.recordsIn.inc({ topic: batch.topic }, records.length);
    await opts.onRecords(records, gen, heartbeat);
    // Marks the records as taken (the next fetch starts after them); commits nothing.
    if (records.length > 0) resolveOffset(batch.lastOffset());
  };

  return {
    consumer,
    get generation() {
      return generation;
    },
    async start() {
      await consumer.connect();
      await consumer.subscribe({ topic: opts.topic, fromBeginning: true });
      await consumer.run({ autoCommit: false, eachBatchAutoResolve: false, eachBatch });
    },
    async stop() {
      await consumer.disconnect();
    },
  };
}
