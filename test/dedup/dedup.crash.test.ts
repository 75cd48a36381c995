/**
 * The dedup step across a crash, against the real broker: a filter with --dedup killed with SIGKILL
 * mid-stream and restarted makes the same decision for every record as a filter that ran through,
 * because its history is read back from what was committed (the history topic, written in each
 * window's transaction). Copies are planted across windows and across the kill: each copies a record
 * of its own partition from up to 600 records earlier. The same holds when a second filter joins
 * mid-stream and the partitions move (both read their history back). The policy accepts every record (a fixed
 * threshold every record passes), so where windows are cut cannot change a decision, and only the
 * history can.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { Kafka } from "kafkajs";
import { exited, type FilterTopics, filterArgs, filterTopics, spawnClipsieve } from "../helpers/filter.ts";
import { readAll, testKafka } from "../helpers/kafka.ts";
import {
  gaussian,
  jsonRecord,
  mulberry32,
  type SyntheticPair,
  syntheticPairs,
  unit,
} from "../helpers/records.ts";
import { waitFor } from "../helpers/wait.ts";

const DIM = 16;
const N = 1200;

const ARGS = [
  "--dim",
  String(DIM),
  "--window-size",
  "50",
  "--linger-ms",
  "200",
  "--bank-size",
  "0",
  "--draws",
  "1",
  "--batch-size",
  "32",
  "--threshold",
  "clip_score>=-2",
  "--warmup",
  "0",
  "--dedup",
  "--dedup-threshold",
  "0.95",
  "--dedup-horizon",
  "5000",
  "--session-timeout-ms",
  "6000",
];

/** The stream: record i goes to partition i % 2; every fourth record from 40 on copies an earlier one of its partition. */
function stream(): { pairs: SyntheticPair[]; copies: Map<string, string> } {
  const pairs = syntheticPairs(N, DIM, 31);
  const rand = mulberry32(5);
  const copies = new Map<string, string>();
  for (let i = 40; i < N; i += 4) {
    // An original: same partition (same parity), not itself a copy (i - j not a multiple of 4 from a copy).
    let j = i - 2 * (1 + Math.floor(rand() * Math.min(300, (i - 2) / 2)));
    if (j % 4 === 0 && j >= 40) j -= 2;
    const image = unit(pairs[j].image.map((x) => x + (0.05 * gaussian(rand)) / Math.sqrt(DIM)));
    pairs[i] = { ...pairs[i], image };
    copies.set(pairs[i].uid, pairs[j].uid);
  }
  return { pairs, copies };
}

async function produceStream(kafka: Kafka, topic: string, pairs: SyntheticPair[]): Promise<void> {
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  for (let i = 0; i < pairs.length; i += 200) {
    await producer.send({
      topic,
      messages: pairs
        .slice(i, i + 200)
        .map((p, k) => ({ key: p.uid, value: jsonRecord(p), partition: (i + k) % 2 })),
    });
  }
  await producer.disconnect();
}

interface Decision {
  decision: string;
  reason: string;
  copyOf: string | null;
}

async function decisions(kafka: Kafka, t: FilterTopics): Promise<Map<string, Decision>> {
  const scores = await readAll(kafka, t.scores, { expected: N, timeoutMs: 150_000 });
  const out = new Map<string, Decision>();
  for (const m of scores) {
    const s = JSON.parse(m.value?.toString() ?? "{}");
    assert.ok(!out.has(s.uid), `${s.uid} decided twice`);
    out.set(s.uid, { decision: s.decision, reason: s.reason, copyOf: s.copy_of?.uid ?? null });
  }
  return out;
}

let steadyRun: Promise<Map<string, Decision>> | undefined;

/** The decisions of a filter that ran through the stream without interruption (once per file). */
function steadyDecisions(): Promise<Map<string, Decision>> {
  steadyRun ??= (async () => {
    const kafka = testKafka();
    const { pairs, copies } = stream();
    const steady = await filterTopics(2);
    await produceStream(kafka, steady.input, pairs);
    const a = spawnClipsieve(filterArgs(steady, [...ARGS, "--instance-id", "steady"]));
    let expected: Map<string, Decision>;
    try {
      expected = await decisions(kafka, steady);
    } finally {
      a.kill("SIGTERM");
      await exited(a);
    }
    assert.equal(expected.size, N, a.output().slice(-3000));
    // The uninterrupted run rejects every planted copy, naming its original (and a few pairs of the
    // stream that are as close by chance: D = 16).
    const rejected = new Map(
      [...expected].filter(([, d]) => d.reason === "near_duplicate").map(([uid, d]) => [uid, d.copyOf]),
    );
    for (const [copy, original] of copies)
      assert.equal(rejected.get(copy), original, `${copy} copies ${original}`);
    assert.ok(rejected.size <= copies.size + 5, `${rejected.size} rejected for ${copies.size} copies`);
    return expected;
  })();
  return steadyRun;
}

function assertSameDecisions(expected: Map<string, Decision>, got: Map<string, Decision>, log: string): void {
  assert.equal(got.size, N);
  const differing = [...expected].filter(([uid, d]) => JSON.stringify(got.get(uid)) !== JSON.stringify(d));
  assert.deepEqual(
    differing.slice(0, 5).map(([uid, d]) => ({ uid, expected: d, got: got.get(uid) })),
    [],
    `${differing.length} decisions differ\n${log.slice(-2000)}`,
  );
}

test("SIGKILL mid-stream with --dedup, then restart: every decision as in a run that was not interrupted", async () => {
  const kafka = testKafka();
  const expected = await steadyDecisions();
  const crashy = await filterTopics(2);
  await produceStream(kafka, crashy.input, stream().pairs);
  const first = spawnClipsieve(filterArgs(crashy, [...ARGS, "--instance-id", "crashy"]));
  await waitFor(
    async () => (await readAll(kafka, crashy.scores, { idleMs: 300, timeoutMs: 5000 })).length >= 500,
    90_000,
    () => `first windows\n${first.output()}`,
    500,
  );
  first.kill("SIGKILL");
  await exited(first);
  const second = spawnClipsieve(filterArgs(crashy, [...ARGS, "--instance-id", "crashy"]));
  try {
    const got = await decisions(kafka, crashy);
    assert.match(second.output(), /dedup history read back/);
    assertSameDecisions(expected, got, second.output());
  } finally {
    second.kill("SIGTERM");
    await exited(second);
  }
});

test("a second filter joins mid-stream with --dedup: after the rebalance, every decision as without one", async () => {
  const kafka = testKafka();
  const expected = await steadyDecisions();
  const t = await filterTopics(2);
  const { pairs } = stream();
  await produceStream(kafka, t.input, pairs.slice(0, 600));
  const a = spawnClipsieve(filterArgs(t, [...ARGS, "--session-timeout-ms", "30000", "--instance-id", "a"]));
  let b: ReturnType<typeof spawnClipsieve> | undefined;
  try {
    await waitFor(
      async () => (await readAll(kafka, t.scores, { idleMs: 300, timeoutMs: 5000 })).length >= 300,
      90_000,
      () => `first windows\n${a.output()}`,
      500,
    );
    b = spawnClipsieve(filterArgs(t, [...ARGS, "--instance-id", "b"]));
    const oneEach = /"assignment":\{"[^"]+":\[\d+\]\}/;
    await waitFor(
      () => oneEach.test(a.output()) && oneEach.test((b as NonNullable<typeof b>).output()),
      90_000,
      () => `a partition each\n${a.output().slice(-2000)}\n${b?.output().slice(-2000)}`,
    );
    // The rest of the stream, in the same partitions and order, once each filter owns one partition.
    const rest = pairs.slice(600);
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    await producer.send({
      topic: t.input,
      messages: rest.map((p, k) => ({ key: p.uid, value: jsonRecord(p), partition: (600 + k) % 2 })),
    });
    await producer.disconnect();
    const got = await decisions(kafka, t);
    // Both read their partition's history back after the rebalance, from what was committed.
    assert.match(b.output(), /dedup history read back/);
    assert.ok((a.output().match(/dedup history read back/g) ?? []).length >= 2, "a read its history again");
    assertSameDecisions(expected, got, a.output() + b.output());
  } finally {
    a.kill("SIGTERM");
    b?.kill("SIGTERM");
    await exited(a);
    if (b) await exited(b);
  }
});
