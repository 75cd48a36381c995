import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import * as arrow from "apache-arrow";
import { isClipsieveError } from "../../src/common/errors.ts";
import { readParquetColumns, readTable, writeTable } from "../../src/io/table.ts";

// Fixtures were written by pyarrow (fixtures/make_fixtures.py).
const fixtures = fileURLToPath(new URL("./fixtures/", import.meta.url));
const work = mkdtempSync(join(tmpdir(), "clipsieve-table-"));
after(() => rmSync(work, { recursive: true, force: true }));

const METADATA = {
  uid: [
    "0123456789abcdef0123456789abcdef",
    "fedcba9876543210fedcba9876543210",
    "00000000000000000000000000000003",
  ],
  url: ["http://a.example/1.jpg", "http://b.example/2.png", "http://c.example/3.gif"],
  text: ["a cat", null, "caf\u00e9 \u2615 \u{1f600}"],
  original_width: Float64Array.of(640, 1024, 2 ** 40), // int64 in the file
  clip_l14_similarity_score: Float64Array.of(0.3125, 0.1, -0.0625),
  f32: Float32Array.of(0.1, Number.NaN, -2.0), // the file holds a null

  i32: Int32Array.of(-7, 0, 2 ** 31 - 1),
};

function plain(columns: Record<string, unknown>): Record<string, unknown> {
  // compare typed arrays by type and elements (deepEqual treats -0/NaN exactly via Object.is)
  return Object.fromEntries(
    Object.entries(columns).map(([k, v]) => [
      k,
      Array.isArray(v) ? v : [(v as object).constructor.name, Array.from(v as ArrayLike<number>)],
    ]),
  );
}

async function rejectsWith(
  code: "INPUT_FILE_INVALID" | "OUTPUT_FILE_FAILED",
  promise: Promise<unknown>,
  ...fragments: string[]
) {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(isClipsieveError(err, code), `expected ${code}, got ${String(err)}`);
    for (const fragment of fragments)
      assert.ok(err.message.includes(fragment), `"${err.message}" lacks "${fragment}"`);
    return true;
  });
}

describe("reading pyarrow's files", () => {
  test("readParquetColumns returns just the named columns, in the order asked", async () => {
    const columns = await readParquetColumns(fixtures + "metadata.parquet", ["text", "uid", "f32"]);
    assert.deepEqual(Object.keys(columns), ["text", "uid", "f32"]);
    assert.deepEqual(Array.from(columns.f32 as Float32Array), Array.from(METADATA.f32));
    assert.deepEqual(columns.text, METADATA.text);
    assert.deepEqual(columns.uid, METADATA.uid);
  });

  test("readParquetColumns names a missing column and lists the others", async () => {
    const path = fixtures + "metadata.parquet";
    await rejectsWith(
      "INPUT_FILE_INVALID",
      readParquetColumns(path, ["uid", "caption"]),
      path,
      "'caption'",
      "uid, url, text",
    );
  });

  for (const file of ["metadata.parquet", "metadata.arrow"]) {
    test(`readTable(${file}) converts every column type`, async () => {
      const columns = await readTable(fixtures + file);
      assert.deepEqual(Object.keys(columns), Object.keys(METADATA));
      assert.deepEqual(plain(columns), plain(METADATA));
    });
  }

  test("readTable(.jsonl) reads numbers as float64 and missing values as null", async () => {
    const columns = await readTable(fixtures + "scores.jsonl");
    assert.deepEqual(
      plain(columns),
      plain({
        uid: ["a", "b"],
        score: Float64Array.of(0.10000000149011612, -2.5),
        n: Float64Array.of(3, -1),
        note: [null, "x\u00e9"],
      }),
    );
  });
});

describe("writeTable", () => {
  const columns = {
    uid: ["u0", null, "caf\u00e9"],
    score: Float32Array.of(0.1, -0, Number.NaN),
    normaliser: Float64Array.of(0.1, 1e300, -2.5),
    draws: Int32Array.of(10, -1, 2 ** 31 - 1),
    text: ["a", "b", "c"],
  };

  for (const extension of [".parquet", ".arrow", ".feather"]) {
    test(`round-trips ${extension} with types and column order kept`, async () => {
      const path = join(work, `scores${extension}`);
      await writeTable(path, columns);
      const back = await readTable(path);
      assert.deepEqual(Object.keys(back), Object.keys(columns));
      assert.deepEqual(plain(back), plain(columns));
    });
  }

  test("writes JSON Lines with round-trip-exact numbers", async () => {
    const path = join(work, "scores.jsonl");
    await writeTable(path, columns);
    assert.equal(
      readFileSync(path, "utf8"),
      '{"uid":"u0","score":0.10000000149011612,"normaliser":0.1,"draws":10,"text":"a"}\n' +
        '{"uid":null,"score":-0,"normaliser":1e+300,"draws":-1,"text":"b"}\n' +
        '{"uid":"café","score":null,"normaliser":-2.5,"draws":2147483647,"text":"c"}\n',
    );
    const back = await readTable(path);
    assert.deepEqual(
      plain(back),
      plain({
        ...columns,
        score: Float64Array.of(Math.fround(0.1), -0, Number.NaN),
        normaliser: columns.normaliser,
        draws: Float64Array.from(columns.draws),
      }),
    );
  });

  test("writes an empty table", async () => {
    const path = join(work, "empty.parquet");
    await writeTable(path, { uid: [], score: new Float32Array(0) });
    assert.deepEqual(plain(await readTable(path)), plain({ uid: [], score: new Float32Array(0) }));
  });

  test("replaces an existing file and leaves no temporary file", async () => {
    const path = join(work, "replace.arrow");
    writeFileSync(path, "old");
    await writeTable(path, { a: Int32Array.of(1) });
    assert.deepEqual(plain(await readTable(path)), plain({ a: Int32Array.of(1) }));
    assert.deepEqual(
      readdirSync(work).filter((f) => f.endsWith(".tmp")),
      [],
    );
  });

  test("refuses bad input, leaving the old file as it was", async () => {
    const path = join(work, "keep.jsonl");
    writeFileSync(path, '{"a":1}\n');
    await rejectsWith(
      "OUTPUT_FILE_FAILED",
      writeTable(path, { a: Int32Array.of(1, 2), b: ["x"] }),
      path,
      "'b'",
      "1 rows",
    );
    await rejectsWith(
      "OUTPUT_FILE_FAILED",
      writeTable(path, { a: [1 as unknown as string] }),
      path,
      "'a' row 0",
    );
    await rejectsWith("OUTPUT_FILE_FAILED", writeTable(path, {}), path, "at least one column");
    assert.equal(readFileSync(path, "utf8"), '{"a":1}\n');
    const csv = join(work, "scores.csv");
    await rejectsWith("OUTPUT_FILE_FAILED", writeTable(csv, { a: Int32Array.of(1) }), csv, "'.csv'");
    const noFolder = join(work, "no-such-folder", "x.parquet");
    await rejectsWith("OUTPUT_FILE_FAILED", writeTable(noFolder, { a: Int32Array.of(1) }), noFolder);
  });
});

describe("readTable errors", () => {
  test("names the JSON Lines line and key at fault", async () => {
    const path = join(work, "bad.jsonl");
    writeFileSync(path, '{"a":1}\n\n{"a":2,\n');
    await rejectsWith("INPUT_FILE_INVALID", readTable(path), path, "line 3", "not valid JSON");
    writeFileSync(path, '{"a":1}\n{"a":"two"}\n');
    await rejectsWith("INPUT_FILE_INVALID", readTable(path), path, "line 2", "'a'", "string");
    writeFileSync(path, '{"a":[1]}\n');
    await rejectsWith("INPUT_FILE_INVALID", readTable(path), path, "line 1", "'a'", "array");
  });

  test("names the row of a null in an integer column", async () => {
    const path = join(work, "null-int.arrow");
    const table = new arrow.Table({ id: arrow.vectorFromArray([1, 2, null], new arrow.Int32()) });
    writeFileSync(path, arrow.tableToIPC(table, "file"));
    await rejectsWith("INPUT_FILE_INVALID", readTable(path), path, "'id' row 2 is null");
  });

  test("a missing file and an unknown extension", async () => {
    const missing = join(work, "absent.parquet");
    await rejectsWith("INPUT_FILE_INVALID", readTable(missing), missing, "not found");
    await rejectsWith("INPUT_FILE_INVALID", readParquetColumns(missing, ["uid"]), missing, "not found");
    const csv = join(work, "x.csv");
    await rejectsWith("INPUT_FILE_INVALID", readTable(csv), csv, "'.csv'");
  });
});
