/**
 * Planning and deciding a window (src/window/window.ts, src/window/decide.ts): the pool holds the good
 * records then the bank rows, failed records stay out of it; the window id hashes every record's
 * coordinates in order and the seed derives from it (or both come from a recorded window); the manifest
 * records all a replay needs. Decisions go back to the right record through `scoredIndex`, and records
 * that were never scored are dead-lettered with their failure code.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, it } from "node:test";
import type { ErrorCode } from "../../src/common/errors.ts";
import type { DecodedRecord, SourceRef } from "../../src/common/record.ts";
import { createPolicy, parsePolicyFlags } from "../../src/policy/index.ts";
import type { ScoreRow } from "../../src/score/registry.ts";
import { NegativeBank } from "../../src/window/bank.ts";
import { decideWindow } from "../../src/window/decide.ts";
import { planWindow, type RecordedWindow } from "../../src/window/window.ts";

const DIM = 2;

function record(partition: number, offset: string, emb: [number, number] | ErrorCode): DecodedRecord {
  const source: SourceRef = { topic: "in", partition, offset };
  const base = { source, key: null, value: Buffer.from(offset), headers: {}, timestamp: "0" };
  if (typeof emb === "string") return { ...base, failure: { code: emb, stage: "decode", message: "bad" } };
  return {
    ...base,
    uid: `u${partition}-${offset}`,
    imageEmbedding: new Float32Array(emb),
    textEmbedding: new Float32Array([-emb[0], -emb[1]]),
  };
}

/** Four records: good, failed, good, good (on another partition). */
function fourRecords(): DecodedRecord[] {
  return [
    record(0, "10", [1, 2]),
    record(0, "11", "EMBEDDING_NOT_FINITE"),
    record(0, "12", [3, 4]),
    record(1, "5", [5, 6]),
  ];
}

/** A bank holding two rows: image [7, 8] and [9, 10] from b/0/100 and b/0/101. */
function twoRowBank(): NegativeBank {
  const bank = new NegativeBank(4, DIM);
  bank.push(new Float32Array([7, 8, 9, 10]), new Float32Array([-7, -8, -9, -10]), [
    { topic: "b", partition: 0, offset: "100" },
    { topic: "b", partition: 0, offset: "101" },
  ]);
  return bank;
}

const OPTS = { dim: DIM, baseSeed: 7, draws: 3, batchSize: 2, tau: 0.01, plannedAt: 1_700_000_000_123 };

/** The id as documented: sha256 over "topic\0partition\0offset\n" of every record, `w-` + 20 hex digits. */
function expectedId(coords: [number, string][]): string {
  const h = createHash("sha256");
  for (const [p, o] of coords) h.update(`in\u0000${p}\u0000${o}\n`);
  return `w-${h.digest("hex").slice(0, 20)}`;
}

function expectedSeed(baseSeed: number, id: string): number {
  return createHash("sha256").update(`${baseSeed}:${id}`).digest().readUInt32BE(0);
}

describe("planWindow", () => {
  it("builds the pool from the good records, then the bank rows; failed records stay out", () => {
    const records = fourRecords();
    const plan = planWindow(records, twoRowBank(), OPTS);
    assert.equal(plan.records, records);
    assert.deepEqual(plan.scoredIndex, [0, 2, 3]);
    assert.equal(plan.pool.dim, DIM);
    assert.equal(plan.pool.scoredRows, 3);
    assert.equal(plan.pool.bankRows, 2);
    assert.deepEqual([...plan.pool.image], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert.deepEqual([...plan.pool.text], [-1, -2, -3, -4, -5, -6, -7, -8, -9, -10]);
  });

  it("the pool normaliser: one draw of one batch, every pool row in pool order, scaled to b", () => {
    const plan = planWindow(fourRecords(), twoRowBank(), { ...OPTS, normaliser: "pool" });
    assert.equal(plan.draws.length, 1);
    assert.equal(plan.draws[0].length, 1);
    assert.deepEqual([...plan.draws[0][0]], [0, 1, 2, 3, 4]);
    assert.equal(plan.pool.scaleToBatch, OPTS.batchSize);
    assert.equal(plan.manifest.normaliser, "pool");
    assert.equal(plan.manifest.draws, 1);
    assert.equal(plan.manifest.batch_size, OPTS.batchSize);
    // The paper's draws: no scaling, no normaliser in the manifest (manifests as before).
    const drawn = planWindow(fourRecords(), twoRowBank(), OPTS);
    assert.equal(drawn.pool.scaleToBatch, undefined);
    assert.equal("normaliser" in drawn.manifest, false);
    assert.equal(drawn.draws.length, 3);
  });

  it("makes K draws, each a partition of the 5 pool rows into batches of at most b", () => {
    const plan = planWindow(fourRecords(), twoRowBank(), OPTS);
    assert.equal(plan.draws.length, 3);
    for (const draw of plan.draws) {
      assert.deepEqual(
        draw.map((b) => b.length),
        [2, 2, 1],
      );
      assert.deepEqual(draw.flatMap((b) => [...b]).sort(), [0, 1, 2, 3, 4]);
    }
  });

  it("ids the window by every record's coordinates, failed ones included, in order", () => {
    const plan = planWindow(fourRecords(), twoRowBank(), OPTS);
    const id = expectedId([
      [0, "10"],
      [0, "11"],
      [0, "12"],
      [1, "5"],
    ]);
    assert.match(plan.id, /^w-[0-9a-f]{20}$/);
    assert.equal(plan.id, id);
    // Stable: the same coordinates (new objects, no bank) give the same id.
    assert.equal(planWindow(fourRecords(), undefined, { ...OPTS, baseSeed: 1 }).id, id);
    // Order-sensitive: swapping two records changes it.
    const swapped = fourRecords();
    [swapped[2], swapped[3]] = [swapped[3], swapped[2]];
    assert.notEqual(planWindow(swapped, undefined, OPTS).id, id);
    // The failed record's coordinates count: same members, another failed offset, another id.
    const otherFailed = fourRecords();
    otherFailed[1] = record(0, "13", "EMBEDDING_NOT_FINITE");
    assert.notEqual(planWindow(otherFailed, undefined, OPTS).id, id);
  });

  it("derives the seed from the base seed and the id", () => {
    const plan = planWindow(fourRecords(), undefined, OPTS);
    assert.equal(plan.seed, expectedSeed(7, plan.id));
    const other = planWindow(fourRecords(), undefined, { ...OPTS, baseSeed: 8 });
    assert.equal(other.id, plan.id);
    assert.equal(other.seed, expectedSeed(8, plan.id));
    assert.notEqual(other.seed, plan.seed);
  });

  it("writes the manifest: id, planned_at, seed, settings and the coordinates as runs", () => {
    const plan = planWindow(fourRecords(), twoRowBank(), OPTS);
    assert.deepEqual(plan.manifest, {
      window_id: plan.id,
      planned_at: 1_700_000_000_123,
      seed: expectedSeed(7, plan.id),
      draws: 3,
      batch_size: 2,
      tau: 0.01,
      dim: DIM,
      members: [
        ["in", 0, "10", 1],
        ["in", 0, "12", 1],
        ["in", 1, "5", 1],
      ],
      bank: [["b", 0, "100", 2]],
      failed: [["in", 0, "11", 1]],
    });
  });

  it("a recorded window overrides the id, the seed and the bank (the live bank is not read)", () => {
    const recorded: RecordedWindow = {
      id: "w-recorded",
      seed: 42,
      bank: {
        image: new Float32Array([0.5, 0.25]),
        text: new Float32Array([-0.5, -0.25]),
        refs: [{ topic: "old", partition: 3, offset: "9" }],
      },
    };
    const plan = planWindow(fourRecords(), twoRowBank(), OPTS, recorded);
    assert.equal(plan.id, "w-recorded");
    assert.equal(plan.seed, 42);
    assert.equal(plan.pool.bankRows, 1);
    assert.deepEqual([...plan.pool.image], [1, 2, 3, 4, 5, 6, 0.5, 0.25]);
    assert.deepEqual([...plan.pool.text], [-1, -2, -3, -4, -5, -6, -0.5, -0.25]);
    assert.equal(plan.manifest.window_id, "w-recorded");
    assert.equal(plan.manifest.seed, 42);
    assert.deepEqual(plan.manifest.bank, [["old", 3, "9", 1]]);
    assert.equal(plan.draws.length, 3);
    assert.deepEqual(plan.draws[0].flatMap((b) => [...b]).sort(), [0, 1, 2, 3]);
  });

  it("a window with no good record gets no pool, no bank rows and no draws", () => {
    const records = [record(0, "1", "EMBEDDING_ZERO"), record(0, "2", "EMBEDDING_NOT_FINITE")];
    const plan = planWindow(records, twoRowBank(), OPTS);
    assert.deepEqual(plan.scoredIndex, []);
    assert.equal(plan.pool.scoredRows, 0);
    assert.equal(plan.pool.bankRows, 0);
    assert.equal(plan.pool.image.length, 0);
    assert.deepEqual(plan.draws, []);
    assert.deepEqual(plan.manifest.members, []);
    assert.deepEqual(plan.manifest.bank, []);
    assert.deepEqual(plan.manifest.failed, [["in", 0, "1", 2]]);
  });
});

describe("decideWindow", () => {
  const policy = () => createPolicy(parsePolicyFlags({ threshold: ["s_clip_loss>=0.5"] }));

  it("sends each decision to its record and dead-letters the failed ones with their code", () => {
    const records = [
      record(0, "0", [1, 0]), // scored row 0: 0.9, accepted
      record(0, "1", "EMBEDDING_NOT_FINITE"),
      record(0, "2", [0, 1]), // scored row 1: 0.1, rejected
      record(1, "0", "EMBEDDING_DIMENSION_MISMATCH"),
      record(1, "1", [1, 1]), // scored row 2: exactly 0.5, accepted (>=)
    ];
    const plan = planWindow(records, undefined, OPTS);
    assert.deepEqual(plan.scoredIndex, [0, 2, 4]);
    const rows: ScoreRow[] = [
      { clip_score: 0.3, s_clip_loss: 0.9 },
      { clip_score: 0.2, s_clip_loss: 0.1 },
      { clip_score: 0.25, s_clip_loss: 0.5 },
    ];
    const outcomes = decideWindow({ plan, rows }, policy());
    assert.equal(outcomes.length, 5);
    for (const [i, o] of outcomes.entries())
      assert.equal(o.record, records[i], `outcome ${i} is of record ${i}`);
    const thresholds = { "threshold:s_clip_loss": 0.5 };
    assert.deepEqual(
      outcomes.map(({ decision, reason, rule, scores, thresholds }) => ({
        decision,
        reason,
        rule,
        scores,
        thresholds,
      })),
      [
        { decision: "accepted", reason: "passed", rule: undefined, scores: rows[0], thresholds },
        {
          decision: "dead_letter",
          reason: "EMBEDDING_NOT_FINITE",
          rule: undefined,
          scores: undefined,
          thresholds: undefined,
        },
        { decision: "rejected", reason: "below_threshold", rule: "s_clip_loss", scores: rows[1], thresholds },
        {
          decision: "dead_letter",
          reason: "EMBEDDING_DIMENSION_MISMATCH",
          rule: undefined,
          scores: undefined,
          thresholds: undefined,
        },
        { decision: "accepted", reason: "passed", rule: undefined, scores: rows[2], thresholds },
      ],
    );
  });

  it("a window with no scored row is all dead letters, and the policy sees nothing", () => {
    const records = [record(0, "0", "EMBEDDING_ZERO"), record(0, "1", "EMBEDDING_NOT_FINITE")];
    const p = policy();
    const outcomes = decideWindow({ plan: planWindow(records, undefined, OPTS), rows: [] }, p);
    assert.deepEqual(
      outcomes.map((o) => [o.decision, o.reason]),
      [
        ["dead_letter", "EMBEDDING_ZERO"],
        ["dead_letter", "EMBEDDING_NOT_FINITE"],
      ],
    );
    assert.equal(p.recordsSeen, 0);
  });
});
