import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { buildProgram } from "../../src/cli/main.ts";
import { isClipsieveError } from "../../src/common/errors.ts";

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "clipsieve-select-cmd-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

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

const uid = (i: number) =>
  (BigInt(i) * 0x9e3779b97f4a7c15n + 0x1234n).toString(16).padStart(32, "f").slice(-32);

/** A scores table as `clipsieve score` writes it, in JSON lines, written by hand here. */
async function writeScores(name: string, shard: string, sClipLoss: number[]): Promise<string> {
  const path = join(dir, name);
  const lines = sClipLoss.map((s, row) =>
    JSON.stringify({ row, shard, uid: uid(shard.length * 100 + row), clip_score: 0.3, s_clip_loss: s }),
  );
  await writeFile(path, `${lines.join("\n")}\n`);
  return path;
}

/** An independent reader for DataComp's uid .npy: header, then (u8, u8) little-endian records. */
function parseUidNpy(bytes: Buffer): string[] {
  assert.equal(bytes.subarray(0, 6).toString("latin1"), "\x93NUMPY");
  const major = bytes[6];
  const headerLen = major === 1 ? bytes.readUInt16LE(8) : bytes.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = bytes.subarray(start, start + headerLen).toString("latin1");
  assert.equal((header.match(/'<u8'/g) ?? []).length, 2, header);
  assert.match(header, /'fortran_order': False/);
  const count = Number(/'shape': \((\d+),\)/.exec(header)![1]);
  const data = bytes.subarray(start + headerLen);
  assert.equal(data.length, count * 16);
  return Array.from(
    { length: count },
    (_, i) =>
      data
        .readBigUInt64LE(i * 16)
        .toString(16)
        .padStart(16, "0") +
      data
        .readBigUInt64LE(i * 16 + 8)
        .toString(16)
        .padStart(16, "0"),
  );
}

test("select ranks all score files as one pool and writes DataComp's sorted uid .npy", async () => {
  // shard a: 0.9 0.1 0.8 0.2 ; shard bb: 0.7 0.6 0.05 0.85 -> N=8, top int(8*0.5)=4: a0 .9, bb3 .85, a2 .8, bb0 .7
  const a = await writeScores("a.jsonl", "a", [0.9, 0.1, 0.8, 0.2]);
  const b = await writeScores("b.jsonl", "bb", [0.7, 0.6, 0.05, 0.85]);
  const out = join(dir, "uids.npy");
  const printed = await cli("select", "--scores", a, b, "--keep", "s_clip_loss=0.5", "--out", out);
  const want = [uid(100), uid(102), uid(200), uid(203)].sort();
  assert.deepEqual(parseUidNpy(await readFile(out)), want);
  assert.match(printed.join("\n"), /N=8 kept=4 /);
});

test("thresholds filter the --keep survivors and the jsonl names row and shard", async () => {
  const a = await writeScores("t.jsonl", "a", [0.9, 0.1, 0.8, 0.2, 0.5]);
  const out = join(dir, "rows.jsonl");
  // top int(5 * 0.6) = 3 by s_clip_loss: rows 0, 2, 4; of those clip_score >= 0.3 and s_clip_loss >= 0.6
  await cli(
    "select",
    "--scores",
    a,
    "--keep",
    "s_clip_loss=0.6",
    "--threshold",
    "s_clip_loss>=0.6",
    "--threshold",
    "clip_score>=0.3",
    "--out",
    out,
  );
  const lines = (await readFile(out, "utf8"))
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  assert.deepEqual(lines, [
    { row: 0, shard: "a", uid: uid(100) },
    { row: 2, shard: "a", uid: uid(102) },
  ]);
  await cli("select", "--scores", a, "--threshold", "clip_score>=0.31", "--out", out);
  assert.equal(await readFile(out, "utf8"), "");
});

test("select errors: no uid column for .npy, unknown score, bad rule, bad --out", async () => {
  const noUid = join(dir, "nouid.jsonl");
  await writeFile(noUid, '{"row":0,"s_clip_loss":0.5}\n{"row":1,"s_clip_loss":0.2}\n');
  await assert.rejects(
    cli("select", "--scores", noUid, "--keep", "s_clip_loss=0.5", "--out", join(dir, "x.npy")),
    (e) =>
      isClipsieveError(e, "INPUT_FILE_INVALID") && /nouid\.jsonl has no string "uid" column/.test(e.message),
  );
  await assert.rejects(
    cli("select", "--scores", noUid, "--keep", "normsim_inf=0.5", "--out", join(dir, "x.jsonl")),
    (e) => isClipsieveError(e, "CONFIG_INVALID") && /no score column "normsim_inf"/.test(e.message),
  );
  await assert.rejects(
    cli("select", "--scores", noUid, "--keep", "s_clip_loss=30%", "--out", join(dir, "x.jsonl")),
    (e) => isClipsieveError(e, "CONFIG_INVALID"),
  );
  await assert.rejects(
    cli("select", "--scores", noUid, "--keep", "s_clip_loss=0.3", "--out", join(dir, "x.csv")),
    (e) => isClipsieveError(e, "CONFIG_INVALID"),
  );
});

test("select --dedup drops later near-copies in pool order, as run --dedup does; --embeddings is required", async () => {
  const { writeNpy } = await import("../../src/io/npy.ts");
  const D = 8;
  const base = (k: number) => Array.from({ length: D }, (_, d) => (d === k ? 1 : 0.05 * ((k + d) % 3)));
  const near = (v: number[], k: number) => v.map((x, d) => x + (d === (k + 1) % D ? 0.05 : 0));
  // rows: A, B, A', C, B', A'' (primes: near-copies, cosine > 0.99)
  const rows = [base(0), base(1), near(base(0), 3), base(2), near(base(1), 5), near(base(0), 6)];
  const shard = join(dir, "e.npy");
  await writeFile(
    shard,
    writeNpy({ dtype: "<f4", shape: [rows.length, D], data: Float32Array.from(rows.flat()) }),
  );
  const scores = join(dir, "e.jsonl");
  await writeFile(
    scores,
    `${rows.map((_, row) => JSON.stringify({ row, shard: "e.npy", uid: uid(900 + row), clip_score: 0.3, s_clip_loss: 1 - row / 10 })).join("\n")}\n`,
  );
  const out = join(dir, "dedup.jsonl");
  const printed = await cli(
    "select",
    "--scores",
    scores,
    "--threshold",
    "clip_score>=0",
    "--dedup",
    "--embeddings",
    shard,
    "--out",
    out,
  );
  const kept = (await readFile(out, "utf8"))
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l).row);
  assert.deepEqual(kept, [0, 1, 3]);
  assert.match(printed.join("\n"), /dedup: 3 near_duplicate, 0 near_reference rejected of 6 selected/);
  await assert.rejects(
    cli("select", "--scores", scores, "--threshold", "clip_score>=0", "--dedup", "--out", out),
    (err: unknown) => isClipsieveError(err) && /--embeddings/.test((err as Error).message),
  );
});
