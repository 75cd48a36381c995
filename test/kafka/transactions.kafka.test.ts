/**
 * The broker clipsieve runs on must support transactions, and readers must use read_committed: the
 * whole exactly-once design stands on these two facts. Each adapter's bounded readers (the data-lake
 * commands', the policy state's) take the committed records only and end by themselves at a range
 * that ends in a commit marker. This test fails if the broker's transaction
 * settings are wrong (transactional producers cannot initialise) or if the reader is read_uncommitted.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { Kafka } from "kafkajs";
import { silentLogger } from "../../src/common/logger.ts";
import { createKafkaClient, KAFKA_ADAPTERS } from "../../src/kafka/index.ts";
import { createTopics, readAll, testBrokers, testKafka, uniqueName } from "../helpers/kafka.ts";

/**
 * A topic holding a committed transaction, an aborted one and a committed one, written by the tests'
 * own kafkajs producer: the log ends in a commit marker, an offset no record carries.
 */
async function topicWithAbortedMiddle(kafka: Kafka): Promise<string> {
  const topic = uniqueName("tx");
  await createTopics([topic]);
  const producer = kafka.producer({
    transactionalId: uniqueName("tx-producer"),
    idempotent: true,
    maxInFlightRequests: 1,
  });
  await producer.connect();
  try {
    const committed = await producer.transaction();
    await committed.send({
      topic,
      messages: [
        { key: "a", value: "committed-1" },
        { key: "b", value: "committed-2" },
      ],
    });
    await committed.commit();

    const aborted = await producer.transaction();
    await aborted.send({
      topic,
      messages: [
        { key: "c", value: "aborted-1" },
        { key: "d", value: "aborted-2" },
      ],
    });
    await aborted.abort();

    // A third, committed transaction after the aborted one: the reader must skip the aborted records
    // in the middle of the log, not just stop before them.
    const last = await producer.transaction();
    await last.send({ topic, messages: [{ key: "e", value: "committed-3" }] });
    await last.commit();
  } finally {
    await producer.disconnect();
  }
  return topic;
}

test("a read_committed consumer sees exactly the committed transaction's records", async () => {
  const kafka = testKafka();
  const topic = await topicWithAbortedMiddle(kafka);
  const seen = await readAll(kafka, topic, { expected: 3 });
  assert.deepEqual(
    seen.map((r) => r.value?.toString()),
    ["committed-1", "committed-2", "committed-3"],
  );

  // The same log read uncommitted shows the aborted records: proof that the assertion above depends
  // on read_committed, and would fail without it.
  const uncommitted = await readAll(kafka, topic, { expected: 5, readUncommitted: true });
  assert.deepEqual(
    uncommitted.map((r) => r.value?.toString()),
    ["committed-1", "committed-2", "aborted-1", "aborted-2", "committed-3"],
  );
});

for (const adapter of KAFKA_ADAPTERS) {
  test(`[${adapter}] clipsieve's bounded readers take exactly the committed records and finish at the trailing commit marker`, async () => {
    const topic = await topicWithAbortedMiddle(testKafka());
    const client = createKafkaClient({ clientId: "clipsieve-test", brokers: testBrokers(), adapter });
    const whole: string[] = [];
    const read = await client.readTopicToEnd(topic, (r) => whole.push(String(r.value)), {
      timeoutMs: 30_000,
    });
    assert.equal(read.complete, true, "the read reached the end offsets (past the commit marker)");
    assert.deepEqual(whole, ["committed-1", "committed-2", "committed-3"]);

    const ranged: string[] = [];
    const range = await client.rangeConsumer({
      topic,
      logger: silentLogger,
      onBatch: async ({ records }) => {
        for (const r of records) ranged.push(String(r.value));
      },
    });
    const finished = await Promise.race([
      range.finished.then(() => true),
      new Promise<boolean>((r) => setTimeout(() => r(false), 30_000)),
    ]);
    await range.stop();
    assert.equal(finished, true, `the range consumer finished by itself (read ${ranged.length})`);
    assert.deepEqual(ranged, ["committed-1", "committed-2", "committed-3"]);
  });
}
