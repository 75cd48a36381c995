/**
 * The dedup step on the real scoring engine (onnxruntime): a history rebuilt from its committed rows
 * answers as the one that was never interrupted; the indexed search finds planted copies; within a
 * window the earliest of a group of copies is kept; reference copies are named by row; the history's
 * chunk messages read back to the same rows.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { DecodedRecord, RecordOutcome } from "../../src/common/record.ts";
import { buildReference, Deduplicator } from "../../src/dedup/dedup.ts";
import { historyStart, ScopeHistory, segmentRows } from "../../src/dedup/history.ts";
import { decodeChunk, encodeChunk } from "../../src/dedup/history-topic.ts";
import { createScoringEngine, type ScoringEngine } from "../../src/score/engine.ts";
import { gaussian, mulberry32 } from "../helpers/records.ts";

const DIM = 32;
let engine: ScoringEngine;
before(async () => {
  engine = await createScoringEngine({ threads: 1 });
});
after(async () => {
  await engine.close();
});

function unitRows(n: number, seed: number): Float32Array {
  const rand = mulberry32(seed);
  const out = new Float32Array(n * DIM);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let d = 0; d < DIM; d++) {
      const v = gaussian(rand);
      out[i * DIM + d] = v;
      s += v * v;
    }
    for (let d = 0; d < DIM; d++) out[i * DIM + d] /= Math.sqrt(s);
  }
  return out;
}

/** A copy of `row` at about cosine 0.99. */
function nearCopy(row: Float32Array, seed: number): Float32Array {
  const noise = unitRows(1, seed);
  const out = new Float32Array(DIM);
  let s = 0;
  for (let d = 0; d < DIM; d++) {
    out[d] = row[d] + 0.12 * noise[d];
    s += out[d] * out[d];
  }
  for (let d = 0; d < DIM; d++) out[d] /= Math.sqrt(s);
  return out;
}

const entries = (from: number, n: number) =>
  Array.from({ length: n }, (_, i) => ({ uid: `u${from + i}`, offset: String(from + i) }));

describe("history", () => {
  it("holds the last horizon rows in whole segments of half the horizon", () => {
    assert.equal(segmentRows(10_000), 5120);
    assert.equal(segmentRows(1_000_000), 500_224);
    assert.equal(historyStart(5000, 10_000), 0);
    // 30,000 rows appended: 29,952 in whole groups; the rows after 15,360 cover the horizon.
    assert.equal(historyStart(30_000, 10_000), 15_360);
  });

  it("a history rebuilt from the rows it holds answers every query as the uninterrupted one", async () => {
    const horizon = 40_000;
    const rows = unitRows(70_000, 1);
    const whole = new ScopeHistory(engine, { dim: DIM, horizon, probes: 8 });
    // Appended in uneven windows, as a filter does.
    for (let i = 0, w = 1; i < 70_000; i += w, w = ((w * 7) % 1500) + 1) {
      const n = Math.min(w, 70_000 - i);
      await whole.append(rows.subarray(i * DIM, (i + n) * DIM), entries(i, n));
    }
    const start = historyStart(70_000, horizon);
    assert.ok(start > 0, "some rows left");
    assert.equal(whole.rows, 70_000 - start);
    const rebuilt = new ScopeHistory(engine, { dim: DIM, horizon, probes: 8, start });
    await rebuilt.append(rows.subarray(start * DIM), entries(start, 70_000 - start));
    // Queries near rows across the history, and fresh ones.
    const q = new Float32Array(400 * DIM);
    for (let k = 0; k < 200; k++)
      q.set(nearCopy(rows.subarray(k * 290 * DIM, (k * 290 + 1) * DIM), 100 + k), k * DIM);
    q.set(unitRows(200, 7), 200 * DIM);
    const a = await whole.search(q, 400);
    const b = await rebuilt.search(q, 400);
    assert.deepEqual(Array.from(b.seq), Array.from(a.seq));
    assert.deepEqual(Array.from(b.best), Array.from(a.best));
    // Copies of rows still held are found (their own row), copies of rows gone are not.
    let found = 0;
    let heldCopies = 0;
    for (let k = 0; k < 200; k++) {
      const row = k * 290;
      if (row < start) assert.ok(a.seq[k] === -1 || a.seq[k] >= start, `row ${row} has left`);
      else {
        heldCopies++;
        if (a.seq[k] === row) found++;
      }
    }
    assert.ok(found >= heldCopies * 0.95, `found ${found} of ${heldCopies} copies`);
  });

  it("an exact history finds every copy", async () => {
    const rows = unitRows(1000, 2);
    const h = new ScopeHistory(engine, { dim: DIM, horizon: 100_000, probes: 1 });
    await h.append(rows, entries(0, 1000));
    const q = new Float32Array(50 * DIM);
    for (let k = 0; k < 50; k++) q.set(nearCopy(rows.subarray(k * 17 * DIM, (k * 17 + 1) * DIM), k), k * DIM);
    const r = await h.search(q, 50);
    for (let k = 0; k < 50; k++) assert.equal(r.seq[k], k * 17);
  });
});

function outcome(
  image: Float32Array,
  partition: number,
  offset: number,
  decision: "accepted" | "rejected" = "accepted",
): RecordOutcome {
  const record: DecodedRecord = {
    source: { topic: "in", partition, offset: String(offset) },
    key: null,
    value: null,
    headers: {},
    timestamp: "0",
    uid: `p${partition}o${offset}`,
    imageEmbedding: image,
  };
  return { record, decision, reason: decision === "accepted" ? "passed" : "below_keep_quantile" };
}

describe("Deduplicator", () => {
  it("keeps the earliest of copies in a window, rejects later copies of kept records, and stays in its partition", async () => {
    const base = unitRows(3, 3);
    const row = (i: number) => base.subarray(i * DIM, (i + 1) * DIM);
    const dedup = new Deduplicator({
      engine,
      dim: DIM,
      settings: { threshold: 0.95, horizon: 1000, probes: 1, referenceThreshold: 0.95 },
    });
    // Window 1, given out of offset order: offsets 7 and 3 copy base 0 (3 is kept: it came first);
    // offset 5 copies base 1 but was rejected by the policy, so offset 9 (another copy) is kept.
    const w1 = [
      outcome(nearCopy(row(0), 1), 0, 7),
      outcome(nearCopy(row(0), 2), 0, 3),
      outcome(nearCopy(row(1), 3), 0, 5, "rejected"),
      outcome(nearCopy(row(1), 4), 0, 9),
      outcome(nearCopy(row(0), 5), 1, 4),
    ];
    const r1 = await dedup.apply(w1);
    assert.equal(r1.nearDuplicates, 1);
    assert.equal(w1[0].decision, "rejected");
    assert.equal(w1[0].reason, "near_duplicate");
    assert.equal(w1[0].copyOf?.kind, "record");
    assert.deepEqual(w1[0].copyOf?.kind === "record" && [w1[0].copyOf.uid, w1[0].copyOf.source.offset], [
      "p0o3",
      "3",
    ]);
    assert.ok((w1[0].copyOf?.similarity ?? 0) >= 0.95);
    assert.equal(w1[1].decision, "accepted");
    assert.equal(w1[3].decision, "accepted");
    // Another partition is another scope: its copy of base 0 is kept.
    assert.equal(w1[4].decision, "accepted");
    // Window 2: copies of what window 1 kept, from the history.
    const w2 = [outcome(nearCopy(row(1), 6), 0, 12), outcome(nearCopy(row(2), 7), 0, 13)];
    await dedup.apply(w2);
    assert.equal(w2[0].reason, "near_duplicate");
    assert.deepEqual(w2[0].copyOf?.kind === "record" && w2[0].copyOf.source, {
      topic: "in",
      partition: 0,
      offset: "9",
    });
    assert.equal(w2[1].decision, "accepted");
  });

  it("rejects a copy of a reference row as near_reference, naming the row", async () => {
    const refRows = unitRows(40, 4);
    const reference = await buildReference(engine, refRows, 40, DIM);
    const dedup = new Deduplicator({
      engine,
      dim: DIM,
      reference,
      settings: { horizon: 1000, probes: 1, referenceThreshold: 0.95 },
    });
    const w = [
      outcome(nearCopy(refRows.subarray(11 * DIM, 12 * DIM), 9), 0, 1),
      outcome(unitRows(1, 99), 0, 2),
    ];
    const r = await dedup.apply(w);
    assert.equal(r.nearReferences, 1);
    assert.equal(w[0].reason, "near_reference");
    assert.equal(w[0].copyOf?.kind === "reference" && w[0].copyOf.row, 11);
    assert.equal(w[1].decision, "accepted");
  });
});

describe("reference sets", () => {
  it("a large reference set is indexed over all its rows and names rows as given", async () => {
    const rows = 20_000;
    const refRows = unitRows(rows, 12);
    const reference = await buildReference(engine, refRows, rows, DIM);
    const picks = Array.from({ length: 100 }, (_, k) => (k * 197) % rows);
    const q = new Float32Array(picks.length * DIM);
    picks.forEach((row, k) => {
      q.set(nearCopy(refRows.subarray(row * DIM, (row + 1) * DIM), 500 + k), k * DIM);
    });
    const best = new Float32Array(picks.length).fill(Number.NEGATIVE_INFINITY);
    const seq = new Float64Array(picks.length).fill(-1);
    await reference.search(q, picks.length, 8, best, seq);
    const found = picks.filter((row, k) => seq[k] === row).length;
    // Random rows in 32 dimensions are the hardest case for an inverted file; 8 probes of ~280 lists.
    assert.ok(found >= 90, `${found} of 100 copies found at their own row`);
  });
});

describe("history chunks", () => {
  it("read back to the header and rows written", () => {
    const bits = Uint16Array.from({ length: 3 * 4 }, (_, i) => i * 1000);
    const header = {
      scope: "in/0",
      chunk: 5,
      chunkRows: 256,
      rows: 3,
      dim: 4,
      uids: ["a", null, "c"],
      offsets: ["1", "2", "3"],
    };
    // An odd byte offset, as a Kafka client may hand a value.
    const framed = Buffer.concat([Buffer.from([0]), encodeChunk(header, bits)]).subarray(1);
    const back = decodeChunk(framed);
    assert.deepEqual(back.header, header);
    assert.deepEqual(Array.from(back.bits), Array.from(bits));
  });
});

describe("offline parity", () => {
  it("select's dedup over a pool keeps what the streaming step keeps from the same records, whatever the windows", async () => {
    const { dedupPoolRows } = await import("../../src/dedup/offline.ts");
    const base = unitRows(60, 8);
    const images: Float32Array[] = [];
    for (let i = 0; i < 300; i++) {
      // Every third record copies one of 60 originals; the rest are fresh.
      images.push(
        i % 3 === 0
          ? nearCopy(base.subarray((i % 60) * DIM, ((i % 60) + 1) * DIM), i)
          : unitRows(1, 1000 + i),
      );
    }
    const settings = { threshold: 0.95, horizon: 10_000, probes: 2, referenceThreshold: 0.95 };
    const streamed: number[] = [];
    const dedup = new Deduplicator({ engine, dim: DIM, settings });
    for (let start = 0, w = 7; start < images.length; start += w, w = w === 7 ? 31 : 7) {
      const outcomes = images.slice(start, start + w).map((img, k) => outcome(img, 0, start + k));
      await dedup.apply(outcomes);
      outcomes.forEach((o, k) => {
        if (o.decision === "accepted") streamed.push(start + k);
      });
    }
    const offline = await dedupPoolRows(
      engine,
      Int32Array.from(images.keys()),
      DIM,
      (row) => images[row],
      (row) => `r${row}`,
      { dedup: true, dedupThreshold: 0.95, dedupProbes: 2, referenceThreshold: 0.95 },
    );
    assert.ok(offline.nearDuplicates >= 40, `${offline.nearDuplicates} near-duplicates`);
    assert.deepEqual(Array.from(offline.kept), streamed);
  });
});

describe("history read-back", () => {
  /** A topic's records as the history topic would hold them, read by `load` (a stand-in for Kafka's read). */
  function topicOf(records: { key: string; value: Buffer }[]) {
    return {
      ensureTopics: async () => {},
      readTopicToEnd: async (_topic: string, onRecord: (r: unknown) => void) => {
        records.forEach((r, i) => {
          onRecord({
            partition: 0,
            offset: String(i),
            key: Buffer.from(r.key),
            value: r.value,
            headers: {},
            timestamp: "0",
          });
        });
        return { complete: true };
      },
    } as unknown as import("../../src/kafka/index.ts").KafkaClient;
  }
  const silent = {
    info() {},
    warn() {},
    debug() {},
    error() {},
  } as unknown as import("../../src/common/logger.ts").Logger;

  it("takes the chunks written last, not the highest numbers: a history restarted with another D", async () => {
    const { HistoryTopic } = await import("../../src/dedup/history-topic.ts");
    const { float32ToFloat16Bits } = await import("../../src/io/float16.ts");
    const write = (dim: number, rows: number, seed: number) => {
      const t = new HistoryTopic(topicOf([]), { topic: "h", dim, horizon: 100_000 }, silent);
      const bits = float32ToFloat16Bits(unitRows(rows, seed).subarray(0, rows * dim));
      return t
        .messages("in/0", 0, bits, entries(0, rows))
        .map((m) => ({ key: m.key as string, value: m.value as Buffer }));
    };
    // 1,500 rows of D = 32 (chunks 0..5), then a new history of D = 16 from row 0 (chunks 0..1).
    const old = write(32, 1500, 1);
    const fresh = write(16, 300, 2);
    const topic = topicOf([...old, ...fresh]);
    const loaded = await new HistoryTopic(topic, { topic: "h", dim: 16, horizon: 100_000 }, silent).load(
      new Set(["in/0"]),
    );
    const scope = loaded.get("in/0");
    assert.equal(scope?.count, 300);
    assert.deepEqual(
      scope?.chunks.map((c) => [c.header.chunk, c.header.dim, c.header.rows]),
      [
        [0, 16, 256],
        [1, 16, 44],
      ],
    );
    // Read with D = 32, the newest chunks are of another D: no history, not the stale one.
    const other = await new HistoryTopic(topic, { topic: "h", dim: 32, horizon: 100_000 }, silent).load(
      new Set(["in/0"]),
    );
    assert.equal(other.size, 0);
  });
});

describe("configuration", () => {
  it("--dedup with at-least-once delivery is refused", async () => {
    const { openDeduplicator } = await import("../../src/dedup/dedup.ts");
    const store = {
      ensure: async () => {},
    } as unknown as import("../../src/dedup/history-topic.ts").HistoryTopic;
    const config = {
      dedup: true,
      dedupThreshold: 0.95,
      dedupHorizon: 1000,
      dedupProbes: 2,
      referenceThreshold: 0.95,
    };
    await assert.rejects(
      openDeduplicator({ ...config, delivery: "at-least-once" }, engine, DIM, { store }),
      /--dedup needs --delivery exactly-once/,
    );
    assert.ok(await openDeduplicator({ ...config, delivery: "exactly-once" }, engine, DIM, { store }));
  });
});
