/**
 * The group consumer on kafkajs. It commits nothing itself (the window producer commits offsets with
 * the outputs), hands each fetched batch to the pipeline, and waits while the pipeline has no room:
 * that wait is the backpressure. While it waits it keeps heartbeating, so a slow window never costs
 * the group membership.
 *
 * Rebalances: before every (re)join, `beforeRejoin` lets the pipeline finish its transaction in flight
 * (rejoin-hook.ts says why kafkajs needs help there). Every join bumps `generation`. Records
 * carry the generation they were fetched in; after a rebalance, kafkajs re-reads each assigned
 * partition from its committed offset, so the pipeline drops everything of an older generation that
 * it has not delivered (never emitted twice).
 *
 * Within a generation, no record is handed over twice: a batch goes to `onRecords` in parts of at most
 * `maxRecordsPerCall`, and the source remembers how far each partition was taken. kafkajs hands a
 * whole batch again when its eachBatch call throws (a heartbeat that timed out, the schema registry
 * down); the parts taken before the error are skipped then, or they would be delivered twice.
 */
import type { Consumer, EachBatchPayload, Kafka } from "kafkajs";
import type { RawRecord } from "../../common/record.ts";
import type { GroupConsumer, GroupConsumerOptions } from "../port.ts";
import { confirmMembership, heartbeatNow, type MembershipLease } from "./membership.ts";
import { assignerWithRejoinHook, type ConsumerGroupInternals } from "./rejoin-hook.ts";

/** What the window producer needs of a consumer of this adapter (and nothing else sees). */
export interface KafkajsConsumerInternals {
  consumer: Consumer;
  /**
   * Resolves if this member still holds its partitions, sure for long enough to commit a window now;
   * throws otherwise (membership.ts).
   */
  confirmMembership(): Promise<MembershipLease>;
}

const internals = new WeakMap<GroupConsumer, KafkajsConsumerInternals>();

export function kafkajsConsumerInternals(consumer: GroupConsumer): KafkajsConsumerInternals {
  const found = internals.get(consumer);
  if (!found) throw new Error("a kafkajs window producer needs a consumer of the kafkajs adapter");
  return found;
}

export function createKafkajsGroupConsumer(kafka: Kafka, opts: GroupConsumerOptions): GroupConsumer {
  const sessionTimeout = opts.sessionTimeoutMs ?? 30_000;
  let group: ConsumerGroupInternals | undefined;
  // kafkajs sends no heartbeats while the hook runs (its join is waiting on it). A member silent for
  // a session timeout is dropped even in the middle of a rebalance, so keep heartbeating meanwhile;
  // the answers (REBALANCE_IN_PROGRESS) are expected and ignored.
  const beforeRejoin = async () => {
    if (!opts.beforeRejoin) return;
    const keepAlive = setInterval(() => void heartbeatNow(group).catch(() => undefined), 1000);
    try {
      await opts.beforeRejoin();
    } finally {
      clearInterval(keepAlive);
    }
  };
  const consumer = kafka.consumer({
    groupId: opts.groupId,
    readUncommitted: false,
    sessionTimeout,
    // Never below the session timeout: the membership lease (src/kafka/membership.ts) counts on a
    // member keeping its partitions for a whole session timeout after a successful heartbeat.
    rebalanceTimeout: Math.max(60_000, sessionTimeout),
    heartbeatInterval: 3_000,
    maxBytesPerPartition: 8 * 1024 * 1024,
    maxBytes: 32 * 1024 * 1024,
    partitionAssigners: [
      assignerWithRejoinHook(beforeRejoin, (g) => {
        group = g;
      }),
    ],
  });
  let generation = 0;
  // Per partition, the next offset to hand over in this generation (see the header).
  let taken = new Map<number, bigint>();
  const maxPerCall = opts.maxRecordsPerCall ?? Number.POSITIVE_INFINITY;
  consumer.on(consumer.events.CRASH, (e) => {
    if (!e.payload.restart) opts.onCrash?.(e.payload.error);
  });
  consumer.on(consumer.events.GROUP_JOIN, (e) => {
    generation++;
    // kafkajs reads every assigned partition from its committed offset again.
    taken = new Map();
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
    const partitionTaken = taken;
    const from = partitionTaken.get(batch.partition);
    // Usually the batch starts where the last one ended: only a batch handed again is filtered.
    const fresh =
      from === undefined || BigInt(batch.firstOffset() ?? "0") >= from
        ? batch.messages
        : batch.messages.filter((m) => BigInt(m.offset) >= from);
    if (fresh.length < batch.messages.length) {
      opts.logger.debug(
        { partition: batch.partition, skipped: batch.messages.length - fresh.length },
        "batch handed again after an error; skipping the records already taken",
      );
    }
    for (let at = 0; at < fresh.length; at += maxPerCall) {
      const records: RawRecord[] = fresh.slice(at, at + maxPerCall).map((m) => ({
        source: { topic: batch.topic, partition: batch.partition, offset: m.offset },
        key: m.key,
        value: m.value,
        headers: (m.headers ?? {}) as RawRecord["headers"],
        timestamp: m.timestamp,
      }));
      await opts.onRecords(records, gen, heartbeat);
      partitionTaken.set(batch.partition, BigInt(records[records.length - 1].source.offset) + 1n);
      opts.metrics?.recordsIn.inc({ topic: batch.topic }, records.length);
    }
    // Marks the records as taken (the next fetch starts after them); commits nothing.
    if (batch.messages.length > 0) resolveOffset(batch.lastOffset());
  };

  const groupConsumer: GroupConsumer = {
    get generation() {
      return generation;
    },
    async start() {
      await consumer.connect();
      await consumer.subscribe({ topic: opts.topic, fromBeginning: true });
      await consumer.run({ autoCommit: false, eachBatchAutoResolve: false, eachBatch });
    },
    pause() {
      consumer.pause([{ topic: opts.topic }]);
    },
    async stop() {
      await consumer.disconnect();
    },
  };
  internals.set(groupConsumer, {
    consumer,
    // A lease of half the session timeout leaves the other half for the commit and its markers.
    confirmMembership: () => confirmMembership(group, sessionTimeout / 2),
  });
  return groupConsumer;
}
