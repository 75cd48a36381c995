/**
 * `scorePoolRows` with a row selector, on the real engine: NormSim_inf goes to the engine for the
 * selected rows only, gathered into one matrix, and each of their values is bit for bit the one that
 * scoring every row gives (and the float64 max |<t_m, f_i>| within float32 rounding); the other scores
 * are untouched, and the rows left out say why.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { makeDraws } from "../../src/score/draws.ts";
import { createScoringEngine, type ScoringEngine } from "../../src/score/engine.ts";
import type { Pool, TargetSet } from "../../src/score/types.ts";
import { type RowSelector, scorePoolRows } from "../../src/score/window-scores.ts";
import { mulberry32 } from "../helpers/records.ts";
import { dot64, unitRows } from "./helpers.ts";

const DIM = 32;
const SCORED = 300;
const BANK = 100;
const TARGET_ROWS = 2000;

function randomUnitRows(rows: number, seed: number): Float32Array {
  const rand = mulberry32(seed);
  return unitRows(
    Float32Array.from({ length: rows * DIM }, () => rand() - 0.5),
    rows,
    DIM,
  );
}

const pool: Pool = {
  dim: DIM,
  scoredRows: SCORED,
  bankRows: BANK,
  image: randomUnitRows(SCORED + BANK, 1),
  text: randomUnitRows(SCORED + BANK, 2),
};
const embeddings = randomUnitRows(TARGET_ROWS, 3);
// NormSim_inf reads the embeddings only; NormSim_2 reads the Gram matrix, whatever its values.
const target: TargetSet = {
  model: "test",
  dim: DIM,
  rows: TARGET_ROWS,
  embeddings,
  gram: new Float32Array(DIM * DIM).fill(0.01),
  contentHash: "test",
};
const draws = makeDraws(SCORED + BANK, { seed: 4, draws: 2, batchSize: 128 });

/** The engine, with the NormSim calls it gets written down: rows and which scores. */
function counted(engine: ScoringEngine, calls: string[]): ScoringEngine {
  return {
    ...engine,
    sClipLoss: (p, d, tau) => engine.sClipLoss(p, d, tau),
    async normSim(image, rows, t, which) {
      calls.push(`${which?.two ? "two" : ""}${which?.inf ? "inf" : ""} ${rows}`);
      return engine.normSim(image, rows, t, which);
    },
  };
}

const selectorOf = (mask: Uint8Array): RowSelector => ({
  score: "normsim_inf",
  reason: "below_keep_quantile",
  select: () => mask,
});

describe("scorePoolRows with a selector, real engine", () => {
  let engine: ScoringEngine;
  before(async () => {
    engine = await createScoringEngine({ device: "cpu", threads: 2 });
  });
  after(() => engine.close());

  it("computes NormSim_inf for the selected rows only, each exactly as scoring every row does", async () => {
    const eagerCalls: string[] = [];
    const eager = await scorePoolRows(counted(engine, eagerCalls), pool, draws, 0.01, target);
    const rand = mulberry32(5);
    const mask = Uint8Array.from({ length: SCORED }, () => (rand() < 0.3 ? 1 : 0));
    const picked = mask.reduce((a, b) => a + b, 0);
    assert.ok(picked > 50 && picked < 150, `${picked} picked`);
    const lazyCalls: string[] = [];
    const lazy = await scorePoolRows(counted(engine, lazyCalls), pool, draws, 0.01, target, selectorOf(mask));

    assert.deepEqual(eagerCalls, [`two ${SCORED}`, `inf ${SCORED}`]);
    assert.deepEqual(lazyCalls, [`two ${SCORED}`, `inf ${picked}`]);
    for (let i = 0; i < SCORED; i++) {
      const { normsim_inf: value, ...others } = lazy.rows[i]!;
      const { normsim_inf: eagerValue, ...eagerOthers } = eager.rows[i]!;
      assert.deepEqual(others, eagerOthers, `row ${i}: the other scores`);
      if (mask[i]) {
        assert.equal(value, eagerValue, `row ${i}`);
        let max = 0;
        for (let m = 0; m < TARGET_ROWS; m++)
          max = Math.max(max, Math.abs(dot64(pool.image, i, embeddings, m, DIM)));
        assert.ok(Math.abs(value! - max) < 1e-6, `row ${i}: ${value} vs float64 ${max}`);
        assert.equal(lazy.notComputed[i], undefined);
      } else {
        assert.ok(!("normsim_inf" in lazy.rows[i]!), `row ${i} has no NormSim_inf`);
        assert.deepEqual(lazy.notComputed[i], { normsim_inf: "below_keep_quantile" });
      }
    }
  });

  it("a lone selected row gets the value scoring every row gives", async () => {
    const eager = await scorePoolRows(engine, pool, draws, 0.01, target);
    // Several lone rows, so that a last-bits difference (a one-row product) cannot hide by chance.
    for (const row of [0, 17, 123, 299]) {
      const mask = new Uint8Array(SCORED);
      mask[row] = 1;
      const lazy = await scorePoolRows(engine, pool, draws, 0.01, target, selectorOf(mask));
      assert.equal(lazy.rows[row]!.normsim_inf, eager.rows[row]!.normsim_inf, `row ${row}`);
      assert.equal(lazy.rows.filter((r) => r.normsim_inf !== undefined).length, 1);
    }
  });

  it("no row selected: NormSim_inf is not asked for at all", async () => {
    const calls: string[] = [];
    const lazy = await scorePoolRows(
      counted(engine, calls),
      pool,
      draws,
      0.01,
      target,
      selectorOf(new Uint8Array(SCORED)),
    );
    assert.deepEqual(calls, [`two ${SCORED}`]);
    assert.ok(lazy.notComputed.every((n) => n?.normsim_inf === "below_keep_quantile"));
  });
});
