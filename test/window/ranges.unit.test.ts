/**
 * Window manifests record coordinates as runs (src/window/ranges.ts): consecutive offsets of one
 * topic-partition collapse into one run, order is kept, decoding gives back exactly the list encoded,
 * and offsets beyond 2^53 stay exact (they are decimal strings, never JS numbers).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { SourceRef } from "../../src/common/record.ts";
import { decodeRuns, encodeRuns, type SourceRun } from "../../src/window/ranges.ts";

const ref = (topic: string, partition: number, offset: string): SourceRef => ({ topic, partition, offset });

describe("encodeRuns", () => {
  it("collapses consecutive offsets of one partition into one run", () => {
    assert.deepEqual(encodeRuns([ref("t", 0, "5"), ref("t", 0, "6"), ref("t", 0, "7")]), [["t", 0, "5", 3]]);
  });

  it("starts a new run at a gap, a step back, a repeat, another partition or another topic", () => {
    const refs = [
      ref("t", 0, "5"),
      ref("t", 0, "6"),
      ref("t", 0, "8"), // gap
      ref("t", 0, "7"), // step back
      ref("t", 0, "7"), // repeat
      ref("t", 1, "8"), // other partition, offset 7 + 1
      ref("u", 1, "9"), // other topic, offset 8 + 1
      ref("u", 1, "10"),
    ];
    const expected: SourceRun[] = [
      ["t", 0, "5", 2],
      ["t", 0, "8", 1],
      ["t", 0, "7", 1],
      ["t", 0, "7", 1],
      ["t", 1, "8", 1],
      ["u", 1, "9", 2],
    ];
    assert.deepEqual(encodeRuns(refs), expected);
  });

  it("does not merge runs of one partition that another partition interrupts (order is kept)", () => {
    const refs = [ref("t", 0, "1"), ref("t", 1, "1"), ref("t", 0, "2"), ref("t", 1, "2")];
    assert.deepEqual(encodeRuns(refs), [
      ["t", 0, "1", 1],
      ["t", 1, "1", 1],
      ["t", 0, "2", 1],
      ["t", 1, "2", 1],
    ]);
  });

  it("encodes nothing as no runs", () => {
    assert.deepEqual(encodeRuns([]), []);
    assert.deepEqual(decodeRuns([]), []);
  });

  it("compares offsets beyond 2^53 exactly", () => {
    // As JS numbers, 2^53 + 1 rounds to 2^53, so these would look like a repeat and then a gap of 2.
    const refs = [
      ref("t", 3, "9007199254740991"),
      ref("t", 3, "9007199254740992"),
      ref("t", 3, "9007199254740993"),
      ref("t", 3, "9007199254740994"),
    ];
    assert.deepEqual(encodeRuns(refs), [["t", 3, "9007199254740991", 4]]);
    // 2^53 and 2^53 + 2 are distinct numbers but not consecutive offsets.
    assert.deepEqual(encodeRuns([ref("t", 3, "9007199254740992"), ref("t", 3, "9007199254740994")]), [
      ["t", 3, "9007199254740992", 1],
      ["t", 3, "9007199254740994", 1],
    ]);
  });
});

describe("decodeRuns", () => {
  it("expands each run into its offsets, in order", () => {
    assert.deepEqual(
      decodeRuns([
        ["t", 2, "10", 3],
        ["u", 0, "0", 1],
        ["t", 2, "4", 2],
      ]),
      [
        ref("t", 2, "10"),
        ref("t", 2, "11"),
        ref("t", 2, "12"),
        ref("u", 0, "0"),
        ref("t", 2, "4"),
        ref("t", 2, "5"),
      ],
    );
  });

  it("counts past 2^53 exactly", () => {
    assert.deepEqual(decodeRuns([["t", 0, "9007199254740992", 3]]), [
      ref("t", 0, "9007199254740992"),
      ref("t", 0, "9007199254740993"),
      ref("t", 0, "9007199254740994"),
    ]);
    assert.deepEqual(decodeRuns([["t", 0, "9223372036854775806", 2]]), [
      ref("t", 0, "9223372036854775806"),
      ref("t", 0, "9223372036854775807"),
    ]);
  });

  it("round-trips: decoding the runs of a list gives the list back", () => {
    const refs = [
      ref("in", 0, "0"),
      ref("in", 0, "1"),
      ref("in", 2, "1"),
      ref("in", 0, "2"),
      ref("in", 0, "9"),
      ref("in", 1, "9007199254740993"),
      ref("in", 1, "9007199254740994"),
      ref("other", 1, "9007199254740995"),
      ref("in", 0, "9"),
    ];
    const runs = encodeRuns(refs);
    assert.equal(runs.length, 7);
    assert.deepEqual(decodeRuns(runs), refs);
  });
});
