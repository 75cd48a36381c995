/**
 * Crash tests against the real broker. A filter killed with SIGKILL mid-stream and restarted loses and
 * duplicates nothing in the committed outputs; with two filters in one group on a 4-partition topic,
 * one joining mid-stream and then killed, every record is again delivered exactly once.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { Kafka } from "kafkajs";
import { HEADER } from "../../src/sink/outputs.ts";
import { exited, type FilterTopics, filterArgs, filterTopics, spawnClipsieve } from "../helpers/filter.ts";
import { readAll, testKafka } from "../helpers/kafka.ts";
import { jsonRecord, syntheticPairs } from "../helpers/records.ts";
import { waitFor } from "../helpers/wait.ts";

const DIM = 16;
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

async function produce(
  kafka: Kafka,
  topic: string,
  n: number,
  partitions: number,
  seed: number,
  /** Sends records [from, to) and resolves; called until the stream's n records are all sent. */
  pace?: (send: (from: number, to: number) => Promise<void>) => Promise<void>,
): Promise<void> {
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const pairs = syntheticPairs(n, DIM, seed);
  const send = async (from: number, to: number) => {
    for (let i = from; i < Math.min(to, n); i += 500) {
      await producer.send({
        topic,
        messages: pairs
          .slice(i, Math.min(i + 500, to, n))
          .map((p, j) => ({ key: p.uid, value: jsonRecord(p), partition: (i + j) % partitions })),
      });
    }
  };
  try {
    if (pace) await pace(send);
    else await send(0, n);
  } finally {
    await producer.disconnect();
  }
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

async function assertExactlyOnce(kafka: Kafka, t: FilterTopics, n: number, log: () => string): Promise<void> {
  const scores = await readAll(kafka, t.scores, { expected: n, timeoutMs: 120_000 });
  const [accepted, rejected, dead] = await Promise.all(
    [t.accepted, t.rejected, t.deadLetter].map((topic) =>
      readAll(kafka, topic, { idleMs: 1500, timeoutMs: 30_000 }),
    ),
  );
  const seen = new Map<string, number>();
  for (const m of [...accepted, ...rejected, ...dead]) {
    const src = m.headers[HEADER.source];
    seen.set(src, (seen.get(src) ?? 0) + 1);
  }
  const doubled = [...seen].filter(([, c]) => c > 1);
  // On failure, say what the group went through (joins, rebalances, aborted windows, expulsions).
  const groupEvents = () =>
    log()
      .split("\n")
      .filter((l) =>
        /rebalanc|joined consumer group|aborted|not aware of this member|delivery failed/.test(l),
      )
      .slice(-40)
      .join("\n");
  assert.deepEqual(doubled, [], `records delivered twice\n${doubled.length ? groupEvents() : ""}`);
  assert.equal(seen.size, n, `delivered ${seen.size} of ${n}\n${log().slice(-3000)}`);
  const scoreSources = new Set(
    scores.map(
      (m) =>
        JSON.parse(m.value?.toString() ?? "{}").source.offset +
        "/" +
        JSON.parse(m.value?.toString() ?? "{}").source.partition,
    ),
  );
  assert.equal(scores.length, n, "one score record per input");
  assert.equal(scoreSources.size, n);
}

test("SIGKILL mid-stream, then restart: nothing lost, nothing duplicated", async () => {
  const kafka = testKafka();
  const t = await filterTopics(kafka, 2);
  const n = 1500;
  await produce(kafka, t.input, n, 2, 11);
  const first = spawnClipsieve(filterArgs(t, [...FAST, "--instance-id", "crashy"]));
  await waitFor(
    async () => (await scoresHighWatermark(kafka, t.scores)) >= 600,
    90_000,
    `first windows\n${first.output()}`,
  );
  first.kill("SIGKILL");
  await exited(first);
  const second = spawnClipsieve(filterArgs(t, [...FAST, "--instance-id", "crashy"]));
  try {
    await assertExactlyOnce(kafka, t, n, () => first.output() + second.output());
    // The policy's state was committed with the windows: the restarted filter does not start cold.
    assert.match(second.output(), /policy starts from a saved state/);
  } finally {
    second.kill("SIGTERM");
    await exited(second);
  }
});

test("a second filter joins mid-stream, then one is killed: nothing lost or doubled", async () => {
  const kafka = testKafka();
  const t = await filterTopics(kafka, 4);
  const n = 2000;
  // a holds each window's transaction open for a while, so the rebalance always finds one in flight
  // (larger windows than FAST's, so that this costs a few seconds, not one per 50 records).
  // a stays in the group through a slow moment (a long session timeout); b, killed, leaves after 6 s.
  const a = spawnClipsieve(
    filterArgs(t, [...FAST, "--window-size", "200", "--session-timeout-ms", "30000", "--instance-id", "a"]),
    {
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
      // rebalances: a must finish them before it rejoins (src/kafka/rejoin-hook.ts), or b would
      // re-read records whose offsets were about to commit.
      b = spawnClipsieve(filterArgs(t, [...FAST, "--window-size", "200", "--instance-id", "b"]));
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
