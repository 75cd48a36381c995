/**
 * The before-rejoin hook against the real broker: a member's hook runs before it rejoins, and the
 * rebalance (so another member's assignment, and its read of the committed offsets) waits for it.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { silentLogger } from "../../src/common/logger.ts";
import { createKafkaSource } from "../../src/source/kafka-source.ts";
import { createTopics, testClient, testKafka, uniqueName } from "../helpers/kafka.ts";
import { waitFor } from "../helpers/wait.ts";

test("a second member's join waits for the first member's before-rejoin hook", async () => {
  const kafka = testKafka();
  const topic = uniqueName("rejoin");
  const groupId = uniqueName("rejoin-group");
  await createTopics([topic], 2);

  const HOLD_MS = 4000;
  // Calls after the first member settled in (armed): each holds like a transaction being finished.
  const hookCalls: { start: number; end: number }[] = [];
  let armed = false;
  let unarmedCalls = 0;
  let aGeneration = 0;
  const a = createKafkaSource({
    kafka: testClient(),
    groupId,
    topic,
    logger: silentLogger,
    sessionTimeoutMs: 10_000,
    onRecords: async () => {},
    onRebalance: (g) => {
      aGeneration = g;
    },
    beforeRejoin: async () => {
      if (!armed) {
        unarmedCalls++;
        return;
      }
      const start = Date.now();
      await new Promise((r) => setTimeout(r, HOLD_MS));
      hookCalls.push({ start, end: Date.now() });
    },
  });
  const b = kafka.consumer({ groupId, sessionTimeout: 10_000, heartbeatInterval: 1000 });
  let bJoinedAt = 0;
  let bAssigned: number[] = [];
  b.on(b.events.GROUP_JOIN, (e) => {
    bJoinedAt = Date.now();
    bAssigned = e.payload.memberAssignment[topic] ?? [];
  });
  try {
    await a.start();
    await waitFor(() => aGeneration >= 1, 30_000, "the first member's join");
    assert.ok(unarmedCalls >= 1, "the hook runs before the first join too");
    const settledGeneration = aGeneration;
    armed = true;

    await b.connect();
    await b.subscribe({ topic, fromBeginning: true });
    await b.run({ eachMessage: async () => {} });
    await waitFor(() => bJoinedAt > 0 && aGeneration > settledGeneration, 60_000, "the rebalance");

    assert.ok(hookCalls.length >= 1, "the hook ran again before the rejoin");
    assert.equal(bAssigned.length, 1, "the second member got one of the two partitions");
    assert.ok(
      bJoinedAt >= hookCalls[0].end,
      `the second member joined ${hookCalls[0].end - bJoinedAt} ms before the hook finished`,
    );
  } finally {
    armed = false;
    await b.disconnect();
    await a.stop();
  }
});
