/**
 * A bounded run ends when its whole range is delivered (src/pipeline/bounds.ts): a partition is
 * finished only when nothing taken from it is undelivered and it is delivered to its end, or fetched
 * past it (a range that ends in a transaction marker); records dropped before delivery no longer count
 * as undelivered.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { RangeTracker } from "../../src/pipeline/bounds.ts";

const at = (partition: number, offset: string) => ({ partition, offset });
const range = (entries: [partition: number, start: bigint, end: bigint][]) =>
  new RangeTracker(new Map(entries.map(([p, s]) => [p, s])), new Map(entries.map(([p, , e]) => [p, e])));

describe("RangeTracker", () => {
  it("counts the range's records and tells which offsets are in it (end exclusive)", () => {
    const r = range([
      [0, 0n, 3n],
      [1, 10n, 12n],
      [2, 5n, 5n],
    ]);
    assert.equal(r.total, 5);
    assert.equal(r.inRange(0, "2"), true);
    assert.equal(r.inRange(0, "3"), false);
    assert.equal(r.inRange(1, "11"), true);
    assert.equal(r.inRange(2, "5"), false);
    assert.equal(r.inRange(7, "0"), false, "a partition outside the range");
  });

  it("is done only once every partition is delivered to its end", () => {
    const r = range([
      [0, 0n, 3n],
      [1, 10n, 12n],
    ]);
    assert.equal(r.isDone(), false);
    r.taken(0, 3);
    r.deliveredRecords([at(0, "0"), at(0, "1")]);
    assert.equal(r.isDone(), false);
    r.deliveredRecords([at(0, "2")]);
    assert.equal(r.isDone(), false, "partition 1 is not delivered yet");
    r.taken(1, 2);
    r.deliveredRecords([at(1, "10"), at(1, "11")]);
    assert.equal(r.isDone(), true);
    assert.equal(r.delivered, 5);
  });

  it("a partition with an empty range is finished from the start", () => {
    const r = range([[0, 5n, 5n]]);
    assert.equal(r.isDone(), true);
  });

  it("is not done while a taken record is undelivered, even if a later one reached the end", () => {
    const r = range([[0, 0n, 3n]]);
    r.taken(0, 3);
    r.deliveredRecords([at(0, "2")]);
    assert.equal(r.isDone(), false);
    r.deliveredRecords([at(0, "0"), at(0, "1")]);
    assert.equal(r.isDone(), true);
  });

  it("dropped records no longer count as undelivered; taken again and delivered, the range is done", () => {
    const r = range([[0, 0n, 3n]]);
    r.taken(0, 3);
    r.deliveredRecords([at(0, "0")]);
    r.dropped([{ partition: 0 }, { partition: 0 }]); // a rebalance: 1 and 2 will be read again
    assert.equal(r.isDone(), false, "the partition is delivered only to offset 1");
    r.taken(0, 2);
    r.deliveredRecords([at(0, "1"), at(0, "2")]);
    assert.equal(r.isDone(), true);
    assert.equal(r.delivered, 3);
  });

  it("a range that ends in a transaction marker finishes once the fetch passes the marker", () => {
    // Records at 0, 1, 2; offset 3 is the commit marker: no record carries it, the end is 4.
    const r = range([[0, 0n, 4n]]);
    r.taken(0, 3);
    r.deliveredRecords([at(0, "0"), at(0, "1"), at(0, "2")]);
    assert.equal(r.isDone(), false, "delivered only to offset 3");
    r.fetched(0, "2");
    assert.equal(r.isDone(), false, "fetched only through offset 2");
    r.fetched(0, "3");
    assert.equal(r.isDone(), true);
    r.fetched(0, "1");
    assert.equal(r.isDone(), true, "a lower fetch position later does not undo it");
  });

  it("a fetch past the end does not finish a partition whose taken records are undelivered", () => {
    const r = range([[0, 0n, 4n]]);
    r.taken(0, 3);
    r.fetched(0, "3");
    assert.equal(r.isDone(), false);
    r.deliveredRecords([at(0, "0"), at(0, "1")]);
    assert.equal(r.isDone(), false);
    r.deliveredRecords([at(0, "2")]);
    assert.equal(r.isDone(), true);
  });

  it("compares offsets beyond 2^53 exactly", () => {
    // As JS numbers, 2^53 + 1 and 2^53 are equal.
    const r = range([[0, 9007199254740992n, 9007199254740994n]]);
    assert.equal(r.inRange(0, "9007199254740993"), true);
    assert.equal(r.inRange(0, "9007199254740994"), false);
    r.taken(0, 1);
    r.deliveredRecords([at(0, "9007199254740992")]);
    assert.equal(r.isDone(), false);
    r.taken(0, 1);
    r.deliveredRecords([at(0, "9007199254740993")]);
    assert.equal(r.isDone(), true);
  });
});
