/**
 * The source against the real broker, on both adapters: batches are handed over in parts, and a part
 * the pipeline failed to take (here: its call throws on the third part, as a failed heartbeat or a
 * schema registry outage does) is handed again without handing any record twice in one generation
 * (kafkajs hands the whole batch again; librdkafka's loop hands that part again). A member whose
 * before-rejoin hook outlasts its session timeout stays in the group.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { silentLogger } from "../../src/common/logger.ts";
import { createKafkaClient, KAFKA_ADAPTERS } from "../../src/kafka/index.ts";
import { createKafkaSource } from "../../src/source/kafka-source.ts";
import {
  createTopics,
  type GroupJoiner,
  joinGroup,
  testBrokers,
  testKafka,
  uniqueName,
} from "../helpers/kafka.ts";
import { waitFor } from "../helpers/wait.ts";

for (const adapter of KAFKA_ADAPTERS) {
  const client = () => createKafkaClient({ clientId: "clipsieve-test", brokers: testBrokers(), adapter });

  test(`[${adapter}] a batch handed again after an error skips the parts already taken`, async () => {
    const kafka = testKafka();
    const topic = uniqueName("source");
    await createTopics([topic], 1);
    const N = 100;
    const producer = kafka.producer();
    await producer.connect();
    await producer.send({
      topic,
      messages: Array.from({ length: N }, (_, i) => ({ key: String(i), value: `record ${i}` })),
    });
    await producer.disconnect();

    const taken: string[] = [];
    const partSizes: number[] = [];
    let calls = 0;
    let failed = false;
    const source = createKafkaSource({
      kafka: client(),
      groupId: uniqueName("source-group"),
      topic,
      logger: silentLogger,
      maxRecordsPerCall: 10,
      onRecords: async (records) => {
        calls++;
        if (calls === 3 && !failed) {
          failed = true;
          throw new Error("injected: the pipeline could not take this part");
        }
        partSizes.push(records.length);
        for (const r of records) taken.push(r.source.offset);
      },
    });
    try {
      await source.start();
      await waitFor(
        () => taken.length >= N,
        60_000,
        () => `all ${N} records (have ${taken.length})`,
      );
      // Give a wrongly repeated part time to arrive.
      await new Promise((r) => setTimeout(r, 1000));
    } finally {
      await source.stop();
    }
    assert.ok(failed, "the third call failed, so the part was handed again");
    assert.ok(
      partSizes.every((n) => n <= 10),
      `parts of at most 10 records: ${partSizes.join(",")}`,
    );
    const counts = new Map<string, number>();
    for (const o of taken) counts.set(o, (counts.get(o) ?? 0) + 1);
    const twice = [...counts].filter(([, c]) => c > 1).map(([o]) => o);
    assert.deepEqual(twice, [], "no offset handed twice");
    assert.deepEqual(
      taken.map(Number),
      Array.from({ length: N }, (_, i) => i),
      "every record once, in order",
    );
  });

  test(`[${adapter}] a member stays in the group while its before-rejoin hook outlasts the session timeout`, async () => {
    const topic = uniqueName("source-keepalive");
    const groupId = uniqueName("source-keepalive-group");
    await createTopics([topic], 2);
    const SESSION_MS = 6000;
    const HOLD_MS = 10_000;
    let armed = false;
    let holdEnd = 0;
    let generation = 0;
    const a = createKafkaSource({
      kafka: client(),
      groupId,
      topic,
      logger: silentLogger,
      sessionTimeoutMs: SESSION_MS,
      onRecords: async () => {},
      onRebalance: (g) => {
        generation = g;
      },
      beforeRejoin: async () => {
        if (!armed) return;
        armed = false;
        await new Promise((r) => setTimeout(r, HOLD_MS));
        holdEnd = Date.now();
      },
    });
    let b: GroupJoiner | undefined;
    let bFirst: number[] | undefined;
    try {
      await a.start();
      await waitFor(() => generation >= 1, 30_000, "the first member's join");
      armed = true;
      const member = await joinGroup(adapter, groupId, topic);
      b = member;
      await waitFor(
        () => {
          if (bFirst === undefined && member.joinedAt() > 0) bFirst = member.assigned();
          return bFirst !== undefined && generation >= 2;
        },
        60_000,
        "the rebalance",
        20,
      );
    } finally {
      await b?.disconnect();
      await a.stop();
    }
    assert.ok(holdEnd > 0, "the hook held the rejoin");
    // Had a gone silent for its 6 s session, the group would have dropped it and given b both partitions.
    assert.deepEqual(
      bFirst?.length,
      1,
      `b's first assignment: ${JSON.stringify(bFirst)} (a was dropped from the group)`,
    );
  });
}
