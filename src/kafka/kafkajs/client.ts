/**
 * The kafkajs adapter: the port (../port.ts) on kafkajs 2.2.4, the pure-JavaScript client. Its
 * warnings and errors go to the process's structured logger (kafkajs's own logger would print
 * unstructured lines to stdout); lower levels are dropped.
 */
import { randomUUID } from "node:crypto";
import { Kafka, type KafkaConfig, logLevel, Partitioners, type Producer } from "kafkajs";
import type { Logger } from "../../common/logger.ts";
import type { KafkaClient, KafkaClientOptions, OutboundRecord, RecordProducer } from "../port.ts";
import { type KafkaSecurity, kafkajsSecurityConfig } from "../security.ts";
import { createKafkajsGroupConsumer } from "./group-consumer.ts";
import { consumeKafkajsRange } from "./range-consumer.ts";
import { readTopicToEnd } from "./read-topic.ts";
import { ensureTopics } from "./topics.ts";
import { chunkMessages, createKafkajsWindowProducer } from "./window-producer.ts";

function newKafka(
  brokers: readonly string[],
  clientId: string,
  logger: Logger | undefined,
  security: KafkaSecurity | undefined,
): Kafka {
  return new Kafka({
    clientId,
    brokers: [...brokers],
    ...(kafkajsSecurityConfig(security) as Pick<KafkaConfig, "ssl" | "sasl">),
    logLevel: logger ? logLevel.WARN : logLevel.NOTHING,
    logCreator:
      () =>
      ({ level, log }) => {
        if (!logger) return;
        const { message, ...extra } = log;
        if (level <= logLevel.ERROR) logger.error(extra, `kafkajs: ${message}`);
        else logger.warn(extra, `kafkajs: ${message}`);
      },
  });
}

function toMessages(records: OutboundRecord[]) {
  return records.map((r) => ({ key: r.key, value: r.value, headers: r.headers, partition: r.partition }));
}

function recordProducer(producer: Producer): RecordProducer {
  return {
    connect: () => producer.connect(),
    async send(topic, records) {
      await producer.send({ topic, messages: toMessages(records), acks: -1 });
    },
    disconnect: () => producer.disconnect(),
  };
}

const COMMIT_APIS = new Set(["AddOffsetsToTxn", "TxnOffsetCommit", "EndTxn"]);

export function createKafkajsClient(opts: KafkaClientOptions): KafkaClient {
  const kafka = newKafka(opts.brokers, opts.clientId, opts.logger, opts.security);
  const onRequest = opts.onRequest;
  if (onRequest) {
    // Every producer this client makes (the window producer's too) reports its requests' durations.
    const makeProducer = kafka.producer.bind(kafka);
    kafka.producer = (cfg) => {
      const producer = makeProducer(cfg);
      producer.on(producer.events.REQUEST, ({ payload }) => {
        if (payload.apiName === "Produce") onRequest("produce", payload.duration / 1000);
        else if (COMMIT_APIS.has(payload.apiName)) onRequest("commit", payload.duration / 1000);
      });
      return producer;
    };
  }
  const withAdmin = async <T>(fn: (admin: ReturnType<Kafka["admin"]>) => Promise<T>): Promise<T> => {
    const admin = kafka.admin();
    await admin.connect();
    try {
      return await fn(admin);
    } finally {
      await admin.disconnect();
    }
  };

  const client: KafkaClient = {
    adapter: "kafkajs",
    brokers: opts.brokers,
    // kafkajs reports no broker states; an outage shows as failed windows and, past its retries, an exit.
    reachability: { reachable: true, since: Date.now(), detail: "" },
    ensureTopics: (specs, timeoutMs) => ensureTopics(kafka, specs, timeoutMs),
    listTopics: () => withAdmin((admin) => admin.listTopics()),
    deleteTopics: (topics, timeoutMs = 30_000) =>
      withAdmin((admin) => admin.deleteTopics({ topics, timeout: timeoutMs })),
    endOffsets: (topic) =>
      withAdmin(async (admin) => {
        const offsets = await admin.fetchTopicOffsets(topic);
        return new Map(offsets.map((o) => [o.partition, { low: BigInt(o.low), high: BigInt(o.high) }]));
      }),
    offsetsAtTime: (topic, ms) =>
      withAdmin(async (admin) => {
        const highs = await admin.fetchTopicOffsets(topic);
        const out = new Map<number, bigint>();
        for (const p of await admin.fetchTopicOffsetsByTimestamp(topic, ms)) {
          // -1: no record at or after that time; the partition's end.
          const high = highs.find((q) => q.partition === p.partition)?.high ?? "0";
          out.set(p.partition, BigInt(p.offset === "-1" ? high : p.offset));
        }
        return out;
      }),
    committedOffsets: (groupId, topic) =>
      withAdmin(async (admin) => {
        const [group] = await admin.fetchOffsets({ groupId, topics: [topic] });
        const out = new Map<number, bigint>();
        for (const p of group?.partitions ?? []) {
          const offset = BigInt(p.offset);
          if (offset >= 0n) out.set(p.partition, offset);
        }
        return out;
      }),
    setCommittedOffsets: (groupId, topic, offsets) =>
      withAdmin((admin) =>
        admin.setOffsets({
          groupId,
          topic,
          partitions: [...offsets].map(([partition, offset]) => ({ partition, offset: offset.toString() })),
        }),
      ),
    async waitForCoordinators(timeoutMs = 60_000) {
      const patient = new Kafka({
        clientId: `${opts.clientId}-ready`,
        brokers: [...opts.brokers],
        ...(kafkajsSecurityConfig(opts.security) as Pick<KafkaConfig, "ssl" | "sasl">),
        logLevel: logLevel.NOTHING,
        retry: { retries: 60, initialRetryTime: 200, maxRetryTime: 1000 },
      });
      // Connecting a transactional producer runs InitProducerId, served by a transaction coordinator.
      const producer = patient.producer({
        transactionalId: `clipsieve-ready-${randomUUID()}`,
        idempotent: true,
        maxInFlightRequests: 1,
      });
      await producer.connect();
      await producer.disconnect();
      const admin = patient.admin();
      await admin.connect();
      try {
        // Groups hash onto the offsets topic's partitions, each loaded on its own: ask about enough
        // groups that every partition's coordinator has answered, until none says it is still loading.
        const groups = Array.from({ length: 64 }, (_, i) => `clipsieve-ready-${i}`);
        const deadline = Date.now() + timeoutMs;
        while (Date.now() < deadline) {
          const { groups: described } = await admin.describeGroups(groups);
          // kafkajs's typings leave out the per-group error code its DescribeGroups result carries.
          if (described.every((g) => (g as { errorCode?: number }).errorCode === 0)) return;
          await new Promise((resolve) => setTimeout(resolve, 250));
        }
      } finally {
        await admin.disconnect();
      }
    },
    readTopicToEnd: (topic, onRecord, readOpts) =>
      readTopicToEnd(
        kafka,
        topic,
        ({ partition, message }) =>
          onRecord({
            partition,
            offset: message.offset,
            key: message.key,
            value: message.value,
            headers: (message.headers ?? {}) as Record<string, Buffer | string | undefined>,
            timestamp: message.timestamp,
          }),
        readOpts,
      ),
    producer: () =>
      recordProducer(
        // Idempotent: a Produce request retried after a timeout must not write its records twice.
        // The default partitioner, named, so kafkajs does not warn that its default changed in 2.0.
        kafka.producer({
          idempotent: true,
          maxInFlightRequests: 1,
          allowAutoTopicCreation: false,
          createPartitioner: Partitioners.DefaultPartitioner,
        }),
      ),
    async produceInTransactions(transactions, { transactionalId }) {
      const producer = kafka.producer({
        transactionalId,
        idempotent: true,
        maxInFlightRequests: 1,
        createPartitioner: Partitioners.DefaultPartitioner,
      });
      await producer.connect();
      try {
        for (const records of transactions) {
          const txn = await producer.transaction();
          for (const chunk of chunkMessages(records, 900_000))
            await txn.sendBatch({ topicMessages: chunk, acks: -1 });
          await txn.commit();
        }
      } finally {
        await producer.disconnect();
      }
    },
    groupConsumer: (consumerOpts) => createKafkajsGroupConsumer(kafka, consumerOpts),
    windowProducer: (producerOpts) => createKafkajsWindowProducer(kafka, producerOpts),
    rangeConsumer: (rangeOpts) => consumeKafkajsRange(kafka, client, rangeOpts),
    async close() {},
  };
  return client;
}
