/**
 * The fidelity emulator scores as the filter does by default: NormSim_inf for each window's stage-1
 * passers only. Its decisions are those of scoring every record (`scoreAll`), record for record, and
 * the records it left without NormSim_inf are exactly the stage-1 failers, each saying why.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { emulateFilter } from "../../src/bench/emulate.ts";
import { silentLogger } from "../../src/common/logger.ts";
import { createScoringEngine } from "../../src/score/engine.ts";
import { loadTarget } from "../../src/score/target-set.ts";
import { createSimulation } from "../../src/simulate/generator.ts";
import { writeSimulationTarget } from "../../src/simulate/target.ts";

test("the emulator's lazy NormSim_inf decides as scoring every record does", async () => {
  const sim = createSimulation({ count: 2048, dim: 16, seed: 21, order: "bursty", meanRunLength: 200 });
  const dir = mkdtempSync(join(tmpdir(), "clipsieve-emulate-unit-"));
  const engine = await createScoringEngine({ logger: silentLogger, threads: 2 });
  try {
    const targetPath = join(dir, "target.npz");
    await writeSimulationTarget(sim, targetPath, engine);
    const target = await loadTarget(targetPath);
    const settings = {
      topic: "in",
      windowSize: 256,
      bankSize: 512,
      draws: 2,
      batchSize: 512,
      tau: 0.01,
      seed: 3,
      keep: "s_clip_loss=0.3",
      thenKeep: "normsim_inf=0.2",
      warmup: 0,
      primeBank: true,
    };
    const lazy = await emulateFilter(sim, engine, target, settings);
    const eager = await emulateFilter(sim, engine, target, { ...settings, scoreAll: true });
    assert.deepEqual(
      lazy.map((w) => w.id),
      eager.map((w) => w.id),
    );
    let skipped = 0;
    lazy.forEach((w, i) => {
      w.outcomes.forEach((o, j) => {
        const e = eager[i]!.outcomes[j]!;
        assert.equal(o.decision, e.decision, `window ${i}, record ${j}`);
        assert.equal(o.reason, e.reason, `window ${i}, record ${j}`);
        const below = o.scores!.s_clip_loss! < o.thresholds!["keep:s_clip_loss"]!;
        assert.equal(o.scores!.normsim_inf, below ? undefined : e.scores!.normsim_inf);
        assert.deepEqual(o.notComputed, below ? { normsim_inf: "below_keep_quantile" } : undefined);
        assert.equal(e.notComputed, undefined);
        skipped += Number(below);
      });
    });
    assert.ok(skipped > 0.6 * 2048, `${skipped} records without NormSim_inf`);
  } finally {
    await engine.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
