/**
 * `replay --reproduce` with --start/--end: only recorded windows the range holds whole are re-formed;
 * a range that cuts through a window, or leaves out the bank rows a window draws on, is refused up
 * front with a coded error (otherwise the replay would wait forever for members it never reads, or
 * fail half-way on a bank row it never saw).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { windowsInRange } from "../../src/cli/commands/replay.ts";
import type { SourceRun } from "../../src/window/ranges.ts";
import type { WindowManifest } from "../../src/window/window.ts";

const run = (partition: number, first: number, count: number): SourceRun => [
  "in",
  partition,
  String(first),
  count,
];

function manifest(
  id: string,
  members: SourceRun[],
  bank: SourceRun[] = [],
  failed: SourceRun[] = [],
): WindowManifest {
  return {
    window_id: id,
    planned_at: 0,
    seed: 1,
    draws: 1,
    batch_size: 8,
    tau: 0.01,
    dim: 4,
    members,
    bank,
    failed,
  };
}

const windows = [
  manifest("w1", [run(0, 0, 10)]),
  manifest("w2", [run(0, 10, 9)], [run(0, 0, 10)], [run(0, 19, 1)]),
  manifest("w3", [run(0, 20, 10)], [run(0, 10, 9)]),
];
const offsets = (o: number) => new Map([[0, BigInt(o)]]);

test("keeps the windows a range holds whole, and drops those outside it", () => {
  assert.deepEqual(
    windowsInRange(windows, "in", offsets(0), offsets(20)).map((m) => m.window_id),
    ["w1", "w2"],
  );
  assert.deepEqual(
    windowsInRange(windows, "in", offsets(0), offsets(30)).map((m) => m.window_id),
    ["w1", "w2", "w3"],
  );
});

test("refuses a range that cuts through a recorded window", () => {
  assert.throws(
    () => windowsInRange(windows, "in", offsets(0), offsets(15)),
    (err: Error & { code?: string }) =>
      err.code === "CONFIG_INVALID" &&
      /cut through recorded window w2 \(5 of its 10 records/.test(err.message),
  );
});

test("refuses a range that starts after the bank rows a window draws on", () => {
  assert.throws(
    () => windowsInRange(windows, "in", offsets(10), offsets(30)),
    (err: Error & { code?: string }) =>
      err.code === "CONFIG_INVALID" &&
      /w2 draws bank rows from before --start \(in partition 0 offset 0\)/.test(err.message),
  );
});
