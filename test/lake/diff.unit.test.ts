/** `diff` on hand-made score records whose expected diff is worked out by hand. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { isClipsieveError } from "../../src/common/errors.ts";
import { DiffSide, diffSides, formatDiff } from "../../src/lake/diff.ts";
import { parseScoreRecord, parseScoreSource, type ReadScoreRecord } from "../../src/lake/score-records.ts";

function rec(
  offset: number,
  decision: ReadScoreRecord["decision"],
  reason: string,
  s: number | undefined,
  keep: number | undefined,
): ReadScoreRecord {
  return {
    source: { topic: "in", partition: 0, offset: String(offset) },
    uid: `u${offset}`,
    scores: s === undefined ? {} : { clip_score: 0.25, s_clip_loss: s },
    thresholds: keep === undefined ? {} : { "keep:s_clip_loss": keep },
    decision,
    reason,
    rule: reason.startsWith("below") ? "s_clip_loss" : null,
    window_id: "w-1",
    seed: 1,
    policy_version: decision === "dead_letter" ? "p0" : "p1",
  };
}

test("diff counts decision and reason changes, score and threshold shifts, by source", () => {
  const before = new DiffSide("before");
  const after = new DiffSide("after");
  for (const r of [
    rec(0, "accepted", "passed", 0.5, 0.25),
    rec(1, "rejected", "below_keep_quantile", 0.125, 0.25),
    rec(2, "accepted", "passed", 0.375, 0.25),
    rec(3, "dead_letter", "EMBEDDING_ZERO", undefined, undefined),
    rec(4, "accepted", "passed", 0.75, 0.25),
  ])
    before.add(r);
  for (const r of [
    rec(0, "accepted", "passed", 0.25, 0.5), // superseded by the duplicate below
    rec(1, "rejected", "below_threshold", 0.125, 0.5),
    rec(2, "rejected", "below_keep_quantile", 0.25, 0.5),
    rec(3, "dead_letter", "EMBEDDING_ZERO", undefined, undefined),
    rec(5, "accepted", "passed", 0.75, 0.5),
    rec(0, "accepted", "passed", 0.625, 0.5),
  ])
    after.add(r);

  const d = diffSides(before, after);
  assert.equal(d.matched, 4);
  assert.equal(d.only_before, 1);
  assert.equal(d.only_after, 1);
  assert.equal(d.after.duplicates, 1);
  assert.equal(d.after.records, 6);
  assert.equal(d.decision_changed, 1);
  assert.equal(d.reason_changed, 1);
  assert.deepEqual(d.changed, [
    {
      source: { topic: "in", partition: 0, offset: "2" },
      uid: "u2",
      before: { decision: "accepted", reason: "passed", rule: null },
      after: { decision: "rejected", reason: "below_keep_quantile", rule: "s_clip_loss" },
    },
  ]);
  assert.deepEqual(
    d.transitions.map((t) => [t.from, t.to, t.records]),
    [
      ["accepted/passed", "accepted/passed", 1],
      ["accepted/passed", "rejected/below_keep_quantile", 1],
      ["dead_letter/EMBEDDING_ZERO", "dead_letter/EMBEDDING_ZERO", 1],
      ["rejected/below_keep_quantile", "rejected/below_threshold", 1],
    ],
  );
  // s_clip_loss deltas on the three scored matches: +0.125, 0, -0.125
  const s = d.scores.s_clip_loss!;
  assert.equal(s.n, 3);
  assert.equal(s.changed, 2);
  assert.equal(s.mean, 0);
  assert.equal(s.mean_abs, 0.25 / 3);
  assert.equal(s.quantiles["0"], -0.125);
  assert.equal(s.quantiles["0.25"], -0.0625);
  assert.equal(s.quantiles["0.5"], 0);
  assert.equal(s.quantiles["1"], 0.125);
  assert.equal(d.scores.clip_score!.changed, 0);
  // keep cut-off 0.25 -> 0.5 on every scored match
  const t = d.thresholds["keep:s_clip_loss"]!;
  assert.deepEqual(t.before, { records: 4, min: 0.25, max: 0.25, last: 0.25 });
  assert.deepEqual(t.after, { records: 5, min: 0.5, max: 0.5, last: 0.5 });
  assert.equal(t.shift.n, 3);
  assert.equal(t.shift.mean, 0.25);
  assert.deepEqual(d.before.by_reason, {
    "accepted/passed": 3,
    "dead_letter/EMBEDDING_ZERO": 1,
    "rejected/below_keep_quantile": 1,
  });
  assert.deepEqual(d.after.policy_versions, ["p0", "p1"]);

  const text = formatDiff(d);
  assert.match(text, /decision changed: 1 \(25\.00%\)/);
  assert.match(text, /accepted\/passed -> rejected\/below_keep_quantile\s+1/);
  assert.match(text, /in\/0\/2\s+u2\s+accepted\/passed\s+rejected\/below_keep_quantile/);
});

test("score records are checked, and sources are told apart by name", () => {
  const good = JSON.stringify({
    ...rec(7, "accepted", "passed", 0.5, 0.25),
    thresholds: { "keep:s_clip_loss": null },
  });
  assert.equal(parseScoreRecord(good, "x").thresholds["keep:s_clip_loss"], Number.POSITIVE_INFINITY);
  assert.throws(
    () => parseScoreRecord(JSON.stringify({ window_id: "w", members: [] }), "dump.jsonl line 3"),
    (err) => isClipsieveError(err, "LAKE_RECORD_INVALID") && err.message.startsWith("dump.jsonl line 3:"),
  );
  assert.deepEqual(parseScoreSource("crawl.scores"), { kind: "topic", topic: "crawl.scores" });
  assert.deepEqual(parseScoreSource("run-a.jsonl"), { kind: "file", path: "run-a.jsonl" });
  assert.deepEqual(parseScoreSource("kafka:x.jsonl"), { kind: "topic", topic: "x.jsonl" });
  assert.deepEqual(parseScoreSource("file:scores"), { kind: "file", path: "scores" });
});

test("a score one side did not compute is no shift: it is counted per side", () => {
  // The same three records: an eager run (NormSim_inf for all) and a lazy run (for the passer only).
  const line = (offset: number, s: number, normsimInf: number | null) =>
    JSON.stringify({
      ...rec(
        offset,
        offset === 0 ? "accepted" : "rejected",
        offset === 0 ? "passed" : "below_keep_quantile",
        s,
        0.3,
      ),
      scores: { clip_score: 0.25, s_clip_loss: s, normsim_inf: normsimInf },
      ...(normsimInf === null ? { not_computed: { normsim_inf: "below_keep_quantile" } } : {}),
    });
  const eager = new DiffSide("eager");
  const lazy = new DiffSide("lazy");
  for (const [offset, s] of [
    [0, 0.5],
    [1, 0.125],
    [2, 0.25],
  ] as const) {
    eager.add(parseScoreRecord(line(offset, s, 0.625 + offset), "eager"));
    lazy.add(parseScoreRecord(line(offset, s, offset === 0 ? 0.625 : null), "lazy"));
  }
  const d = diffSides(eager, lazy);
  assert.equal(d.decision_changed, 0);
  assert.deepEqual(
    [d.scores.normsim_inf!.n, d.scores.normsim_inf!.changed, d.scores.normsim_inf!.only_before],
    [1, 0, 2],
  );
  assert.equal(d.scores.normsim_inf!.only_after, 0);
  assert.equal(d.scores.s_clip_loss!.only_before, 0);
  assert.equal(diffSides(lazy, eager).scores.normsim_inf!.only_after, 2);
  assert.match(formatDiff(d), /normsim_inf\s+1\s+0\s+2\s+0\s/);
});

test("a null score is read only with its reason in not_computed", () => {
  const base = { ...rec(3, "rejected", "below_keep_quantile", 0.1, 0.3) };
  const read = parseScoreRecord(
    JSON.stringify({
      ...base,
      scores: { ...base.scores, normsim_inf: null },
      not_computed: { normsim_inf: "below_keep_quantile" },
    }),
    "x",
  );
  assert.deepEqual(read.scores, { clip_score: 0.25, s_clip_loss: 0.1 });
  assert.deepEqual(read.not_computed, { normsim_inf: "below_keep_quantile" });
  assert.throws(
    () => parseScoreRecord(JSON.stringify({ ...base, scores: { ...base.scores, normsim_inf: null } }), "y"),
    (err) => isClipsieveError(err, "LAKE_RECORD_INVALID") && /score normsim_inf is null/.test(err.message),
  );
  assert.throws(
    () => parseScoreRecord(JSON.stringify({ ...base, not_computed: { normsim_inf: 3 } }), "z"),
    (err) => isClipsieveError(err, "LAKE_RECORD_INVALID") && /not_computed/.test(err.message),
  );
});
