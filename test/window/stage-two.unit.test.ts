/**
 * The key guarantee of scoring NormSim_inf for stage-1 passers only: on the same windows, a lazy run
 * (the window scorer with the policy's stage-2 selector, as `run`, `replay`, `calibrate` and the
 * emulator score) decides every record exactly as an eager run (every score for every record), with
 * the same scores where both have them, while NormSim_inf goes to the engine for far fewer rows. A
 * record lacks NormSim_inf exactly when its s-CLIPLoss is below the stage-1 cut-off its decision
 * records, and says so. A selector that leaves out one stage-1 passer is refused by the policy.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { isClipsieveError } from "../../src/common/errors.ts";
import type { DecodedRecord, RecordOutcome } from "../../src/common/record.ts";
import { createPolicy, type Policy, parsePolicySpec } from "../../src/policy/index.ts";
import { createScoringEngine, type ScoringEngine } from "../../src/score/engine.ts";
import type { TargetSet } from "../../src/score/types.ts";
import type { RowSelector } from "../../src/score/window-scores.ts";
import { decideWindow } from "../../src/window/decide.ts";
import { type ScorerSettings, WindowScorer } from "../../src/window/scorer.ts";
import { STAGE_TWO_SKIPPED, stageTwoSelector } from "../../src/window/stage-two.ts";
import { mulberry32, syntheticPairs, unit } from "../helpers/records.ts";

const DIM = 32;

function records(n: number, seed: number): DecodedRecord[] {
  return syntheticPairs(n, DIM, seed).map((p, i) => ({
    source: { topic: "in", partition: 0, offset: String(i) },
    key: null,
    value: null,
    headers: {},
    timestamp: "0",
    uid: p.uid,
    imageEmbedding: Float32Array.from(p.image),
    textEmbedding: Float32Array.from(p.text),
  }));
}

function targetSet(rows: number, seed: number): TargetSet {
  const rand = mulberry32(seed);
  const embeddings = new Float32Array(rows * DIM);
  for (let m = 0; m < rows; m++)
    embeddings.set(unit(Array.from({ length: DIM }, () => rand() - 0.5)), m * DIM);
  return { model: "test", dim: DIM, rows, embeddings, gram: new Float32Array(DIM * DIM), contentHash: "t" };
}

const SPEC = parsePolicySpec({
  keep: { score: "s_clip_loss", fraction: 0.3 },
  thenKeep: { score: "normsim_inf", fraction: 0.2 },
  warmup: { records: 400 },
  // A small sketch: its compactions run while the windows are decided.
  sketch: { k: 32 },
});

/** Rows handed to NormSim_inf, over every call. */
function counting(engine: ScoringEngine, count: { inf: number }): ScoringEngine {
  return {
    ...engine,
    sClipLoss: (p, d, tau) => engine.sClipLoss(p, d, tau),
    async normSim(image, rows, t, which) {
      if (which?.inf) count.inf += rows;
      return engine.normSim(image, rows, t, which);
    },
  };
}

interface Run {
  scorer: WindowScorer;
  policy: Policy;
  count: { inf: number };
}

describe("lazy NormSim_inf (stage-1 passers only) against every score for every record", () => {
  let engine: ScoringEngine;
  let settings: ScorerSettings;
  const run = (): Run => {
    const count = { inf: 0 };
    return { scorer: new WindowScorer(counting(engine, count), settings), policy: createPolicy(SPEC), count };
  };
  before(async () => {
    engine = await createScoringEngine({ device: "cpu", threads: 2 });
    settings = {
      dim: DIM,
      bankSize: 128,
      draws: 2,
      batchSize: 128,
      tau: 0.01,
      seed: 7,
      target: targetSet(1500, 8),
    };
  });
  after(() => engine.close());

  it("decides every record alike, over windows of varying size", async () => {
    const all = records(3000, 9);
    const eager = run();
    const lazy = run();
    const sizes = mulberry32(10);
    let lacking = 0;
    let decided = 0;
    for (let at = 0; at < all.length; ) {
      // Windows of 1 to 240 records: lone records and lone stage-1 passers included.
      const size = at === 0 ? 1 : 1 + Math.floor(sizes() * 240);
      const window = all.slice(at, at + size);
      at += size;
      const e = decideWindow(await eager.scorer.scoreAndRemember(window), eager.policy);
      const selector = stageTwoSelector(lazy.policy);
      assert.ok(selector);
      const l = decideWindow(await lazy.scorer.scoreAndRemember(window, selector), lazy.policy);
      assert.equal(l.length, e.length);
      l.forEach((o, i) => {
        const where = `record ${o.record.source.offset}`;
        const eo: RecordOutcome = e[i]!;
        assert.equal(o.decision, eo.decision, where);
        assert.equal(o.reason, eo.reason, where);
        assert.deepEqual(o.thresholds, eo.thresholds, where);
        const keepCut = o.thresholds!["keep:s_clip_loss"]!;
        const { normsim_inf: value, ...others } = o.scores!;
        const { normsim_inf: eagerValue, ...eagerOthers } = eo.scores!;
        assert.deepEqual(others, eagerOthers, where);
        if (o.scores!.s_clip_loss! >= keepCut) {
          assert.equal(value, eagerValue, `${where}: a stage-1 passer's NormSim_inf`);
          assert.equal(o.notComputed, undefined, where);
        } else {
          assert.equal(value, undefined, `${where}: below the stage-1 cut-off ${keepCut}, yet scored`);
          assert.deepEqual(o.notComputed, { normsim_inf: STAGE_TWO_SKIPPED }, where);
          lacking++;
        }
        decided++;
      });
      assert.deepEqual(lazy.policy.snapshot(), eager.policy.snapshot());
    }
    assert.ok(decided === all.length);
    assert.ok(lacking > 0.6 * decided, `${lacking} of ${decided} without NormSim_inf`);
    // Stage 1 keeps about 30%: the engine got NormSim_inf rows for well under half the records.
    assert.equal(eager.count.inf, all.length);
    assert.ok(lazy.count.inf < 0.45 * all.length, `${lazy.count.inf} NormSim_inf rows of ${all.length}`);
    assert.ok(lazy.count.inf >= all.length - lacking, "every stage-1 passer was scored");
  });

  it("a selector that leaves out a stage-1 passer is refused: the check above can fail", async () => {
    const all = records(600, 11);
    const lazy = run();
    decideWindow(
      await lazy.scorer.scoreAndRemember(all.slice(0, 300), stageTwoSelector(lazy.policy)),
      lazy.policy,
    );
    const real = stageTwoSelector(lazy.policy)!;
    const wrong: RowSelector = {
      ...real,
      select(rows) {
        const mask = real.select(rows)!;
        mask[mask.indexOf(1)] = 0;
        return mask;
      },
    };
    const scored = await lazy.scorer.score(all.slice(300), { selector: wrong });
    const before = lazy.policy.snapshot();
    assert.throws(
      () => decideWindow(scored, lazy.policy),
      (err) => isClipsieveError(err, "POLICY_SCORE_INVALID") && /passed stage 1/.test(err.message),
    );
    assert.deepEqual(lazy.policy.snapshot(), before);
  });

  it("scoreAll's path (no selector) and a policy without a stage 2 score every row", async () => {
    assert.equal(stageTwoSelector(createPolicy(parsePolicySpec({ keep: SPEC.keep }))), undefined);
    // A cheap stage-2 score is computed for every row anyway: no selector.
    const cheap = parsePolicySpec({ keep: SPEC.keep, thenKeep: { score: "normsim_2", fraction: 0.2 } });
    assert.equal(stageTwoSelector(createPolicy(cheap)), undefined);
    const eager = run();
    const scored = await eager.scorer.score(records(50, 12));
    assert.ok(scored.rows.every((r) => typeof r.normsim_inf === "number"));
    assert.ok(scored.notComputed!.every((n) => n === undefined));
  });
});
