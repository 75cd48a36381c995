/**
 * Calibration from score files: the cut-offs learnt on the first half of a stationary stream keep the
 * requested fractions of the second half (within 2 points), and the saved state restores as a policy.
 */
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { isClipsieveError } from "../../src/common/errors.ts";
import { Calibration, calibrateFromFiles } from "../../src/lake/calibrate.ts";
import { createPolicy, parsePolicyFlags, parsePolicySpec } from "../../src/policy/index.ts";
import { gaussian, mulberry32 } from "../helpers/records.ts";

const dir = mkdtempSync(join(tmpdir(), "clipsieve-calibrate-"));

function stream(n: number): { s_clip_loss: number; clip_score: number; normsim_inf: number }[] {
  const rand = mulberry32(5);
  return Array.from({ length: n }, () => {
    const quality = gaussian(rand);
    return {
      clip_score: 0.3 + 0.02 * quality,
      s_clip_loss: 0.02 + 0.05 * (0.7 * quality + 0.3 * gaussian(rand)),
      normsim_inf: 0.6 + 0.03 * gaussian(rand),
    };
  });
}

test("thresholds calibrated on a sample keep the target fractions of held-out records", async () => {
  const rows = stream(40_000);
  const sample = rows.slice(0, 20_000);
  const heldOut = rows.slice(20_000);
  const path = join(dir, "scores.jsonl");
  writeFileSync(
    path,
    sample.map((r, row) => JSON.stringify({ row, shard: "s0.npz", ...r })).join("\n") + "\n",
  );
  const spec = parsePolicySpec({
    keep: { score: "s_clip_loss", fraction: 0.3 },
    thenKeep: { score: "normsim_inf", fraction: 0.2 },
    warmup: { records: 0 },
  });
  const calibration = new Calibration(spec);
  await calibrateFromFiles([path], calibration, { windowSize: 1000 });
  const result = calibration.result();
  assert.equal(result.read, 20_000);
  assert.equal(result.scored, 20_000);
  assert.equal(result.windows, 20);

  const keep = result.thresholds["keep:s_clip_loss"]!;
  const then = result.thresholds["then:normsim_inf"]!;
  // On the sample itself the keep cut-off is the offline one up to the sketch's rank error.
  const sortedSample = sample.map((r) => r.s_clip_loss).sort((a, b) => b - a);
  const rank = sortedSample.filter((v) => v >= keep).length;
  assert.ok(Math.abs(rank - 6000) <= 100, `rank of the keep cut-off ${rank}, offline 6000`);

  const passKeep = heldOut.filter((r) => r.s_clip_loss >= keep);
  const passBoth = passKeep.filter((r) => r.normsim_inf >= then);
  const fKeep = passKeep.length / heldOut.length;
  const fBoth = passBoth.length / heldOut.length;
  assert.ok(Math.abs(fKeep - 0.3) <= 0.02, `held-out keep fraction ${fKeep}`);
  assert.ok(Math.abs(fBoth - 0.2) <= 0.02, `held-out accepted fraction ${fBoth}`);
  assert.ok(Math.abs(result.acceptedFraction - 0.2) <= 0.01, `sample fraction ${result.acceptedFraction}`);

  // The state is what `run --policy-file` restores: same policy, warm, same cut-offs.
  const restored = createPolicy(spec, { state: JSON.parse(JSON.stringify(result.state)) });
  assert.equal(restored.recordsSeen, 20_000);
  assert.deepEqual(restored.thresholds(), result.thresholds);
});

test("a scores dump is decided window by window; dead letters and --limit are honoured", async () => {
  const path = join(dir, "dump.jsonl");
  const record = (offset: number, window: string, s: number | null) =>
    JSON.stringify({
      source: { topic: "in", partition: 0, offset: String(offset) },
      uid: null,
      scores: s === null ? {} : { clip_score: 0.3, s_clip_loss: s },
      thresholds: {},
      decision: s === null ? "dead_letter" : "accepted",
      reason: s === null ? "EMBEDDING_ZERO" : "passed",
      rule: null,
      window_id: window,
      seed: 1,
      policy_version: "p",
    });
  const lines = [
    record(0, "w-a", 0.1),
    record(1, "w-a", 0.2),
    record(2, "w-a", null),
    record(3, "w-b", 0.3),
    record(4, "w-c", 0.4),
    record(5, "w-c", 0.5),
  ];
  writeFileSync(path, `${lines.join("\n")}\n`);
  const spec = parsePolicyFlags({ keep: "s_clip_loss=0.5", warmup: "0" });

  const all = new Calibration(spec);
  await calibrateFromFiles([path], all, { windowSize: 100 });
  const r = all.result();
  assert.deepEqual([r.read, r.scored, r.skipped, r.windows], [6, 5, 1, 3]);
  // five scores 0.1..0.5, top 50%: floor(0.5 * 5) = 2 highest -> cut-off 0.4
  assert.equal(r.thresholds["keep:s_clip_loss"], 0.4);

  const limited = new Calibration(spec);
  await calibrateFromFiles([path], limited, { windowSize: 100, limit: 4 });
  const l = limited.result();
  assert.deepEqual([l.read, l.scored, l.windows], [4, 3, 2]);
  // 0.1, 0.2, 0.3: floor(1.5) = 1 highest -> 0.3
  assert.equal(l.thresholds["keep:s_clip_loss"], 0.3);
});

test("calibrating on lazily scored windows gives the eager calibration's state; what it cannot judge is counted apart", () => {
  const spec = parsePolicySpec({
    keep: { score: "s_clip_loss", fraction: 0.3 },
    thenKeep: { score: "normsim_inf", fraction: 0.2 },
    warmup: { records: 0 },
  });
  const rows = stream(30_000);
  const eager = new Calibration(spec);
  const lazy = new Calibration(spec);
  for (let at = 0; at < rows.length; at += 1000) {
    const window = rows.slice(at, at + 1000);
    eager.addWindow(window);
    // As the window scorer hands them over: NormSim_inf only where the selector asks for it.
    const mask = lazy.rowSelector()!.select(window)!;
    lazy.addWindow(
      window.map((r, i) => (mask[i] ? r : { clip_score: r.clip_score, s_clip_loss: r.s_clip_loss })),
    );
  }
  const e = eager.result();
  const l = lazy.result();
  assert.deepEqual(l.state, e.state);
  assert.deepEqual(l.thresholds, e.thresholds);
  assert.equal(l.decidedAcceptedFraction, e.decidedAcceptedFraction);
  assert.equal(e.undeterminedFraction, 0);
  // Undetermined: rows at or above the final keep cut-off that their own window's cut-off had failed.
  const keep = l.thresholds["keep:s_clip_loss"]!;
  const then = l.thresholds["then:normsim_inf"]!;
  let judged = 0;
  let unknown = 0;
  let windowCut = Number.POSITIVE_INFINITY;
  const replay = createPolicy(spec);
  rows.forEach((r, i) => {
    if (i % 1000 === 0) {
      replay.decide(rows.slice(i, i + 1000));
      windowCut = replay.thresholds()["keep:s_clip_loss"]!;
    }
    if (r.s_clip_loss < keep) return;
    if (r.s_clip_loss >= windowCut) judged += Number(r.normsim_inf >= then);
    else unknown++;
  });
  assert.ok(unknown > 0, "the final cut-off moved below some windows' cut-offs");
  assert.equal(l.undeterminedFraction, unknown / rows.length);
  assert.equal(l.acceptedFraction, judged / rows.length);
  assert.ok(
    l.acceptedFraction <= e.acceptedFraction &&
      e.acceptedFraction <= l.acceptedFraction + l.undeterminedFraction,
  );
});

test("a dump of a lazily scored run (NormSim_inf null, with its reason) calibrates the same policy", async () => {
  const path = join(dir, "lazy-dump.jsonl");
  const line = (offset: number, s: number, normsimInf: number | null) =>
    JSON.stringify({
      source: { topic: "in", partition: 0, offset: String(offset) },
      uid: null,
      scores: { clip_score: 0.3, s_clip_loss: s, normsim_inf: normsimInf },
      ...(normsimInf === null ? { not_computed: { normsim_inf: "below_keep_quantile" } } : {}),
      thresholds: {},
      decision: "rejected",
      reason: "below_keep_quantile",
      rule: null,
      window_id: "w-a",
      seed: 1,
      policy_version: "p",
    });
  // Ten scores 0.1..1.0: top 30% are 0.8, 0.9, 1.0, the only rows with NormSim_inf.
  writeFileSync(
    path,
    `${Array.from({ length: 10 }, (_, i) => line(i, (i + 1) / 10, i >= 7 ? 0.5 + i / 100 : null)).join("\n")}\n`,
  );
  const spec = parsePolicySpec({
    keep: { score: "s_clip_loss", fraction: 0.3 },
    thenKeep: { score: "normsim_inf", fraction: 0.1 },
    warmup: { records: 0 },
  });
  const calibration = new Calibration(spec);
  await calibrateFromFiles([path], calibration, { windowSize: 100 });
  const r = calibration.result();
  assert.equal(r.thresholds["keep:s_clip_loss"], 0.8);
  // floor(1/3 * 3) = 1 of the three passers: the highest NormSim_inf, 0.59.
  assert.equal(r.thresholds["then:normsim_inf"], 0.59);
  // Another stage 1 would need NormSim_inf the dump does not have: refused, with the reason.
  const other = new Calibration(parsePolicySpec({ ...spec, keep: { score: "s_clip_loss", fraction: 0.5 } }));
  await assert.rejects(
    calibrateFromFiles([path], other, { windowSize: 100 }),
    (err) => isClipsieveError(err, "POLICY_SCORE_INVALID") && /another policy/.test(err.message),
  );
});
