import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { tableFromIPC } from "apache-arrow";
import * as pq from "parquet-wasm/node";
import { buildProgram } from "../../src/cli/main.ts";
import { writeNpz, writeTable } from "../../src/io/index.ts";
import {
  assertClose,
  f32,
  type GoldenCase,
  goldenPath,
  loadCase,
  writePartitions,
  writeShard,
  writeTargetNpy,
} from "./golden-fixtures.ts";

const TOL = 1e-6;
let dir: string;

async function cli(...args: string[]): Promise<string[]> {
  const printed: string[] = [];
  const log = console.log;
  console.log = (...parts: unknown[]) => printed.push(parts.join(" "));
  try {
    await (await buildProgram()).parseAsync(["node", "clipsieve", ...args]);
  } finally {
    console.log = log;
  }
  return printed;
}

function readJsonl(text: string): Record<string, unknown>[] {
  return text
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => JSON.parse(line));
}

function column(rows: Record<string, unknown>[], name: string): number[] {
  return rows.map((r) => r[name] as number);
}

function scoreArgs(c: GoldenCase, shard: string, out: string): string[] {
  return ["score", "--embeddings", shard, "--tau", String(c.tau), "--out", out];
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "clipsieve-score-cmd-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test("case1 (golden case file as --partitions) -> .jsonl within 1e-6", async () => {
  const c = loadCase("case1");
  const shard = await writeShard(dir, c);
  const out = join(dir, "case1.jsonl");
  await cli(...scoreArgs(c, shard, out), "--partitions", goldenPath("case1"));
  const rows = readJsonl(await readFile(out, "utf8"));
  assert.equal(rows.length, c.n);
  assert.deepEqual(
    rows.map((r) => r.row),
    Array.from({ length: c.n }, (_, i) => i),
  );
  assert.ok(rows.every((r) => r.shard === "case1.npz"));
  assert.ok(rows.every((r) => !("normsim_2" in r) && !("uid" in r)));
  assertClose(column(rows, "clip_score"), c.expected.clip_score, TOL, "case1 clip_score");
  assertClose(column(rows, "s_clip_loss"), c.expected.s_clip_loss, TOL, "case1 s_clip_loss");
});

test("case2 (N=B=1024, D=512) -> .parquet read with parquet-wasm, within 1e-6", async () => {
  const c = loadCase("case2");
  const shard = await writeShard(dir, c);
  const out = join(dir, "case2.parquet");
  await cli(...scoreArgs(c, shard, out), "--partitions", await writePartitions(dir, c));
  const table = tableFromIPC(pq.readParquet(new Uint8Array(await readFile(out))).intoIPCStream());
  assert.equal(table.numRows, c.n);
  assertClose(table.getChild("clip_score")!.toArray(), c.expected.clip_score, TOL, "case2 clip_score");
  assertClose(table.getChild("s_clip_loss")!.toArray(), c.expected.s_clip_loss, TOL, "case2 s_clip_loss");
  assert.equal(table.getChild("row")!.get(1023), 1023);
});

test("--normaliser pool: a shard of exactly b rows is one batch (case2's golden values); a larger b scales R up", async () => {
  const c = loadCase("case2");
  const shard = await writeShard(dir, c);
  const same = join(dir, "case2-pool.jsonl");
  await cli(...scoreArgs(c, shard, same), "--normaliser", "pool", "--batch-size", String(c.n));
  const rows = readJsonl(await readFile(same, "utf8"));
  assertClose(column(rows, "s_clip_loss"), c.expected.s_clip_loss, TOL, "case2 pool s_clip_loss");
  // Scaled to a batch of 4n rows the off-diagonal terms weigh (4n - 1) / (n - 1) > 1: every R grows,
  // every s-CLIPLoss falls, and by at most tau * log((4n - 1) / (n - 1)) (the most an R can grow).
  const larger = join(dir, "case2-pool-4n.jsonl");
  await cli(...scoreArgs(c, shard, larger), "--normaliser", "pool", "--batch-size", String(4 * c.n));
  const scaled = column(readJsonl(await readFile(larger, "utf8")), "s_clip_loss");
  const bound = c.tau * Math.log((4 * c.n - 1) / (c.n - 1));
  scaled.forEach((v, i) => {
    const drop = c.expected.s_clip_loss[i] - v;
    assert.ok(drop > 0 && drop <= bound + 1e-6, `row ${i}: drop ${drop}, bound ${bound}`);
  });
  await assert.rejects(
    cli(...scoreArgs(c, shard, larger), "--normaliser", "pool", "--partitions", goldenPath("case2")),
    /no draws for --partitions to fix/,
  );
});

test("case3 with a target .npy -> .arrow within 1e-6, then the two-stage select matches exactly", async () => {
  const c = loadCase("case3");
  const shard = await writeShard(dir, c);
  const target = await writeTargetNpy(dir, c);
  const out = join(dir, "case3.arrow");
  const partitions = await writePartitions(dir, c);
  await cli(...scoreArgs(c, shard, out), "--partitions", partitions, "--target", target);
  const table = tableFromIPC(new Uint8Array(await readFile(out)));
  for (const name of ["clip_score", "s_clip_loss", "normsim_2", "normsim_inf"]) {
    assertClose(table.getChild(name)!.toArray(), c.expected[name], TOL, `case3 ${name}`);
  }

  const want = c.expected.two_stage_select!;
  assert.deepEqual(
    [want.score1, want.fraction1, want.score2, want.fraction2],
    ["s_clip_loss", 0.3, "normsim_inf", 0.2],
  );
  const kept = join(dir, "case3-kept.jsonl");
  const printed = await cli(
    "select",
    "--scores",
    out,
    "--keep",
    "s_clip_loss=0.3",
    "--then",
    "normsim_inf=0.2",
    "--out",
    kept,
  );
  const rows = readJsonl(await readFile(kept, "utf8"));
  assert.deepEqual(
    rows.map((r) => r.row),
    want.indices,
  );
  assert.ok(rows.every((r) => r.shard === "case3.npz"));
  assert.match(printed.join("\n"), new RegExp(`N=400 kept=${want.indices.length}\\b`));
});

test("seeded draws: shard i of a run is reproduced alone with --seed s+i; uids line up", async () => {
  const c = loadCase("case1");
  const a = join(dir, "seeded-a.npz");
  const b = join(dir, "seeded-b.npz");
  await writeNpz(a, { l14_img: f32(c.inputs.img), l14_txt: f32(c.inputs.txt) });
  await writeNpz(b, {
    l14_img: f32(c.inputs.img.slice(100, 400)),
    l14_txt: f32(c.inputs.txt.slice(100, 400)),
  });
  const uid = (i: number) => i.toString(16).padStart(32, "0");
  const metaA = join(dir, "seeded-a.parquet");
  const metaB = join(dir, "seeded-b.parquet");
  await writeTable(metaA, { uid: Array.from({ length: 640 }, (_, i) => uid(i)) });
  await writeTable(metaB, { uid: Array.from({ length: 300 }, (_, i) => uid(5000 + i)) });
  const common = ["--batch-size", "128", "--draws", "2"];
  const both = join(dir, "seeded-both.jsonl");
  await cli(
    "score",
    "--embeddings",
    a,
    b,
    "--metadata",
    metaA,
    metaB,
    ...common,
    "--seed",
    "7",
    "--out",
    both,
  );
  const rows = readJsonl(await readFile(both, "utf8"));
  assert.equal(rows.length, 940);
  assert.deepEqual(rows[0], { ...rows[0], row: 0, shard: "seeded-a.npz", uid: uid(0) });
  assert.deepEqual(rows[640], { ...rows[640], row: 0, shard: "seeded-b.npz", uid: uid(5000) });
  // CLIPScore needs no draws: it is the golden one whatever the seed
  assertClose(column(rows.slice(0, 640), "clip_score"), c.expected.clip_score, TOL, "seeded clip_score");

  const alone = join(dir, "seeded-b-alone.jsonl");
  await cli("score", "--embeddings", b, ...common, "--seed", "8", "--out", alone);
  assert.deepEqual(
    column(readJsonl(await readFile(alone, "utf8")), "s_clip_loss"),
    column(rows.slice(640), "s_clip_loss"),
  );
  await cli("score", "--embeddings", b, ...common, "--seed", "7", "--out", alone);
  assert.notDeepEqual(
    column(readJsonl(await readFile(alone, "utf8")), "s_clip_loss"),
    column(rows.slice(640), "s_clip_loss"),
  );
});
