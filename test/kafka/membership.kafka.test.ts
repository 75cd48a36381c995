/**
 * The membership check before a window's commit, against the real broker: a settled member confirms;
 * while the group rebalances (the member's rejoin held back by its before-rejoin hook) it cannot; a
 * confirmation is good for its budget only. The frozen-member case, end to end, is in
 * test/pipeline/crash.test.ts.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { isClipsieveError } from "../../src/common/errors.ts";
import { confirmMembership } from "../../src/kafka/kafkajs/membership.ts";
import { assignerWithRejoinHook, type ConsumerGroupInternals } from "../../src/kafka/kafkajs/rejoin-hook.ts";
import { createTopics, testKafka, uniqueName } from "../helpers/kafka.ts";
import { waitFor } from "../helpers/wait.ts";

test("a member confirms its membership only while the group is settled", async () => {
  const kafka = testKafka();
  const topic = uniqueName("membership");
  const groupId = uniqueName("membership-group");
  await createTopics([topic], 2);

  let group: ConsumerGroupInternals | undefined;
  let holdRejoin: Promise<void> | undefined;
  let hookEntered = false;
  let joins = 0;
  const a = kafka.consumer({
    groupId,
    sessionTimeout: 10_000,
    heartbeatInterval: 1000,
    partitionAssigners: [
      assignerWithRejoinHook(
        async () => {
          if (!holdRejoin) return;
          hookEntered = true;
          await holdRejoin;
        },
        (g) => {
          group = g;
        },
      ),
    ],
  });
  a.on(a.events.GROUP_JOIN, () => {
    joins++;
  });
  const b = kafka.consumer({ groupId, sessionTimeout: 10_000, heartbeatInterval: 1000 });
  let release!: () => void;
  try {
    await a.connect();
    await a.subscribe({ topic, fromBeginning: true });
    await a.run({ eachMessage: async () => {} });
    await waitFor(() => joins >= 1, 30_000, "the first join");

    await confirmMembership(group, 5000);

    // A lease is good for its budget only: a process that stalls after the heartbeat must ask again.
    const lease = await confirmMembership(group, 2000);
    lease.check();
    await new Promise((r) => setTimeout(r, 2100));
    assert.throws(
      () => lease.check(),
      (err) => isClipsieveError(err, "GROUP_MEMBERSHIP_UNCONFIRMED"),
    );

    // b joins; a's rejoin waits in its hook, so the group stays in the middle of a rebalance.
    holdRejoin = new Promise<void>((r) => {
      release = r;
    });
    await b.connect();
    await b.subscribe({ topic, fromBeginning: true });
    // Not awaited: b.run resolves only once b joined, which waits for a's rejoin.
    const bRunning = b.run({ eachMessage: async () => {} });
    await waitFor(() => hookEntered, 30_000, "a's rejoin");
    await assert.rejects(
      confirmMembership(group, 5000),
      (err) => isClipsieveError(err, "GROUP_MEMBERSHIP_LOST") && /REBALANCE_IN_PROGRESS/.test(err.message),
    );

    release();
    await bRunning;
    await waitFor(() => joins >= 2, 30_000, "a's second join");
    await confirmMembership(group, 5000);
  } finally {
    release?.();
    await b.disconnect();
    await a.disconnect();
  }
});

test("without a join there is nothing to confirm", async () => {
  await assert.rejects(confirmMembership(undefined, 5000), (err) =>
    isClipsieveError(err, "GROUP_MEMBERSHIP_LOST"),
  );
});
