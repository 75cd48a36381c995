import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import * as arrow from "apache-arrow";
import { isClipsieveError } from "../../src/common/errors.ts";
import { listColumnToMatrix } from "../../src/io/arrow-columns.ts";
import { readEmbeddingMatrix, readEmbeddingShape } from "../../src/io/embeddings.ts";
import { writeNpy } from "../../src/io/npy.ts";
import { writeNpz } from "../../src/io/npz.ts";

// Fixtures were written by numpy and pyarrow (fixtures/make_fixtures.py).
const fixtures = fileURLToPath(new URL("./fixtures/", import.meta.url));
const work = mkdtempSync(join(tmpdir(), "clipsieve-emb-"));
after(() => rmSync(work, { recursive: true, force: true }));

const grid = (count: number) => Array.from({ length: count }, (_, k) => k * 0.125 - 1);
const f32 = (values: number[]) => values.map(Math.fround);

function assertMatrix(
  actual: { rows: number; dim: number; data: Float32Array },
  rows: number,
  dim: number,
  values: number[],
) {
  assert.ok(actual.data instanceof Float32Array);
  assert.equal(actual.rows, rows);
  assert.equal(actual.dim, dim);
  assert.deepEqual(Array.from(actual.data), values);
}

async function rejectsInput(promise: Promise<unknown>, ...fragments: string[]) {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(isClipsieveError(err, "INPUT_FILE_INVALID"), `expected INPUT_FILE_INVALID, got ${String(err)}`);
    for (const fragment of fragments)
      assert.ok(err.message.includes(fragment), `"${err.message}" lacks "${fragment}"`);
    return true;
  });
}

describe(".npy", () => {
  test("float32 and float16 matrices", async () => {
    assertMatrix(
      await readEmbeddingMatrix(fixtures + "f4_2x3.npy"),
      2,
      3,
      f32([1.5, -2.25, 0.1, 3e-8, 65504, -0]),
    );
    assertMatrix(await readEmbeddingMatrix(fixtures + "f2_2x4.npy"), 2, 4, [
      0.0999755859375,
      2 ** -24,
      65504,
      -0,
      Infinity,
      -Infinity,
      NaN,
      0.333251953125,
    ]);
    assertMatrix(await readEmbeddingMatrix(fixtures + "f4_0x3.npy"), 0, 3, []);
  });

  test("rejects arrays that are not 2-D or not floats", async () => {
    await rejectsInput(readEmbeddingMatrix(fixtures + "f8_3.npy"), "f8_3.npy", "2-D", "(3)");
    await rejectsInput(readEmbeddingMatrix(fixtures + "f4_2x2x2.npy"), "f4_2x2x2.npy", "2-D", "(2, 2, 2)");
    await rejectsInput(readEmbeddingMatrix(fixtures + "i4_fortran_2x3.npy"), "i4_fortran_2x3.npy", "<i4");
  });
});

describe(".npz", () => {
  test("reads the keyed array of a stored or deflated shard", async () => {
    for (const file of ["shard_stored.npz", "shard_deflated.npz"]) {
      assertMatrix(await readEmbeddingMatrix(fixtures + file, { key: "l14_img" }), 4, 8, grid(32));
      assertMatrix(await readEmbeddingMatrix(fixtures + file, { key: "b32_img" }), 4, 3, grid(12));
    }
  });

  test("needs no key for a single array, and converts float64", async () => {
    assertMatrix(await readEmbeddingMatrix(fixtures + "single.npz"), 3, 2, grid(6));
  });

  test("asks for a key when there are several, listing them", async () => {
    const path = fixtures + "shard_stored.npz";
    await rejectsInput(readEmbeddingMatrix(path), path, "l14_img, l14_txt, b32_img");
    await rejectsInput(
      readEmbeddingMatrix(path, { key: "b32_txt" }),
      path,
      "'b32_txt'",
      "l14_img, l14_txt, b32_img",
    );
  });
});

describe("Arrow IPC and Parquet", () => {
  const img = f32([0.5, 1.0, 1.5, -0.5, 0.1, 2.0]); // fixed_size_list<float32, 3>
  const txt = [1.0, 2.0, 3.0, Math.fround(0.1)]; // list<float64>, narrowed to float32

  for (const file of ["emb.arrow", "emb_stream.ipc", "emb.parquet"]) {
    test(`${file}: fixed-size-list and list columns by key`, async () => {
      assertMatrix(await readEmbeddingMatrix(fixtures + file, { key: "img" }), 2, 3, img);
      assertMatrix(await readEmbeddingMatrix(fixtures + file, { key: "txt" }), 2, 2, txt);
    });

    test(`${file}: key errors list the columns`, async () => {
      const path = fixtures + file;
      await rejectsInput(readEmbeddingMatrix(path), path, "img, txt");
      await rejectsInput(readEmbeddingMatrix(path, { key: "emb" }), path, "'emb'", "uid, img, txt, score");
      await rejectsInput(readEmbeddingMatrix(path, { key: "score" }), path, "'score'", "not a list");
    });
  }

  test(".feather is Arrow IPC too; the only list column needs no key", async () => {
    const feather = join(work, "one_list.feather");
    copyFileSync(fixtures + "one_list.arrow", feather);
    assertMatrix(await readEmbeddingMatrix(feather), 2, 3, [1, 2, 3, 4, 5, 6]);
  });

  test("names a ragged row and a null row", async () => {
    const ragged = fixtures + "ragged.parquet";
    await rejectsInput(readEmbeddingMatrix(ragged), ragged, "'vec'", "row 2", "1 values");
    const nullRow = fixtures + "null_row.arrow";
    await rejectsInput(readEmbeddingMatrix(nullRow), nullRow, "'vec'", "row 1", "null");
  });

  test("rejects a file that is not Arrow", async () => {
    const fake = join(work, "fake.arrow");
    copyFileSync(fixtures + "f4_2x3.npy", fake);
    await rejectsInput(readEmbeddingMatrix(fake), fake, "Arrow");
    const fakeParquet = join(work, "fake.parquet");
    copyFileSync(fixtures + "emb.arrow", fakeParquet);
    await rejectsInput(readEmbeddingMatrix(fakeParquet), fakeParquet, "Parquet");
  });

  test("reads sliced and chunked vectors at the right offsets", () => {
    const type = new arrow.FixedSizeList(2, new arrow.Field("item", new arrow.Float32(), true));
    const a = arrow.vectorFromArray(
      [
        [1, 2],
        [3, 4],
        [5, 6],
      ],
      type,
    );
    const b = arrow.vectorFromArray([[7, 8]], type);
    assertMatrix(listColumnToMatrix(a.slice(1).concat(b), "test", "v"), 3, 2, [3, 4, 5, 6, 7, 8]);
    const listType = new arrow.List(new arrow.Field("item", new arrow.Float64(), true));
    const c = arrow.vectorFromArray(
      [
        [1, 2],
        [3, 4],
        [5, 6],
      ],
      listType,
    );
    assertMatrix(listColumnToMatrix(c.slice(2).concat(c.slice(0, 1)), "test", "v"), 2, 2, [5, 6, 1, 2]);
  });

  test("names a row holding a null value", () => {
    const type = new arrow.List(new arrow.Field("item", new arrow.Float32(), true));
    const v = arrow.vectorFromArray(
      [
        [1, 2],
        [3, null],
      ],
      type,
    );
    assert.throws(
      () => listColumnToMatrix(v, "x.arrow", "v"),
      (err: unknown) =>
        isClipsieveError(err, "INPUT_FILE_INVALID") && /x\.arrow.*'v' row 1 holds a null/.test(err.message),
    );
  });
});

describe("files", () => {
  test("a missing file and an unknown extension", async () => {
    const missing = join(work, "absent.npy");
    await rejectsInput(readEmbeddingMatrix(missing), missing, "not found");
    const csv = join(work, "emb.csv");
    await rejectsInput(readEmbeddingMatrix(csv), csv, "'.csv'", ".npy, .npz");
  });
});

describe("readEmbeddingShape", () => {
  test("reads a .npy's and an .npz array's shape from their headers alone", async () => {
    const data = new Float32Array(5 * 3).fill(0.5);
    const npy = writeNpy({ dtype: "<f4", shape: [5, 3], data });
    // The header and one value of the data: the rows are not there, the shape still is.
    const cut = join(work, "cut.npy");
    writeFileSync(cut, npy.subarray(0, npy.length - data.byteLength + 4));
    assert.deepEqual(await readEmbeddingShape(cut), { rows: 5, dim: 3 });
    await assert.rejects(readEmbeddingMatrix(cut), (err) => isClipsieveError(err, "INPUT_FILE_INVALID"));
    const npz = join(work, "shape.npz");
    await writeNpz(npz, {
      a: { dtype: "<f4", shape: [5, 3], data },
      b: { dtype: "<f2", shape: [7, 2], data: new Float32Array(14) },
    });
    assert.deepEqual(await readEmbeddingShape(npz, { key: "b" }), { rows: 7, dim: 2 });
    await assert.rejects(readEmbeddingShape(npz), (err) => isClipsieveError(err, "INPUT_FILE_INVALID"));
    const flat = join(work, "flat.npy");
    writeFileSync(flat, writeNpy({ dtype: "<f4", shape: [4], data: new Float32Array(4) }));
    await assert.rejects(readEmbeddingShape(flat), (err) => isClipsieveError(err, "INPUT_FILE_INVALID"));
  });
});
