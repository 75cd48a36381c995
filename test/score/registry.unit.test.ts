import assert from "node:assert/strict";
import { test } from "node:test";
import type { ScoringEngine } from "../../src/score/engine.ts";
import {
  SCORE_FAMILY_RUNS,
  SCORE_NAMES,
  SCORES,
  scoreNeedsTarget,
  scoresNeedingTarget,
} from "../../src/score/registry.ts";
import type { Pool, TargetSet } from "../../src/score/types.ts";
import { scorePoolRows } from "../../src/score/window-scores.ts";

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
      ["normsim", true, ["normsim_2", "normsim_inf"]],
    ],
  );
});

/** An engine that returns known columns and records what it was asked. */
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
    async normSim(image, rows, target) {
      calls.push(`normSim ${image.length} ${rows} ${target.rows}`);
      return {
        normsim2: Float32Array.from({ length: rows }, (_, i) => 10 + i),
        normsimInf: Float32Array.from({ length: rows }, (_, i) => 20 + i),
      };
    },
    gram: async () => new Float32Array(),
    gramNorm: async () => new Float32Array(),
    nearest: async () => ({ index: new Float32Array(), best: new Float32Array() }),
    close: async () => {},
  };
}

const pool: Pool = {
  dim: 2,
  scoredRows: 3,
  bankRows: 1,
  image: new Float32Array(8),
  text: new Float32Array(8),
};
const target = { rows: 5, dim: 2 } as TargetSet;

test("scorePoolRows: s-CLIPLoss columns, and NormSim only with a target, keys in registry order", async () => {
  const calls: string[] = [];
  const without = await scorePoolRows(fakeEngine(calls), pool, [[]], 0.01, undefined);
  assert.deepEqual(calls, ["sClipLoss 3 1 0.01"]);
  assert.deepEqual(without, [
    { clip_score: 0.5, s_clip_loss: -0 },
    { clip_score: 1.5, s_clip_loss: -1 },
    { clip_score: 2.5, s_clip_loss: -2 },
  ]);
  calls.length = 0;
  const withTarget = await scorePoolRows(fakeEngine(calls), pool, [[]], 0.01, target);
  assert.deepEqual(calls, ["sClipLoss 3 1 0.01", "normSim 6 3 5"]);
  assert.deepEqual(withTarget[2], { clip_score: 2.5, s_clip_loss: -2, normsim_2: 12, normsim_inf: 22 });
  assert.deepEqual(Object.keys(withTarget[0]), SCORE_NAMES);
  assert.deepEqual(await scorePoolRows(fakeEngine([]), { ...pool, scoredRows: 0 }, [], 0.01, target), []);
});
