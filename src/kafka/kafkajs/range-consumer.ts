/**
 * The data-lake commands' range consumer on kafkajs: a topic to the end offsets captured at start
 * (bounded), or on and on (`follow`), with `read_committed`.
 *
 * A partition is finished when the consumer has fetched through its end offset, or when the group's
 * committed offset (at start, or committed since) is at or past it. Progress is taken from the offset
 * of the last entry of each fetched batch, transaction markers and aborted records included: a range
 * usually ends in a commit marker, an offset no record carries. The end is the high watermark, so a
 * transaction still open at start is waited for (at most the producer's transaction timeout) and the
 * range holds exactly what was committed or aborted before it.
 *
 * A group (re)join starts over from the committed offsets, as kafkajs does: the caller drops what it
 * held and not yet committed (`onRebalance`), and the progress marks are reset the same way.
 */
import { randomUUID } from "node:crypto";
import type { Kafka } from "kafkajs";
import type { RawRecord } from "../../common/record.ts";
import type { KafkaClient, RangeConsumer, RangeConsumerOptions } from "../port.ts";
import { rangeProgress } from "../range-bounds.ts";

export async function consumeKafkajsRange(
  kafka: Kafka,
  client: KafkaClient,
  opts: RangeConsumerOptions,
): Promise<RangeConsumer> {
  const { topic, logger, follow = false } = opts;
  const progress = await rangeProgress(client, topic, opts.groupId, follow);
  const { high } = progress;
  let generation = 0;
  let stopped = false;
  let failure: unknown;

  const consumer = kafka.consumer({
    groupId: opts.groupId ?? `clipsieve-reader-${randomUUID()}`,
    readUncommitted: false,
    sessionTimeout: opts.sessionTimeoutMs ?? 30_000,
    heartbeatInterval: 3_000,
    maxWaitTimeInMs: 500,
    maxBytesPerPartition: 8 * 1024 * 1024,
  });

  const pauseIfDone = (p: number) => {
    if (!follow && progress.partitionDone(p)) consumer.pause([{ topic, partitions: [p] }]);
  };

  consumer.on(consumer.events.GROUP_JOIN, async (e) => {
    generation++;
    const assigned = e.payload.memberAssignment[topic] ?? [];
    logger.debug({ topic, generation, assigned }, "joined the consumer group");
    if (generation > 1) {
      progress.rejoined(assigned);
      consumer.resume([{ topic }]);
      await opts.onRebalance?.(generation);
    } else progress.assigned = assigned;
    for (const p of assigned) pauseIfDone(p);
    progress.check();
  });
  consumer.on(consumer.events.END_BATCH_PROCESS, (e) => {
    if (e.payload.topic !== topic) return;
    progress.fetched(e.payload.partition, BigInt(e.payload.lastOffset) + 1n);
    pauseIfDone(e.payload.partition);
    progress.check();
  });
  consumer.on(consumer.events.CRASH, (e) => {
    if (!e.payload.restart) progress.fail(failure ?? e.payload.error);
  });

  progress.check();
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    autoCommit: false,
    eachBatch: async ({ batch, heartbeat, isRunning, isStale }) => {
      if (stopped || failure !== undefined || !isRunning() || isStale()) return;
      const end = high.get(batch.partition) ?? 0n;
      const records: RawRecord[] = [];
      for (const m of batch.messages) {
        if (!follow && BigInt(m.offset) >= end) break;
        records.push({
          source: { topic, partition: batch.partition, offset: m.offset },
          key: m.key,
          value: m.value,
          headers: (m.headers ?? {}) as RawRecord["headers"],
          timestamp: m.timestamp,
        });
      }
      if (records.length === 0) return;
      try {
        await opts.onBatch({ partition: batch.partition, records, heartbeat });
      } catch (err) {
        // Nothing more is handed over; the caller learns of it through `finished`.
        failure = err;
        progress.fail(err);
      }
    },
  });

  return {
    ends: high,
    pause() {
      consumer.pause([{ topic }]);
    },
    finished: progress.finished,
    async commit(partition, next) {
      await consumer.commitOffsets([{ topic, partition, offset: next.toString() }]);
      progress.committed(partition, next);
      pauseIfDone(partition);
      progress.check();
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      progress.finish();
      await consumer.disconnect();
    },
  };
}
