/** The three golden cases through the library, with their explicit batches: every value within 1e-6. */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { drawsFromBatches } from "../../src/score/draws.ts";
import { createScoringEngine, type EngineOptions, type ScoringEngine } from "../../src/score/engine.ts";
import type { TargetSet } from "../../src/score/types.ts";
import { capturingLogger, flat, type GoldenCase, loadGolden, maxAbsDiff, PINO_DEBUG } from "./helpers.ts";

const TOLERANCE = 1e-6;
const cases: Record<string, GoldenCase> = {
  case1: loadGolden("case1"),
  case2: loadGolden("case2"),
  case3: loadGolden("case3"),
};

async function checkSClipLoss(engine: ScoringEngine, golden: GoldenCase): Promise<void> {
  const pool = {
    dim: golden.d,
    scoredRows: golden.n,
    bankRows: 0,
    image: flat(golden.inputs.img),
    text: flat(golden.inputs.txt),
  };
  const draws = drawsFromBatches(golden.batches, golden.n);
  assert.equal(draws.length, golden.k);
  const result = await engine.sClipLoss(pool, draws, golden.tau);
  assert.equal(result.clipScore.length, golden.n);
  assert.ok(maxAbsDiff(result.clipScore, golden.expected.clip_score) < TOLERANCE, "clip_score");
  assert.ok(maxAbsDiff(result.normaliser, golden.expected.s_clip_loss_R) < TOLERANCE, "s_clip_loss_R");
  assert.ok(maxAbsDiff(result.sClipLoss, golden.expected.s_clip_loss) < TOLERANCE, "s_clip_loss");
}

const configurations: Array<[string, EngineOptions]> = [
  ["default engine (fast path)", {}],
  // Blocks of a few rows: every batch is split, so the column sums merge across blocks.
  ["small blocks", { blockElements: 20_000 }],
  ["exact logsumexp", { logSumExp: "exact", blockElements: 20_000 }],
];

for (const [label, options] of configurations) {
  describe(`golden s-CLIPLoss, ${label}`, () => {
    let engine: ScoringEngine;
    const capture = capturingLogger();
    before(async () => {
      engine = await createScoringEngine({ ...options, threads: 2, logger: capture.logger });
    });
    after(() => engine.close());

    for (const name of Object.keys(cases)) {
      it(`${name} matches clip_score, s_clip_loss and R`, () => checkSClipLoss(engine, cases[name]));
    }

    if (options.logSumExp !== "exact") {
      it("needed no exact fallback at these taus (the fast path computed them)", () => {
        assert.equal(capture.lines.filter((l) => l.level === PINO_DEBUG).length, 0);
      });
    }
  });
}

describe("golden NormSim (case3)", () => {
  let engine: ScoringEngine;
  before(async () => {
    engine = await createScoringEngine({ threads: 2 });
  });
  after(() => engine.close());

  for (const blockElements of [undefined, 5_000]) {
    it(`normsim_2 via the Gram matrix and exact normsim_inf (blockElements ${blockElements ?? "default"})`, async () => {
      const blocked = await createScoringEngine({ threads: 2, blockElements });
      try {
        const golden = cases.case3;
        const targetRows = golden.inputs.target!;
        const embeddings = flat(targetRows);
        const target: TargetSet = {
          model: "golden",
          dim: golden.d,
          rows: targetRows.length,
          embeddings,
          gram: await blocked.gram(embeddings, targetRows.length, golden.d),
          contentHash: "",
        };
        const result = await blocked.normSim(flat(golden.inputs.img), golden.n, target);
        assert.ok(maxAbsDiff(result.normsim2, golden.expected.normsim_2!) < TOLERANCE, "normsim_2");
        assert.ok(maxAbsDiff(result.normsimInf, golden.expected.normsim_inf!) < TOLERANCE, "normsim_inf");
      } finally {
        await blocked.close();
      }
    });
  }

  it("returns only the NormSim asked for", async () => {
    const golden = cases.case3;
    const embeddings = flat(golden.inputs.target!);
    const rows = golden.inputs.target!.length;
    const target: TargetSet = {
      model: "golden",
      dim: golden.d,
      rows,
      embeddings,
      gram: await engine.gram(embeddings, rows, golden.d),
      contentHash: "",
    };
    const onlyInf = await engine.normSim(flat(golden.inputs.img), golden.n, target, { inf: true });
    assert.equal(onlyInf.normsim2.length, 0);
    assert.ok(maxAbsDiff(onlyInf.normsimInf, golden.expected.normsim_inf!) < TOLERANCE);
  });
});
