/**
 * The streaming filter against the real broker: every record ends exactly once in accepted, rejected or
 * dead-letter (read_committed), with its headers; the scores topic holds one record per input; bad
 * input reaches the dead-letter topic with a clear reason while good records around it flow on; and a
 * window's scores equal the offline `score` command's for the recorded members, bank and seed.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { main } from "../../src/cli/main.ts";
import { writeNpz } from "../../src/io/npz.ts";
import { makeDraws } from "../../src/score/draws.ts";
import { HEADER, type ScoreRecord } from "../../src/sink/outputs.ts";
import { decodeRuns, type SourceRun } from "../../src/window/ranges.ts";
import { exited, filterArgs, filterTopics, spawnClipsieve } from "../helpers/filter.ts";
import { readAll, testKafka } from "../helpers/kafka.ts";
import { jsonRecord, syntheticPairs } from "../helpers/records.ts";

const DIM = 16;
const MODEL = "test-teacher";

test("every record is accepted, rejected or dead-lettered exactly once, and windows replay offline", async () => {
  const kafka = testKafka();
  const t = await filterTopics(2);
  const pairs = syntheticPairs(300, DIM, 7);
  const nan = new Float32Array(DIM).fill(0.25);
  nan[3] = Number.NaN;
  const bad: { value: string; code: string }[] = [
    {
      value: JSON.stringify({
        uid: "bad-dim",
        image_embedding: [1, 2, 3],
        text_embedding: [1, 2, 3],
        model: MODEL,
      }),
      code: "EMBEDDING_DIMENSION_MISMATCH",
    },
    {
      value: JSON.stringify({
        uid: "bad-nan",
        model: MODEL,
        image_embedding: Buffer.from(nan.buffer).toString("base64"),
        text_embedding: pairs[0].text,
      }),
      code: "EMBEDDING_NOT_FINITE",
    },
    {
      value: JSON.stringify({
        uid: "bad-zero",
        model: MODEL,
        image_embedding: new Array(DIM).fill(0),
        text_embedding: pairs[0].text,
      }),
      code: "EMBEDDING_ZERO",
    },
    { value: "{this is not json", code: "RECORD_UNDECODABLE" },
    {
      value: jsonRecord({ ...pairs[1], uid: "bad-teacher" }, { model: "another-teacher" }),
      code: "TARGET_MISMATCH",
    },
  ];
  const inputs: { key: string; value: string; bad?: string }[] = pairs.map((p) => ({
    key: p.uid,
    value: jsonRecord(p, { model: MODEL, base64: p.uid.endsWith("1") }),
  }));
  // Bad records in the middle of the stream, good ones all around them.
  bad.forEach((b, i) => {
    inputs.splice(40 + i * 50, 0, { key: `bad-${i}`, value: b.value, bad: b.code });
  });
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  await producer.send({
    topic: t.input,
    messages: inputs.map((m, i) => ({ key: m.key, value: m.value, partition: i % 2 })),
  });
  await producer.disconnect();

  const filter = spawnClipsieve(
    filterArgs(t, [
      "--dim",
      String(DIM),
      "--model",
      MODEL,
      "--window-size",
      "64",
      "--linger-ms",
      "300",
      "--bank-size",
      "48",
      "--draws",
      "2",
      "--batch-size",
      "32",
      "--keep",
      "s_clip_loss=0.5",
      "--warmup",
      "0",
      "--instance-id",
      "a",
    ]),
  );
  try {
    const scores = await readAll(kafka, t.scores, { expected: inputs.length, timeoutMs: 90_000 });
    assert.equal(
      scores.length,
      inputs.length,
      `scores topic: ${scores.length} of ${inputs.length}\n${filter.output()}`,
    );
  } finally {
    filter.kill("SIGTERM");
    assert.equal(await exited(filter), 0, filter.output());
  }
  // A healthy run logs nothing above info (no client notices, no warnings).
  const loud = filter
    .output()
    .split("\n")
    .filter((l) => /^\{"level":([4-9]\d)/.test(l));
  assert.deepEqual(loud, [], "a healthy run logged warnings or errors");
  const [accepted, rejected, dead, scoreMsgs, windows] = await Promise.all(
    [t.accepted, t.rejected, t.deadLetter, t.scores, t.windows].map((topic) =>
      readAll(kafka, topic, { idleMs: 1500, timeoutMs: 20_000 }),
    ),
  );
  // Exactly once: every input appears once across the three outputs, and nowhere twice.
  const bySource = new Map<string, string>();
  for (const [name, msgs] of [
    ["accepted", accepted],
    ["rejected", rejected],
    ["dead_letter", dead],
  ] as const) {
    for (const m of msgs) {
      const src = m.headers[HEADER.source];
      assert.ok(src, `${name} record without ${HEADER.source}`);
      assert.ok(!bySource.has(src), `${src} delivered twice`);
      bySource.set(src, name);
    }
  }
  assert.equal(bySource.size, inputs.length);
  assert.equal(scoreMsgs.length, inputs.length);
  assert.ok(accepted.length > 0 && rejected.length > 0, "the policy both accepted and rejected");

  // Original bytes unchanged; decision headers present.
  const original = new Map(inputs.map((m) => [m.key, m.value]));
  for (const m of [...accepted, ...rejected]) {
    assert.equal(m.value?.toString(), original.get(m.key ?? ""));
    for (const h of [HEADER.decision, HEADER.reason, HEADER.scores, HEADER.policyVersion, HEADER.windowId])
      assert.ok(m.headers[h], `missing ${h}`);
    const s = JSON.parse(m.headers[HEADER.scores]) as Record<string, number>;
    assert.equal(typeof s.s_clip_loss, "number");
  }
  // Bad input: the dead-letter topic, with the error code and a message.
  assert.equal(dead.length, bad.length);
  for (const m of dead) {
    const expected = inputs.find((i) => i.key === m.key)?.bad;
    assert.equal(m.headers[HEADER.errorCode], expected, `${m.key}: ${m.headers[HEADER.errorMessage]}`);
    assert.ok((m.headers[HEADER.errorMessage] ?? "").length > 10);
  }

  // A window's scores equal the offline `score` command's on the recorded members + bank and seed.
  const records = scoreMsgs.map((m) => JSON.parse(m.value?.toString() ?? "{}") as ScoreRecord);
  const manifests = windows.map(
    (m) =>
      JSON.parse(m.value?.toString() ?? "{}") as {
        window_id: string;
        seed: number;
        draws: number;
        batch_size: number;
        members: SourceRun[];
        bank: SourceRun[];
      },
  );
  const withBank = manifests.find((w) => w.bank.length > 0 && w.members.length > 0);
  assert.ok(withBank, "some window drew on the negative bank");
  const byCoord = new Map<string, string>();
  const inputMsgs = await readAll(kafka, t.input, { expected: inputs.length });
  for (const m of inputMsgs) byCoord.set(`${t.input}/${m.partition}/${m.offset}`, m.value?.toString() ?? "");
  const rows = [...decodeRuns(withBank.members), ...decodeRuns(withBank.bank)];
  const vec = (v: number[] | string): ArrayLike<number> => {
    if (typeof v !== "string") return v;
    const b = Buffer.from(v, "base64");
    return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
  };
  const img = new Float32Array(rows.length * DIM);
  const txt = new Float32Array(rows.length * DIM);
  rows.forEach((r, i) => {
    const rec = JSON.parse(byCoord.get(`${r.topic}/${r.partition}/${r.offset}`) ?? "{}");
    img.set(vec(rec.image_embedding), i * DIM);
    txt.set(vec(rec.text_embedding), i * DIM);
  });
  const dir = mkdtempSync(join(tmpdir(), "clipsieve-window-"));
  await writeNpz(join(dir, "window.npz"), {
    l14_img: { dtype: "<f4", shape: [rows.length, DIM], data: img },
    l14_txt: { dtype: "<f4", shape: [rows.length, DIM], data: txt },
  });
  const draws = makeDraws(rows.length, {
    seed: withBank.seed,
    draws: withBank.draws,
    batchSize: withBank.batch_size,
  });
  writeFileSync(join(dir, "draws.json"), JSON.stringify(draws.map((d) => d.map((b) => Array.from(b)))));
  const code = await main([
    "node",
    "clipsieve",
    "score",
    "--embeddings",
    join(dir, "window.npz"),
    "--partitions",
    join(dir, "draws.json"),
    "--out",
    join(dir, "scores.jsonl"),
  ]);
  assert.equal(code, 0);
  const offline = readFileSync(join(dir, "scores.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as { row: number; s_clip_loss: number; clip_score: number });
  const members = decodeRuns(withBank.members);
  members.forEach((m, row) => {
    const streamed = records.find((r) => r.source.partition === m.partition && r.source.offset === m.offset);
    assert.ok(streamed, `no score record for ${m.partition}/${m.offset}`);
    assert.equal(streamed.window_id, withBank.window_id);
    assert.ok(Math.abs(streamed.scores.s_clip_loss! - offline[row].s_clip_loss) <= 1e-6, `row ${row}`);
    assert.ok(Math.abs(streamed.scores.clip_score! - offline[row].clip_score) <= 1e-6, `row ${row}`);
  });
});
