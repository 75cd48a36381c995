/**
 * The NormSim_inf index (src/score/target-index.ts) and the engine's indexed and float16 paths: the
 * expected values are float64 loops over the rows here, never the engine's own brute-force output.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { isClipsieveError } from "../../src/common/errors.ts";
import { float16BitsToFloat32, float32ToFloat16Bits } from "../../src/io/float16.ts";
import { createScoringEngine, type ScoringEngine } from "../../src/score/engine.ts";
import { createRandom } from "../../src/score/random.ts";
import { buildTargetFromRows } from "../../src/score/target-build.ts";
import {
  buildTargetIndex,
  checkTargetIndex,
  probedClusters,
  reorderRows,
  splitLargeClusters,
} from "../../src/score/target-index.ts";
import type { TargetSet } from "../../src/score/types.ts";
import { mulberry32 } from "../helpers/records.ts";
import { dot64, flat, loadGolden, unitRows } from "./helpers.ts";

/** `groups` tight groups of `per` unit rows around random centres, rows interleaved across groups. */
function groupedRows(groups: number, per: number, dim: number, seed: number, spread = 0.05): Float32Array {
  const rand = mulberry32(seed);
  const centres = unitRows(
    Array.from({ length: groups * dim }, () => rand() * 2 - 1),
    groups,
    dim,
  );
  const values: number[] = [];
  for (let r = 0; r < groups * per; r++) {
    const g = r % groups;
    for (let d = 0; d < dim; d++) values.push(centres[g * dim + d] + spread * (rand() * 2 - 1));
  }
  return unitRows(values, groups * per, dim);
}

/** max_m |<q_i, t_m>| in float64 over every row. */
function exactMax(queries: Float32Array, n: number, rows: Float32Array, m: number, dim: number): number[] {
  return Array.from({ length: n }, (_, i) => {
    let best = 0;
    for (let t = 0; t < m; t++) best = Math.max(best, Math.abs(dot64(queries, i, rows, t, dim)));
    return best;
  });
}

describe("probedClusters", () => {
  it("picks the largest |dot|, ties to the lower cluster", () => {
    const dots = Float32Array.from([0.1, -0.9, 0.5, 0.5, 0.2, -0.5]);
    assert.deepEqual(Array.from(probedClusters(dots, 2)), [1, 2]);
    assert.deepEqual(Array.from(probedClusters(dots, 3)), [1, 2, 3]);
    assert.deepEqual(Array.from(probedClusters(dots, 1)), [1]);
    assert.deepEqual(Array.from(probedClusters(dots, 9)), [0, 1, 2, 3, 4, 5]);
  });

  it("agrees with a sort over random values", () => {
    const rand = mulberry32(7);
    for (let trial = 0; trial < 50; trial++) {
      const n = 1 + Math.floor(rand() * 300);
      const probes = 1 + Math.floor(rand() * n);
      const dots = Float32Array.from({ length: n }, () => Math.round((rand() * 2 - 1) * 50) / 50);
      const want = Array.from(dots.keys())
        .sort((a, b) => Math.abs(dots[b]) - Math.abs(dots[a]) || a - b)
        .slice(0, probes)
        .sort((a, b) => a - b);
      assert.deepEqual(
        Array.from(probedClusters(dots, probes)).sort((a, b) => a - b),
        want,
      );
    }
  });
});

describe("reorderRows", () => {
  it("puts row order[p] at p in place, for float32 and float16 stores", () => {
    const dim = 2;
    const rows = Float32Array.from([0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5]);
    const order = Int32Array.from([3, 0, 4, 1, 2]);
    const expected = [3, 3.5, 0, 0.5, 4, 4.5, 1, 1.5, 2, 2.5];
    const f32 = rows.slice();
    reorderRows(f32, dim, order);
    assert.deepEqual(Array.from(f32), expected);
    const f16 = float32ToFloat16Bits(rows);
    reorderRows(f16, dim, order);
    assert.deepEqual(Array.from(float16BitsToFloat32(f16)), expected);
  });
});

describe("index and engine", () => {
  let engine: ScoringEngine;
  before(async () => {
    engine = await createScoringEngine({ device: "cpu", threads: 1 });
  });
  after(async () => engine.close());

  const dim = 8;
  const groups = 6;
  const per = 40;
  const m = groups * per;

  it("clusters grouped rows into whole groups, stored contiguously", async () => {
    const rows = groupedRows(groups, per, dim, 1);
    const built = await buildTargetIndex(engine, rows, m, dim, { clusters: groups, iterations: 6 });
    const clusters = built.offsets.length - 1;
    assert.equal(built.offsets[0], 0);
    assert.equal(built.offsets[clusters], m);
    assert.deepEqual(
      Array.from(built.order).sort((a, b) => a - b),
      Array.from({ length: m }, (_, i) => i),
    );
    // Rows r and r' are of one group when r = r' (mod groups): each cluster holds one group's rows.
    for (let k = 0; k < clusters; k++) {
      const members = built.order.subarray(built.offsets[k], built.offsets[k + 1]);
      assert.ok(members.length > 0, `cluster ${k} is empty`);
      assert.equal(new Set(Array.from(members, (r) => r % groups)).size, 1, `cluster ${k} mixes groups`);
    }
  });

  it("NormSim_inf through the index: exact when every cluster is visited, a lower bound otherwise", async () => {
    const rows = groupedRows(groups, per, dim, 2, 0.6);
    const built = await buildTargetIndex(engine, rows, m, dim, { clusters: groups, iterations: 6 });
    reorderRows(rows, dim, built.order);
    const clusters = built.offsets.length - 1;
    const n = 50;
    const rand = mulberry32(3);
    const queries = unitRows(
      Array.from({ length: n * dim }, () => rand() * 2 - 1),
      n,
      dim,
    );
    const want = exactMax(queries, n, rows, m, dim);
    const target = (probes: number): TargetSet => ({
      model: "t",
      dim,
      rows: m,
      embeddings: rows,
      gram: new Float32Array(dim * dim),
      contentHash: "",
      index: { clusters, centroids: built.centroids, offsets: built.offsets, probes },
    });
    const all = (await engine.normSim(queries, n, target(clusters), { inf: true })).normsimInf;
    for (let i = 0; i < n; i++) assert.ok(Math.abs(all[i] - want[i]) < 1e-6, `row ${i}`);
    // One probe of loose groups misses some rows' best: every value is a lower bound, some are lower.
    const one = (await engine.normSim(queries, n, target(1), { inf: true })).normsimInf;
    let lower = 0;
    for (let i = 0; i < n; i++) {
      assert.ok(one[i] <= want[i] + 1e-6, `row ${i} above the exact maximum`);
      if (one[i] < want[i] - 1e-4) lower++;
    }
    assert.ok(lower > 0, "one probe found every row's best: the test data is too easy");
    // With p probes, each value is the max over the rows of the query's p nearest centres (by |dot|).
    for (const probes of [1, 2, clusters - 1]) {
      const got = (await engine.normSim(queries, n, target(probes), { inf: true })).normsimInf;
      for (let i = 0; i < n; i++) {
        const nearest = Array.from({ length: clusters }, (_, k) => k)
          .sort(
            (a, b) =>
              Math.abs(dot64(queries, i, built.centroids, b, dim)) -
                Math.abs(dot64(queries, i, built.centroids, a, dim)) || a - b,
          )
          .slice(0, probes);
        let best = 0;
        for (const k of nearest) {
          for (let t = built.offsets[k]; t < built.offsets[k + 1]; t++) {
            best = Math.max(best, Math.abs(dot64(queries, i, rows, t, dim)));
          }
        }
        assert.ok(Math.abs(got[i] - best) < 1e-6, `probes ${probes}, row ${i}: ${got[i]} vs ${best}`);
      }
    }
  });

  it("a float16 target scores its rounded rows in float32 arithmetic", async () => {
    const rows = groupedRows(groups, per, dim, 4, 0.5);
    const half = float32ToFloat16Bits(rows);
    const rounded = float16BitsToFloat32(half);
    const n = 20;
    const queries = groupedRows(4, 5, dim, 5, 0.5);
    const want = exactMax(queries, n, rounded, m, dim);
    const target: TargetSet = {
      model: "t",
      dim,
      rows: m,
      embeddings: half,
      gram: new Float32Array(dim * dim),
      contentHash: "",
    };
    const got = (await engine.normSim(queries, n, target, { inf: true })).normsimInf;
    for (let i = 0; i < n; i++) assert.ok(Math.abs(got[i] - want[i]) < 1e-6, `row ${i}`);
  });

  it("the golden NormSim_inf through an index visiting every cluster, rows reordered, within 1e-6", async () => {
    const golden = loadGolden("case3");
    const targetRows = golden.inputs.target!;
    const rows = flat(targetRows);
    const mRows = targetRows.length;
    const built = await buildTargetIndex(engine, rows, mRows, golden.d, { clusters: 4, iterations: 3 });
    reorderRows(rows, golden.d, built.order);
    const clusters = built.offsets.length - 1;
    const target: TargetSet = {
      model: "golden",
      dim: golden.d,
      rows: mRows,
      embeddings: rows,
      gram: new Float32Array(golden.d * golden.d),
      contentHash: "",
      index: { clusters, centroids: built.centroids, offsets: built.offsets, probes: clusters },
    };
    const got = (await engine.normSim(flat(golden.inputs.img), golden.n, target, { inf: true })).normsimInf;
    golden.expected.normsim_inf!.forEach((want, i) => {
      assert.ok(Math.abs(got[i] - want) < 1e-6, `row ${i}: ${got[i]} vs ${want}`);
    });
  });

  it("splitLargeClusters splits a cluster of more than twice the mean size into new clusters", async () => {
    // Cluster 0: 300 loose rows; cluster 1: 20 tight rows; clusters 2 and 3 empty. Mean 80 rows.
    const loose = groupedRows(1, 300, dim, 9, 0.8);
    const tight = groupedRows(1, 20, dim, 10, 0.02);
    const rows = new Float32Array(320 * dim);
    rows.set(loose);
    rows.set(tight, 300 * dim);
    const cluster = Int32Array.from({ length: 320 }, (_, i) => (i < 300 ? 0 : 1));
    const centroids = new Float32Array(4 * dim);
    centroids.set(loose.subarray(0, dim), 0);
    centroids.set(tight.subarray(0, dim), dim);
    const split = await splitLargeClusters(engine, rows, dim, cluster, centroids, 4, createRandom(0, 0));
    assert.equal(split.clusters, 4 + 3, "cluster 0 becomes ceil(300 / 80) = 4 clusters");
    assert.equal(split.centroids.length, 7 * dim);
    const sizes = new Int32Array(7);
    for (const k of cluster) sizes[k]++;
    assert.equal(sizes[1], 20, "the small cluster is left alone");
    assert.equal(sizes[2] + sizes[3], 0);
    for (const k of [0, 4, 5, 6])
      assert.ok(sizes[k] > 0 && sizes[k] <= 160, `part ${k} has ${sizes[k]} rows`);
    // Each loose row now sits in the part whose new centre is nearest to it.
    for (let i = 0; i < 300; i++) {
      let best = -1;
      let bestDot = Number.NEGATIVE_INFINITY;
      for (const k of [0, 4, 5, 6]) {
        const d = dot64(rows, i, split.centroids, k, dim);
        if (d > bestDot) [best, bestDot] = [k, d];
      }
      assert.ok(
        dot64(rows, i, split.centroids, cluster[i], dim) >= bestDot - 0.2,
        `row ${i} in part ${cluster[i]}, nearest ${best}`,
      );
    }
  });

  it("a build's index fits its rows; every cluster visited is exact, fewer probes a lower bound", async () => {
    // 4 tight groups of 10 rows and one loose group of 200: the loose one is split.
    const tight = groupedRows(4, 10, dim, 6, 0.02);
    const loose = groupedRows(1, 200, dim, 7, 0.8);
    const rows = new Float32Array((40 + 200) * dim);
    rows.set(tight);
    rows.set(loose, 40 * dim);
    const reference = rows.slice();
    const { target } = await buildTargetFromRows(engine, rows, 240, dim, {
      model: "t",
      clusters: 5,
      storage: "float32",
      probes: 2,
    });
    const index = target.index!;
    assert.equal(index.probes, 2);
    checkTargetIndex(index, 240, dim);
    const mean = Math.ceil(240 / 5);
    for (let k = 0; k < index.clusters; k++) {
      assert.ok(index.offsets[k + 1] - index.offsets[k] <= 2 * mean, `cluster ${k} still too large`);
    }
    const n = 12;
    const queries = groupedRows(3, 4, dim, 8, 0.5);
    const exact = exactMax(queries, n, reference, 240, dim);
    const all = (
      await engine.normSim(
        queries,
        n,
        { ...target, index: { ...index, probes: index.clusters } },
        { inf: true },
      )
    ).normsimInf;
    for (let i = 0; i < n; i++) assert.ok(Math.abs(all[i] - exact[i]) < 1e-6, `row ${i}`);
    const some = (await engine.normSim(queries, n, target, { inf: true })).normsimInf;
    for (let i = 0; i < n; i++) assert.ok(some[i] <= exact[i] + 1e-6, `row ${i}`);
  });

  it("refuses an index that does not fit its target", () => {
    const centroids = new Float32Array(2 * dim);
    const bad = [
      { clusters: 2, centroids, offsets: Int32Array.from([0, 5, 9]), probes: 1 },
      { clusters: 2, centroids, offsets: Int32Array.from([0, 7, 5, 10]).subarray(0, 3), probes: 1 },
      { clusters: 2, centroids: new Float32Array(dim), offsets: Int32Array.from([0, 5, 10]), probes: 1 },
      { clusters: 2, centroids, offsets: Int32Array.from([0, 5, 10]), probes: 0 },
    ];
    for (const index of bad) {
      assert.throws(
        () => checkTargetIndex(index, 10, dim),
        (err) => isClipsieveError(err, "TARGET_SET_INVALID"),
      );
    }
    assert.doesNotThrow(() =>
      checkTargetIndex({ clusters: 2, centroids, offsets: Int32Array.from([0, 5, 10]), probes: 9 }, 10, dim),
    );
  });
});
