/**
 * Delivery of a window's outputs to Kafka, on kafkajs.
 *
 * exactly-once: one Kafka transaction per window holds every output record, the policy state and the
 * consumer group's next offsets (`sendOffsets`), so outputs and progress commit together or not at all.
 * at-least-once: an idempotent producer sends, and the offsets are committed after the broker acked.
 *
 * Records are sent in chunks of at most `maxRequestBytes`: kafkajs puts a call's records for one
 * partition into one record batch, and brokers refuse batches above `message.max.bytes` (1 MiB by
 * default), while one window of 768-d JSON records is tens of MiB.
 */
import {
  type Admin,
  type Kafka,
  type Message,
  Partitioners,
  type Producer,
  type TopicMessages,
} from "kafkajs";
import { ClipsieveError } from "../../common/errors.ts";
import { holdWindowTransactionForTests } from "../fault.ts";
import type { OutboundRecord, WindowDelivery, WindowProducer, WindowProducerOptions } from "../port.ts";
import { kafkajsConsumerInternals } from "./group-consumer.ts";

function messageBytes(m: OutboundRecord): number {
  let n = 64 + (m.key?.length ?? 0) + (m.value?.length ?? 0);
  for (const [k, v] of Object.entries(m.headers ?? {})) n += k.length + v.length + 8;
  return n;
}

/** Split the window's messages into sendBatch calls of bounded size, keeping per-topic order. */
export function chunkMessages(messages: Map<string, OutboundRecord[]>, maxBytes: number): TopicMessages[][] {
  const chunks: TopicMessages[][] = [];
  let current = new Map<string, Message[]>();
  let bytes = 0;
  const flush = () => {
    if (current.size === 0) return;
    chunks.push([...current].map(([topic, msgs]) => ({ topic, messages: msgs })));
    current = new Map();
    bytes = 0;
  };
  for (const [topic, msgs] of messages) {
    for (const m of msgs) {
      const size = messageBytes(m);
      if (bytes > 0 && bytes + size > maxBytes) flush();
      let list = current.get(topic);
      if (!list) current.set(topic, (list = []));
      list.push({ key: m.key, value: m.value, headers: m.headers, partition: m.partition });
      bytes += size;
    }
  }
  flush();
  return chunks;
}

/**
 * The broker's answer to a transaction it timed out (KIP-588): INVALID_PRODUCER_EPOCH. A real fence (a
 * newer producer with this transactional id) is PRODUCER_FENCED, and stays fatal.
 */
function transactionExpired(err: unknown): boolean {
  return (err as { type?: string } | undefined)?.type === "INVALID_PRODUCER_EPOCH";
}

function offsetsForKafka(offsets: Map<string, Map<number, string>>) {
  return [...offsets].map(([topic, parts]) => ({
    topic,
    partitions: [...parts].map(([partition, offset]) => ({ partition, offset })),
  }));
}

export function createKafkajsWindowProducer(kafka: Kafka, opts: WindowProducerOptions): WindowProducer {
  const maxBytes = opts.maxRequestBytes ?? 900_000;
  const exactlyOnce = opts.delivery === "exactly-once";
  const makeProducer = (): Producer =>
    kafka.producer(
      exactlyOnce
        ? {
            transactionalId: opts.transactionalId,
            transactionTimeout: opts.transactionTimeoutMs,
            idempotent: true,
            maxInFlightRequests: 1,
            createPartitioner: Partitioners.DefaultPartitioner,
          }
        : { idempotent: true, maxInFlightRequests: 1, createPartitioner: Partitioners.DefaultPartitioner },
    );
  let producer = makeProducer();
  let lastOffsets: Map<string, Map<number, string>> | undefined;
  let admin: Admin | undefined;
  const committedIncludes = async (want: Map<string, Map<number, string>>): Promise<boolean> => {
    if (!admin) {
      admin = kafka.admin();
      await admin.connect();
    }
    for (const [topic, parts] of want) {
      const [got] = await admin.fetchOffsets({ groupId: opts.groupId, topics: [topic] });
      const committed = new Map(got?.partitions.map((p) => [p.partition, p.offset]) ?? []);
      for (const [partition, offset] of parts) {
        const c = committed.get(partition);
        if (c === undefined || c === "-1" || BigInt(c) < BigInt(offset)) return false;
      }
    }
    return true;
  };
  return {
    async connect() {
      // For a transactional producer this also initialises the transactional id, which fences (and
      // aborts the open transaction of) an earlier incarnation of this instance.
      await producer.connect();
    },
    async deliver(window: WindowDelivery, groupConsumer) {
      // kafkajs cannot fence a commit from an expelled member: the lease check right before the
      // commit does (membership.ts).
      const { consumer, confirmMembership } = kafkajsConsumerInternals(groupConsumer);
      const chunks = chunkMessages(window.messages, maxBytes);
      if (!exactlyOnce) {
        for (const topicMessages of chunks) await producer.sendBatch({ topicMessages, acks: -1 });
        await consumer.commitOffsets(
          offsetsForKafka(window.offsets).flatMap(({ topic, partitions }) =>
            partitions.map((p) => ({ topic, ...p })),
          ),
        );
        return;
      }
      const txn = await producer.transaction();
      try {
        for (const topicMessages of chunks) await txn.sendBatch({ topicMessages, acks: -1 });
        await txn.sendOffsets({ consumerGroupId: opts.groupId, topics: offsetsForKafka(window.offsets) });
        const lease = await confirmMembership();
        await holdWindowTransactionForTests(opts.logger);
        lease.check();
        await txn.commit();
        lastOffsets = window.offsets;
      } catch (err) {
        if (transactionExpired(err)) {
          // The broker aborted the transaction and bumped the producer's epoch: this producer can
          // take no other transaction, and kafkajs would call the error fatal. A new one with the same
          // transactional id takes the new epoch; nothing of the window was committed, so it can be
          // delivered again (the membership check guards that try like any other).
          opts.logger.warn(
            { transactionTimeoutMs: opts.transactionTimeoutMs },
            "the broker expired the window's transaction; re-initialising the producer",
          );
          await producer.disconnect().catch(() => undefined);
          producer = makeProducer();
          await producer.connect();
          throw new ClipsieveError(
            "KAFKA_TRANSACTION_EXPIRED",
            `the broker aborted the window's transaction after --transaction-timeout-ms (${opts.transactionTimeoutMs} ms)`,
            { cause: err },
          );
        }
        opts.logger.warn({ err }, "window delivery failed; aborting its transaction");
        await txn.abort().catch((abortErr: unknown) => opts.logger.warn({ err: abortErr }, "abort failed"));
        throw err;
      }
    },
    async settle(timeoutMs = 15_000) {
      const want = lastOffsets;
      if (!want) return;
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        try {
          if (await committedIncludes(want)) break;
        } catch (err) {
          opts.logger.warn({ err }, "could not read the group's committed offsets");
        }
        if (Date.now() >= deadline) {
          opts.logger.warn(
            { timeoutMs },
            "the last window's committed offsets are not readable yet; rejoining anyway",
          );
          return;
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      lastOffsets = undefined;
    },
    async close() {
      await admin?.disconnect().catch(() => undefined);
      await producer.disconnect();
    },
  };
}
