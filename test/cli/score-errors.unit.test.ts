import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { buildProgram } from "../../src/cli/main.ts";
import { type ErrorCode, isClipsieveError } from "../../src/common/errors.ts";
import { writeNpy, writeNpz, writeTable } from "../../src/io/index.ts";

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "clipsieve-score-err-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function cli(...args: string[]): Promise<void> {
  const log = console.log;
  console.log = () => {};
  try {
    await (await buildProgram()).parseAsync(["node", "clipsieve", ...args]);
  } finally {
    console.log = log;
  }
}

/** rows x dim of small distinct values (nonzero rows), optionally edited by `edit`. */
function matrix(rows: number, dim: number, edit?: (data: Float32Array) => void) {
  const data = Float32Array.from({ length: rows * dim }, (_, i) => Math.sin(i + 1));
  edit?.(data);
  return { dtype: "<f4", shape: [rows, dim], data };
}

async function shard(name: string, img: ReturnType<typeof matrix>, txt: ReturnType<typeof matrix>) {
  const path = join(dir, name);
  await writeNpz(path, { l14_img: img, l14_txt: txt });
  return path;
}

function rejectsWith(code: ErrorCode, pattern: RegExp) {
  return (e: unknown) => {
    assert.ok(isClipsieveError(e, code), `expected ${code}, got ${String(e)}`);
    assert.match(e.message, pattern);
    return true;
  };
}

const out = () => join(dir, "scores.jsonl");

test("image and text with different row counts", async () => {
  const s = await shard("rows.npz", matrix(4, 8), matrix(3, 8));
  await assert.rejects(
    cli("score", "--embeddings", s, "--out", out()),
    rejectsWith("INPUT_FILE_INVALID", /rows\.npz.*4 rows.*3/),
  );
});

test("image and text with different dimensions", async () => {
  const s = await shard("dims.npz", matrix(4, 8), matrix(4, 6));
  await assert.rejects(
    cli("score", "--embeddings", s, "--out", out()),
    rejectsWith("EMBEDDING_DIMENSION_MISMATCH", /dims\.npz/),
  );
});

test("a NaN is named by file, key and row", async () => {
  const s = await shard(
    "nan.npz",
    matrix(5, 8),
    matrix(5, 8, (d) => {
      d[2 * 8 + 3] = Number.NaN;
    }),
  );
  await assert.rejects(
    cli("score", "--embeddings", s, "--out", out()),
    rejectsWith("EMBEDDING_NOT_FINITE", /nan\.npz.*l14_txt[\s\S]*row 2\b/),
  );
});

test("a zero vector is named by file and row", async () => {
  const s = await shard(
    "zero.npz",
    matrix(5, 8, (d) => d.fill(0, 4 * 8, 5 * 8)),
    matrix(5, 8),
  );
  await assert.rejects(
    cli("score", "--embeddings", s, "--out", out()),
    rejectsWith("EMBEDDING_ZERO", /zero\.npz.*l14_img[\s\S]*row 4\b/),
  );
});

test("a target of another dimension", async () => {
  const s = await shard("ok.npz", matrix(6, 8), matrix(6, 8));
  const target = join(dir, "target4.npy");
  await writeFile(target, writeNpy(matrix(3, 4)));
  await assert.rejects(
    cli("score", "--embeddings", s, "--target", target, "--out", out()),
    rejectsWith("TARGET_MISMATCH", /target4\.npy is 4-dimensional.*ok\.npz.*8-dimensional/),
  );
});

test("a target made with another teacher", async () => {
  const s = await shard("ok2.npz", matrix(6, 8), matrix(6, 8));
  const raw = join(dir, "target8.npy");
  await writeFile(raw, writeNpy(matrix(3, 8)));
  const artifact = join(dir, "b32.target.npz");
  await cli(
    "target",
    "build",
    "--embeddings",
    raw,
    "--model",
    "openai/clip-vit-base-patch32",
    "--out",
    artifact,
  );
  await assert.rejects(
    cli(
      "score",
      "--embeddings",
      s,
      "--target",
      artifact,
      "--model",
      "openai/clip-vit-large-patch14",
      "--out",
      out(),
    ),
    rejectsWith("TARGET_MISMATCH", /openai\/clip-vit-base-patch32.*openai\/clip-vit-large-patch14/),
  );
  // the same teacher is accepted
  await cli(
    "score",
    "--embeddings",
    s,
    "--target",
    artifact,
    "--model",
    "openai/clip-vit-base-patch32",
    "--out",
    out(),
  );
});

test("--partitions with two shards, and metadata that does not line up", async () => {
  const a = await shard("p0.npz", matrix(4, 8), matrix(4, 8));
  const b = await shard("p1.npz", matrix(4, 8), matrix(4, 8));
  const draws = join(dir, "draws.json");
  await writeFile(draws, JSON.stringify([[[0, 1, 2, 3]]]));
  await assert.rejects(
    cli("score", "--embeddings", a, b, "--partitions", draws, "--out", out()),
    rejectsWith("CONFIG_INVALID", /--partitions.*2 --embeddings shards/),
  );
  const meta = join(dir, "p0.parquet");
  await writeTable(meta, { uid: ["0".repeat(32), "1".repeat(32), "2".repeat(32)] });
  await assert.rejects(
    cli("score", "--embeddings", a, "--metadata", meta, "--out", out()),
    rejectsWith("INPUT_FILE_INVALID", /p0\.parquet has 3 rows.*p0\.npz has 4/),
  );
});

test("flag validation", async () => {
  const s = join(dir, "never-read.npz");
  for (const [flag, value] of [
    ["--tau", "0"],
    ["--batch-size", "1.5"],
    ["--draws", "0"],
    ["--seed", "-1"],
    ["--device", "tpu"],
    ["--out", join(dir, "scores.csv")],
  ]) {
    const args = ["score", "--embeddings", s, "--out", out(), flag, value];
    await assert.rejects(cli(...args), rejectsWith("CONFIG_INVALID", new RegExp(flag)));
  }
});
