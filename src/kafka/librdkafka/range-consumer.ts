/**
 * Bounded reads on librdkafka: a whole topic as it stands now (`readTopicToEnd`), and the data-lake
 * commands' range consumer (a topic to the end offsets captured at start, or on and on with
 * `follow`), both read_committed.
 *
 * A partition is finished when the reader has passed its end offset: a record at or after it, or an
 * end-of-partition event at or past it (the event's offset counts transaction markers and aborted
 * records, so a range that ends in a commit marker finishes too), or the group's committed offset is
 * at or past it. An open transaction below the end holds the read until it completes.
 */
import { randomUUID } from "node:crypto";
import { silentLogger } from "../../common/logger.ts";
import type { RawRecord } from "../../common/record.ts";
import type { KafkaClient, RangeConsumer, RangeConsumerOptions, TopicRecord } from "../port.ts";
import { rangeProgress } from "../range-bounds.ts";
import {
  type AdapterContext,
  baseConfig,
  CODES,
  call,
  connectInSteps,
  disconnectConsumer,
  type LibrdkafkaError,
  type RdKafka,
  rdkafka,
  toRawRecord,
  unreachableError,
  wireEvents,
} from "./native.ts";

const FETCH_WAIT_MS = 200;

function readerConfig(ctx: AdapterContext, groupId: string, events: RebalanceQueue): Record<string, unknown> {
  return {
    ...baseConfig(ctx, "reader"),
    "group.id": groupId,
    "enable.auto.commit": false,
    "enable.auto.offset.store": false,
    "isolation.level": "read_committed",
    "enable.partition.eof": true,
    "fetch.wait.max.ms": 100,
    "max.partition.fetch.bytes": 8 * 1024 * 1024,
    "statistics.interval.ms": 0,
    rebalance_cb: (err: LibrdkafkaError, assignment: RdKafka.Assignment[]) => {
      events.push(err.code === CODES.ASSIGN_PARTITIONS ? "assign" : "revoke", assignment);
    },
  };
}

/** Rebalance events, handled by the read loop between two fetches (as in group-consumer.ts). */
class RebalanceQueue {
  readonly items: { kind: "assign" | "revoke"; partitions: RdKafka.Assignment[] }[] = [];
  stopped = false;
  consumer!: RdKafka.KafkaConsumer;

  push(kind: "assign" | "revoke", partitions: RdKafka.Assignment[]): void {
    if (this.stopped) {
      if (kind === "assign") this.consumer.assign(partitions);
      else this.consumer.unassign();
      return;
    }
    this.items.push({ kind, partitions });
  }
}

export async function consumeLibrdkafkaRange(
  ctx: AdapterContext,
  client: KafkaClient,
  opts: RangeConsumerOptions,
): Promise<RangeConsumer> {
  const { topic, logger, follow = false } = opts;
  const progress = await rangeProgress(client, topic, opts.groupId, follow);
  const { high } = progress;
  let generation = 0;
  let stopped = false;

  const { KafkaConsumer } = rdkafka();
  const events = new RebalanceQueue();
  const consumer = new KafkaConsumer(
    readerConfig(ctx, opts.groupId ?? `clipsieve-reader-${randomUUID()}`, events),
    {
      "auto.offset.reset": "earliest",
    },
  );
  events.consumer = consumer;
  const eofs: { partition: number; offset: number }[] = [];
  consumer.on("partition.eof", (eof) => {
    eofs.push({ partition: eof.partition, offset: eof.offset });
  });
  wireEvents(consumer, ctx, (err) => progress.fail(err));

  progress.check();
  const connectMs = 60_000;
  try {
    await connectInSteps(
      ctx,
      (ms) => call((cb) => consumer.connect({ timeout: ms }, cb as never)),
      connectMs,
    );
  } catch (err) {
    throw unreachableError(ctx, `reading ${topic}`, connectMs, err);
  }
  consumer.setDefaultConsumeTimeout(FETCH_WAIT_MS);
  consumer.subscribe([topic]);

  const handleEvents = async () => {
    while (events.items.length > 0) {
      const e = events.items.shift() as (typeof events.items)[number];
      if (e.kind === "revoke") {
        consumer.unassign();
        continue;
      }
      generation++;
      const assigned = e.partitions.map((p) => p.partition);
      logger.debug({ topic, generation, assigned }, "joined the consumer group");
      if (generation > 1) {
        progress.rejoined(assigned);
        await opts.onRebalance?.(generation);
      } else progress.assigned = assigned;
      consumer.assign(e.partitions);
      progress.check();
    }
  };

  const loop = async () => {
    while (!stopped && !progress.isFinished) {
      await handleEvents();
      eofs.length = 0;
      const gen = generation;
      const messages = await call<RdKafka.Message[]>((cb) => consumer.consume(1000, cb as never)).catch(
        () => [] as RdKafka.Message[],
      );
      if (events.items.length > 0 || gen !== generation) continue;
      const byPartition = new Map<number, RawRecord[]>();
      for (const m of messages) {
        if (!follow && BigInt(m.offset) >= (high.get(m.partition) ?? 0n)) {
          progress.fetched(m.partition, BigInt(m.offset));
          continue;
        }
        let list = byPartition.get(m.partition);
        if (!list) byPartition.set(m.partition, (list = []));
        list.push(toRawRecord(m));
      }
      for (const [partition, records] of byPartition) {
        if (stopped) return;
        await opts.onBatch({ partition, records, heartbeat: async () => {} });
        progress.fetched(partition, BigInt(records[records.length - 1].source.offset) + 1n);
      }
      for (const eof of eofs) progress.fetched(eof.partition, BigInt(eof.offset));
      if (!follow) {
        const done = [...byPartition.keys(), ...eofs.map((e) => e.partition)].filter((p) =>
          progress.partitionDone(p),
        );
        if (done.length > 0) consumer.pause(done.map((partition) => ({ topic, partition })));
      }
      progress.check();
    }
  };
  const running = loop().catch((err: unknown) => progress.fail(err));

  const disconnect = async () => {
    events.stopped = true;
    await running;
    await disconnectConsumer(consumer);
  };

  return {
    ends: high,
    finished: progress.finished,
    pause() {
      stopped = true;
    },
    async commit(partition, next) {
      consumer.commitSync([{ topic, partition, offset: Number(next) }]);
      progress.committed(partition, next);
      progress.check();
    },
    async stop() {
      stopped = true;
      progress.finish();
      await disconnect();
    },
  };
}

/** Read a whole topic as it stands now (read_committed), then stop. */
export async function readTopicToEnd(
  ctx: AdapterContext,
  client: KafkaClient,
  topic: string,
  onRecord: (record: TopicRecord) => void,
  opts: { timeoutMs?: number } = {},
): Promise<{ complete: boolean }> {
  const ends = await client.endOffsets(topic);
  if ([...ends.values()].every((r) => r.high <= r.low)) return { complete: true };
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const reader = await consumeLibrdkafkaRange(ctx, client, {
    topic,
    logger: ctx.logger ?? silentLogger,
    async onBatch({ partition, records }) {
      for (const r of records) {
        onRecord({
          partition,
          offset: r.source.offset,
          key: r.key,
          value: r.value,
          headers: r.headers as TopicRecord["headers"],
          timestamp: r.timestamp,
        });
      }
    },
  });
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      reader.finished.then(() => ({ complete: true })),
      new Promise<{ complete: boolean }>((resolve) => {
        timer = setTimeout(() => resolve({ complete: false }), timeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
    await reader.stop();
  }
}
