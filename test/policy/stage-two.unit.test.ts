/**
 * `stageTwoRows` names the rows whose stage-2 score `decide` will read: those at or above the stage-1
 * cut-off that decide computes for the same window. Checked against a reference sketch that is fed
 * every window directly (never cloned), over windows that compact the sketch thousands of times and
 * across a restore; and a policy given the stage-2 score only on those rows decides exactly as one
 * given every score.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isClipsieveError } from "../../src/common/errors.ts";
import { parsePolicySpec } from "../../src/policy/options.ts";
import { createPolicy, type Policy } from "../../src/policy/policy.ts";
import { KllSketch } from "../../src/policy/sketch.ts";
import type { ScoreRow } from "../../src/score/registry.ts";
import { seededUniform, syntheticStream } from "./random.ts";

/** Windows of 1 to 300 rows (sizes seeded), so the sketch compacts at every phase of its levels. */
function windows(rows: ScoreRow[], seed: number): ScoreRow[][] {
  const uniform = seededUniform(seed);
  const out: ScoreRow[][] = [];
  for (let i = 0; i < rows.length; ) {
    const size = 1 + Math.floor(uniform() * 300);
    out.push(rows.slice(i, i + size));
    i += size;
  }
  return out;
}

/** The rows as a lazy scorer hands them over: no NormSim_inf where the mask says 0. */
function withoutUnneeded(window: readonly ScoreRow[], mask: Uint8Array | null): ScoreRow[] {
  return window.map((row, i) => {
    if (!mask || mask[i]) return { ...row };
    const { normsim_inf: _, ...rest } = row;
    return rest;
  });
}

const TWO_STAGE = {
  keep: { score: "s_clip_loss", fraction: 0.3 },
  thenKeep: { score: "normsim_inf", fraction: 0.2 },
  warmup: { records: 500 },
  // A small sketch compacts every few dozen values: thousands of compactions over the stream.
  sketch: { k: 16 },
} as const;

describe("stageTwoRows", () => {
  it("marks exactly the rows at or above the stage-1 cut-off decide computes, through compactions and a restore", () => {
    const spec = parsePolicySpec(TWO_STAGE);
    let policy: Policy = createPolicy(spec);
    // The reference: the keep sketch's starting state, fed every window in place, never cloned.
    const reference = KllSketch.fromJSON(policy.snapshot().sketches.keep);
    const all = windows(syntheticStream(60_000, 1), 2);
    let marked = 0;
    let seen = 0;
    all.forEach((window, w) => {
      if (w === Math.floor(all.length / 2)) {
        // A restart: the policy restored from its state carries on with the same cut-offs.
        policy = createPolicy(spec, { state: JSON.parse(JSON.stringify(policy.snapshot())) });
      }
      const before = policy.snapshot();
      const mask = policy.stageTwoRows(window);
      assert.deepEqual(policy.snapshot(), before, `window ${w}: stageTwoRows changed the state`);
      for (const row of window) reference.add(row.s_clip_loss);
      const cut = reference.topFractionCutoff(0.3);
      assert.ok(mask, `window ${w}`);
      assert.deepEqual(
        [...mask],
        window.map((row) => (row.s_clip_loss >= cut ? 1 : 0)),
        `window ${w}: the rows marked are not those at or above the cut-off ${cut}`,
      );
      const decisions = policy.decide(withoutUnneeded(window, mask));
      assert.equal(policy.thresholds()["keep:s_clip_loss"], cut, `window ${w}: decide's cut-off`);
      decisions.forEach((d, i) => {
        if (!mask[i]) assert.ok(d.reason === "below_keep_quantile" || d.warmup, `window ${w} row ${i}`);
      });
      marked += mask.reduce((a, b) => a + b, 0);
      seen += window.length;
    });
    assert.ok(reference.retained < reference.count / 100, "the sketch compacted");
    assert.ok(Math.abs(marked / seen - 0.3) < 0.03, `marked ${marked} of ${seen}`);
  });

  it("a policy given the stage-2 score for the marked rows only decides as one given every score", () => {
    for (const mode of ["provisional", "accept", "reject"] as const) {
      const spec = parsePolicySpec({ ...TWO_STAGE, warmup: { records: 3000, mode } });
      const eager = createPolicy(spec);
      let lazy = createPolicy(spec);
      const all = windows(syntheticStream(30_000, 3), 4);
      let skipped = 0;
      all.forEach((window, w) => {
        if (w === 40) lazy = createPolicy(spec, { state: JSON.parse(JSON.stringify(lazy.snapshot())) });
        const mask = lazy.stageTwoRows(window);
        const given = withoutUnneeded(window, mask);
        skipped += given.filter((r) => r.normsim_inf === undefined).length;
        assert.deepEqual(lazy.decide(given), eager.decide(window), `${mode}, window ${w}`);
        assert.deepEqual(lazy.snapshot(), eager.snapshot(), `${mode}, window ${w}`);
      });
      assert.ok(skipped > 15_000, `${mode}: ${skipped} rows went without NormSim_inf`);
    }
  });

  it("a mask that leaves out one stage-1 passer's score is refused by decide", () => {
    const policy = createPolicy(parsePolicySpec(TWO_STAGE));
    const all = windows(syntheticStream(5000, 5), 6);
    for (const window of all.slice(0, 10)) policy.decide(window);
    const window = all[10]!;
    const mask = policy.stageTwoRows(window)!;
    const passer = mask.indexOf(1);
    assert.ok(passer >= 0);
    // One passer too few: what a selector that picked rows wrongly would hand over.
    const wrong = Uint8Array.from(mask);
    wrong[passer] = 0;
    const before = policy.snapshot();
    assert.throws(
      () => policy.decide(withoutUnneeded(window, wrong)),
      (err) =>
        isClipsieveError(err, "POLICY_SCORE_INVALID") &&
        new RegExp(`row ${passer}: score normsim_inf is missing, but the record passed stage 1`).test(
          err.message,
        ),
    );
    assert.deepEqual(policy.snapshot(), before, "a refused window changes nothing");
    // NaN counts as missing too; a stage-1 failer may have either.
    const nan = window.map((row, i) => (i === passer ? { ...row, normsim_inf: Number.NaN } : row));
    assert.throws(() => policy.decide(nan), /score normsim_inf is NaN, but the record passed stage 1/);
    const failer = mask.indexOf(0);
    const fine = window.map((row, i) => (i === failer ? { ...row, normsim_inf: Number.NaN } : row));
    assert.equal(policy.decide(fine)[failer]!.reason, "below_keep_quantile");
  });

  it("a stage-1 passer that fails a fixed threshold still feeds the stage-2 sketch, so it needs the score", () => {
    const policy = createPolicy(
      parsePolicySpec({
        ...TWO_STAGE,
        thresholds: [{ score: "clip_score", min: 10 }],
        warmup: { records: 0 },
        sketch: { k: 1000 },
      }),
    );
    // 200 distinct values in a sketch of k = 1000: exact, floor(0.3 * 200) = 60 pass stage 1.
    const window = syntheticStream(200, 7);
    const mask = policy.stageTwoRows(window)!;
    assert.equal(
      mask.reduce((a, b) => a + b, 0),
      60,
    );
    const passer = mask.indexOf(1);
    assert.throws(
      () =>
        policy.decide(
          withoutUnneeded(
            window,
            Uint8Array.from(mask, (m, i) => (i === passer ? 0 : m)),
          ),
        ),
      (err) => isClipsieveError(err, "POLICY_SCORE_INVALID"),
    );
    const decisions = policy.decide(withoutUnneeded(window, mask));
    assert.ok(decisions.every((d) => d.reason === "below_threshold"));
    // Every stage-1 passer fed the stage-2 sketch: its count is the stage-1 passers'.
    assert.equal(policy.snapshot().sketches.thenKeep!.count, 60);
  });

  it("is null when every row needs every score", () => {
    const window = syntheticStream(50, 8);
    const nulls = [
      { keep: { score: "s_clip_loss", fraction: 0.3 } },
      { thresholds: [{ score: "normsim_inf", min: 0.5 }] },
      { ...TWO_STAGE, thresholds: [{ score: "normsim_inf", min: 0.1 }] },
      { ...TWO_STAGE, thenKeep: { score: "s_clip_loss", fraction: 0.2 } },
      { keep: { score: "normsim_inf", fraction: 0.3 }, thenKeep: { score: "normsim_inf", fraction: 0.1 } },
    ];
    for (const spec of nulls) {
      assert.equal(createPolicy(parsePolicySpec(spec)).stageTwoRows(window), null, JSON.stringify(spec));
    }
    // A stage-1 score that is not a number: decide refuses the window, whatever was computed.
    const policy = createPolicy(parsePolicySpec(TWO_STAGE));
    const bad = window.map((row, i) => (i === 3 ? { ...row, s_clip_loss: Number.NaN } : row));
    assert.equal(policy.stageTwoRows(bad), null);
    assert.throws(() => policy.decide(bad), /row 3: score s_clip_loss is NaN/);
  });

  it("while a top fraction keeps nobody yet, no row needs the stage-2 score", () => {
    const policy = createPolicy(parsePolicySpec(TWO_STAGE));
    // floor(0.3 * 3) = 0: the stage-1 cut-off is Infinity.
    const window = syntheticStream(3, 9);
    assert.deepEqual([...policy.stageTwoRows(window)!], [0, 0, 0]);
    const decisions = policy.decide(withoutUnneeded(window, new Uint8Array(3)));
    assert.ok(decisions.every((d) => d.decision === "rejected"));
  });
});
