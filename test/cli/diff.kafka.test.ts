/**
 * `diff` and `dump` against the real broker: the filter runs twice over one input with different
 * policies; diff's JSON must list exactly the records whose decision differs between the two scores
 * topics, as a direct comparison made here finds them, whether a side is the topic or its dump.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { main } from "../../src/cli/main.ts";
import type { ScoreDiff } from "../../src/lake/diff.ts";
import type { ScoreRecord } from "../../src/sink/outputs.ts";
import { exited, type FilterTopics, filterArgs, filterTopics, spawnClipsieve } from "../helpers/filter.ts";
import { createTopics, readAll, testBrokers, testKafka, uniqueName } from "../helpers/kafka.ts";
import { jsonRecord, syntheticPairs } from "../helpers/records.ts";

const DIM = 16;
const FAST = [
  "--dim",
  String(DIM),
  "--window-size",
  "100",
  "--linger-ms",
  "300",
  "--bank-size",
  "64",
  "--draws",
  "2",
  "--batch-size",
  "64",
  "--warmup",
  "0",
];

/** The output topics and group of a second run over the same input. */
async function secondRun(first: FilterTopics): Promise<FilterTopics> {
  const t = {
    input: first.input,
    accepted: uniqueName("acc"),
    rejected: uniqueName("rej"),
    deadLetter: uniqueName("dlq"),
    scores: uniqueName("scores"),
    windows: uniqueName("windows"),
    group: uniqueName("group"),
  };
  await createTopics([t.accepted, t.rejected, t.deadLetter, t.scores, t.windows], 1);
  return t;
}

/** Runs `clipsieve <args>` in this process and returns what it printed on stdout. */
async function cli(args: string[]): Promise<{ code: number; stdout: string }> {
  const printed: string[] = [];
  const log = console.log;
  console.log = (...parts: unknown[]) => printed.push(parts.join(" "));
  try {
    const code = await main(["node", "clipsieve", ...args]);
    return { code, stdout: printed.join("\n") };
  } finally {
    console.log = log;
  }
}

test("diff lists exactly the records whose decision changed between two runs", async () => {
  const kafka = testKafka();
  const a = await filterTopics(2);
  const b = await secondRun(a);
  const pairs = syntheticPairs(400, DIM, 21);
  const messages = pairs.map((p, i) => ({ key: p.uid, value: jsonRecord(p), partition: i % 2 }));
  messages.splice(50, 0, { key: "bad", value: "{not json", partition: 0 });
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  await producer.send({ topic: a.input, messages });
  await producer.disconnect();

  const runs = [
    spawnClipsieve(filterArgs(a, [...FAST, "--keep", "s_clip_loss=0.5", "--instance-id", "a"])),
    spawnClipsieve(
      filterArgs(b, [
        ...FAST,
        "--keep",
        "s_clip_loss=0.3",
        "--threshold",
        "clip_score>=0.2",
        "--instance-id",
        "b",
      ]),
    ),
  ];
  let scoresA: Awaited<ReturnType<typeof readAll>>;
  let scoresB: Awaited<ReturnType<typeof readAll>>;
  try {
    [scoresA, scoresB] = await Promise.all(
      [a.scores, b.scores].map((topic) =>
        readAll(kafka, topic, { expected: messages.length, timeoutMs: 90_000 }),
      ),
    );
  } finally {
    for (const r of runs) r.kill("SIGTERM");
    for (const r of runs) assert.equal(await exited(r), 0, r.output());
  }
  assert.equal(scoresA.length, messages.length, runs[0]!.output());
  assert.equal(scoresB.length, messages.length, runs[1]!.output());

  // The direct comparison: decisions by source on each topic.
  const bySource = (msgs: typeof scoresA) =>
    new Map(
      msgs.map((m) => {
        const r = JSON.parse(m.value!.toString()) as ScoreRecord;
        return [`${r.source.topic}/${r.source.partition}/${r.source.offset}`, r];
      }),
    );
  const before = bySource(scoresA);
  const after = bySource(scoresB);
  const expectedChanged = [...before]
    .filter(([src, r]) => after.get(src)!.decision !== r.decision)
    .map(([src]) => src)
    .sort();
  assert.ok(expectedChanged.length > 20, `only ${expectedChanged.length} decisions changed`);
  const expectedTransitions = new Map<string, number>();
  for (const [src, r] of before) {
    const k = `${r.decision}/${r.reason} -> ${after.get(src)!.decision}/${after.get(src)!.reason}`;
    expectedTransitions.set(k, (expectedTransitions.get(k) ?? 0) + 1);
  }

  const dir = mkdtempSync(join(tmpdir(), "clipsieve-diff-"));
  const dumpFile = join(dir, "a.jsonl");
  const dumped = await cli([
    "dump",
    "--brokers",
    testBrokers().join(","),
    "--topic",
    a.scores,
    "--out",
    dumpFile,
  ]);
  assert.equal(dumped.code, 0);
  assert.equal(readFileSync(dumpFile, "utf8").trim().split("\n").length, messages.length);

  const { code, stdout } = await cli([
    "diff",
    "--brokers",
    testBrokers().join(","),
    "--before",
    dumpFile,
    "--after",
    b.scores,
    "--json",
  ]);
  assert.equal(code, 0);
  const diff = JSON.parse(stdout) as ScoreDiff;
  assert.equal(diff.matched, messages.length);
  assert.equal(diff.only_before + diff.only_after, 0);
  const changed = diff.changed.map((c) => `${c.source.topic}/${c.source.partition}/${c.source.offset}`);
  assert.deepEqual([...changed].sort(), expectedChanged);
  assert.equal(diff.decision_changed, expectedChanged.length);
  for (const c of diff.changed) {
    const src = `${c.source.topic}/${c.source.partition}/${c.source.offset}`;
    assert.equal(c.before.decision, before.get(src)!.decision);
    assert.equal(c.after.reason, after.get(src)!.reason);
  }
  assert.deepEqual(
    new Map(diff.transitions.map((t) => [`${t.from} -> ${t.to}`, t.records])),
    expectedTransitions,
  );
  assert.equal(diff.before.dead_letter, 1);
  // Run b has a fixed threshold that run a lacks.
  assert.ok(Object.keys(diff.thresholds).includes("threshold:clip_score"));
  assert.equal(diff.thresholds["threshold:clip_score"]!.before, null);

  // The table names the transitions too.
  const table = await cli([
    "diff",
    "--brokers",
    testBrokers().join(","),
    "--before",
    a.scores,
    "--after",
    b.scores,
  ]);
  assert.equal(table.code, 0);
  assert.match(table.stdout, new RegExp(`decision changed: ${expectedChanged.length} `));
});
