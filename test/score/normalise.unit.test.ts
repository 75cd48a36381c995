import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isClipsieveError } from "../../src/common/errors.ts";
import { checkEmbedding, checkRow, normaliseRows } from "../../src/score/normalise.ts";

describe("checkRow", () => {
  it("normalises a usable row in place and leaves the others alone", () => {
    const data = Float32Array.of(9, 9, 3, 4, 9);
    assert.equal(checkRow(data, 2, 2), null);
    assert.deepEqual(Array.from(data), [9, 9, Math.fround(0.6), Math.fround(0.8), 9]);
  });

  it("reports NaN, Infinity, the zero vector and a short row by code", () => {
    assert.equal(checkRow(Float32Array.of(1, Number.NaN), 0, 2)?.code, "EMBEDDING_NOT_FINITE");
    assert.match(checkRow(Float32Array.of(1, Number.NaN), 0, 2)?.message ?? "", /value 1 is NaN/);
    assert.equal(checkRow(Float32Array.of(Number.NEGATIVE_INFINITY, 0), 0, 2)?.code, "EMBEDDING_NOT_FINITE");
    assert.equal(checkRow(Float32Array.of(0, 0, 0), 0, 3)?.code, "EMBEDDING_ZERO");
    assert.equal(checkRow(Float32Array.of(1, 2, 3), 2, 2)?.code, "EMBEDDING_DIMENSION_MISMATCH");
  });

  it("does not overflow on huge float32 values", () => {
    const data = Float32Array.of(3e38, 3e38);
    assert.equal(checkRow(data, 0, 2), null);
    assert.ok(Math.abs(data[0] - Math.SQRT1_2) < 1e-7);
  });

  it("leaves a bad row unchanged", () => {
    const data = Float32Array.of(2, Number.NaN);
    checkRow(data, 0, 2);
    assert.equal(data[0], 2);
  });
});

describe("checkEmbedding", () => {
  it("wants exactly dim values", () => {
    assert.equal(checkEmbedding(Float32Array.of(1, 2, 3), 2)?.code, "EMBEDDING_DIMENSION_MISMATCH");
    const v = Float32Array.of(0, 5);
    assert.equal(checkEmbedding(v, 2), null);
    assert.deepEqual(Array.from(v), [0, 1]);
  });
});

describe("normaliseRows", () => {
  it("normalises every row", () => {
    const data = Float32Array.of(3, 4, 0, 2);
    normaliseRows(data, 2, 2, "x.npy");
    assert.deepEqual(Array.from(data), [Math.fround(0.6), Math.fround(0.8), 0, 1]);
  });

  it("names the label and the row of the first bad row", () => {
    assert.throws(
      () => normaliseRows(Float32Array.of(1, 0, 0, 0), 2, 2, "shard.npz (l14_img)"),
      (err) =>
        isClipsieveError(err, "EMBEDDING_ZERO") && /^shard\.npz \(l14_img\), row 1: /.test(err.message),
    );
    assert.throws(
      () => normaliseRows(new Float32Array(5), 2, 2, "t.npy"),
      (err) => isClipsieveError(err, "EMBEDDING_DIMENSION_MISMATCH") && /t\.npy: 5 values/.test(err.message),
    );
  });
});
