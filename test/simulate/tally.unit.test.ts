/** The demo's tally and summary, on hand-made outcomes whose counts and latencies are known. */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { DecodedRecord, RecordOutcome } from "../../src/common/record.ts";
import { DemoTally, formatSummary, quantile } from "../../src/simulate/tally.ts";

function outcome(
  kind: string,
  decision: RecordOutcome["decision"],
  reason: string,
  producedAt: number,
  clip = 0.3,
): RecordOutcome {
  const record: DecodedRecord = {
    source: { topic: "t", partition: 0, offset: "0" },
    key: null,
    value: null,
    headers: { "sim-kind": Buffer.from(kind) },
    timestamp: String(producedAt),
  };
  return decision === "dead_letter"
    ? { record, decision, reason }
    : { record, decision, reason, scores: { clip_score: clip, s_clip_loss: -clip / 10 } };
}

test("quantile is the nearest rank", () => {
  const values = [5, 1, 4, 2, 3, 10, 9, 8, 7, 6];
  assert.equal(quantile(values, 0.5), 5);
  assert.equal(quantile(values, 0.99), 10);
  assert.equal(quantile(values, 0.1), 1);
  assert.ok(Number.isNaN(quantile([], 0.5)));
});

test("the tally counts decisions, reasons, kinds and latencies", () => {
  const t = new DemoTally();
  t.add(
    [
      outcome("aligned", "accepted", "passed", 1000, 0.31),
      outcome("aligned", "rejected", "below_then_quantile", 1000, 0.28),
      outcome("boilerplate", "rejected", "below_keep_quantile", 1500, 0.4),
      outcome("mismatched", "rejected", "below_keep_quantile", 1500, 0.05),
    ],
    3000,
  );
  t.add(
    [
      outcome("aligned", "accepted", "passed", 2000, 0.33),
      outcome("aligned", "dead_letter", "EMBEDDING_ZERO", 2000),
    ],
    5000,
  );
  assert.deepEqual(t.snapshot(), { decided: 6, accepted: 2, rejected: 3, deadLetter: 1 });
  assert.equal(t.byReason.get("rejected/below_keep_quantile"), 2);
  assert.equal(t.byKind.get("aligned")?.records, 4);
  assert.equal(t.byKind.get("aligned")?.accepted, 2);
  // Latencies: 2000, 2000, 1500, 1500, 3000, 3000 ms; first produced 1000, last delivered 5000.
  assert.deepEqual(
    [...t.latenciesMs].sort((a, b) => a - b),
    [1500, 1500, 2000, 2000, 3000, 3000],
  );
  assert.equal(t.throughput(), 6 / 4);
  // CLIPScore alone, keeping the accepted share (2 of 6 -> top 1 of the 5 scored): the boilerplate.
  assert.deepEqual([...t.clipScoreOnly(2 / 6)], [["boilerplate", 1]]);

  const summary = formatSummary(t);
  assert.match(summary, /accepted\s+passed\s+2\s+33\.3%/);
  assert.match(summary, /rejected\s+below_keep_quantile\s+2\s+33\.3%/);
  assert.match(summary, /dead_letter\s+EMBEDDING_ZERO\s+1\s+16\.7%/);
  assert.match(summary, /Throughput: 2 records\/s \(6 records in 4\.0 s/);
  assert.match(summary, /p50 2\.00 s, p99 3\.00 s/);
  assert.match(summary, /aligned\s+4\s+2\s+2\s+50\.0%\s+0\.307/);
  assert.match(summary, /boilerplate\s+1\s+0\s+0\s+0\.0%\s+0\.400\s+-0\.040\s+100\.0%/);
});

test("the tally counts near-copies accepted after an earlier record of their cluster, by the policy and in the end", () => {
  const t = new DemoTally();
  const copy = (
    cluster: string,
    decision: "accepted" | "rejected",
    reason: string,
    copied = false,
  ): RecordOutcome => {
    const o = outcome("duplicate", decision, reason, 1000);
    o.record.headers["sim-cluster"] = cluster;
    if (copied) o.copyOf = { kind: "record", uid: "x", source: o.record.source, similarity: 0.99 };
    return o;
  };
  t.add(
    [
      copy("7", "accepted", "passed"),
      copy("7", "rejected", "near_duplicate", true),
      copy("7", "rejected", "below_keep_quantile"),
      copy("7", "accepted", "passed"),
      copy("9", "rejected", "below_keep_quantile"),
      copy("9", "accepted", "passed"),
    ],
    2000,
  );
  // Cluster 7: the policy accepted 3 records (2 after the first); in the end 2 (1 after the first).
  assert.deepEqual(t.copiesAccepted, { policy: 2, final: 1 });
  assert.match(formatSummary(t), /Near-copies accepted .*: 2 by the policy alone, 1 after dedup/);
});
