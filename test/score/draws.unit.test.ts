/**
 * Draws and their generator. The expected numbers come from a separate Python implementation of the
 * algorithm documented in src/score/random.ts (checked against splitmix64's published test vector and
 * xoshiro128**'s reference outputs for the state {1, 2, 3, 4}: 11520, 0, 5927040, 70819200).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { isClipsieveError } from "../../src/common/errors.ts";
import { drawsFromBatches, makeDraws } from "../../src/score/draws.ts";
import { createRandom, splitmix64 } from "../../src/score/random.ts";

const asLists = (draws: Int32Array[][]) => draws.map((d) => d.map((b) => Array.from(b)));

describe("the generator", () => {
  it("splitmix64 gives the published sequence for seed 1234567", () => {
    assert.deepEqual(splitmix64(1234567n, 5), [
      6457827717110365317n,
      3203168211198807973n,
      9817491932198370423n,
      4593380528125082431n,
      16408922859458223821n,
    ]);
  });

  it("xoshiro128** seeded from (seed, stream) gives the reference implementation's outputs", () => {
    const a = createRandom(42, 0);
    assert.deepEqual(
      Array.from({ length: 6 }, () => a.nextUint32()),
      [2768973797, 1738651427, 3615740125, 525626155, 287138648, 1640138849],
    );
    const b = createRandom(2 ** 53 - 1, 7);
    assert.deepEqual(
      Array.from({ length: 3 }, () => b.nextUint32()),
      [2309530866, 1337005916, 2426989421],
    );
  });

  it("below(bound) stays in [0, bound)", () => {
    fc.assert(
      fc.property(fc.nat(), fc.integer({ min: 1, max: 2 ** 32 }), (seed, bound) => {
        const random = createRandom(seed, 1);
        for (let i = 0; i < 20; i++) {
          const x = random.below(bound);
          assert.ok(Number.isInteger(x) && x >= 0 && x < bound);
        }
      }),
      { numRuns: 50 },
    );
  });

  it("rejects seeds it cannot represent exactly", () => {
    for (const seed of [-1, 1.5, 2 ** 53, Number.NaN]) {
      assert.throws(
        () => createRandom(seed, 0),
        (err) => isClipsieveError(err, "CONFIG_INVALID"),
      );
    }
  });
});

describe("makeDraws", () => {
  it("reproduces the reference draws", () => {
    assert.deepEqual(asLists(makeDraws(10, { seed: 7, draws: 2, batchSize: 4 })), [
      [
        [6, 8, 4, 9],
        [3, 2, 0, 7],
        [5, 1],
      ],
      [
        [3, 7, 5, 9],
        [1, 6, 2, 8],
        [0, 4],
      ],
    ]);
    assert.deepEqual(asLists(makeDraws(12, { seed: 0, draws: 1, batchSize: 5 })), [
      [
        [7, 9, 5, 3, 11],
        [10, 8, 2, 6, 4],
        [0, 1],
      ],
    ]);
  });

  it("makes K partitions of 0..n-1 into consecutive batches of b, deterministically", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 200 }),
        fc.integer({ min: 1, max: 64 }),
        fc.integer({ min: 1, max: 4 }),
        fc.nat(),
        (n, batchSize, k, seed) => {
          const draws = makeDraws(n, { seed, draws: k, batchSize });
          assert.equal(draws.length, k);
          for (const draw of draws) {
            assert.equal(draw.length, Math.ceil(n / batchSize));
            draw.forEach((batch, j) => {
              assert.equal(batch.length, j < draw.length - 1 ? batchSize : n - batchSize * (draw.length - 1));
            });
            const rows = draw.flatMap((b) => Array.from(b)).sort((a, b) => a - b);
            assert.deepEqual(
              rows,
              Array.from({ length: n }, (_, i) => i),
            );
          }
          assert.deepEqual(asLists(makeDraws(n, { seed, draws: k, batchSize })), asLists(draws));
        },
      ),
      { numRuns: 60 },
    );
  });

  it("gives each draw its own permutation", () => {
    const [a, b] = makeDraws(100, { seed: 5, draws: 2, batchSize: 100 });
    assert.notDeepEqual(Array.from(a[0]), Array.from(b[0]));
  });

  it("rejects a batch size, K or n that is not a usable integer", () => {
    for (const spec of [
      { seed: 0, draws: 1, batchSize: 0 },
      { seed: 0, draws: 0, batchSize: 4 },
      { seed: -3, draws: 1, batchSize: 4 },
    ]) {
      assert.throws(
        () => makeDraws(10, spec),
        (err) => isClipsieveError(err, "CONFIG_INVALID"),
      );
    }
    assert.throws(
      () => makeDraws(2.5, { seed: 0, draws: 1, batchSize: 2 }),
      (err) => isClipsieveError(err, "CONFIG_INVALID"),
    );
  });
});

describe("drawsFromBatches", () => {
  it("accepts the golden format and keeps the batches as given", () => {
    const draws = drawsFromBatches([[[2, 0], [1]], [[0, 1, 2]]], 3);
    assert.deepEqual(asLists(draws), [[[2, 0], [1]], [[0, 1, 2]]]);
  });

  const invalid: Array<[string, unknown, RegExp]> = [
    [
      "a row twice",
      [
        [
          [0, 1],
          [1, 2],
        ],
      ],
      /draw 0: row 1 appears twice \(batches 0 and 1\)/,
    ],
    ["a missing row", [[[0], [2]]], /draw 0 covers 2 of the pool's 3 rows \(row 1 is in no batch\)/],
    ["a row outside the pool", [[[0, 1, 2, 3]]], /draw 0, batch 0: row 3 is outside the pool's rows 0\.\.2/],
    ["an empty batch", [[[0, 1, 2], []]], /draw 0: batch 1 is empty/],
    ["a fractional index", [[[0, 1.5, 2]]], /draw 0, batch 0: 1.5 is not a row index/],
    ["a second draw that is wrong", [[[0, 1, 2]], [[0, 1]]], /draw 1 covers 2/],
    ["no draws", [], /non-empty list of draws/],
  ];
  for (const [what, batches, message] of invalid) {
    it(`rejects ${what}`, () => {
      assert.throws(
        () => drawsFromBatches(batches as number[][][], 3),
        (err) => isClipsieveError(err, "DRAWS_INVALID") && message.test(err.message),
      );
    });
  }
});
