/**
 * Crash and rebalance tests against the real broker. A filter killed with SIGKILL mid-stream and
 * restarted loses and duplicates nothing in the committed outputs; with two filters in one group on a
 * 4-partition topic, one joining mid-stream and then killed, every record is again delivered exactly
 * once; a filter frozen past its session timeout (SIGSTOP) cannot commit when it wakes; a member
 * joining while a window's transaction is pending starts after that window; and a window whose
 * transaction the broker expired (held past its timeout) is delivered again, not turned into an exit.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import type { Kafka } from "kafkajs";
import { KAFKA_ADAPTERS, type KafkaAdapterName } from "../../src/kafka/index.ts";
import { assertExactlyOnce, DIM, produce } from "../helpers/exactly-once.ts";
import { exited, filterArgs, filterTopics, spawnClipsieve } from "../helpers/filter.ts";
import { type GroupJoiner, joinGroup, readAll, testKafka } from "../helpers/kafka.ts";
import { waitFor } from "../helpers/wait.ts";

const FAST = [
  "--dim",
  String(DIM),
  "--window-size",
  "50",
  "--linger-ms",
  "200",
  "--bank-size",
  "50",
  "--draws",
  "2",
  "--batch-size",
  "32",
  "--keep",
  "s_clip_loss=0.5",
  "--warmup",
  "0",
  "--transaction-timeout-ms",
  "10000",
  "--session-timeout-ms",
  "6000",
];

/** FAST with 200-record windows, the given session and transaction timeouts, as instance `id`. */
function heldArgs(sessionTimeoutMs: number, transactionTimeoutMs: number, id = "a"): string[] {
  return [
    ...FAST,
    "--window-size",
    "200",
    "--session-timeout-ms",
    String(sessionTimeoutMs),
    "--transaction-timeout-ms",
    String(transactionTimeoutMs),
    "--instance-id",
    id,
  ];
}

/** Committed records on the scores topic so far (high watermark minus transaction markers is not exact; read them). */
async function scoresHighWatermark(kafka: Kafka, topic: string): Promise<number> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const offsets = await admin.fetchTopicOffsets(topic);
    return offsets.reduce((s, o) => s + Number(o.high), 0);
  } finally {
    await admin.disconnect();
  }
}

/** A process's state letter from /proc (R running, S sleeping, T stopped), for failure messages. */
function processState(pid: number | undefined): string {
  try {
    return readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.[0] ?? "?";
  } catch {
    return "gone";
  }
}

/** Run a spawned filter on one client library (the env that createKafkaClient reads). */
const on = (adapter: KafkaAdapterName): NodeJS.ProcessEnv => ({ CLIPSIEVE_KAFKA_CLIENT: adapter });

// Every test runs against both adapters: librdkafka (the default) and kafkajs (the fallback).
for (const adapter of KAFKA_ADAPTERS) {
  test(`[${adapter}] SIGKILL mid-stream, then restart: nothing lost, nothing duplicated`, async () => {
    const kafka = testKafka();
    const t = await filterTopics(2);
    const n = 1500;
    await produce(kafka, t.input, n, 2, 11);
    const first = spawnClipsieve(filterArgs(t, [...FAST, "--instance-id", "crashy"]), on(adapter));
    await waitFor(
      async () => (await scoresHighWatermark(kafka, t.scores)) >= 600,
      90_000,
      `first windows\n${first.output()}`,
    );
    first.kill("SIGKILL");
    await exited(first);
    const second = spawnClipsieve(filterArgs(t, [...FAST, "--instance-id", "crashy"]), on(adapter));
    try {
      await assertExactlyOnce(kafka, t, n, () => first.output() + second.output());
      // The policy's state was committed with the windows: the restarted filter does not start cold.
      assert.match(second.output(), /policy starts from a saved state/);
    } finally {
      second.kill("SIGTERM");
      await exited(second);
    }
  });

  test(`[${adapter}] a second filter joins mid-stream, then one is killed: nothing lost or doubled`, async () => {
    const kafka = testKafka();
    const t = await filterTopics(4);
    const n = 2000;
    // a holds each window's transaction open for a while, so the rebalance always finds one in flight
    // (larger windows than FAST's, so that this costs a few seconds, not one per 50 records).
    // a stays in the group through a slow moment (a long session timeout); b, killed, leaves after 6 s.
    const a = spawnClipsieve(
      filterArgs(t, [...FAST, "--window-size", "200", "--session-timeout-ms", "30000", "--instance-id", "a"]),
      {
        ...on(adapter),
        CLIPSIEVE_FAULT_COMMIT_DELAY_MS: "1000",
      },
    );
    let b: ReturnType<typeof spawnClipsieve> | undefined;
    try {
      const twoEach = /"assignment":\{"[^"]+":\[\d+,\d+\]\}/;
      await produce(kafka, t.input, n, 4, 12, async (send) => {
        await send(0, 400);
        await waitFor(
          async () => (await scoresHighWatermark(kafka, t.scores)) >= 300,
          90_000,
          `first windows\n${a.output()}`,
        );
        // b joins while records keep coming, so a has window transactions in flight as the group
        // rebalances: a must finish them before it rejoins (src/kafka/kafkajs/rejoin-hook.ts), or b would
        // re-read records whose offsets were about to commit.
        b = spawnClipsieve(
          filterArgs(t, [...FAST, "--window-size", "200", "--instance-id", "b"]),
          on(adapter),
        );
        let sent = 400;
        const deadline = Date.now() + 90_000;
        while (!(twoEach.test(a.output()) && twoEach.test(b.output()))) {
          if (Date.now() > deadline) throw new Error(`b never joined\n${b.output()}`);
          if (sent < 1400) await send(sent, (sent += 50));
          await new Promise((r) => setTimeout(r, 250));
        }
        await send(sent, n);
      });
      await waitFor(
        async () => (await scoresHighWatermark(kafka, t.scores)) >= 1500,
        90_000,
        `more windows\n${a.output()}`,
      );
      // Then b dies without leaving the group: a takes its partitions after the session timeout.
      const victim = b as unknown as ReturnType<typeof spawnClipsieve>;
      victim.kill("SIGKILL");
      await exited(victim);
      await assertExactlyOnce(kafka, t, n, () => a.output() + victim.output());
    } finally {
      a.kill("SIGTERM");
      await exited(a);
      const other = b as ReturnType<typeof spawnClipsieve> | undefined;
      if (other && other.exitCode === null && other.signalCode === null) {
        other.kill("SIGKILL");
        await exited(other);
      }
    }
  });

  test(`[${adapter}] a filter frozen past its session timeout cannot commit when it wakes: nothing doubled`, async () => {
    const kafka = testKafka();
    const t = await filterTopics(4);
    const n = 1600;
    // a is frozen (SIGSTOP, as a long GC pause or a stalled VM does) while it holds a window's
    // transaction open, after the membership check and before the commit. Its transaction outlives the
    // freeze (120 s), so only the lease check right before the commit (src/kafka/kafkajs/membership.ts) stops
    // the late commit: b has taken a's partitions meanwhile and re-read the same records from the older
    // committed offsets.
    const a = spawnClipsieve(filterArgs(t, heldArgs(10_000, 120_000)), {
      ...on(adapter),
      CLIPSIEVE_FAULT_COMMIT_DELAY_MS: "3000",
    });
    const b = spawnClipsieve(
      filterArgs(t, [...FAST, "--window-size", "200", "--session-timeout-ms", "30000", "--instance-id", "b"]),
      on(adapter),
    );
    const holds = () => a.output().split("fault injection: holding the window transaction").length - 1;
    try {
      const twoEach = /"assignment":\{"[^"]+":\[\d+,\d+\]\}/;
      await waitFor(
        () => twoEach.test(a.output()) && twoEach.test(b.output()),
        90_000,
        `both filters joined\n${a.output()}\n${b.output()}`,
      );
      await produce(kafka, t.input, n, 4, 13);
      // Freeze a just after it began holding a window's transaction (it holds for 3 s, within the 5 s
      // lease that its 10 s session timeout gives).
      const seen = holds();
      await waitFor(() => holds() > seen, 90_000, `a window of a\n${a.output()}`);
      a.kill("SIGSTOP");
      const bBefore = b.output().length;
      // b takes all four partitions once a's 10 s session expired, and re-reads a's records from the
      // committed offsets (a's open transaction holds newer ones, not yet committed). Only b's output
      // from now on counts: b may have held all four before a first joined.
      const allFour = /"assignment":\{"[^"]+":\[0,1,2,3\]\}/;
      await waitFor(
        () => allFour.test(b.output().slice(bBefore)),
        60_000,
        `b took over\n${b.output().slice(bBefore)}`,
      );
      await new Promise((r) => setTimeout(r, 3000));
      const joins = () => a.output().split("joined consumer group").length - 1;
      const joinsBefore = joins();
      a.kill("SIGCONT");
      // a wakes inside its held transaction: it must abort it, then rejoin the group.
      await waitFor(
        () => joins() > joinsBefore,
        90_000,
        `a rejoined (process state ${processState(a.pid)}, exit ${a.exitCode ?? a.signalCode})\n${a.output()}`,
      );
      await assertExactlyOnce(kafka, t, n, () => a.output() + b.output());
      assert.match(
        a.output(),
        /GROUP_MEMBERSHIP_(LOST|UNCONFIRMED)/,
        "a's late commit was refused by the membership check",
      );
    } finally {
      a.kill("SIGCONT");
      a.kill("SIGTERM");
      b.kill("SIGTERM");
      await Promise.all([exited(a), exited(b)]);
    }
  });

  test(`[${adapter}] a member joining while a window's transaction is held gets offsets that include that window`, async () => {
    const kafka = testKafka();
    const t = await filterTopics(2);
    // Produced before a starts, so that a's first fetch takes both partitions into one window.
    await produce(kafka, t.input, 200, 2, 14);
    // a holds its window's transaction for 12 s after the membership check (within its 15 s lease), so
    // the rebalance below always begins while a commit is pending. Its transaction timeout is well over
    // the hold: with FAST's 10 s the broker's expiry sweep (every 10 s) sometimes aborted the held
    // transaction first, and a never committed the window this test is about.
    const a = spawnClipsieve(filterArgs(t, heldArgs(30_000, 60_000)), {
      ...on(adapter),
      CLIPSIEVE_FAULT_COMMIT_DELAY_MS: "12000",
    });
    let joiner: GroupJoiner | undefined;
    try {
      await waitFor(
        () => a.output().includes("fault injection: holding the window transaction"),
        90_000,
        `a's window\n${a.output()}`,
      );
      // Another member joins now. a must commit the held window (and see its offsets committed) before
      // it rejoins, so the joiner starts after that window instead of re-reading it.
      joiner = await joinGroup(adapter, t.group, t.input);
      const member = joiner;
      await waitFor(() => member.assigned().length === 1, 60_000, "the joiner's assignment");
      // a finished the held window before giving up its partitions: the event this test is about.
      await waitFor(
        () => a.output().includes("the window transaction in flight finished before rejoining"),
        60_000,
        `a finished its window transaction before rejoining\n${a.output().slice(-4000)}`,
      );
      // What a committed must not be read again (records a did not commit may be, by their new owner).
      const committed = (await readAll(kafka, t.scores, { expected: 200, timeoutMs: 60_000 })).map((m) => {
        const { source } = JSON.parse(m.value?.toString() ?? "{}");
        return `${source.partition}/${source.offset}`;
      });
      assert.ok(committed.length > 0, `a committed its window\n${a.output().slice(-4000)}`);
      const twice = committed.filter((s) => member.read.has(s));
      assert.deepEqual(twice, [], `the joiner re-read records of a committed window\n${a.output()}`);
    } finally {
      await joiner?.disconnect();
      a.kill("SIGTERM");
      await exited(a);
    }
  });

  test(`[${adapter}] a window transaction the broker expired is delivered again: nothing lost or doubled`, async () => {
    const kafka = testKafka();
    const t = await filterTopics(2);
    const n = 600;
    await produce(kafka, t.input, n, 2, 15);
    // The first window's transaction is held 16 s, past its 5 s timeout and the broker's expiry sweep
    // (every 10 s), as a long pause would: the broker aborts it and fences the producer's epoch. The
    // filter must deliver that window again on a new producer rather than exit. The 60 s session timeout
    // gives a 30 s membership lease, so the hold itself does not cost the partitions.
    const a = spawnClipsieve(filterArgs(t, heldArgs(60_000, 5_000)), {
      ...on(adapter),
      CLIPSIEVE_FAULT_COMMIT_DELAY_MS: "16000",
      CLIPSIEVE_FAULT_COMMIT_DELAY_WINDOWS: "1",
    });
    try {
      await assertExactlyOnce(kafka, t, n, () => a.output());
      assert.match(a.output(), /the broker expired the window's transaction/);
      assert.equal(a.exitCode, null, `the filter is still running\n${a.output().slice(-3000)}`);
    } finally {
      a.kill("SIGTERM");
      await exited(a);
    }
  });
}
