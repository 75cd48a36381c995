import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import fc from "fast-check";
import { isClipsieveError } from "../../src/common/errors.ts";
import {
  keepCount,
  parseKeepRule,
  parseThresholdRule,
  selectRows,
  topRows,
} from "../../src/policy/offline-select.ts";

const golden = new URL("../../../shared/golden/", import.meta.url);

/** The obvious O(n log n) reference: sort (score desc, index asc), take the first k, return ascending. */
function bruteTop(values: number[], candidates: number[], k: number): number[] {
  const rank = (v: number) => (Number.isNaN(v) ? Number.NEGATIVE_INFINITY : v);
  const order = [...candidates].sort((a, b) => {
    const va = values[a];
    const vb = values[b];
    if (Number.isNaN(va) !== Number.isNaN(vb)) return Number.isNaN(va) ? 1 : -1;
    return rank(vb) - rank(va) || a - b;
  });
  return order.slice(0, Math.max(0, k)).sort((a, b) => a - b);
}

const all = (n: number) => Int32Array.from({ length: n }, (_, i) => i);

test("top fraction keeps int(N*f) rows, ties to the lower index (hand-worked)", () => {
  //            row:   0    1    2    3    4    5    6    7    8    9
  const scores = [0.1, 0.5, 0.3, 0.5, 0.9, 0.5, 0.2, 0.0, 0.8, 0.4];
  // int(10 * 0.45) = 4: 0.9 (row 4), 0.8 (row 8), then two of the three 0.5s: rows 1 and 3.
  assert.deepEqual(
    [...selectRows({ s: scores }, 10, { thresholds: [], keep: { score: "s", fraction: 0.45 } })],
    [1, 3, 4, 8],
  );
  assert.equal(keepCount(10, 0.45), 4);
  assert.equal(keepCount(400, 0.3), 120);
  assert.equal(keepCount(7, 0.999), 6);
});

test("two-stage: both fractions are of the full N (hand-worked)", () => {
  const a = [9, 8, 7, 6, 5, 4, 3, 2, 1, 0];
  const b = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
  // keep a top 50% -> rows 0..4; then the top int(10 * 0.2) = 2 of those by b -> rows 3, 4.
  const kept = selectRows({ a, b }, 10, {
    thresholds: [],
    keep: { score: "a", fraction: 0.5 },
    thenKeep: { score: "b", fraction: 0.2 },
  });
  assert.deepEqual([...kept], [3, 4]);
});

test("thresholds filter on top: the fractions still rank every row (hand-worked)", () => {
  const a = [0.1, 0.5, 0.3, 0.7, 0.9];
  const b = [1, 0, 1, 1, 0];
  const both = selectRows({ a, b }, 5, {
    thresholds: [
      { score: "a", min: 0.3 },
      { score: "b", min: 1 },
    ],
  });
  assert.deepEqual([...both], [2, 3]);
  // top int(5 * 0.4) = 2 of ALL rows by a: rows 3, 4; of those only row 3 has b >= 1. (Ranking the
  // threshold's survivors {0, 2, 3} instead would give rows 2, 3.)
  const top = selectRows({ a, b }, 5, {
    thresholds: [{ score: "b", min: 1 }],
    keep: { score: "a", fraction: 0.4 },
  });
  assert.deepEqual([...top], [3]);
});

test("NaN never passes a threshold and ranks below every number", () => {
  const s = [Number.NaN, 0.2, Number.NaN, -5];
  assert.deepEqual([...selectRows({ s }, 4, { thresholds: [{ score: "s", min: -10 }] })], [1, 3]);
  assert.deepEqual([...topRows(s, all(4), 3)], [0, 1, 3]);
});

test("topRows matches the brute-force reference (property)", () => {
  fc.assert(
    fc.property(
      fc.array(fc.oneof(fc.integer({ min: -3, max: 3 }), fc.double({ noDefaultInfinity: true })), {
        maxLength: 60,
      }),
      fc.nat(70),
      (values, k) => {
        const candidates = [...all(values.length)].filter((i) => i % 3 !== 1);
        const got = topRows(values, Int32Array.from(candidates), k);
        assert.deepEqual([...got], bruteTop(values, candidates, k));
      },
    ),
    { numRuns: 300 },
  );
});

test("golden case3: s-CLIPLoss top 30% then NormSim_inf top 20% of N", () => {
  const c = JSON.parse(readFileSync(new URL("case3.json", golden), "utf8"));
  const want = c.expected.two_stage_select;
  const kept = selectRows(c.expected, c.n, {
    thresholds: [],
    keep: { score: want.score1, fraction: want.fraction1 },
    thenKeep: { score: want.score2, fraction: want.fraction2 },
  });
  assert.deepEqual([...kept], want.indices);
});

test("rule parsing and plan validation", () => {
  assert.deepEqual(parseKeepRule("s_clip_loss=0.3"), { score: "s_clip_loss", fraction: 0.3 });
  assert.deepEqual(parseThresholdRule("clip_score>=-0.25"), { score: "clip_score", min: -0.25 });
  for (const bad of ["s_clip_loss", "s_clip_loss=1.5", "=0.3", "s=abc", "s=-0.1", "s=0"]) {
    assert.throws(
      () => parseKeepRule(bad),
      (e) => isClipsieveError(e, "CONFIG_INVALID"),
    );
  }
  for (const bad of ["clip_score=0.2", "clip_score>=", "clip_score>=NaN", "x>=1e999"]) {
    assert.throws(
      () => parseThresholdRule(bad),
      (e) => isClipsieveError(e, "CONFIG_INVALID"),
    );
  }
  const cols = { a: [1, 2, 3] };
  assert.throws(
    () => selectRows(cols, 3, { thresholds: [], thenKeep: { score: "a", fraction: 0.1 } }),
    (e) => isClipsieveError(e, "CONFIG_INVALID"),
  );
  assert.throws(
    () =>
      selectRows(cols, 3, {
        thresholds: [],
        keep: { score: "a", fraction: 0.1 },
        thenKeep: { score: "a", fraction: 0.5 },
      }),
    /both fractions are of the full input/,
  );
  assert.throws(
    () => selectRows(cols, 3, { thresholds: [], keep: { score: "missing", fraction: 0.1 } }),
    /no score column "missing".*columns: a/,
  );
  assert.throws(
    () =>
      selectRows(cols, 3, {
        thresholds: [
          { score: "a", min: 1 },
          { score: "a", min: 2 },
        ],
      }),
    /a second threshold on a/,
  );
});
