/**
 * The engine against float64 references computed here: s-CLIPLoss = -tau x symmetric CLIP loss, bank
 * rows, extreme numerics, NormSim_2 / NormSim_inf / Gram, and the provider fallback.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import fc from "fast-check";
import { isClipsieveError } from "../../src/common/errors.ts";
import { makeDraws } from "../../src/score/draws.ts";
import { createScoringEngine, type ScoringEngine } from "../../src/score/engine.ts";
import type { Draw, Pool, TargetSet } from "../../src/score/types.ts";
import { mulberry32 } from "../helpers/records.ts";
import {
  capturingLogger,
  clipLossOfBatch,
  dot64,
  maxAbsDiff,
  PINO_DEBUG,
  PINO_WARN,
  unitRows,
} from "./helpers.ts";

const RUNS = 25;

/** n unit rows of dimension d from fast-check floats. */
const matrixArb = (n: number, d: number) =>
  fc
    .array(fc.double({ min: -1, max: 1, noNaN: true }), { minLength: n * d, maxLength: n * d })
    .map((v) => unitRows(v, n, d));

const poolCase = fc
  .record({
    n: fc.integer({ min: 2, max: 20 }),
    d: fc.integer({ min: 2, max: 8 }),
    tau: fc.constantFrom(0.01, 0.07, 0.5),
    seed: fc.nat(),
  })
  .chain(({ n, d, tau, seed }) =>
    fc.record({
      n: fc.constant(n),
      d: fc.constant(d),
      tau: fc.constant(tau),
      seed: fc.constant(seed),
      batchSize: fc.integer({ min: 1, max: n }),
      image: matrixArb(n, d),
      text: matrixArb(n, d),
    }),
  );

/** Float64 s-CLIPLoss of the first `scored` rows: S_ii - mean over draws of tau x CLIP loss... as R. */
function referenceR(pool: Pool, draws: Draw[], tau: number): Float64Array {
  const r = new Float64Array(pool.scoredRows);
  for (const draw of draws) {
    for (const batch of draw) {
      for (const [row, loss] of clipLossOfBatch(pool.image, pool.text, pool.dim, batch, tau)) {
        // loss_i = -(Z_ii - lse_row)/2 - (Z_ii - lse_col)/2, so R_i = tau/2 (lse_row + lse_col) = S_ii + tau loss_i.
        if (row < pool.scoredRows)
          r[row] += (dot64(pool.image, row, pool.text, row, pool.dim) + tau * loss) / draws.length;
      }
    }
  }
  return r;
}

describe("s-CLIPLoss", () => {
  let engine: ScoringEngine;
  let small: ScoringEngine;
  let exact: ScoringEngine;
  before(async () => {
    engine = await createScoringEngine({ threads: 2 });
    small = await createScoringEngine({ threads: 2, blockElements: 8 });
    exact = await createScoringEngine({ threads: 2, logSumExp: "exact" });
  });
  after(async () => {
    await engine.close();
    await small.close();
    await exact.close();
  });

  it("with K = 1 equals -tau x the symmetric CLIP loss of each row's batch", async () => {
    await fc.assert(
      fc.asyncProperty(poolCase, async ({ n, d, tau, seed, batchSize, image, text }) => {
        const pool: Pool = { dim: d, scoredRows: n, bankRows: 0, image, text };
        const draws = makeDraws(n, { seed, draws: 1, batchSize });
        const expected = new Float64Array(n);
        for (const batch of draws[0]) {
          for (const [row, loss] of clipLossOfBatch(image, text, d, batch, tau)) expected[row] = -tau * loss;
        }
        for (const e of [engine, small]) {
          const result = await e.sClipLoss(pool, draws, tau);
          assert.ok(maxAbsDiff(result.sClipLoss, expected) < 2e-6, `tau ${tau}`);
          for (let i = 0; i < n; i++) {
            assert.ok(Math.abs(result.clipScore[i] - dot64(image, i, text, i, d)) < 1e-6);
          }
        }
      }),
      { numRuns: RUNS },
    );
  });

  it("the pool normaliser: one batch of the whole pool, each direction scaled to a batch of b rows", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: 0, max: 40 }),
        fc.integer({ min: 2, max: 200 }),
        fc.integer({ min: 0, max: 1000 }),
        fc.constantFrom(0.01, 0.05, 0.2),
        async (scoredRows, bankRows, scaleTo, seed, tau) => {
          const d = 8;
          const n = scoredRows + bankRows;
          const rand = mulberry(seed);
          const image = unitRows(Array.from({ length: n * d }, rand), n, d);
          const text = unitRows(Array.from({ length: n * d }, rand), n, d);
          const pool: Pool = { dim: d, scoredRows, bankRows, image, text, scaleToBatch: scaleTo };
          const whole: Draw[] = [[Int32Array.from({ length: n }, (_, i) => i)]];
          // Float64, written from the definition: the diagonal term once, the n - 1 others each
          // weighted (b - 1) / (n - 1), in both directions, half each.
          const c = n > 1 ? (scaleTo - 1) / (n - 1) : 1;
          const expected = Array.from({ length: scoredRows }, (_, i) => {
            let rowSum = 0;
            let colSum = 0;
            for (let j = 0; j < n; j++) {
              const w = j === i ? 1 : c;
              rowSum += w * Math.exp(dot64(image, i, text, j, d) / tau);
              colSum += w * Math.exp(dot64(image, j, text, i, d) / tau);
            }
            return (tau / 2) * (Math.log(rowSum) + Math.log(colSum));
          });
          // The fast paths (whole batch, and scored rows among bank rows) and the exact path.
          for (const e of [engine, small, exact]) {
            const result = await e.sClipLoss(pool, whole, tau);
            assert.ok(
              maxAbsDiff(result.normaliser, expected) < 2e-5,
              `n ${n}, b ${scaleTo}, tau ${tau}: ${maxAbsDiff(result.normaliser, expected)}`,
            );
          }
        },
      ),
      { numRuns: RUNS },
    );
  });

  it("averages R over K draws", async () => {
    await fc.assert(
      fc.asyncProperty(poolCase, fc.integer({ min: 2, max: 4 }), async (c, k) => {
        const pool: Pool = { dim: c.d, scoredRows: c.n, bankRows: 0, image: c.image, text: c.text };
        const draws = makeDraws(c.n, { seed: c.seed, draws: k, batchSize: c.batchSize });
        const result = await small.sClipLoss(pool, draws, c.tau);
        assert.ok(maxAbsDiff(result.normaliser, referenceR(pool, draws, c.tau)) < 2e-6);
      }),
      { numRuns: RUNS },
    );
  });

  it("a pool that is mostly bank rows (the partial fast path) matches the float64 reference", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 12, max: 40 }),
        fc.integer({ min: 0, max: 1000 }),
        async (scoredRows, bankRows, seed) => {
          const d = 8;
          const n = scoredRows + bankRows;
          const rand = mulberry(seed);
          const image = unitRows(Array.from({ length: n * d }, rand), n, d);
          const text = unitRows(Array.from({ length: n * d }, rand), n, d);
          const pool: Pool = { dim: d, scoredRows, bankRows, image, text };
          // Batches of 16: most hold few scored rows among bank rows.
          const draws = makeDraws(n, { seed, draws: 2, batchSize: 16 });
          const fast = await engine.sClipLoss(pool, draws, 0.05);
          assert.ok(maxAbsDiff(fast.normaliser, referenceR(pool, draws, 0.05)) < 2e-6);
        },
      ),
      { numRuns: RUNS },
    );
  });

  it("K draws that are each one batch of the whole pool are computed once, with the same result", async () => {
    const d = 8;
    const n = 30;
    const rand = mulberry(7);
    const image = unitRows(Array.from({ length: n * d }, rand), n, d);
    const text = unitRows(Array.from({ length: n * d }, rand), n, d);
    const pool: Pool = { dim: d, scoredRows: 10, bankRows: 20, image, text };
    const five = makeDraws(n, { seed: 3, draws: 5, batchSize: 64 });
    assert.ok(five.every((draw) => draw.length === 1));
    const result = await engine.sClipLoss(pool, five, 0.01);
    assert.ok(maxAbsDiff(result.normaliser, referenceR(pool, five, 0.01)) < 2e-6);
    const once = await engine.sClipLoss(pool, five.slice(0, 1), 0.01);
    assert.deepEqual(Array.from(result.normaliser), Array.from(once.normaliser));
  });

  it("bank rows take part in R but are not returned", async () => {
    await fc.assert(
      fc.asyncProperty(poolCase, fc.integer({ min: 1, max: 6 }), async (c, bankRows) => {
        if (c.n - bankRows < 1) return;
        const scoredRows = c.n - bankRows;
        const withBank: Pool = { dim: c.d, scoredRows, bankRows, image: c.image, text: c.text };
        // Batches that hold every row, so each scored row sees bank rows as negatives.
        const draws = makeDraws(c.n, { seed: c.seed, draws: 1, batchSize: c.n });
        const result = await engine.sClipLoss(withBank, draws, c.tau);
        assert.equal(result.sClipLoss.length, scoredRows);
        assert.equal(result.normaliser.length, scoredRows);
        assert.equal(result.clipScore.length, scoredRows);
        assert.ok(maxAbsDiff(result.normaliser, referenceR(withBank, draws, c.tau)) < 2e-6);

        const alone: Pool = {
          dim: c.d,
          scoredRows,
          bankRows: 0,
          image: c.image.subarray(0, scoredRows * c.d),
          text: c.text.subarray(0, scoredRows * c.d),
        };
        const aloneDraws = makeDraws(scoredRows, { seed: 0, draws: 1, batchSize: scoredRows });
        const without = await engine.sClipLoss(alone, aloneDraws, c.tau);
        const expectedWithout = referenceR(alone, aloneDraws, c.tau);
        const expectedWith = referenceR(withBank, draws, c.tau);
        for (let i = 0; i < scoredRows; i++) {
          // Extra negatives only add terms to both logsumexps: R never shrinks, and it grows wherever
          // the float64 reference says the bank's terms are large enough to show.
          assert.ok(result.normaliser[i] >= without.normaliser[i] - 1e-6);
          if (expectedWith[i] - expectedWithout[i] > 1e-5)
            assert.ok(result.normaliser[i] > without.normaliser[i]);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it("stays finite and exact at tau = 0.001 with S near 1, where exp(S / tau) overflows", async () => {
    const n = 48;
    const d = 16;
    const tau = 0.001;
    // Image and text rows close to one direction (S in about [0.9, 1]); image row 0 points away from every
    // text (S about -0.9), so one shared shift cannot serve the whole batch.
    let state = 12345;
    const noise = () => {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      return state / 2 ** 32 - 0.5;
    };
    const build = (sign0: number) => {
      const v = new Float64Array(n * d);
      for (let i = 0; i < n; i++) {
        for (let k = 0; k < d; k++) v[i * d + k] = (k === 0 ? 1 : 0) * (i === 0 ? sign0 : 1) + 0.25 * noise();
      }
      return unitRows(v, n, d);
    };
    const image = build(-1);
    const text = build(1);
    const pool: Pool = { dim: d, scoredRows: n, bankRows: 0, image, text };
    let maxZ = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < n; i++)
      for (let j = 0; j < n; j++) maxZ = Math.max(maxZ, dot64(image, i, text, j, d) / tau);
    assert.equal(
      Math.fround(Math.exp(maxZ)),
      Number.POSITIVE_INFINITY,
      "the naive exponent overflows float32",
    );

    const draws = makeDraws(n, { seed: 3, draws: 2, batchSize: 16 });
    const expected = referenceR(pool, draws, tau);
    const capture = capturingLogger();
    for (const logSumExp of ["auto", "exact"] as const) {
      const e = await createScoringEngine({
        threads: 2,
        logSumExp,
        logger: capture.logger,
        blockElements: 64,
      });
      try {
        const result = await e.sClipLoss(pool, draws, tau);
        assert.ok(result.normaliser.every(Number.isFinite) && result.sClipLoss.every(Number.isFinite));
        assert.ok(maxAbsDiff(result.normaliser, expected) < 1e-6, logSumExp);
      } finally {
        await e.close();
      }
    }
    // The auto engine noticed the batch holding row 0 and recomputed it with per-row/column shifts.
    assert.ok(capture.lines.some((l) => l.level === PINO_DEBUG && String(l.msg).includes("exact shifts")));
  });

  it("rejects draws that are not a partition of the pool", async () => {
    const pool: Pool = {
      dim: 2,
      scoredRows: 3,
      bankRows: 0,
      image: unitRows([1, 0, 0, 1, 1, 1], 3, 2),
      text: unitRows([1, 0, 0, 1, 1, 1], 3, 2),
    };
    await assert.rejects(
      engine.sClipLoss(pool, [[Int32Array.of(0, 1)]], 0.01),
      (err) => isClipsieveError(err, "DRAWS_INVALID") && /row 2 is in no batch/.test(err.message),
    );
    await assert.rejects(engine.sClipLoss(pool, [[Int32Array.of(0, 1, 2)]], 0), (err) =>
      isClipsieveError(err, "CONFIG_INVALID"),
    );
    await assert.rejects(
      engine.sClipLoss({ ...pool, image: pool.image.subarray(0, 4) }, [[Int32Array.of(0, 1, 2)]], 0.01),
      (err) => isClipsieveError(err, "EMBEDDING_DIMENSION_MISMATCH"),
    );
  });
});

describe("NormSim and Gram", () => {
  let engine: ScoringEngine;
  before(async () => {
    // Tiny blocks: the image rows, the target rows and the Gram rows are all split into blocks.
    engine = await createScoringEngine({ threads: 2, blockElements: 24 });
  });
  after(() => engine.close());

  const targetCase = fc
    .record({
      n: fc.integer({ min: 1, max: 12 }),
      m: fc.integer({ min: 1, max: 30 }),
      d: fc.integer({ min: 2, max: 6 }),
    })
    .chain(({ n, m, d }) =>
      fc.record({
        n: fc.constant(n),
        m: fc.constant(m),
        d: fc.constant(d),
        image: matrixArb(n, d),
        target: matrixArb(m, d),
      }),
    );

  it("gram is T^T T; NormSim_2 via the Gram equals the direct norm over target rows; NormSim_inf is the max |.|", async () => {
    await fc.assert(
      fc.asyncProperty(targetCase, async ({ n, m, d, image, target }) => {
        const gram = await engine.gram(target, m, d);
        for (let a = 0; a < d; a++) {
          for (let b = 0; b < d; b++) {
            let s = 0;
            for (let t = 0; t < m; t++) s += target[t * d + a] * target[t * d + b];
            assert.ok(Math.abs(gram[a * d + b] - s) < 1e-5);
          }
        }
        const set: TargetSet = { model: "test", dim: d, rows: m, embeddings: target, gram, contentHash: "" };
        const result = await engine.normSim(image, n, set);
        for (let i = 0; i < n; i++) {
          let squares = 0;
          let max = 0;
          for (let t = 0; t < m; t++) {
            const s = dot64(image, i, target, t, d);
            squares += s * s;
            max = Math.max(max, Math.abs(s));
          }
          assert.ok(Math.abs(result.normsim2[i] - Math.sqrt(squares)) < 1e-5, "normsim_2");
          assert.ok(Math.abs(result.normsimInf[i] - max) < 1e-6, "normsim_inf");
        }
      }),
      { numRuns: RUNS },
    );
  });

  it("rejects a target whose dimension does not match its embeddings", async () => {
    const set: TargetSet = {
      model: "m",
      dim: 3,
      rows: 2,
      embeddings: new Float32Array(5),
      gram: new Float32Array(9),
      contentHash: "",
    };
    await assert.rejects(
      engine.normSim(new Float32Array(3), 1, set),
      (err) => isClipsieveError(err, "EMBEDDING_DIMENSION_MISMATCH") && /target set \(m\)/.test(err.message),
    );
  });
});

describe("execution provider", () => {
  it("falls back to cpu with exactly one warning naming the provider and the reason", async () => {
    const capture = capturingLogger();
    const engine = await createScoringEngine({ device: "cuda", threads: 1, logger: capture.logger });
    try {
      const image = unitRows([1, 0, 0, 1, 1, 1], 3, 2);
      const result = await engine.sClipLoss(
        { dim: 2, scoredRows: 3, bankRows: 0, image, text: image },
        makeDraws(3, { seed: 1, draws: 2, batchSize: 2 }),
        0.07,
      );
      assert.equal(result.sClipLoss.length, 3);
      const warnings = capture.lines.filter((l) => l.level === PINO_WARN);
      if (engine.provider === "cuda") {
        assert.equal(warnings.length, 0, "cuda loaded: nothing to warn about");
      } else {
        assert.equal(engine.provider, "cpu");
        assert.equal(warnings.length, 1);
        assert.equal(warnings[0].provider, "cuda");
        assert.ok(typeof warnings[0].reason === "string" && warnings[0].reason.length > 0);
        assert.match(String(warnings[0].msg), /cuda.*falls back to cpu/);
      }
    } finally {
      await engine.close();
    }
  });

  it("uses cpu without a warning when cpu is asked for", async () => {
    const capture = capturingLogger();
    const engine = await createScoringEngine({ threads: 1, logger: capture.logger });
    await engine.close();
    assert.equal(engine.provider, "cpu");
    assert.equal(capture.lines.filter((l) => Number(l.level) >= PINO_WARN).length, 0);
  });
});

/** A small seeded generator for test inputs (values in [-1, 1)). */
function mulberry(seed: number): () => number {
  const uniform = mulberry32(seed);
  return () => uniform() * 2 - 1;
}
