/**
 * `load` against the real broker: DataComp-format shards (parquet + npz, written here) are produced as
 * clipsieve records; `run` over that topic then scores every window exactly as `clipsieve score` does on
 * the window's recorded members, bank rows and draws (within 1e-6), and the accepted topic holds exactly
 * the uids whose recorded scores pass the recorded thresholds.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { main } from "../../src/cli/main.ts";
import { createDecoder } from "../../src/decode/decoder.ts";
import { writeNpz } from "../../src/io/npz.ts";
import { writeTable } from "../../src/io/table.ts";
import { makeDraws } from "../../src/score/draws.ts";
import type { ScoreRecord } from "../../src/sink/outputs.ts";
import { decodeRuns, type SourceRun } from "../../src/window/ranges.ts";
import { exited, type FilterTopics, filterArgs, spawnClipsieve } from "../helpers/filter.ts";
import { createTopics, readAll, testBrokers, testKafka, uniqueName } from "../helpers/kafka.ts";
import { mulberry32, syntheticPairs } from "../helpers/records.ts";
import { startSchemaRegistry } from "../helpers/schema-registry.ts";

const DIM = 16;
const MODEL = "test-teacher";
const SHARDS = [150, 130];

interface Manifest {
  window_id: string;
  seed: number;
  draws: number;
  batch_size: number;
  members: SourceRun[];
  bank: SourceRun[];
}

function floats(b64: string): Float32Array {
  const b = Buffer.from(b64, "base64");
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
}

test("a loaded DataComp pool runs through the filter and scores as offline", async (t) => {
  const kafka = testKafka();
  const dir = mkdtempSync(join(tmpdir(), "clipsieve-load-"));
  const pool = join(dir, "pool");
  mkdirSync(pool);
  const rand = mulberry32(8);
  const rows: { uid: string; text: string; url: string; image: Float32Array; txt: Float32Array }[] = [];
  for (const [s, n] of SHARDS.entries()) {
    const pairs = syntheticPairs(n, DIM, 50 + s);
    // DataComp's vectors are unit length; these are not, so both paths must normalise alike.
    const scale = (v: number[]) => Float32Array.from(v, (x) => x * (0.5 + rand()));
    const shard = pairs.map((p, i) => ({
      uid: p.uid,
      text: `a photo ${s}-${i}`,
      url: `https://img.example/${s}/${i}.jpg`,
      image: scale(p.image),
      txt: scale(p.text),
    }));
    rows.push(...shard);
    const name = String(s).padStart(8, "0");
    await writeTable(join(pool, `${name}.parquet`), {
      uid: shard.map((r) => r.uid),
      text: shard.map((r) => r.text),
      url: shard.map((r) => r.url),
      clip_l14_similarity_score: Float32Array.from(shard, () => rand()),
    });
    const matrix = (pick: (r: (typeof shard)[number]) => Float32Array) => {
      const data = new Float32Array(n * DIM);
      shard.forEach((r, i) => {
        data.set(pick(r), i * DIM);
      });
      return { dtype: "<f4", shape: [n, DIM], data };
    };
    await writeNpz(join(pool, `${name}.npz`), {
      l14_img: matrix((r) => r.image),
      l14_txt: matrix((r) => r.txt),
    });
  }

  const input = uniqueName("pool");
  const brokers = testBrokers().join(",");
  const loaded = await main([
    "node",
    "clipsieve",
    "load",
    "--brokers",
    brokers,
    "--datacomp",
    pool,
    "--topic",
    input,
    "--model",
    MODEL,
  ]);
  assert.equal(loaded, 0);

  // The records are the pool's rows, in order, keyed by uid.
  const inputMsgs = await readAll(kafka, input, { expected: rows.length });
  assert.equal(inputMsgs.length, rows.length);
  const byOffset = new Map(inputMsgs.map((m) => [m.offset, m]));
  rows.forEach((r, i) => {
    const m = byOffset.get(String(i))!;
    const v = JSON.parse(m.value!.toString());
    assert.equal(m.key, r.uid);
    assert.deepEqual([v.uid, v.text, v.url, v.model], [r.uid, r.text, r.url, MODEL]);
    assert.deepEqual(floats(v.image_embedding), r.image);
    assert.deepEqual(floats(v.text_embedding), r.txt);
  });

  const topics: FilterTopics = {
    input,
    accepted: uniqueName("acc"),
    rejected: uniqueName("rej"),
    deadLetter: uniqueName("dlq"),
    scores: uniqueName("scores"),
    windows: uniqueName("windows"),
    group: uniqueName("group"),
  };
  await createTopics([topics.accepted, topics.rejected, topics.deadLetter, topics.scores, topics.windows]);
  const filter = spawnClipsieve(
    filterArgs(topics, [
      ...["--dim", String(DIM), "--model", MODEL, "--window-size", "64", "--linger-ms", "300"],
      ...["--bank-size", "48", "--draws", "2", "--batch-size", "32", "--keep", "s_clip_loss=0.4"],
      ...["--threshold", "clip_score>=0.1", "--warmup", "0", "--instance-id", "l"],
    ]),
  );
  let scoreMsgs: Awaited<ReturnType<typeof readAll>>;
  try {
    scoreMsgs = await readAll(kafka, topics.scores, { expected: rows.length, timeoutMs: 90_000 });
  } finally {
    filter.kill("SIGTERM");
    assert.equal(await exited(filter), 0, filter.output());
  }
  assert.equal(scoreMsgs.length, rows.length, filter.output());
  const [accepted, windows] = await Promise.all(
    [topics.accepted, topics.windows].map((topic) => readAll(kafka, topic, { idleMs: 1500 })),
  );
  const records = scoreMsgs.map((m) => JSON.parse(m.value!.toString()) as ScoreRecord);
  const byCoord = new Map(records.map((r) => [`${r.source.partition}/${r.source.offset}`, r]));

  // Every window, rebuilt from its manifest, scores the same offline.
  const manifests = windows.map((m) => JSON.parse(m.value!.toString()) as Manifest);
  assert.ok(manifests.length >= 4, `${manifests.length} windows`);
  assert.ok(
    manifests.some((w) => w.bank.length > 0),
    "some window drew on the negative bank",
  );
  let compared = 0;
  let worst = 0;
  for (const w of manifests) {
    const members = decodeRuns(w.members);
    const poolRows = [...members, ...decodeRuns(w.bank)];
    const img = new Float32Array(poolRows.length * DIM);
    const txt = new Float32Array(poolRows.length * DIM);
    poolRows.forEach((ref, i) => {
      const v = JSON.parse(byOffset.get(ref.offset)!.value!.toString());
      img.set(floats(v.image_embedding), i * DIM);
      txt.set(floats(v.text_embedding), i * DIM);
    });
    const wdir = join(dir, w.window_id);
    mkdirSync(wdir);
    await writeNpz(join(wdir, "window.npz"), {
      l14_img: { dtype: "<f4", shape: [poolRows.length, DIM], data: img },
      l14_txt: { dtype: "<f4", shape: [poolRows.length, DIM], data: txt },
    });
    const draws = makeDraws(poolRows.length, { seed: w.seed, draws: w.draws, batchSize: w.batch_size });
    writeFileSync(join(wdir, "draws.json"), JSON.stringify(draws.map((d) => d.map((b) => Array.from(b)))));
    const code = await main([
      "node",
      "clipsieve",
      "score",
      "--embeddings",
      join(wdir, "window.npz"),
      "--partitions",
      join(wdir, "draws.json"),
      "--out",
      join(wdir, "scores.jsonl"),
    ]);
    assert.equal(code, 0);
    const offline = readFileSync(join(wdir, "scores.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { s_clip_loss: number; clip_score: number });
    members.forEach((m, row) => {
      const streamed = byCoord.get(`${m.partition}/${m.offset}`)!;
      assert.equal(streamed.window_id, w.window_id);
      for (const score of ["s_clip_loss", "clip_score"] as const) {
        const diff = Math.abs(streamed.scores[score]! - offline[row]![score]);
        worst = Math.max(worst, diff);
        assert.ok(diff <= 1e-6, `${w.window_id} row ${row} ${score}: ${diff}`);
      }
      compared++;
    });
  }
  assert.equal(compared, rows.length, "every record was in exactly one window");
  t.diagnostic(`${manifests.length} windows, worst |streamed - offline| ${worst}`);

  // Accepted: exactly the uids whose recorded scores pass every recorded threshold.
  const passing = records
    .filter((r) =>
      Object.entries(r.thresholds).every(
        ([key, min]) => min !== null && r.scores[key.slice(key.indexOf(":") + 1)]! >= min,
      ),
    )
    .map((r) => r.uid)
    .sort();
  const acceptedUids = accepted.map((m) => m.key).sort();
  assert.ok(passing.length > 20 && passing.length < rows.length, `${passing.length} pass`);
  assert.deepEqual(acceptedUids, passing);
});

test("load --format avro writes registry-framed records the decoder reads back", async () => {
  const registry = await startSchemaRegistry();
  try {
    const dir = mkdtempSync(join(tmpdir(), "clipsieve-load-avro-"));
    const pairs = syntheticPairs(20, DIM, 60);
    await writeTable(join(dir, "shard.parquet"), { uid: pairs.map((p) => p.uid) });
    const matrix = (pick: (p: (typeof pairs)[number]) => number[]) => ({
      dtype: "<f4",
      shape: [pairs.length, DIM],
      data: Float32Array.from(pairs.flatMap(pick)),
    });
    await writeNpz(join(dir, "shard.npz"), {
      b32_img: matrix((p) => p.image),
      b32_txt: matrix((p) => p.text),
    });
    const topic = uniqueName("pool-avro");
    const code = await main([
      ...["node", "clipsieve", "load", "--brokers", testBrokers().join(","), "--datacomp", dir],
      ...["--topic", topic, "--image-key", "b32_img", "--text-key", "b32_txt", "--format", "avro"],
      ...["--schema-registry", registry.url],
    ]);
    assert.equal(code, 0);
    const msgs = await readAll(testKafka(), topic, { expected: pairs.length });
    const decoder = await createDecoder({
      format: "avro",
      schemaRegistryUrl: registry.url,
      expectedDim: DIM,
    });
    try {
      for (const m of msgs) {
        const d = await decoder.decode({
          source: { topic, partition: m.partition, offset: m.offset },
          key: null,
          value: m.value,
          headers: {},
          timestamp: "0",
        });
        const p = pairs[Number(m.offset)]!;
        assert.equal(d.failure, undefined);
        assert.deepEqual([m.key, d.uid, d.text, d.url], [p.uid, p.uid, undefined, undefined]);
        assert.deepEqual(d.imageEmbedding, Float32Array.from(p.image));
      }
    } finally {
      await decoder.close();
    }
  } finally {
    await registry.close();
  }
});

test("load --partition-by lsh puts near-copies in their original's partition and spreads the rest", async () => {
  const dir = mkdtempSync(join(tmpdir(), "clipsieve-load-lsh-"));
  const pairs = syntheticPairs(200, DIM, 61);
  const rand = mulberry32(3);
  // Rows 100..199 copy rows 0..99 (a small nudge: cosine about 0.999).
  const image = pairs.map((p, i) =>
    i < 100 ? p.image : pairs[i - 100].image.map((x) => x + 0.01 * (rand() - 0.5)),
  );
  await writeTable(join(dir, "shard.parquet"), { uid: pairs.map((p) => p.uid) });
  const matrix = (rows: number[][]) => ({
    dtype: "<f4",
    shape: [rows.length, DIM],
    data: Float32Array.from(rows.flat()),
  });
  await writeNpz(join(dir, "shard.npz"), {
    l14_img: matrix(image),
    l14_txt: matrix(pairs.map((p) => p.text)),
  });
  const topic = uniqueName("pool-lsh");
  const code = await main([
    ...["node", "clipsieve", "load", "--brokers", testBrokers().join(","), "--datacomp", dir],
    ...["--topic", topic, "--partitions", "4", "--partition-by", "lsh"],
  ]);
  assert.equal(code, 0);
  const msgs = await readAll(testKafka(), topic, { expected: pairs.length });
  const partition = new Map(msgs.map((m) => [m.key as string, m.partition]));
  const apart = pairs.slice(100).filter((p, i) => partition.get(p.uid) !== partition.get(pairs[i].uid));
  assert.ok(apart.length <= 3, `${apart.length} of 100 copies in another partition than their original`);
  const used = new Set(partition.values());
  assert.ok(used.size >= 3, `records spread over ${used.size} partitions`);
});
