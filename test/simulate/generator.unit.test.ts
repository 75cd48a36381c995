/**
 * The stream simulator's ground truth: labels and their shares, determinism by seed, the same records
 * in both orders, bursty runs, CLIP-like geometry (unit vectors, a modality gap, CLIPScore around
 * 0.2-0.35 for good pairs), and the case the paper's normaliser exists for: boilerplate captions score
 * high on CLIPScore but low on s-CLIPLoss when the engine scores them. Dot products, norms and run
 * lengths are computed here directly, not taken from the generator.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { test } from "node:test";
import { isClipsieveError } from "../../src/common/errors.ts";
import { silentLogger } from "../../src/common/logger.ts";
import { makeDraws } from "../../src/score/draws.ts";
import { createScoringEngine } from "../../src/score/engine.ts";
import {
  createSimulation,
  DEFAULT_MIX,
  LONGTAIL_MIX,
  SIM_KINDS,
  type SimKind,
  type SimRecord,
} from "../../src/simulate/generator.ts";

function dot(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

function byKind<T>(records: SimRecord[], f: (r: SimRecord) => T): Record<SimKind, T[]> {
  const out = Object.fromEntries(SIM_KINDS.map((k) => [k, [] as T[]])) as Record<SimKind, T[]>;
  for (const r of records) out[r.kind].push(f(r));
  return out;
}

test("every record is labelled, the shares follow the mix, uids are unique", () => {
  const sim = createSimulation({ count: 5000, dim: 16, seed: 3, order: "shuffled" });
  const records = [...sim.records()];
  assert.equal(records.length, 5000);
  const counted = byKind(records, () => 1);
  const reported = sim.kindCounts();
  let total = 0;
  for (const kind of SIM_KINDS) {
    assert.equal(counted[kind].length, reported[kind], kind);
    // Exact counts up to the rounding of count * share.
    assert.ok(
      Math.abs(counted[kind].length - 5000 * DEFAULT_MIX[kind]) <= 1,
      `${kind}: ${counted[kind].length}`,
    );
    total += counted[kind].length;
  }
  assert.equal(total, 5000);
  assert.equal(new Set(records.map((r) => r.uid)).size, 5000);
  records.forEach((r, i) => {
    assert.equal(r.position, i);
    assert.match(r.uid, /^[0-9a-f]{32}$/);
  });
});

test("the same seed gives the same records; another seed gives others", () => {
  const a = createSimulation({ count: 300, dim: 32, seed: 11, order: "bursty" });
  const b = createSimulation({ count: 300, dim: 32, seed: 11, order: "bursty" });
  const c = createSimulation({ count: 300, dim: 32, seed: 12, order: "bursty" });
  for (let p = 0; p < 300; p++) {
    const x = a.record(p);
    const y = b.record(p);
    assert.equal(x.uid, y.uid);
    assert.equal(x.kind, y.kind);
    assert.equal(x.text, y.text);
    assert.deepEqual(x.imageEmbedding, y.imageEmbedding);
    assert.deepEqual(x.textEmbedding, y.textEmbedding);
  }
  assert.notEqual(a.record(0).uid, c.record(0).uid);
  assert.deepEqual(a.targetEmbeddings().data, b.targetEmbeddings().data);
});

test("shuffled and bursty streams of one seed hold the same records in another order", () => {
  const shuffled = createSimulation({ count: 2000, dim: 16, seed: 5, order: "shuffled" });
  const bursty = createSimulation({ count: 2000, dim: 16, seed: 5, order: "bursty" });
  const s = new Map([...shuffled.records()].map((r) => [r.uid, r]));
  let samePosition = 0;
  for (const r of bursty.records()) {
    const twin = s.get(r.uid);
    assert.ok(twin, `uid ${r.uid} is only in the bursty stream`);
    assert.equal(twin.kind, r.kind);
    assert.deepEqual(twin.imageEmbedding, r.imageEmbedding);
    if (twin.position === r.position) samePosition++;
  }
  assert.ok(samePosition < 100, `${samePosition} records kept their position`);
});

test("bursty order emits runs of one topic or one site; shuffled does not", () => {
  const shareOfRepeats = (order: "shuffled" | "bursty") => {
    const records = [
      ...createSimulation({ count: 20_000, dim: 8, seed: 1, order, meanRunLength: 500 }).records(),
    ];
    let same = 0;
    for (let i = 1; i < records.length; i++) {
      const a = records[i - 1];
      const b = records[i];
      if (a.topic === b.topic || a.site === b.site) same++;
    }
    return same / (records.length - 1);
  };
  const bursty = shareOfRepeats("bursty");
  const shuffled = shareOfRepeats("shuffled");
  assert.ok(bursty > 0.9, `bursty: ${bursty}`);
  assert.ok(shuffled < 0.3, `shuffled: ${shuffled}`);
});

test("CLIP-like geometry: unit vectors, a modality gap, CLIPScore about 0.2-0.35 for good pairs", () => {
  const records = [...createSimulation({ count: 3000, dim: 768, seed: 2, order: "shuffled" }).records()];
  for (const r of records.slice(0, 200)) {
    assert.ok(Math.abs(Math.sqrt(dot(r.imageEmbedding, r.imageEmbedding)) - 1) < 1e-5);
    assert.ok(Math.abs(Math.sqrt(dot(r.textEmbedding, r.textEmbedding)) - 1) < 1e-5);
  }
  const clip = byKind(records, (r) => dot(r.imageEmbedding, r.textEmbedding));
  for (const kind of ["aligned", "off_target", "duplicate"] as const) {
    const m = mean(clip[kind]);
    assert.ok(m > 0.22 && m < 0.36, `${kind}: mean CLIPScore ${m}`);
  }
  assert.ok(mean(clip.mismatched) < 0.13, `mismatched: ${mean(clip.mismatched)}`);
  assert.ok(mean(clip.boilerplate) > mean(clip.aligned) + 0.02, "boilerplate has the higher CLIPScore");
  // Modality gap: two unrelated images are closer to each other than an image to an unrelated caption.
  let imageImage = 0;
  let imageText = 0;
  for (let i = 0; i < 500; i++) {
    imageImage += dot(records[i].imageEmbedding, records[i + 1000].imageEmbedding);
    imageText += dot(records[i].imageEmbedding, records[i + 1000].textEmbedding);
  }
  assert.ok(
    imageImage / 500 > imageText / 500 + 0.2,
    `image-image ${imageImage / 500}, image-text ${imageText / 500}`,
  );
});

test("the target set covers the aligned pairs' topics, not the off-target ones", () => {
  const sim = createSimulation({ count: 1000, dim: 128, seed: 4, order: "shuffled", targetRows: 256 });
  const target = sim.targetEmbeddings();
  assert.equal(target.rows, 256);
  assert.equal(target.data.length, 256 * 128);
  const normSimInf = (image: Float32Array) => {
    let best = 0;
    for (let m = 0; m < target.rows; m++) {
      best = Math.max(best, Math.abs(dot(image, target.data.subarray(m * 128, (m + 1) * 128))));
    }
    return best;
  };
  const records = [...sim.records()];
  const ns = byKind(records, (r) => normSimInf(r.imageEmbedding));
  assert.ok(
    mean(ns.aligned) > mean(ns.off_target) + 0.1,
    `aligned ${mean(ns.aligned)}, off_target ${mean(ns.off_target)}`,
  );
});

test("boilerplate: high CLIPScore, low s-CLIPLoss when the engine scores a batch", async () => {
  const n = 4096;
  const dim = 128;
  const sim = createSimulation({ count: n, dim, seed: 7, order: "shuffled" });
  const records = [...sim.records()];
  const image = new Float32Array(n * dim);
  const text = new Float32Array(n * dim);
  records.forEach((r, i) => {
    image.set(r.imageEmbedding, i * dim);
    text.set(r.textEmbedding, i * dim);
  });
  const engine = await createScoringEngine({ logger: silentLogger });
  try {
    const s = await engine.sClipLoss(
      { dim, scoredRows: n, bankRows: 0, image, text },
      makeDraws(n, { seed: 1, draws: 1, batchSize: n }),
      0.01,
    );
    const rank = (values: Float32Array) => {
      const order = Array.from(values.keys()).sort((a, b) => values[b] - values[a]);
      const top = new Set(order.slice(0, Math.floor(0.3 * n)));
      return (kind: SimKind) => {
        const rows = records.flatMap((r, i) => (r.kind === kind ? [i] : []));
        return rows.filter((i) => top.has(i)).length / rows.length;
      };
    };
    const byClip = rank(s.clipScore);
    const bySClip = rank(s.sClipLoss);
    // CLIPScore's top 30% takes most boilerplate; s-CLIPLoss's takes almost none, and keeps good pairs.
    assert.ok(byClip("boilerplate") > 0.5, `CLIPScore top 30%: ${byClip("boilerplate")} of boilerplate`);
    assert.ok(bySClip("boilerplate") < 0.1, `s-CLIPLoss top 30%: ${bySClip("boilerplate")} of boilerplate`);
    assert.ok(bySClip("aligned") > 0.4, `s-CLIPLoss top 30%: ${bySClip("aligned")} of aligned`);
    assert.equal(bySClip("mismatched"), 0);
  } finally {
    await engine.close();
  }
});

test("bad options are configuration errors that name the option", () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ dim: 4 }, /dim must be an integer >= 8/],
    [{ count: -1 }, /count/],
    [{ order: "sorted" }, /order must be one of shuffled, bursty/],
    [{ mix: { ...DEFAULT_MIX, aligned: 0.5 } }, /add up to 1/],
    [{ profile: "webvid" }, /profile must be one of crawl, longtail/],
  ];
  for (const [override, message] of cases) {
    assert.throws(
      () => createSimulation({ count: 10, dim: 16, seed: 0, order: "shuffled", ...override } as never),
      (err: unknown) => isClipsieveError(err) && err.code === "CONFIG_INVALID" && message.test(err.message),
    );
  }
});

test("longtail profile: Zipf topic popularity, its mix, near-copy clusters larger than crawl's", () => {
  const count = 20_000;
  const sim = createSimulation({ count, dim: 16, seed: 5, order: "shuffled", profile: "longtail" });
  assert.equal(sim.options.topics, 240);
  assert.equal(sim.options.sites, 60);
  const records = [...sim.records()];
  const counted = byKind(records, () => 1);
  for (const kind of SIM_KINDS) {
    assert.ok(
      Math.abs(counted[kind].length - count * LONGTAIL_MIX[kind]) <= 1,
      `${kind}: ${counted[kind].length}`,
    );
  }
  // Popularity: the busiest topic holds many times the records of the median one.
  const perTopic = new Array(240).fill(0);
  for (const r of records) perTopic[r.topic]++;
  const sorted = [...perTopic].sort((a, b) => a - b);
  const median = sorted[120];
  assert.ok(sorted[239] > 10 * Math.max(1, median), `busiest ${sorted[239]}, median ${median}`);
  // Near-copy clusters (same topic, site and caption): some larger than crawl's 8, found by their
  // images (cosine > 0.9 to the cluster's first record).
  const clusters = new Map<string, SimRecord[]>();
  for (const r of records) {
    if (r.kind !== "duplicate") continue;
    const key = `${r.topic}|${r.site}|${r.text}`;
    clusters.set(key, [...(clusters.get(key) ?? []), r]);
  }
  const largest = Math.max(
    ...[...clusters.values()].map(
      (c) => c.filter((r) => dot(r.imageEmbedding, c[0].imageEmbedding) > 0.9).length,
    ),
  );
  assert.ok(largest > 8, `largest near-copy cluster ${largest}`);
  const crawl = createSimulation({ count, dim: 16, seed: 5, order: "shuffled" });
  const crawlClusters = new Map<string, number>();
  for (const r of crawl.records()) {
    if (r.kind === "duplicate") {
      const key = `${r.topic}|${r.site}|${r.text}`;
      crawlClusters.set(key, (crawlClusters.get(key) ?? 0) + 1);
    }
  }
  assert.ok(Math.max(...crawlClusters.values()) < largest);
});

test("longtail profile: its target set tells aligned from off-target pairs less well than crawl's", () => {
  const gap = (profile: "crawl" | "longtail") => {
    const sim = createSimulation({
      count: 1000,
      dim: 128,
      seed: 4,
      order: "shuffled",
      targetRows: 256,
      profile,
    });
    const target = sim.targetEmbeddings();
    const normSimInf = (image: Float32Array) => {
      let best = 0;
      for (let m = 0; m < target.rows; m++) {
        best = Math.max(best, Math.abs(dot(image, target.data.subarray(m * 128, (m + 1) * 128))));
      }
      return best;
    };
    const ns = byKind([...sim.records()], (r) => normSimInf(r.imageEmbedding));
    return mean(ns.aligned) - mean(ns.off_target);
  };
  const crawl = gap("crawl");
  const longtail = gap("longtail");
  assert.ok(longtail > 0, `longtail ${longtail}`);
  assert.ok(longtail < crawl - 0.02, `crawl ${crawl}, longtail ${longtail}`);
});

test("the crawl profile (the default) is the generator of before the profiles, byte for byte", () => {
  // The digest of these records as the generator of commit f6fd043 (before profiles existed) made
  // them on Node 24, computed with that commit's src/simulate/generator.ts: the demo's and the
  // fidelity study's earlier figures stay reproducible.
  const h = createHash("sha256");
  for (const order of ["shuffled", "bursty"] as const) {
    const sim = createSimulation({ count: 3000, dim: 16, seed: 11, order });
    for (const r of sim.records()) {
      h.update(`${r.uid}|${r.kind}|${r.topic}|${r.site}|${r.text}|${r.url}\n`);
      h.update(Buffer.from(r.imageEmbedding.buffer));
      h.update(Buffer.from(r.textEmbedding.buffer));
    }
    h.update(Buffer.from(sim.targetEmbeddings().data.buffer));
  }
  assert.equal(h.digest("hex"), "c4ec275ea689a783d3486126acb14b25af8b0f168dd5c689005f7c223debc1ae");
});

test("an option given as undefined takes its default", () => {
  const sim = createSimulation({
    count: 10,
    dim: 16,
    seed: 0,
    order: "shuffled",
    profile: undefined,
    topics: undefined,
  });
  assert.equal(sim.options.profile, "crawl");
  assert.equal(sim.options.topics, 24);
});
