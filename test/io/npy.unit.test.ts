import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { isClipsieveError } from "../../src/common/errors.ts";
import { type NdArray, readNpy, readUidNpy, writeNpy, writeUidNpy } from "../../src/io/npy.ts";

// Fixtures were written by numpy (fixtures/make_fixtures.py); the values below restate what it wrote.
const fixtures = fileURLToPath(new URL("./fixtures/", import.meta.url));
const fixture = (name: string) => readFileSync(fixtures + name);

/** (i * cols + j) * 0.125 - 1 in row-major order: make_fixtures.py's grid(). */
const grid = (count: number) => Array.from({ length: count }, (_, k) => k * 0.125 - 1);

/** A .npy v1.0 file from a header dict literal, padded by hand to numpy's 64-byte alignment. */
function handMadeNpy(dict: string, data: Uint8Array): Uint8Array {
  const padded = dict.padEnd(Math.ceil((10 + dict.length + 1) / 64) * 64 - 10 - 1, " ") + "\n";
  const prefix = Buffer.from([
    0x93,
    0x4e,
    0x55,
    0x4d,
    0x50,
    0x59,
    1,
    0,
    padded.length & 0xff,
    padded.length >> 8,
  ]);
  return Buffer.concat([prefix, Buffer.from(padded, "latin1"), data]);
}

function assertInvalidInput(fn: () => unknown, ...fragments: string[]) {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isClipsieveError(err, "INPUT_FILE_INVALID"), `expected INPUT_FILE_INVALID, got ${String(err)}`);
    for (const fragment of fragments)
      assert.ok(err.message.includes(fragment), `"${err.message}" lacks "${fragment}"`);
    return true;
  });
}

// Each fixture as the literal array numpy was given; writing it must give numpy's bytes exactly.
const DTYPE_CASES: { file: string; expected: NdArray }[] = [
  {
    file: "f4_2x3.npy",
    expected: { dtype: "<f4", shape: [2, 3], data: Float32Array.of(1.5, -2.25, 0.1, 3e-8, 65504, -0) },
  },
  {
    file: "f2_2x4.npy",
    // numpy's float16 values of 0.1, 2**-24, 65504, -0, inf, -inf, nan, 1/3
    expected: {
      dtype: "<f2",
      shape: [2, 4],
      data: Float32Array.of(0.0999755859375, 2 ** -24, 65504, -0, Infinity, -Infinity, NaN, 0.333251953125),
    },
  },
  { file: "f8_3.npy", expected: { dtype: "<f8", shape: [3], data: Float64Array.of(0.1, -1e300, 5e-324) } },
  {
    file: "i4_3.npy",
    expected: { dtype: "<i4", shape: [3], data: Int32Array.of(-(2 ** 31), 0, 2 ** 31 - 1) },
  },
  {
    file: "i8_3.npy",
    expected: { dtype: "<i8", shape: [3], data: BigInt64Array.of(-(2n ** 63n), -1n, 2n ** 63n - 1n) },
  },
  { file: "u8_2.npy", expected: { dtype: "<u8", shape: [2], data: BigUint64Array.of(0n, 2n ** 64n - 1n) } },
  { file: "u1_3.npy", expected: { dtype: "|u1", shape: [3], data: Uint8Array.of(0, 128, 255) } },
  { file: "i1_3.npy", expected: { dtype: "|i1", shape: [3], data: Int8Array.of(-128, 0, 127) } },
  { file: "i2_3.npy", expected: { dtype: "<i2", shape: [3], data: Int16Array.of(-32768, 1, 32767) } },
  { file: "u2_3.npy", expected: { dtype: "<u2", shape: [3], data: Uint16Array.of(0, 1, 65535) } },
  { file: "u4_3.npy", expected: { dtype: "<u4", shape: [3], data: Uint32Array.of(0, 1, 2 ** 32 - 1) } },
  { file: "bool_4.npy", expected: { dtype: "|b1", shape: [4], data: Uint8Array.of(1, 0, 0, 1) } },
  { file: "f4_scalar.npy", expected: { dtype: "<f4", shape: [], data: Float32Array.of(2.5) } },
  { file: "f4_0x3.npy", expected: { dtype: "<f4", shape: [0, 3], data: new Float32Array(0) } },
  // a header numpy pads with a full 64 spaces
  {
    file: "f4_pad64.npy",
    expected: { dtype: "<f4", shape: [0, ...Array(12).fill(1), 100], data: new Float32Array(0) },
  },
  { file: "f4_2x2x2.npy", expected: { dtype: "<f4", shape: [2, 2, 2], data: Float32Array.from(grid(8)) } },
];

describe("readNpy", () => {
  for (const { file, expected } of DTYPE_CASES) {
    test(`reads ${file} as numpy wrote it`, () => {
      const arr = readNpy(fixture(file), file);
      assert.equal(arr.dtype, expected.dtype);
      assert.deepEqual(arr.shape, expected.shape);
      assert.equal(arr.data.constructor, expected.data.constructor);
      // deepEqual uses Object.is per element: -0 and NaN must match exactly
      assert.deepEqual(
        Array.from(arr.data as ArrayLike<number | bigint>),
        Array.from(expected.data as ArrayLike<number | bigint>),
      );
    });
  }

  test("reads format versions 2.0 and 3.0", () => {
    for (const file of ["f4_2x3_v2.npy", "f4_2x3_v3.npy"]) {
      const bytes = fixture(file);
      assert.equal(bytes[6], file.includes("v2") ? 2 : 3);
      const arr = readNpy(bytes, file);
      assert.deepEqual(arr.shape, [2, 3]);
      assert.deepEqual(Array.from(arr.data as Float32Array), grid(6));
    }
  });

  test("reorders a fortran_order array into C order", () => {
    const arr = readNpy(fixture("i4_fortran_2x3.npy"), "i4_fortran_2x3.npy");
    assert.deepEqual(arr.shape, [2, 3]);
    assert.deepEqual(Array.from(arr.data as Int32Array), [0, 1, 2, 3, 4, 5]);
  });

  test("reorders a 3-D fortran_order array", () => {
    // element (i, j, k) holds 100i + 10j + k; Fortran order runs i fastest
    const shape = [2, 3, 2];
    const fortran: number[] = [];
    for (let k = 0; k < 2; k++)
      for (let j = 0; j < 3; j++) for (let i = 0; i < 2; i++) fortran.push(100 * i + 10 * j + k);
    const npy = handMadeNpy(
      "{'descr': '<i4', 'fortran_order': True, 'shape': (2, 3, 2), }",
      new Uint8Array(Int32Array.from(fortran).buffer),
    );
    const arr = readNpy(npy);
    assert.deepEqual(arr.shape, shape);
    const expected: number[] = [];
    for (let i = 0; i < 2; i++)
      for (let j = 0; j < 3; j++) for (let k = 0; k < 2; k++) expected.push(100 * i + 10 * j + k);
    assert.deepEqual(Array.from(arr.data as Int32Array), expected);
  });

  test("reads data that starts at an unaligned address", () => {
    const bytes = fixture("f8_3.npy");
    const shifted = new Uint8Array(bytes.length + 1).subarray(1);
    shifted.set(bytes);
    assert.deepEqual(Array.from(readNpy(shifted).data as Float64Array), [0.1, -1e300, 5e-324]);
  });

  test("accepts Python 2 headers (3L) and '?' for bool", () => {
    const npy = handMadeNpy(
      "{'descr': '?', 'fortran_order': False, 'shape': (3L,), }",
      Uint8Array.of(0, 1, 1),
    );
    const arr = readNpy(npy);
    assert.equal(arr.dtype, "|b1");
    assert.deepEqual(arr.shape, [3]);
    assert.deepEqual(Array.from(arr.data as Uint8Array), [0, 1, 1]);
  });

  test("rejects big-endian data, naming the file", () => {
    assertInvalidInput(
      () => readNpy(fixture("f4_bigendian.npy"), "f4_bigendian.npy"),
      "f4_bigendian.npy",
      "big-endian",
    );
  });

  test("rejects unsupported dtypes, naming the dtype", () => {
    const npy = handMadeNpy("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", new Uint8Array(8));
    assertInvalidInput(() => readNpy(npy, "complex.npy"), "complex.npy", "'<c8'");
  });

  test("rejects a structured dtype and points to readUidNpy", () => {
    assertInvalidInput(() => readNpy(fixture("uids.npy"), "uids.npy"), "uids.npy", "readUidNpy");
  });

  test("rejects truncated data, a missing magic and a broken header", () => {
    const bytes = fixture("f4_2x3.npy");
    assertInvalidInput(
      () => readNpy(bytes.subarray(0, bytes.length - 1), "short.npy"),
      "short.npy",
      "truncated",
    );
    assertInvalidInput(() => readNpy(Buffer.from("PK\x03\x04 not npy"), "zip.npy"), "zip.npy", "magic");
    const broken = handMadeNpy(
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3}",
      new Uint8Array(24),
    );
    assertInvalidInput(() => readNpy(broken, "broken.npy"), "broken.npy", "header");
  });
});

describe("writeNpy", () => {
  for (const { file, expected } of DTYPE_CASES) {
    test(`writes numpy's exact bytes for ${file}`, () => {
      assert.deepEqual(writeNpy(expected), fixture(file));
    });
  }

  test("round-trips random float32 and int64 arrays", () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 0, maxLength: 3 }),
        fc.integer(),
        (shape, seed) => {
          const count = shape.reduce((a, b) => a * b, 1);
          const floats = Float32Array.from({ length: count }, (_, i) =>
            Math.fround(Math.sin(seed + i) * 1e3),
          );
          const ints = BigInt64Array.from({ length: count }, (_, i) => BigInt(seed) * 1000003n + BigInt(i));
          const f = readNpy(writeNpy({ dtype: "<f4", shape, data: floats }));
          const g = readNpy(writeNpy({ dtype: "<i8", shape, data: ints }));
          assert.deepEqual(f.shape, shape);
          assert.deepEqual(Array.from(f.data as Float32Array), Array.from(floats));
          assert.deepEqual(Array.from(g.data as BigInt64Array), Array.from(ints));
        },
      ),
      { numRuns: 50 },
    );
  });

  test("keeps every header 64-byte aligned, whatever the shape's digits", () => {
    for (const rows of [0, 7, 12345, 1234567890]) {
      const npy = writeNpy({ dtype: "|u1", shape: [rows, 0], data: new Uint8Array(0) });
      assert.equal((10 + npy.readUInt16LE(8)) % 64, 0);
      assert.equal(npy[10 + npy.readUInt16LE(8) - 1], 0x0a);
    }
  });

  test("refuses data that does not match the dtype or the shape", () => {
    const isOutputError = (err: unknown) => isClipsieveError(err, "OUTPUT_FILE_FAILED");
    assert.throws(() => writeNpy({ dtype: "<f4", shape: [2], data: Float64Array.of(1, 2) }), isOutputError);
    assert.throws(() => writeNpy({ dtype: "<f4", shape: [3], data: Float32Array.of(1, 2) }), isOutputError);
    assert.throws(() => writeNpy({ dtype: ">f4", shape: [1], data: Float32Array.of(1) }), isOutputError);
  });
});

describe("DataComp uid files", () => {
  // make_fixtures.py's UIDS, in its (unsorted) order
  const UIDS = [
    "ffffffffffffffff0000000000000001",
    "00000000000000000000000000000002",
    "8000000000000000ffffffffffffffff",
    "0123456789abcdef0123456789abcdef",
    "80000000000000000000000000000000",
    "00000000000000000000000000000001",
    "80000000000000010000000000000000",
  ];
  // Sorted by hand: as unsigned (high, low) pairs, which for equal-length hex is string order.
  const SORTED = [
    "00000000000000000000000000000001",
    "00000000000000000000000000000002",
    "0123456789abcdef0123456789abcdef",
    "80000000000000000000000000000000",
    "8000000000000000ffffffffffffffff",
    "80000000000000010000000000000000",
    "ffffffffffffffff0000000000000001",
  ];

  test("writeUidNpy gives numpy's bytes for the sorted structured array", () => {
    assert.deepEqual(writeUidNpy(UIDS), fixture("uids.npy"));
    assert.deepEqual(writeUidNpy([...UIDS].reverse().map((u) => u.toUpperCase())), fixture("uids.npy"));
  });

  test("readUidNpy gives lower-case, zero-padded uids in file order", () => {
    assert.deepEqual(readUidNpy(fixture("uids.npy")), SORTED);
  });

  test("round-trips, keeping duplicates as np.sort does", () => {
    const uids = [
      "0000000000000000000000000000000a",
      "00000000000000000000000000000009",
      SORTED[2]!,
      SORTED[2]!,
    ];
    assert.deepEqual(readUidNpy(writeUidNpy(uids)), [uids[1], uids[0], SORTED[2], SORTED[2]]);
    assert.deepEqual(readUidNpy(writeUidNpy([])), []);
  });

  test("reads a plain (n, 2) uint64 array as well", () => {
    const npy = writeNpy({ dtype: "<u8", shape: [1, 2], data: BigUint64Array.of(1n, 2n ** 64n - 2n) });
    assert.deepEqual(readUidNpy(npy), ["0000000000000001fffffffffffffffe"]);
  });

  test("rejects a uid that is not 32 hex digits, naming it", () => {
    for (const bad of ["0123", "0123456789abcdef0123456789abcdeg", `${SORTED[0]}0`]) {
      assertInvalidInput(() => writeUidNpy([SORTED[0]!, bad]), JSON.stringify(bad), "index 1");
    }
  });

  test("rejects a file that is not a uid array", () => {
    assertInvalidInput(
      () => readUidNpy(fixture("f4_2x3.npy"), "f4_2x3.npy"),
      "f4_2x3.npy",
      "not a DataComp uid file",
    );
  });
});
