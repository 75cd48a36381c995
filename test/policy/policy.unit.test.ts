import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { isClipsieveError } from "../../src/common/errors.ts";
import { parsePolicySpec } from "../../src/policy/options.ts";
import { createPolicy, mergePolicyStates, type Policy, type PolicyState } from "../../src/policy/policy.ts";
import { DECISION_REASONS, type PolicyDecision } from "../../src/policy/types.ts";
import type { ScoreRow } from "../../src/score/registry.ts";
import { syntheticStream } from "./random.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url);

interface Fixture {
  description: string;
  spec: unknown;
  windows: {
    rows: ScoreRow[];
    thresholds: Record<string, number | "Infinity">;
    expected: Omit<PolicyDecision, "thresholds">[];
  }[];
}

const fromFixture = (thresholds: Record<string, number | "Infinity">): Record<string, number> =>
  Object.fromEntries(
    Object.entries(thresholds).map(([key, value]) => [
      key,
      value === "Infinity" ? Number.POSITIVE_INFINITY : value,
    ]),
  );

describe("pinned decisions (test/policy/fixtures)", () => {
  const files = readdirSync(FIXTURES).filter((name) => name.endsWith(".json"));
  it("has fixtures", () => assert.ok(files.length >= 5));
  for (const file of files) {
    const fixture = JSON.parse(readFileSync(new URL(file, FIXTURES), "utf8")) as Fixture;
    it(`${file}: ${fixture.description}`, () => {
      const policy = createPolicy(parsePolicySpec(fixture.spec));
      fixture.windows.forEach((window, w) => {
        const thresholds = fromFixture(window.thresholds);
        const decisions = policy.decide(window.rows);
        const expected = window.expected.map((e) => ({ ...e, thresholds }));
        assert.deepEqual(decisions, expected, `window ${w}`);
        assert.deepEqual(policy.thresholds(), thresholds, `thresholds after window ${w}`);
        for (const d of decisions) assert.ok(DECISION_REASONS.includes(d.reason));
      });
    });
  }
});

function runStream(policy: Policy, rows: ScoreRow[], windowSize: number): PolicyDecision[] {
  const out: PolicyDecision[] = [];
  for (let i = 0; i < rows.length; i += windowSize) out.push(...policy.decide(rows.slice(i, i + windowSize)));
  return out;
}

/** The offline two-stage selection (spec §4), written directly: indices kept. */
function offlineTwoStage(rows: ScoreRow[], f1: number, f2: number): Set<number> {
  const n = rows.length;
  const byStage1 = [...rows.keys()].sort((a, b) => rows[b]!.s_clip_loss - rows[a]!.s_clip_loss);
  const passers = byStage1.slice(0, Math.floor(f1 * n));
  passers.sort((a, b) => rows[b]!.normsim_inf! - rows[a]!.normsim_inf!);
  return new Set(passers.slice(0, Math.floor(f2 * n)));
}

describe("streaming two-stage policy vs the offline selection", () => {
  it("on 200k shuffled rows: accepted fraction within 1 point of f2 and Jaccard >= 0.9 after warm-up", (t) => {
    const n = 200_000;
    const warmup = 10_000;
    const rows = syntheticStream(n, 42);
    const policy = createPolicy(
      parsePolicySpec({
        keep: { score: "s_clip_loss", fraction: 0.3 },
        thenKeep: { score: "normsim_inf", fraction: 0.2 },
        warmup: { records: warmup },
      }),
    );
    const decisions = runStream(policy, rows, 1000);
    const offline = offlineTwoStage(rows, 0.3, 0.2);
    let accepted = 0;
    let both = 0;
    let either = 0;
    for (let i = warmup; i < n; i++) {
      const streaming = decisions[i]!.decision === "accepted";
      const kept = offline.has(i);
      accepted += Number(streaming);
      both += Number(streaming && kept);
      either += Number(streaming || kept);
      assert.equal(decisions[i]!.warmup, false);
    }
    assert.equal(decisions[warmup - 1]!.warmup, true);
    const fraction = accepted / (n - warmup);
    const jaccard = both / either;
    t.diagnostic(`after warm-up: Jaccard ${jaccard.toFixed(4)}, accepted ${(fraction * 100).toFixed(2)}%`);
    assert.ok(Math.abs(fraction - 0.2) < 0.01, `accepted fraction ${fraction}`);
    assert.ok(jaccard >= 0.9, `Jaccard ${jaccard}`);
    // Measured 0.99 with this seed; falling far below says the sketch or the two-stage wiring broke.
    assert.ok(jaccard >= 0.97, `Jaccard ${jaccard}`);
    const allAccepted = decisions.filter((d) => d.decision === "accepted").length / n;
    assert.ok(Math.abs(allAccepted - 0.2) < 0.01, `accepted fraction over the whole stream ${allAccepted}`);
  });

  it("keep 1 accepts every record, whatever comes", () => {
    const policy = createPolicy(parsePolicySpec({ keep: { score: "s_clip_loss", fraction: 1 } }));
    const decisions = runStream(policy, syntheticStream(5000, 7), 64);
    assert.ok(decisions.every((d) => d.decision === "accepted" && d.reason === "passed"));
  });
});

describe("state", () => {
  const spec = parsePolicySpec({
    keep: { score: "s_clip_loss", fraction: 0.3 },
    thenKeep: { score: "normsim_inf", fraction: 0.2 },
    thresholds: [{ score: "clip_score", min: 0.25 }],
    warmup: { records: 500 },
  });

  it("snapshot and restore give identical subsequent decisions and snapshots", () => {
    const rows = syntheticStream(40_000, 11);
    const original = createPolicy(spec);
    runStream(original, rows.slice(0, 20_000), 700);
    const saved = JSON.parse(JSON.stringify(original.snapshot())) as PolicyState;
    const restored = createPolicy(spec, { state: saved });
    assert.equal(restored.recordsSeen, 20_000);
    assert.deepEqual(restored.thresholds(), original.thresholds());
    assert.deepEqual(
      runStream(restored, rows.slice(20_000), 700),
      runStream(original, rows.slice(20_000), 700),
    );
    assert.deepEqual(restored.snapshot(), original.snapshot());
  });

  it("a restored policy is not cold: warm-up counts the records of the state", () => {
    const warm = parsePolicySpec({
      keep: { score: "s_clip_loss", fraction: 0.5 },
      warmup: { records: 100, mode: "accept" },
    });
    const rows = syntheticStream(120, 12);
    const first = createPolicy(warm);
    first.decide(rows.slice(0, 60));
    const second = createPolicy(warm, { state: first.snapshot() });
    const decisions = second.decide(rows.slice(60));
    assert.deepEqual(
      decisions.map((d) => d.warmup),
      Array.from({ length: 60 }, (_, i) => 60 + i + 1 <= 100),
    );
    assert.ok(decisions.slice(0, 40).every((d) => d.reason === "warmup_accept"));
    assert.ok(decisions.slice(40).every((d) => d.reason !== "warmup_accept"));
  });

  it("refuses a state made by another policy, naming both", () => {
    const other = createPolicy(parsePolicySpec({ keep: { score: "clip_score", fraction: 0.3 } }));
    other.decide(syntheticStream(10, 1));
    assert.throws(
      () => createPolicy(spec, { state: other.snapshot() }),
      (err) =>
        isClipsieveError(err, "POLICY_STATE_MISMATCH") &&
        err.message.includes(other.version) &&
        err.message.includes(createPolicy(spec).version) &&
        err.message.includes("--keep clip_score=0.3") &&
        /cannot be reused/.test(err.message),
    );
  });

  it("reuses the sketches on request when only what they do not depend on changed", () => {
    const original = createPolicy(spec);
    runStream(original, syntheticStream(5000, 13), 500);
    const narrower = parsePolicySpec({
      ...spec,
      thenKeep: { score: "normsim_inf", fraction: 0.1 },
      thresholds: [],
    });
    assert.throws(
      () => createPolicy(narrower, { state: original.snapshot() }),
      (err) =>
        isClipsieveError(err, "POLICY_STATE_MISMATCH") && /restore with reuseSketches/.test(err.message),
    );
    const reused = createPolicy(narrower, { state: original.snapshot(), reuseSketches: true });
    assert.equal(reused.recordsSeen, 5000);
    assert.equal(reused.thresholds()["keep:s_clip_loss"], original.thresholds()["keep:s_clip_loss"]);
    assert.equal(reused.snapshot().policyVersion, reused.version);
    const wider = parsePolicySpec({ ...spec, keep: { score: "s_clip_loss", fraction: 0.4 } });
    assert.throws(
      () => createPolicy(wider, { state: original.snapshot(), reuseSketches: true }),
      (err) => isClipsieveError(err, "POLICY_STATE_MISMATCH") && /cannot be reused/.test(err.message),
    );
  });

  it("rejects an edited or malformed state", () => {
    const policy = createPolicy(spec);
    policy.decide(syntheticStream(50, 2));
    const state = policy.snapshot();
    assert.throws(
      () => createPolicy(spec, { state: { ...state, records: 49 } }),
      (err) => isClipsieveError(err, "POLICY_STATE_INVALID") && /counts 49 records/.test(err.message),
    );
    assert.throws(
      () =>
        createPolicy(spec, {
          state: { ...state, spec: { ...state.spec, warmup: { records: 1, mode: "accept" } } },
        }),
      (err) => isClipsieveError(err, "POLICY_STATE_INVALID") && /do not match its own spec/.test(err.message),
    );
    assert.throws(
      () => createPolicy(spec, { state: { ...state, format: "something-else" } }),
      (err) => isClipsieveError(err, "POLICY_STATE_INVALID") && /state\.format/.test(err.message),
    );
  });

  it("merges the states of two instances of one policy", () => {
    const rows = syntheticStream(60_000, 14);
    const a = createPolicy(spec);
    const b = createPolicy(spec);
    const single = createPolicy(spec);
    runStream(a, rows.slice(0, 30_000), 1000);
    runStream(b, rows.slice(30_000), 1000);
    runStream(single, rows, 1000);
    const merged = createPolicy(spec, { state: mergePolicyStates(a.snapshot(), b.snapshot()) });
    assert.equal(merged.recordsSeen, 60_000);
    const sorted = Float64Array.from(rows, (r) => r.s_clip_loss).sort();
    const rankOf = (t: number) => sorted.filter((v) => v >= t).length / sorted.length;
    const mergedCut = merged.thresholds()["keep:s_clip_loss"]!;
    assert.ok(Math.abs(rankOf(mergedCut) - 0.3) < 0.005, `merged keep cut keeps ${rankOf(mergedCut)}`);
    assert.ok(Math.abs(rankOf(mergedCut) - rankOf(single.thresholds()["keep:s_clip_loss"]!)) < 0.005);
    const other = createPolicy(parsePolicySpec({ keep: { score: "s_clip_loss", fraction: 0.3 } }));
    assert.throws(
      () => mergePolicyStates(a.snapshot(), other.snapshot()),
      (err) => isClipsieveError(err, "POLICY_STATE_MISMATCH"),
    );
  });
});

describe("bad input", () => {
  const spec = parsePolicySpec({
    keep: { score: "s_clip_loss", fraction: 0.3 },
    thenKeep: { score: "normsim_inf", fraction: 0.2 },
  });

  it("a missing or non-finite score throws, names row and score, and changes nothing", () => {
    const policy = createPolicy(spec);
    policy.decide(syntheticStream(20, 3));
    const before = policy.snapshot();
    const window = syntheticStream(5, 4);
    // Row 3 passes stage 1 by far, so stage 2 reads its normsim_inf.
    window[3]!.s_clip_loss = 1;
    delete window[3]!.normsim_inf;
    assert.throws(
      () => policy.decide(window),
      (err) =>
        isClipsieveError(err, "POLICY_SCORE_INVALID") &&
        /row 3: score normsim_inf is missing/.test(err.message),
    );
    window[3]!.normsim_inf = 0.5;
    window[1]!.s_clip_loss = Number.NaN;
    assert.throws(
      () => policy.decide(window),
      (err) =>
        isClipsieveError(err, "POLICY_SCORE_INVALID") && /row 1: score s_clip_loss is NaN/.test(err.message),
    );
    assert.deepEqual(policy.snapshot(), before);
  });

  it("an empty window decides nothing and changes nothing", () => {
    const policy = createPolicy(spec);
    assert.deepEqual(policy.decide([]), []);
    assert.equal(policy.recordsSeen, 0);
  });
});
