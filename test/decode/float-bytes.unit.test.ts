/**
 * Embedding bytes: little-endian IEEE 754. Expected bit patterns are worked by hand, e.g. 0.1 in
 * float16: 0.1 = 1.6 * 2^-4, biased exponent 11 = 0b01011, mantissa round(0.6 * 1024) = 614 = 0x266,
 * so 0 01011 1001100110 = 0x2E66, which reads back as 1638 / 16384 = 0.0999755859375.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { BadRecordError } from "../../src/decode/bad-record.ts";
import { floatsFromBytes, floatsToBytes } from "../../src/decode/float-bytes.ts";

function u16le(...words: number[]): Buffer {
  const b = Buffer.alloc(words.length * 2);
  for (const [i, w] of words.entries()) b.writeUInt16LE(w, i * 2);
  return b;
}

const HALF_CASES: [number, number][] = [
  [1, 0x3c00],
  [-2, 0xc000],
  [3, 0x4200],
  [65504, 0x7bff], // largest finite float16
  [2 ** -24, 0x0001], // smallest subnormal
  [0.1, 0x2e66],
  [1 / 3, 0x3555],
  [Number.POSITIVE_INFINITY, 0x7c00],
];

test("FLOAT16 writes and reads the hand-worked bit patterns, little-endian", () => {
  const values = HALF_CASES.map(([v]) => v);
  assert.deepEqual(floatsToBytes(values, "FLOAT16"), u16le(...HALF_CASES.map(([, bits]) => bits)));
  const back = floatsFromBytes(u16le(0x3c00, 0xc000, 0x7bff, 0x0001, 0x2e66, 0x7c00, 0x8000), "FLOAT16", "f");
  assert.deepEqual(Array.from(back), [1, -2, 65504, 2 ** -24, 1638 / 16384, Number.POSITIVE_INFINITY, -0]);
  assert.ok(Number.isNaN(floatsFromBytes(u16le(0x7e00), "FLOAT16", "f")[0]));
});

test("FLOAT32 bytes are little-endian whatever the host, and read from any byte offset", () => {
  // 1.0f = 0x3F800000, -2.5f = 0xC0200000
  const le = Buffer.from([0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x20, 0xc0]);
  assert.deepEqual(floatsToBytes([1, -2.5], "FLOAT32"), le);
  const shifted = Buffer.concat([Buffer.from([0xaa]), le]).subarray(1); // byteOffset 1: no Float32Array view
  assert.deepEqual(Array.from(floatsFromBytes(shifted, "FLOAT32", "f")), [1, -2.5]);
});

test("a byte count that is not a whole number of values is RECORD_UNDECODABLE, naming the field", () => {
  for (const [n, dtype] of [
    [6, "FLOAT32"],
    [3, "FLOAT16"],
  ] as const) {
    assert.throws(
      () => floatsFromBytes(Buffer.alloc(n), dtype, "image_embedding"),
      (err: unknown) =>
        err instanceof BadRecordError &&
        err.code === "RECORD_UNDECODABLE" &&
        err.message.includes("image_embedding") &&
        err.message.includes(`${n} bytes`),
    );
  }
});
