/**
 * The before-rejoin hook against the real broker, on both adapters: a member's hook runs before it
 * gives up its partitions, and the rebalance (so another member's assignment, and its read of the
 * committed offsets) waits for it. kafkajs runs it from a patched join (src/kafka/kafkajs/rejoin-hook.ts);
 * librdkafka from its revoke callback (src/kafka/librdkafka/group-consumer.ts).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { silentLogger } from "../../src/common/logger.ts";
import { createKafkaClient, KAFKA_ADAPTERS } from "../../src/kafka/index.ts";
import { createKafkaSource } from "../../src/source/kafka-source.ts";
import { createTopics, type GroupJoiner, joinGroup, testBrokers, uniqueName } from "../helpers/kafka.ts";
import { waitFor } from "../helpers/wait.ts";

for (const adapter of KAFKA_ADAPTERS)
  test(`[${adapter}] a second member's join waits for the first member's before-rejoin hook`, async () => {
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
      kafka: createKafkaClient({ clientId: "clipsieve-test", brokers: testBrokers(), adapter }),
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
    let b: GroupJoiner | undefined;
    try {
      await a.start();
      await waitFor(() => aGeneration >= 1, 30_000, "the first member's join");
      // kafkajs runs the hook before every join; librdkafka only when there are partitions to give up.
      if (adapter === "kafkajs") assert.ok(unarmedCalls >= 1, "the hook runs before the first join too");
      const settledGeneration = aGeneration;
      armed = true;

      const member = await joinGroup(adapter, groupId, topic, 10_000);
      b = member;
      await waitFor(
        () => member.joinedAt() > 0 && aGeneration > settledGeneration,
        60_000,
        "the rebalance (the second member's join and the first member's rejoin)",
      );
      const bJoinedAt = member.joinedAt();

      assert.ok(hookCalls.length >= 1, "the hook ran again before the rejoin");
      assert.equal(member.assigned().length, 1, "the second member got one of the two partitions");
      assert.ok(
        bJoinedAt >= hookCalls[0].end,
        `the second member joined ${hookCalls[0].end - bJoinedAt} ms before the hook finished`,
      );
    } finally {
      armed = false;
      await b?.disconnect();
      await a.stop();
    }
  });
