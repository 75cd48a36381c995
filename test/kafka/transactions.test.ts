/**
 * The broker clipsieve runs on must support transactions, and readers must use read_committed: the
 * whole exactly-once design stands on these two facts. This test fails if the broker's transaction
 * settings are wrong (transactional producers cannot initialise) or if the reader is read_uncommitted.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { createTopics, readAll, testKafka, uniqueName } from "../helpers/kafka.ts";

test("a read_committed consumer sees exactly the committed transaction's records", async () => {
  const kafka = testKafka();
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
