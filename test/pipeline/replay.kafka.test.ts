/**
 * `replay` against the real broker: a bounded run that stops by itself at the end offsets it captured,
 * `--reproduce` re-forms recorded windows so two replays give identical scores topics (and equal to the
 * run they reproduce), and a replay killed mid-way and started again ends with one output per input.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { Kafka } from "kafkajs";
import type { ScoreRecord } from "../../src/sink/outputs.ts";
import { exited, spawnClipsieve } from "../helpers/filter.ts";
import { createTopics, readAll, testBrokers, testKafka, uniqueName } from "../helpers/kafka.ts";
import { jsonRecord, syntheticPairs } from "../helpers/records.ts";

const DIM = 16;
const SETTINGS = [
  "--dim",
  String(DIM),
  "--window-size",
  "40",
  "--linger-ms",
  "200",
  "--bank-size",
  "60",
  "--draws",
  "3",
  "--batch-size",
  "32",
  "--keep",
  "s_clip_loss=0.4",
  "--warmup",
  "0",
  "--transaction-timeout-ms",
  "10000",
  "--progress",
  "lines",
];

async function producePairs(kafka: Kafka, topic: string, n: number, seed: number): Promise<void> {
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const pairs = syntheticPairs(n, DIM, seed);
  await producer.send({
    topic,
    messages: pairs.map((p, i) => ({ key: p.uid, value: jsonRecord(p), partition: i % 2 })),
  });
  await producer.disconnect();
}

function replayArgs(input: string, prefix: string, extra: string[] = []): string[] {
  return [
    "replay",
    "--brokers",
    testBrokers().join(","),
    "--input",
    input,
    "--out-prefix",
    prefix,
    ...SETTINGS,
    ...extra,
  ];
}

async function runToEnd(args: string[]): Promise<string> {
  const child = spawnClipsieve(args);
  const code = await exited(child);
  assert.equal(code, 0, child.output());
  return child.output();
}

async function scoresBySource(kafka: Kafka, topic: string, n: number): Promise<Map<string, ScoreRecord>> {
  const msgs = await readAll(kafka, topic, { expected: n, timeoutMs: 60_000 });
  const out = new Map<string, ScoreRecord>();
  for (const m of msgs) {
    const r = JSON.parse(m.value?.toString() ?? "{}") as ScoreRecord;
    const key = `${r.source.partition}/${r.source.offset}`;
    assert.ok(!out.has(key), `${key} scored twice in ${topic}`);
    out.set(key, r);
  }
  assert.equal(out.size, n, `${topic}: ${out.size} of ${n} records`);
  return out;
}

test("replay stops by itself; --reproduce gives identical scores topics", async () => {
  const kafka = testKafka();
  const input = uniqueName("replay-in");
  await createTopics([input], 2);
  const n = 400;
  await producePairs(kafka, input, n, 21);

  const a = uniqueName("a");
  const out = await runToEnd(replayArgs(input, a));
  assert.match(out, new RegExp(`replayed ${n} records`));
  const first = await scoresBySource(kafka, `${a}.scores`, n);

  const b = uniqueName("b");
  const c = uniqueName("c");
  await runToEnd(replayArgs(input, b, ["--reproduce", `${a}.windows`]));
  await runToEnd(replayArgs(input, c, ["--reproduce", `${a}.windows`]));
  const second = await scoresBySource(kafka, `${b}.scores`, n);
  const third = await scoresBySource(kafka, `${c}.scores`, n);
  for (const [key, r] of first) {
    for (const other of [second.get(key), third.get(key)]) {
      assert.ok(other, key);
      // Bit for bit: the same numbers, not merely close ones.
      assert.deepEqual(other.scores, r.scores, key);
      assert.equal(other.window_id, r.window_id);
      assert.equal(other.seed, r.seed);
      assert.equal(other.decision, r.decision);
    }
  }
});

test("a replay killed mid-way and started again ends with exactly one output per input", async () => {
  const kafka = testKafka();
  const input = uniqueName("replay-kill");
  await createTopics([input], 2);
  const n = 600;
  await producePairs(kafka, input, n, 22);
  const prefix = uniqueName("d");
  const args = replayArgs(input, prefix);
  const first = spawnClipsieve(args);
  // Kill it once some windows are out but well before the end.
  const admin = kafka.admin();
  await admin.connect();
  const deadline = Date.now() + 60_000;
  for (;;) {
    const offsets = await admin.fetchTopicOffsets(`${prefix}.scores`).catch(() => []);
    const hw = offsets.reduce((s, o) => s + Number(o.high), 0);
    if (hw >= 120) break;
    assert.ok(Date.now() < deadline, `no progress\n${first.output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  await admin.disconnect();
  first.kill("SIGKILL");
  await exited(first);
  const out = await runToEnd(args);
  assert.match(out, /resuming an interrupted replay/);
  await scoresBySource(kafka, `${prefix}.scores`, n);
  const outputs = await Promise.all(
    [".accepted", ".rejected", ".dead-letter"].map((s) =>
      readAll(kafka, `${prefix}${s}`, { idleMs: 1500, timeoutMs: 30_000 }),
    ),
  );
  const sources = outputs.flat().map((m) => m.headers["clipsieve-source"]);
  assert.equal(new Set(sources).size, sources.length, "no duplicates");
  assert.equal(sources.length, n, "every input once");
});
