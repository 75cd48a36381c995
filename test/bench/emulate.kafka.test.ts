/**
 * The fidelity study's emulator stands for the filter only while it decides exactly as the filter
 * does: the same windows, scores and decisions as `buildPipeline` reading the same records from Kafka.
 * If the pipeline's window loop changes, this test says the emulator must follow.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { emulateFilter } from "../../src/bench/emulate.ts";
import { jaccard } from "../../src/bench/fidelity.ts";
import { runFilter } from "../../src/bench/filter-run.ts";
import { silentLogger } from "../../src/common/logger.ts";
import { createScoringEngine } from "../../src/score/engine.ts";
import { loadTarget } from "../../src/score/target-set.ts";
import { createSimulation } from "../../src/simulate/generator.ts";
import { produceSimulation } from "../../src/simulate/producer.ts";
import { writeSimulationTarget } from "../../src/simulate/target.ts";
import { createTopics, testBrokers, testClient, uniqueName } from "../helpers/kafka.ts";

test("jaccard counts intersection over union, optionally within a subset", () => {
  const a = new Set(["1", "2", "3"]);
  const b = new Set(["2", "3", "4", "5"]);
  assert.equal(jaccard(a, b), 2 / 5);
  assert.equal(jaccard(a, b, new Set(["1", "2"])), 1 / 2);
  assert.equal(jaccard(new Set(), new Set()), 1);
});

test("the emulator decides every record as the filter does through Kafka", async () => {
  const input = uniqueName("emu");
  await createTopics([input], 1);
  const sim = createSimulation({ count: 2048, dim: 16, seed: 21, order: "bursty", meanRunLength: 200 });
  await produceSimulation(sim, { kafka: testClient(), topic: input, format: "json" });
  const dir = mkdtempSync(join(tmpdir(), "clipsieve-emulate-test-"));
  const engine = await createScoringEngine({ logger: silentLogger });
  try {
    const targetPath = join(dir, "target.npz");
    await writeSimulationTarget(sim, targetPath, engine);
    const settings = {
      windowSize: 512,
      bankSize: 1024,
      draws: 2,
      batchSize: 1024,
      tau: 0.01,
      seed: 3,
      keep: "s_clip_loss=0.3",
      thenKeep: "normsim_inf=0.2",
      warmup: 0,
    };
    const real = await runFilter({
      brokers: testBrokers(),
      input,
      expected: 2048,
      logger: silentLogger,
      flags: { ...settings, target: targetPath, lingerMs: 3_600_000 },
    });
    const target = await loadTarget(targetPath);
    const emulated = await emulateFilter(sim, engine, target, { ...settings, topic: input, primeBank: true });
    // The first window is primed: 512 + 1024 records, then windows of 512.
    assert.deepEqual(
      real.windows.map((w) => w.outcomes.length),
      [1536, 512],
    );
    assert.deepEqual(
      emulated.map((w) => w.id),
      real.windows.map((w) => w.id),
    );
    emulated.forEach((w, i) => {
      const r = real.windows[i].outcomes;
      w.outcomes.forEach((o, j) => {
        assert.equal(o.record.uid, r[j].record.uid);
        assert.equal(o.decision, r[j].decision, `window ${i}, record ${j}`);
        assert.deepEqual(o.scores, r[j].scores);
      });
    });
    // Without priming the windows differ, and so do some decisions: the check above can fail.
    const unprimed = await emulateFilter(sim, engine, target, {
      ...settings,
      topic: input,
      primeBank: false,
    });
    assert.deepEqual(
      unprimed.map((w) => w.outcomes.length),
      [512, 512, 512, 512],
    );
  } finally {
    await engine.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("with the pool normaliser too: the emulator decides and scores every record as the filter does", async () => {
  const input = uniqueName("emu-pool");
  await createTopics([input], 1);
  const sim = createSimulation({ count: 2048, dim: 16, seed: 22, order: "shuffled", profile: "longtail" });
  await produceSimulation(sim, { kafka: testClient(), topic: input, format: "json" });
  const dir = mkdtempSync(join(tmpdir(), "clipsieve-emulate-test-"));
  const engine = await createScoringEngine({ logger: silentLogger });
  try {
    const targetPath = join(dir, "target.npz");
    await writeSimulationTarget(sim, targetPath, engine);
    // A pool of 512 + 1024 rows, three times b: scaled to batches of 512.
    const settings = {
      windowSize: 512,
      bankSize: 1024,
      draws: 1,
      batchSize: 512,
      normaliser: "pool" as const,
      tau: 0.01,
      seed: 3,
      keep: "s_clip_loss=0.3",
      thenKeep: "normsim_inf=0.2",
      warmup: 0,
    };
    const real = await runFilter({
      brokers: testBrokers(),
      input,
      expected: 2048,
      logger: silentLogger,
      flags: { ...settings, target: targetPath, lingerMs: 3_600_000 },
    });
    const target = await loadTarget(targetPath);
    const emulated = await emulateFilter(sim, engine, target, { ...settings, topic: input, primeBank: true });
    assert.equal(emulated.length, real.windows.length);
    emulated.forEach((w, i) => {
      const r = real.windows[i].outcomes;
      w.outcomes.forEach((o, j) => {
        assert.equal(o.decision, r[j].decision, `window ${i}, record ${j}`);
        assert.deepEqual(o.scores, r[j].scores);
      });
    });
    // The same records with the paper's draws score otherwise: the check above can fail.
    const drawn = await emulateFilter(sim, engine, target, {
      ...settings,
      normaliser: "draws",
      draws: 2,
      topic: input,
      primeBank: true,
    });
    const differs = drawn.some((w, i) =>
      w.outcomes.some((o, j) => o.scores?.s_clip_loss !== real.windows[i].outcomes[j].scores?.s_clip_loss),
    );
    assert.ok(differs);
  } finally {
    await engine.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("with --dedup too: the emulator rejects the same near-copies as the filter, naming the same records", async () => {
  const input = uniqueName("emu-dedup");
  await createTopics([input], 1);
  const sim = createSimulation({ count: 2048, dim: 16, seed: 23, order: "shuffled" });
  await produceSimulation(sim, { kafka: testClient(), topic: input, format: "json" });
  const dir = mkdtempSync(join(tmpdir(), "clipsieve-emulate-test-"));
  const engine = await createScoringEngine({ logger: silentLogger });
  try {
    const targetPath = join(dir, "target.npz");
    await writeSimulationTarget(sim, targetPath, engine);
    const settings = {
      windowSize: 512,
      bankSize: 1024,
      draws: 2,
      batchSize: 1024,
      tau: 0.01,
      seed: 3,
      keep: "s_clip_loss=0.5",
      warmup: 0,
    };
    const dedup = {
      dedup: true,
      dedupThreshold: 0.95,
      dedupHorizon: 100_000,
      dedupProbes: 2,
      referenceThreshold: 0.95,
    };
    const real = await runFilter({
      brokers: testBrokers(),
      input,
      expected: 2048,
      logger: silentLogger,
      flags: { ...settings, ...dedup, target: targetPath, lingerMs: 3_600_000 },
    });
    const target = await loadTarget(targetPath);
    const emulated = await emulateFilter(sim, engine, target, {
      ...settings,
      topic: input,
      primeBank: true,
      dedup,
    });
    assert.equal(emulated.length, real.windows.length);
    let copies = 0;
    emulated.forEach((w, i) => {
      const r = real.windows[i].outcomes;
      w.outcomes.forEach((o, j) => {
        assert.equal(o.reason, r[j].reason, `window ${i}, record ${j}`);
        assert.deepEqual(o.copyOf, r[j].copyOf);
        if (o.reason === "near_duplicate") copies++;
      });
    });
    assert.ok(copies > 0, "the stream's near-copies were rejected");
  } finally {
    await engine.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
