/**
 * The fidelity analysis (src/bench/agreement.ts) on hand-made selections whose figures are counted
 * here by hand: Jaccard overall and per stage, the exact cut-offs over the streamed scores, the spread
 * of score differences, the warm-up split and where the disagreements fall.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { analyseAgreement, offlineSets } from "../../src/bench/agreement.ts";
import type { RecordOutcome } from "../../src/common/record.ts";
import type { SelectionPlan } from "../../src/policy/offline-select.ts";

const KEYS = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
// Offline s-CLIPLoss: a is best, j worst; NormSim ranks them the other way within the top half.
const OFFLINE = Float32Array.from([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0]);
const NORMSIM = Float32Array.from([0.1, 0.2, 0.3, 0.4, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0]);
// Top 50 % by s-CLIPLoss (a-e), then top 20 % of N by NormSim among them (d, e).
const PLAN: SelectionPlan = {
  thresholds: [],
  keep: { score: "s_clip_loss", fraction: 0.5 },
  thenKeep: { score: "normsim_inf", fraction: 0.2 },
};

function outcome(key: string, decision: "accepted" | "rejected", reason: string, s: number): RecordOutcome {
  return {
    record: { uid: key } as RecordOutcome["record"],
    decision,
    reason,
    scores: { s_clip_loss: s },
  } as RecordOutcome;
}

test("offlineSets: the stage-1 set and the final selection of a two-stage plan", () => {
  const { stage1, selected } = offlineSets(KEYS, { s_clip_loss: OFFLINE, normsim_inf: NORMSIM }, PLAN);
  assert.deepEqual([...stage1].sort(), ["a", "b", "c", "d", "e"]);
  assert.deepEqual([...selected].sort(), ["d", "e"]);
});

test("analyseAgreement: overall and stage-1 Jaccard, exact cut-offs, spreads, warm-up split, first window", () => {
  const columns = { s_clip_loss: OFFLINE, normsim_inf: NORMSIM };
  const offline = { keys: KEYS, columns, ...offlineSets(KEYS, columns, PLAN) };
  // Streaming: e scored a little low and f a little high; stage 1 passes a, b, c, d, f; accepts d, f.
  const streamed: Record<string, number> = { e: 0.35, f: 0.45 };
  const decided: Record<string, [boolean, string]> = {
    a: [false, "below_then_quantile"],
    b: [false, "below_then_quantile"],
    c: [false, "below_then_quantile"],
    d: [true, "passed"],
    e: [false, "below_keep_quantile"],
    f: [true, "passed"],
  };
  const outcomes = KEYS.map((k, i) => {
    const [acc, reason] = decided[k] ?? [false, "below_keep_quantile"];
    return outcome(k, acc ? "accepted" : "rejected", reason, streamed[k] ?? OFFLINE[i]);
  });
  // Stage-1 cut-offs the policy would have reported: 0.65 after a, b, c (all three at or above it,
  // where floor(0.5 * 3) = 1 should be: rank error 2/3); 0.45 after all ten (a, b, c, d, f: exact).
  const cutAt = (cut: number) => (o: RecordOutcome) => ({ ...o, thresholds: { "keep:s_clip_loss": cut } });
  const deadLetter = {
    record: { uid: "x" } as RecordOutcome["record"],
    decision: "dead_letter",
    reason: "EMBEDDING_NOT_FINITE",
  } as RecordOutcome;
  const windows = [
    { outcomes: [deadLetter, ...outcomes.slice(0, 3).map(cutAt(0.65))] },
    { outcomes: outcomes.slice(3).map(cutAt(0.45)) },
  ];
  const again = Float32Array.from(OFFLINE, (v, i) => v + (i % 2 === 0 ? 0.01 : -0.01));
  const a = analyseAgreement({
    offline,
    offlineAgain: again,
    windows,
    keyOf: (o) => o.record.uid as string,
    plan: PLAN,
    warmup: 5,
  });
  // Accepted {d, f} against {d, e}: 1 of 3.
  assert.equal(a.jaccard, 1 / 3);
  // Stage 1 {a, b, c, d, f} against {a, b, c, d, e}: 4 of 6; among a, b, c, d both accept d only.
  assert.equal(a.stage1Jaccard, 4 / 6);
  assert.equal(a.stage2Jaccard, 1);
  assert.equal(a.sketchRankError, 2 / 3);
  // Exact cut-offs over the streamed scores: f (0.45) passes stage 1 instead of e (0.35); NormSim
  // then keeps the two best of a, b, c, d, f: d (0.4) and c (0.3), against d, e: 1 of 3.
  assert.equal(a.exactCutJaccard, 1 / 3);
  // Differences: e 0.35 - 0.5 = -0.15, f 0.45 - float32(0.4) = 0.0499999940, 0 elsewhere; their
  // standard deviation, worked out by hand (mean -0.0100000006): 0.0489897941.
  assert.ok(Math.abs(a.streamNoise - 0.048989794125658764) < 1e-12, `${a.streamNoise}`);
  assert.ok(Math.abs(a.floorNoise - 0.01) < 1e-6);
  // Warm-up: the first five decided records a-e (the dead letter x does not count), accepted {d}
  // against {d, e} there: 1 of 2; after: {f} against {}: 0 of 1.
  assert.equal(a.warmupJaccard, 1 / 2);
  assert.equal(a.afterWarmupJaccard, 0);
  // e and f decided differently, both in the second window (d-j); the first's 3 decided records agree.
  assert.equal(a.disagreements, 2);
  assert.equal(a.firstWindowRate, 0);
  assert.equal(a.laterRate, 2 / 7);
});
