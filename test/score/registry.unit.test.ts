import assert from "node:assert/strict";
import { test } from "node:test";
import type { ScoringEngine } from "../../src/score/engine.ts";
import {
  SCORE_FAMILY_RUNS,
  SCORE_NAMES,
  SCORES,
  type ScoreRow,
  scoreIsDeferrable,
  scoreNeedsTarget,
  scoresNeedingTarget,
} from "../../src/score/registry.ts";
import type { Pool, TargetSet } from "../../src/score/types.ts";
import { type RowSelector, scorePoolRows } from "../../src/score/window-scores.ts";

test("the registry declares each score once; SCORE_NAMES is its order", () => {
  assert.deepEqual(SCORE_NAMES, ["clip_score", "s_clip_loss", "normsim_2", "normsim_inf"]);
  assert.equal(new Set(SCORES.map((s) => s.name)).size, SCORES.length);
  for (const s of SCORES) assert.ok(s.description.length > 0, s.name);
});

test("only the NormSim scores need a target set", () => {
  assert.equal(scoreNeedsTarget("clip_score"), false);
  assert.equal(scoreNeedsTarget("s_clip_loss"), false);
  assert.equal(scoreNeedsTarget("normsim_2"), true);
  assert.equal(scoreNeedsTarget("normsim_inf"), true);
  assert.equal(scoresNeedingTarget([]), false);
  assert.equal(scoresNeedingTarget(["s_clip_loss", undefined, "clip_score"]), false);
  assert.equal(scoresNeedingTarget([undefined, "normsim_inf"]), true);
  assert.equal(scoresNeedingTarget(["not_a_score"]), false);
});

test("the families cover every score once, in registry order", () => {
  assert.deepEqual(
    SCORE_FAMILY_RUNS.map((f) => [f.id, f.needsTarget, f.scores]),
    [
      ["s_clip_loss", false, ["clip_score", "s_clip_loss"]],
      ["normsim_2", true, ["normsim_2"]],
      ["normsim_inf", true, ["normsim_inf"]],
    ],
  );
});

test("only NormSim_inf, O(M·D) per row, is computed for some rows only", () => {
  assert.deepEqual(
    SCORE_FAMILY_RUNS.filter((f) => f.deferrable).map((f) => f.id),
    ["normsim_inf"],
  );
  assert.deepEqual(
    SCORE_NAMES.filter((name) => scoreIsDeferrable(name)),
    ["normsim_inf"],
  );
});

/**
 * An engine that returns known columns and records what it was asked. NormSim values come from the
 * image rows it is given (10 + and 20 + a row's first value), so a test sees which rows went in.
 */
function fakeEngine(calls: string[]): ScoringEngine {
  return {
    provider: "cpu",
    async sClipLoss(pool, draws, tau) {
      calls.push(`sClipLoss ${pool.scoredRows} ${draws.length} ${tau}`);
      const n = pool.scoredRows;
      return {
        clipScore: Float32Array.from({ length: n }, (_, i) => i + 0.5),
        sClipLoss: Float32Array.from({ length: n }, (_, i) => -i),
        normaliser: new Float32Array(n),
      };
    },
    async normSim(image, rows, target, which = { two: true, inf: true }) {
      const asked = [which.two ? "two" : "", which.inf ? "inf" : ""].filter(Boolean).join("+");
      calls.push(`normSim ${image.length} ${rows} ${target.rows} ${asked}`);
      const first = (i: number) => image[i * target.dim]!;
      return {
        normsim2: which.two
          ? Float32Array.from({ length: rows }, (_, i) => 10 + first(i))
          : new Float32Array(0),
        normsimInf: which.inf
          ? Float32Array.from({ length: rows }, (_, i) => 20 + first(i))
          : new Float32Array(0),
      };
    },
    gram: async () => new Float32Array(),
    gramNorm: async () => new Float32Array(),
    nearest: async () => ({ index: new Float32Array(), best: new Float32Array() }),
    bestRows: async () => ({ best: new Float32Array(), index: new Int32Array() }),
    dots: async () => new Float32Array(),
    close: async () => {},
  };
}

/** Three scored rows and one bank row; image row i starts with i. */
const pool: Pool = {
  dim: 2,
  scoredRows: 3,
  bankRows: 1,
  image: new Float32Array([0, 0, 1, 0, 2, 0, 3, 0]),
  text: new Float32Array(8),
};
const target = { rows: 5, dim: 2 } as TargetSet;

test("scorePoolRows: s-CLIPLoss columns, and NormSim only with a target, keys in registry order", async () => {
  const calls: string[] = [];
  const without = await scorePoolRows(fakeEngine(calls), pool, [[]], 0.01, undefined);
  assert.deepEqual(calls, ["sClipLoss 3 1 0.01"]);
  assert.deepEqual(without.rows, [
    { clip_score: 0.5, s_clip_loss: -0 },
    { clip_score: 1.5, s_clip_loss: -1 },
    { clip_score: 2.5, s_clip_loss: -2 },
  ]);
  calls.length = 0;
  const withTarget = await scorePoolRows(fakeEngine(calls), pool, [[]], 0.01, target);
  assert.deepEqual(calls, ["sClipLoss 3 1 0.01", "normSim 6 3 5 two", "normSim 6 3 5 inf"]);
  assert.deepEqual(withTarget.rows[2], { clip_score: 2.5, s_clip_loss: -2, normsim_2: 12, normsim_inf: 22 });
  assert.deepEqual(Object.keys(withTarget.rows[0]), SCORE_NAMES);
  assert.deepEqual(withTarget.notComputed, [undefined, undefined, undefined]);
  assert.deepEqual(await scorePoolRows(fakeEngine([]), { ...pool, scoredRows: 0 }, [], 0.01, target), {
    rows: [],
    notComputed: [],
  });
});

test("scorePoolRows with a selector: it reads the other scores, and only its rows go to the engine", async () => {
  const calls: string[] = [];
  const seen: ScoreRow[][] = [];
  const selector: RowSelector = {
    score: "normsim_inf",
    reason: "below_keep_quantile",
    select(rows) {
      seen.push(rows.map((r) => ({ ...r })));
      return Uint8Array.from([1, 0, 1]);
    },
  };
  const { rows, notComputed } = await scorePoolRows(fakeEngine(calls), pool, [[]], 0.01, target, selector);
  // The selector saw every score but NormSim_inf; NormSim_inf was asked for pool rows 0 and 2 only.
  assert.deepEqual(seen, [
    [
      { clip_score: 0.5, s_clip_loss: -0, normsim_2: 10 },
      { clip_score: 1.5, s_clip_loss: -1, normsim_2: 11 },
      { clip_score: 2.5, s_clip_loss: -2, normsim_2: 12 },
    ],
  ]);
  assert.deepEqual(calls, ["sClipLoss 3 1 0.01", "normSim 6 3 5 two", "normSim 4 2 5 inf"]);
  assert.deepEqual(rows, [
    { clip_score: 0.5, s_clip_loss: -0, normsim_2: 10, normsim_inf: 20 },
    { clip_score: 1.5, s_clip_loss: -1, normsim_2: 11 },
    { clip_score: 2.5, s_clip_loss: -2, normsim_2: 12, normsim_inf: 22 },
  ]);
  assert.deepEqual(notComputed, [undefined, { normsim_inf: "below_keep_quantile" }, undefined]);
});

test("scorePoolRows with a selector that picks none, all, or says null", async () => {
  const run = async (picked: Uint8Array | null) => {
    const calls: string[] = [];
    const selector: RowSelector = { score: "normsim_inf", reason: "why", select: () => picked };
    return { calls, ...(await scorePoolRows(fakeEngine(calls), pool, [[]], 0.01, target, selector)) };
  };
  const none = await run(new Uint8Array(3));
  assert.deepEqual(none.calls, ["sClipLoss 3 1 0.01", "normSim 6 3 5 two"]);
  assert.ok(none.rows.every((r) => !("normsim_inf" in r)));
  assert.deepEqual(none.notComputed, Array(3).fill({ normsim_inf: "why" }));
  for (const picked of [Uint8Array.from([1, 1, 1]), null]) {
    const all = await run(picked);
    assert.deepEqual(all.calls.at(-1), "normSim 6 3 5 inf");
    assert.deepEqual(
      all.rows.map((r) => r.normsim_inf),
      [20, 21, 22],
    );
    assert.deepEqual(all.notComputed, [undefined, undefined, undefined]);
  }
  // Without a target set there is no NormSim to select for: the selector is not asked.
  const calls: string[] = [];
  const asked: unknown[] = [];
  const selector: RowSelector = {
    score: "normsim_inf",
    reason: "why",
    select(r) {
      asked.push(r);
      return null;
    },
  };
  await scorePoolRows(fakeEngine(calls), pool, [[]], 0.01, undefined, selector);
  assert.deepEqual(asked, []);
  // A selector on a score that is not deferrable is a programming error.
  await assert.rejects(
    scorePoolRows(fakeEngine([]), pool, [[]], 0.01, target, { ...selector, score: "s_clip_loss" }),
    /not deferrable/,
  );
});
