import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { buildProgram } from "../../src/cli/main.ts";
import { isClipsieveError } from "../../src/common/errors.ts";
import { readNpz, writeNpy, writeNpz } from "../../src/io/index.ts";
import { createScoringEngine, type ScoringEngine } from "../../src/score/engine.ts";
import { loadTarget, makeTargetSet, readTargetSet, writeTargetSet } from "../../src/score/target-set.ts";

const golden = new URL("../../../shared/golden/", import.meta.url);
const case3 = JSON.parse(readFileSync(new URL("case3.json", golden), "utf8"));
const M: number = case3.inputs.target.length;
const D: number = case3.d;
const targetRows = (): Float32Array => Float32Array.from(case3.inputs.target.flat());

let dir: string;
let engine: ScoringEngine;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "clipsieve-target-"));
  engine = await createScoringEngine({ device: "cpu" });
});
after(async () => {
  await engine.close();
  await rm(dir, { recursive: true, force: true });
});

/** T^T T in float64, straight from the definition. */
function gramReference(t: Float32Array, rows: number, dim: number): Float64Array {
  const g = new Float64Array(dim * dim);
  for (let m = 0; m < rows; m++) {
    const row = t.subarray(m * dim, (m + 1) * dim);
    for (let a = 0; a < dim; a++) {
      const ra = row[a];
      for (let b = 0; b < dim; b++) g[a * dim + b] += ra * row[b];
    }
  }
  return g;
}

function hashAsDocumented(model: string, dim: number, rows: number, embeddings: Float32Array): string {
  return createHash("sha256")
    .update(Buffer.from(`clipsieve-target-set\u0000${model}\u0000${dim}\u0000${rows}\u0000`, "utf8"))
    .update(Buffer.from(embeddings.buffer, embeddings.byteOffset, embeddings.byteLength))
    .digest("hex");
}

test("write then read round-trips rows, gram and manifest; hash as documented", async () => {
  const path = join(dir, "case3.target.npz");
  const rows = targetRows();
  const target = await makeTargetSet(engine, "apple/DFN2B-CLIP-ViT-B-16", rows, M, D);
  const createdAt = new Date("2025-01-02T03:04:05.000Z");
  const manifest = await writeTargetSet(path, target, { sources: ["/data/in1k/part-0.npy"], createdAt });
  const loaded = await readTargetSet(path);

  assert.equal(loaded.model, "apple/DFN2B-CLIP-ViT-B-16");
  assert.equal(loaded.rows, M);
  assert.equal(loaded.dim, D);
  assert.deepEqual(loaded.embeddings, rows);
  const want = gramReference(rows, M, D);
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(loaded.gram[i] - want[i]));
  assert.ok(worst < 1e-4, `gram off by ${worst}`);
  assert.equal(loaded.contentHash, hashAsDocumented("apple/DFN2B-CLIP-ViT-B-16", D, M, rows));
  assert.deepEqual(loaded.manifest, manifest);
  assert.equal(manifest.createdAt, "2025-01-02T03:04:05.000Z");
  assert.equal(manifest.version, 2);
  assert.equal(manifest.storage, "float32");
  assert.equal(manifest.index, undefined);
  assert.deepEqual(manifest.sources, ["part-0.npy"]);
});

test("a flipped byte in the stored file is refused", async () => {
  const path = join(dir, "corrupt.target.npz");
  const rows = targetRows();
  await writeTargetSet(path, await makeTargetSet(engine, "m", rows, M, D));
  const bytes = await readFile(path);
  // Find row 7's bytes in the (stored) zip and change one mantissa bit of its first value.
  const needle = Buffer.from(rows.buffer, 7 * D * 4, D * 4);
  const at = bytes.indexOf(needle);
  assert.ok(at > 0, "embeddings are stored uncompressed");
  bytes[at] ^= 0x01;
  await writeFile(path, bytes);
  await assert.rejects(readTargetSet(path), (e) => {
    assert.ok(isClipsieveError(e), String(e));
    // a zip reader that checks CRCs may catch it first; either way the file is refused with a clear message
    assert.match(e.message, /corrupt\.target\.npz/);
    return true;
  });
});

test("rows or gram edited behind the manifest's back fail their hashes", async () => {
  const path = join(dir, "edited.target.npz");
  await writeTargetSet(path, await makeTargetSet(engine, "m", targetRows(), M, D));
  const members = await readNpz(path, ["embeddings", "gram", "manifest"]);
  const edited = join(dir, "edited-rows.target.npz");
  const rows = Float32Array.from(members.embeddings.data as Float32Array);
  rows[3 * D + 5] = -rows[3 * D + 5];
  await writeNpz(edited, { ...members, embeddings: { ...members.embeddings, data: rows } });
  await assert.rejects(
    readTargetSet(edited),
    (e) =>
      isClipsieveError(e, "TARGET_SET_INVALID") &&
      /edited-rows\.target\.npz: content hash mismatch/.test(e.message),
  );
  const gram = Float32Array.from(members.gram.data as Float32Array);
  gram[7] += 1e-3;
  await writeNpz(edited, { ...members, gram: { ...members.gram, data: gram } });
  await assert.rejects(
    readTargetSet(edited),
    (e) => isClipsieveError(e, "TARGET_SET_INVALID") && /gram .* hash mismatch/.test(e.message),
  );
});

test("a newer format version and a missing manifest are refused", async () => {
  const path = join(dir, "v99.target.npz");
  const manifest = new TextEncoder().encode(
    JSON.stringify({ format: "clipsieve.target-set", version: 99, model: "m", dim: 2, rows: 1 }),
  );
  await writeNpz(path, {
    embeddings: { dtype: "<f4", shape: [1, 2], data: new Float32Array([1, 0]) },
    gram: { dtype: "<f4", shape: [2, 2], data: new Float32Array([1, 0, 0, 0]) },
    manifest: { dtype: "|u1", shape: [manifest.length], data: manifest },
  });
  await assert.rejects(
    readTargetSet(path),
    (e) => isClipsieveError(e, "TARGET_SET_INVALID") && /version 99/.test(e.message),
  );
  const plain = join(dir, "plain.npz");
  await writeNpz(plain, { l14_img: { dtype: "<f4", shape: [1, 2], data: new Float32Array([1, 0]) } });
  await assert.rejects(
    readTargetSet(plain),
    (e) =>
      isClipsieveError(e, "TARGET_SET_INVALID") && /plain\.npz: not a target-set artifact/.test(e.message),
  );
});

test("loadTarget takes a bare .npy: normalises rows, model unknown, gram computed", async () => {
  const path = join(dir, "bare.npy");
  // rows (3,4) and (0,2): normalised to (0.6,0.8) and (0,1); T^T T = [[0.36,0.48],[0.48,1.64]]
  await writeFile(path, writeNpy({ dtype: "<f4", shape: [2, 2], data: new Float32Array([3, 4, 0, 2]) }));
  const t = await loadTarget(path, { engine });
  assert.equal(t.model, "unknown");
  assert.equal(t.manifest, undefined);
  const close = (got: ArrayLike<number>, want: number[]) => {
    for (const [i, w] of want.entries()) assert.ok(Math.abs(got[i] - w) < 1e-6, `${got[i]} vs ${w}`);
  };
  close(t.embeddings, [0.6, 0.8, 0, 1]);
  close(t.gram, [0.36, 0.48, 0.48, 1.64]);
});

test("`target build` stacks files in order, normalises, and names a bad file and row", async () => {
  const a = join(dir, "a.npy");
  const b = join(dir, "b.npz");
  await writeFile(a, writeNpy({ dtype: "<f4", shape: [1, 2], data: new Float32Array([0, 5]) }));
  await writeNpz(b, { l14_img: { dtype: "<f4", shape: [2, 2], data: new Float32Array([3, 4, -2, 0]) } });
  const out = join(dir, "built.target.npz");
  const printed: string[] = [];
  const log = console.log;
  console.log = (...p: unknown[]) => printed.push(p.join(" "));
  try {
    await (await buildProgram()).parseAsync([
      "node",
      "clipsieve",
      "target",
      "build",
      "--embeddings",
      a,
      b,
      "--key",
      "l14_img",
      "--model",
      "openai/clip-vit-large-patch14",
      "--out",
      out,
    ]);
  } finally {
    console.log = log;
  }
  const t = await readTargetSet(out);
  assert.deepEqual(Array.from(t.embeddings), [0, 1, 0.6000000238418579, 0.800000011920929, -1, 0]);
  assert.match(printed.join("\n"), /M=3 D=2/);
  assert.match(printed.join("\n"), new RegExp(t.contentHash));

  const bad = join(dir, "bad.npy");
  await writeFile(
    bad,
    writeNpy({ dtype: "<f4", shape: [3, 2], data: new Float32Array([1, 0, 0, 1, Infinity, 0]) }),
  );
  await assert.rejects(
    (await buildProgram()).parseAsync([
      "node",
      "clipsieve",
      "target",
      "build",
      "--embeddings",
      a,
      bad,
      "--model",
      "x",
      "--out",
      out,
    ]),
    (e) => isClipsieveError(e, "EMBEDDING_NOT_FINITE") && /bad\.npy[\s\S]*row 2\b/.test(e.message),
  );
});

/** Rows as sorted strings: the same set of rows whatever order a build stored them in. */
const rowSet = (data: ArrayLike<number>, dim: number): string[] =>
  Array.from({ length: data.length / dim }, (_, r) =>
    Array.from({ length: dim }, (_, d) => data[r * dim + d].toFixed(6)).join(","),
  ).sort();

test("`target build --clusters --storage float16`: half rows in cluster order, the index, hashes checked", async () => {
  const rows = 64;
  const dim = 4;
  // Two groups of rows: around (1,0,0,0) and around (0,0,1,0).
  const values = new Float32Array(rows * dim);
  for (let r = 0; r < rows; r++) {
    const axis = r % 2 === 0 ? 0 : 2;
    values[r * dim + axis] = 1;
    values[r * dim + ((axis + 1) % dim)] = ((r % 7) - 3) / 20;
  }
  const input = join(dir, "shard.npy");
  await writeFile(input, writeNpy({ dtype: "<f4", shape: [rows, dim], data: values }));
  const out = join(dir, "indexed.target.npz");
  const printed: string[] = [];
  const log = console.log;
  console.log = (...p: unknown[]) => printed.push(p.join(" "));
  try {
    await (await buildProgram()).parseAsync(
      [
        "target",
        "build",
        "--embeddings",
        input,
        "--model",
        "m",
        "--out",
        out,
        "--clusters",
        "2",
        "--probes",
        "1",
      ].concat(["--storage", "float16", "--progress", "none"]),
      { from: "user" },
    );
  } finally {
    console.log = log;
  }
  assert.match(printed.join("\n"), /rows stored as float16 .* index: 2 clusters .* a record visits 1/);
  const t = await readTargetSet(out);
  assert.ok(t.embeddings instanceof Uint16Array, "float16 rows stay half precision in memory");
  assert.equal(t.manifest?.storage, "float16");
  assert.deepEqual(t.manifest?.index && { ...t.manifest.index, sha256: "" }, {
    kind: "ivf",
    clusters: 2,
    probes: 1,
    iterations: 8,
    seed: 0,
    sha256: "",
  });
  // numpy's view of the file: the float16 rows are the normalised input rows, rounded, in some order.
  const members = await readNpz(out, ["embeddings", "ivf_offsets"]);
  assert.equal(members.embeddings.dtype, "<f2");
  const normalised = values.map((v, i) => {
    const r = Math.floor(i / dim);
    const norm = Math.hypot(...values.subarray(r * dim, (r + 1) * dim));
    return v / norm;
  });
  const rounded = new Float32Array(normalised.length);
  for (let i = 0; i < rounded.length; i++) rounded[i] = Math.fround(normalised[i]);
  const asHalf = (x: number) => {
    // float16 rounding, independently of the code under test: 11 significant bits.
    if (x === 0) return 0;
    const e = Math.floor(Math.log2(Math.abs(x)));
    const step = 2 ** (e - 10);
    return Math.round(x / step) * step;
  };
  assert.deepEqual(rowSet(members.embeddings.data as Float32Array, dim), rowSet(rounded.map(asHalf), dim));
  // Cluster order: each cluster holds one group (even rows around axis 0, odd rows around axis 2).
  const offsets = members.ivf_offsets.data as Int32Array;
  const half = members.embeddings.data as Float32Array;
  for (let k = 0; k < 2; k++) {
    const axes = new Set<number>();
    for (let r = offsets[k]; r < offsets[k + 1]; r++) axes.add(Math.abs(half[r * dim]) > 0.5 ? 0 : 2);
    assert.equal(axes.size, 1, `cluster ${k} mixes groups`);
  }
  // A run may ask for more probes than the artifact's default.
  assert.equal((await readTargetSet(out, { probes: 2 })).index?.probes, 2);
  assert.equal((await loadTarget(out, { probes: 2 })).index?.probes, 2);

  // A flipped value in the index is refused.
  const all = await readNpz(out, ["embeddings", "gram", "manifest", "ivf_centroids", "ivf_offsets"], {
    halfBits: true,
  });
  const centroids = Float32Array.from(all.ivf_centroids.data as Float32Array);
  centroids[0] += 0.5;
  const edited = join(dir, "edited-index.target.npz");
  await writeNpz(edited, { ...all, ivf_centroids: { ...all.ivf_centroids, data: centroids } });
  await assert.rejects(
    readTargetSet(edited),
    (e) => isClipsieveError(e, "TARGET_SET_INVALID") && /index hash mismatch/.test(e.message),
  );
});

test("a version 1 artifact (float32, no storage or index fields) still reads", async () => {
  const path = join(dir, "v1.target.npz");
  const rows = new Float32Array([0.6, 0.8, 0, 1]);
  const gram = new Float32Array([0.36, 0.48, 0.48, 1.64]);
  const manifest = new TextEncoder().encode(
    JSON.stringify({
      format: "clipsieve.target-set",
      version: 1,
      model: "m",
      dim: 2,
      rows: 2,
      createdAt: "2025-01-01T00:00:00.000Z",
      contentHash: hashAsDocumented("m", 2, 2, rows),
      gramSha256: createHash("sha256").update(Buffer.from(gram.buffer)).digest("hex"),
      sources: [],
    }),
  );
  await writeNpz(path, {
    embeddings: { dtype: "<f4", shape: [2, 2], data: rows },
    gram: { dtype: "<f4", shape: [2, 2], data: gram },
    manifest: { dtype: "|u1", shape: [manifest.length], data: manifest },
  });
  const t = await readTargetSet(path);
  assert.deepEqual(Array.from(t.embeddings), Array.from(rows));
  assert.equal(t.index, undefined);
});
