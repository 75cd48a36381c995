/**
 * The filter's settings (src/pipeline/settings.ts), resolved once from the run configuration and
 * what it names: D and the teacher model follow their documented precedence, inconsistent settings
 * (a target of another D, a target-needing score without a target) fail with the key at fault, and
 * the derived values (backpressure bound, topics, transactional id) are what the docs promise.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { ClipsieveError, isClipsieveError } from "../../src/common/errors.ts";
import { configFromEnv, resolveRunConfig } from "../../src/pipeline/config.ts";
import { resolveSettings } from "../../src/pipeline/settings.ts";
import type { TargetSet } from "../../src/score/types.ts";

const required = {
  brokers: "127.0.0.1:9092",
  group: "g1",
  input: "in",
  accepted: "acc",
  rejected: "rej",
  deadLetter: "dlq",
  scores: "sc",
  instanceId: "pod-7",
  keep: "s_clip_loss=0.3",
};

function config(flags: Record<string, unknown> = {}) {
  return resolveRunConfig({ flags: { ...required, ...flags } });
}

function target(dim: number, model = "openai/clip-vit-base-patch32"): TargetSet {
  return {
    model,
    dim,
    rows: 1,
    embeddings: new Float32Array(dim),
    gram: new Float32Array(dim * dim),
    contentHash: "0".repeat(64),
  };
}

function settingsError(fn: () => unknown, code: string): ClipsieveError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ClipsieveError, `expected a ClipsieveError, got ${String(err)}`);
    assert.equal(err.code, code);
    return err;
  }
  assert.fail(`expected a ${code} error`);
}

test("dim: --dim, else the target set's, else the embed teacher's, else 768", () => {
  const embed = { dim: 1024, model: "teacher" };
  assert.equal(resolveSettings(config({ dim: 256 }), { embed }).dim, 256);
  assert.equal(resolveSettings(config({ dim: 512 }), { target: target(512), embed }).dim, 512);
  assert.equal(resolveSettings(config({ target: "t.bin" }), { target: target(512), embed }).dim, 512);
  assert.equal(resolveSettings(config(), { embed }).dim, 1024);
  assert.equal(resolveSettings(config()).dim, 768);
  // The scorer works in the same D.
  assert.equal(resolveSettings(config(), { embed }).scorer.dim, 1024);
});

test("a target set of another D than --dim is TARGET_MISMATCH", () => {
  const err = settingsError(
    () => resolveSettings(config({ dim: 256, target: "t.bin" }), { target: target(512) }),
    "TARGET_MISMATCH",
  );
  assert.match(err.message, /t\.bin/);
  assert.match(err.message, /D=512/);
  assert.match(err.message, /--dim is 256/);
});

test("a policy on a score that needs a target, without one, is CONFIG_INVALID naming the score", () => {
  const keepErr = settingsError(() => resolveSettings(config({ keep: "normsim_inf=0.3" })), "CONFIG_INVALID");
  assert.match(keepErr.message, /normsim_inf/);
  assert.match(keepErr.message, /--target/);
  const thresholdErr = settingsError(
    () => resolveSettings(config({ keep: "s_clip_loss=0.5", threshold: "normsim_2>=0.1" })),
    "CONFIG_INVALID",
  );
  assert.match(thresholdErr.message, /normsim_2/);
  // With a target set, the same policy resolves.
  const s = resolveSettings(config({ keep: "normsim_inf=0.3", target: "t.bin" }), { target: target(768) });
  assert.equal(s.policy.keep?.score, "normsim_inf");
  assert.equal(s.scorer.target?.dim, 768);
});

test("model: --model, else the target set's (unless 'unknown'), else the embed teacher's", () => {
  const embed = { dim: 512, model: "teacher-model" };
  assert.equal(
    resolveSettings(config({ model: "flag-model", target: "t.bin" }), {
      target: target(512, "target-model"),
      embed,
    }).model,
    "flag-model",
  );
  assert.equal(
    resolveSettings(config({ target: "t.bin" }), { target: target(512, "target-model"), embed }).model,
    "target-model",
  );
  assert.equal(
    resolveSettings(config({ target: "t.bin" }), { target: target(512, "unknown"), embed }).model,
    "teacher-model",
  );
  assert.equal(
    resolveSettings(config({ target: "t.bin" }), { target: target(768, "unknown") }).model,
    undefined,
  );
  assert.equal(resolveSettings(config()).model, undefined);
});

test("maxUndelivered: maxQueuedWindows windows, but never below one primed first window", () => {
  // 3 x 100 = 300 > 100 + 50 = 150
  assert.equal(
    resolveSettings(config({ windowSize: 100, bankSize: 50, maxQueuedWindows: 3 })).maxUndelivered,
    300,
  );
  // 2 x 100 = 200 < 100 + 400 = 500
  assert.equal(
    resolveSettings(config({ windowSize: 100, bankSize: 400, maxQueuedWindows: 2 })).maxUndelivered,
    500,
  );
  // bank 0: 1 x 64 = 64 = 64 + 0
  assert.equal(
    resolveSettings(config({ windowSize: 64, bankSize: 0, maxQueuedWindows: 1 })).maxUndelivered,
    64,
  );
  // defaults: window 4096, bank 4096, 2 windows -> 8192
  assert.equal(resolveSettings(config()).maxUndelivered, 8192);
});

test("topics come from the configuration, the windows topic defaulting to <scores>-windows", () => {
  assert.deepEqual(resolveSettings(config()).topics, {
    accepted: "acc",
    rejected: "rej",
    deadLetter: "dlq",
    scores: "sc",
    windowsTopic: "sc-windows",
  });
  assert.equal(resolveSettings(config({ windowsTopic: "manifests" })).topics.windowsTopic, "manifests");
});

test("transactionalId is clipsieve-<group>-<instanceId>", () => {
  assert.equal(resolveSettings(config()).transactionalId, "clipsieve-g1-pod-7");
  assert.equal(
    resolveSettings(config({ group: "filters", instanceId: "b" })).transactionalId,
    "clipsieve-filters-b",
  );
});

test("the window cut and the scorer get the configured sizes", () => {
  const s = resolveSettings(
    config({ windowSize: 100, bankSize: 50, lingerMs: 750, draws: 3, batchSize: 64, tau: 0.05, seed: 9 }),
  );
  assert.deepEqual(s.cut, { windowSize: 100, bankSize: 50, lingerMs: 750 });
  assert.deepEqual(s.scorer, {
    dim: 768,
    bankSize: 50,
    draws: 3,
    batchSize: 64,
    normaliser: "draws",
    tau: 0.05,
    seed: 9,
    target: undefined,
  });
  const pooled = resolveSettings(config({ normaliser: "pool" }));
  assert.equal(pooled.scorer.normaliser, "pool");
  assert.throws(
    () => config({ normaliser: "mean" }),
    (err: unknown) => isClipsieveError(err) && /normaliser/.test(err.message),
  );
});

test("scoreAll: off by default (NormSim_inf for stage-1 passers only); on from the flag, the variable or the file", () => {
  assert.equal(resolveSettings(config()).scoreAll, false);
  assert.equal(resolveSettings(config({ scoreAll: true })).scoreAll, true);
  const fromEnv = resolveRunConfig({ env: configFromEnv({ CLIPSIEVE_SCORE_ALL: "true" }), flags: required });
  assert.equal(resolveSettings(fromEnv).scoreAll, true);
  const fromFile = resolveRunConfig({
    file: { path: "c.json", values: { scoreAll: false } },
    flags: required,
  });
  assert.equal(resolveSettings(fromFile).scoreAll, false);
  assert.throws(
    () => resolveRunConfig({ env: { scoreAll: "yes" }, flags: required }),
    (err) => err instanceof ClipsieveError && /CLIPSIEVE_SCORE_ALL/.test(err.message),
  );
});
