import "../../src/common/quiet-warnings.ts";
import { randomUUID } from "node:crypto";
import rdkafka from "@confluentinc/kafka-javascript";
import { Kafka, logLevel } from "kafkajs";
import { createKafkaClient, type KafkaAdapterName, type KafkaClient } from "../../src/kafka/index.ts";

/** The broker the test run uses (started by test/global-setup.ts unless KAFKA_BROKERS was given). */
export function testBrokers(): string[] {
  const brokers = process.env.KAFKA_BROKERS;
  if (!brokers)
    throw new Error(
      "KAFKA_BROKERS is not set: a test that needs a broker is a *.kafka.test.ts or *.crash.test.ts, run by `npm test` or `npm run test:broker` (they start one).",
    );
  return brokers.split(",");
}

/**
 * A kafkajs client of the tests' own, to write inputs and read outputs independently of the code
 * under test (which talks to Kafka through its port: `testClient`).
 */
export function testKafka(clientId = "clipsieve-test"): Kafka {
  return new Kafka({ clientId, brokers: testBrokers(), logLevel: logLevel.NOTHING });
}

/** clipsieve's own Kafka client (src/kafka), as the code under test gets it. */
export function testClient(clientId = "clipsieve-test"): KafkaClient {
  return createKafkaClient({ clientId, brokers: testBrokers() });
}

/** Every test gets its own topic and group names, so tests never see each other's records. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

export async function createTopics(topics: string[], numPartitions = 1): Promise<void> {
  await testClient("clipsieve-test-topics").ensureTopics(topics.map((topic) => ({ topic, numPartitions })));
}

/**
 * Read every record of `topic` from the beginning until `expected` records arrived or `timeoutMs`
 * passed. `readUncommitted` is false by default: read_committed, as clipsieve's downstream readers use.
 */
export async function readAll(
  kafka: Kafka,
  topic: string,
  opts: { expected?: number; timeoutMs?: number; readUncommitted?: boolean; idleMs?: number } = {},
): Promise<
  {
    key: string | null;
    value: Buffer | null;
    headers: Record<string, string>;
    partition: number;
    offset: string;
  }[]
> {
  const consumer = kafka.consumer({
    groupId: uniqueName("reader"),
    readUncommitted: opts.readUncommitted ?? false,
  });
  const out: {
    key: string | null;
    value: Buffer | null;
    headers: Record<string, string>;
    partition: number;
    offset: string;
  }[] = [];
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const timeoutMs = opts.timeoutMs ?? 20_000;
  const idleMs = opts.idleMs ?? 2_000;
  let lastAt = Date.now();
  // Quiet time counts from the first fetch after joining: a topic that is empty (a dead-letter topic
  // with no bad records) then ends the read after idleMs, not after the whole timeout.
  let fetched = false;
  consumer.on(consumer.events.FETCH, () => {
    if (fetched) return;
    fetched = true;
    lastAt = Date.now();
  });
  await consumer.run({
    eachMessage: async ({ message, partition }) => {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(message.headers ?? {})) headers[k] = String(v);
      out.push({
        key: message.key?.toString() ?? null,
        value: message.value,
        headers,
        partition,
        offset: message.offset,
      });
      lastAt = Date.now();
    },
  });
  const start = Date.now();
  // Wait for the expected count, or (with no count) until the topic has been quiet for idleMs.
  while (Date.now() - start < timeoutMs) {
    if (opts.expected !== undefined && out.length >= opts.expected) break;
    if (opts.expected === undefined && fetched && Date.now() - lastAt > idleMs) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  if (opts.expected !== undefined) await new Promise((r) => setTimeout(r, 300)); // catch any surplus
  await consumer.disconnect();
  return out;
}

/** A bare member of a consumer group, made by the test (not by clipsieve): see `joinGroup`. */
export interface GroupJoiner {
  /** Partitions of `topic` assigned to it in its latest join. */
  assigned(): number[];
  /** When it last got an assignment (ms since the epoch; 0: not yet). */
  joinedAt(): number;
  /** `partition/offset` of every record it read. */
  readonly read: Set<string>;
  disconnect(): Promise<void>;
}

/**
 * Join `group` on `topic` with the same client library a filter of that adapter uses (a group only
 * admits members that share an assignment protocol), reading from the committed offsets without
 * committing anything.
 */
export async function joinGroup(
  adapter: KafkaAdapterName,
  group: string,
  topic: string,
  sessionTimeoutMs = 30_000,
): Promise<GroupJoiner> {
  const read = new Set<string>();
  let assigned: number[] = [];
  let joinedAt = 0;
  if (adapter === "kafkajs") {
    const consumer = testKafka().consumer({
      groupId: group,
      sessionTimeout: sessionTimeoutMs,
      heartbeatInterval: 1000,
    });
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      assigned = e.payload.memberAssignment[topic] ?? [];
      joinedAt = Date.now();
    });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ partition, message }) => {
        read.add(`${partition}/${message.offset}`);
      },
    });
    return {
      assigned: () => assigned,
      joinedAt: () => joinedAt,
      read,
      disconnect: () => consumer.disconnect(),
    };
  }
  const { KafkaConsumer } = rdkafka;
  const consumer = new KafkaConsumer(
    {
      "bootstrap.servers": testBrokers().join(","),
      "group.id": group,
      "enable.auto.commit": false,
      "isolation.level": "read_committed",
      "session.timeout.ms": sessionTimeoutMs,
      "partition.assignment.strategy": "range,roundrobin",
      rebalance_cb: true,
    },
    { "auto.offset.reset": "earliest" },
  );
  consumer.on("rebalance", (err, assignment) => {
    if (err.code === -175) {
      assigned = assignment.filter((a) => a.topic === topic).map((a) => a.partition);
      joinedAt = Date.now();
    } else assigned = [];
  });
  consumer.on("data", (m) => {
    read.add(`${m.partition}/${m.offset}`);
  });
  await new Promise<void>((resolve, reject) =>
    consumer.connect({}, (err) => (err ? reject(err) : resolve())),
  );
  consumer.subscribe([topic]);
  consumer.consume();
  return {
    assigned: () => assigned,
    joinedAt: () => joinedAt,
    read,
    disconnect: () => new Promise<void>((resolve) => consumer.disconnect(() => resolve())),
  };
}
