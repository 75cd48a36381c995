/**
 * NormSim_2-D's survival score against a float64 implementation of spec §3's procedure written here
 * (subsamples drawn as src/score/normsim2d.ts documents, from the generator tested in draws.test.ts).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { isClipsieveError } from "../../src/common/errors.ts";
import { createScoringEngine, type ScoringEngine } from "../../src/score/engine.ts";
import { normSim2DSurvival } from "../../src/score/normsim2d.ts";
import { createRandom } from "../../src/score/random.ts";
import { unitRows } from "./helpers.ts";

interface Settings {
  prefilterFraction: number;
  keepFraction: number;
  iterations: number;
  sampleFraction: number;
  seed: number;
}

/** Rows in the order NormSim_2-D eliminates them (first eliminated first), in float64. */
function referenceElimination(
  image: Float32Array,
  n: number,
  d: number,
  prefilter: number[],
  s: Settings,
): number[] {
  const random = createRandom(s.seed, 0);
  const covariance = (rows: number[]): number[][] => {
    const m = rows.length;
    const count = Math.max(1, Math.floor(m * s.sampleFraction));
    const order = rows.map((_, i) => i);
    for (let i = 0; i < count; i++) {
      const j = i + random.below(m - i);
      [order[i], order[j]] = [order[j], order[i]];
    }
    const sigma = Array.from({ length: d }, () => new Array<number>(d).fill(0));
    for (const p of order.slice(0, count)) {
      const f = rows[p] * d;
      for (let a = 0; a < d; a++)
        for (let b = 0; b < d; b++) sigma[a][b] += (image[f + a] * image[f + b]) / count;
    }
    return sigma;
  };
  const quad = (row: number, sigma: number[][]): number => {
    let q = 0;
    for (let a = 0; a < d; a++)
      for (let b = 0; b < d; b++) q += image[row * d + a] * sigma[a][b] * image[row * d + b];
    return q;
  };
  const lowestFirst = (rows: number[], key: (row: number) => number) =>
    [...rows].sort((x, y) => key(x) - key(y) || y - x);

  const eliminated: number[] = [];
  let sigma = covariance(Array.from({ length: n }, (_, i) => i));
  const byScore = lowestFirst(
    Array.from({ length: n }, (_, i) => i),
    (i) => prefilter[i],
  );
  const cut = n - Math.floor(n * s.prefilterFraction);
  eliminated.push(...byScore.slice(0, cut));
  let remaining = byScore.slice(cut).sort((a, b) => a - b);
  const toDrop = remaining.length - Math.floor(n * s.keepFraction);
  const rounds = Math.min(s.iterations, toDrop);
  for (let t = 0; t < rounds; t++) {
    const chunk = Math.floor(((t + 1) * toDrop) / rounds) - Math.floor((t * toDrop) / rounds);
    const current = sigma;
    const order = lowestFirst(remaining, (row) => quad(row, current));
    eliminated.push(...order.slice(0, chunk));
    remaining = order.slice(chunk).sort((a, b) => a - b);
    sigma = covariance(remaining);
  }
  const last = sigma;
  eliminated.push(...lowestFirst(remaining, (row) => quad(row, last)));
  return eliminated;
}

/** Deterministic rows with a few dominant directions, so f^T Sigma f has no near-ties. */
function clusteredRows(n: number, d: number, seed: number): Float32Array {
  let state = seed;
  const next = () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32 - 0.5;
  };
  const values = new Float64Array(n * d);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < d; k++) values[i * d + k] = next() * (1 + (i % 3 === k % 3 ? 2 : 0));
  }
  return unitRows(values, n, d);
}

describe("NormSim_2-D survival", () => {
  let engine: ScoringEngine;
  before(async () => {
    engine = await createScoringEngine({ threads: 2, blockElements: 64 });
  });
  after(() => engine.close());

  const cases: Array<[string, number, number, Settings]> = [
    [
      "the paper's fractions, 4 rounds",
      80,
      6,
      { prefilterFraction: 0.3, keepFraction: 0.2, iterations: 4, sampleFraction: 0.1, seed: 1 },
    ],
    [
      "one row per round",
      50,
      5,
      { prefilterFraction: 0.5, keepFraction: 0.3, iterations: 100, sampleFraction: 0.2, seed: 9 },
    ],
    [
      "no rounds (keep = prefilter)",
      40,
      4,
      { prefilterFraction: 0.4, keepFraction: 0.4, iterations: 3, sampleFraction: 0.5, seed: 2 },
    ],
  ];
  for (const [label, n, d, settings] of cases) {
    it(`matches the float64 procedure: ${label}`, async () => {
      const image = clusteredRows(n, d, n * 31 + d);
      const prefilter = Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898) * 0.5);
      const survival = await normSim2DSurvival(engine, image, n, d, {
        prefilterScore: prefilter,
        ...settings,
      });
      const eliminated = referenceElimination(image, n, d, prefilter, settings);
      const byScore = Array.from({ length: n }, (_, i) => i).sort((a, b) => survival[a] - survival[b]);
      assert.deepEqual(byScore, eliminated);
      assert.deepEqual(
        eliminated.map((row) => survival[row]),
        eliminated.map((_, position) => position / n),
      );
      // The top keepFraction by survival are exactly the rows left at the end.
      const kept = Math.floor(n * settings.keepFraction);
      const top = new Set(byScore.slice(n - kept));
      assert.deepEqual(top, new Set(eliminated.slice(n - kept)));
    });
  }

  it("rejects fractions out of order and scores that do not line up", async () => {
    const image = clusteredRows(10, 3, 1);
    const score = new Float32Array(10);
    await assert.rejects(
      normSim2DSurvival(engine, image, 10, 3, {
        prefilterScore: score,
        prefilterFraction: 0.2,
        keepFraction: 0.3,
      }),
      (err) => isClipsieveError(err, "CONFIG_INVALID"),
    );
    await assert.rejects(
      normSim2DSurvival(engine, image, 10, 3, { prefilterScore: new Float32Array(9) }),
      (err) => isClipsieveError(err, "CONFIG_INVALID") && /9 prefilter scores for 10 rows/.test(err.message),
    );
    score[4] = Number.NaN;
    await assert.rejects(
      normSim2DSurvival(engine, image, 10, 3, { prefilterScore: score }),
      (err) => isClipsieveError(err, "CONFIG_INVALID") && /row 4 is NaN/.test(err.message),
    );
  });
});
