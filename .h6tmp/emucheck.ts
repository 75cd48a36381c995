import { Kafka, logLevel } from "kafkajs";
import { createSimulation } from "/work/main/src/simulate/generator.ts";
import { ensureTopic, produceSimulation } from "/work/main/src/simulate/producer.ts";
import { writeSimulationTarget } from "/work/main/src/simulate/target.ts";
import { createScoringEngine } from "/work/main/src/score/engine.ts";
import { loadTarget } from "/work/main/src/score/target-set.ts";
import { runFilter } from "/work/main/src/bench/filter-run.ts";
import { emulateFilter } from "/work/main/src/bench/emulate.ts";
import { createLogger } from "/work/main/src/common/logger.ts";
const logger = createLogger("x", "warn");
const brokers = ["127.0.0.1:39092"];
const N = 8192, D = 32, W = 2048, B = 2048;
const sim = createSimulation({ count: N, dim: D, seed: 0, order: "shuffled" });
const engine = await createScoringEngine({ logger });
await writeSimulationTarget(sim, "/tmp/h6/t.npz", engine);
const target = await loadTarget("/tmp/h6/t.npz");
const kafka = new Kafka({ clientId: "x", brokers, logLevel: logLevel.NOTHING });
const topic = "h6-emucheck-" + Math.random().toString(16).slice(2, 8);
await ensureTopic(kafka, topic, 1);
await produceSimulation(sim, { kafka, topic, format: "json" });
const flags = { target: "/tmp/h6/t.npz", windowSize: W, bankSize: B, draws: 1, batchSize: 32768, tau: 0.01, lingerMs: 3600000, keep: "s_clip_loss=0.3", thenKeep: "normsim_inf=0.2", warmup: 10000, seed: 0 };
const real = await runFilter({ brokers, input: topic, expected: N, flags, logger });
const emu = await emulateFilter(sim, engine, target, { topic, windowSize: W, bankSize: B, draws: 1, batchSize: 32768, tau: 0.01, seed: 0, keep: "s_clip_loss=0.3", thenKeep: "normsim_inf=0.2", warmup: 10000, primeBank: false });
console.log("real windows", real.windows.map((w) => `${w.id}:${w.outcomes.length}`));
console.log("emu windows", emu.map((w) => `${w.id}:${w.outcomes.length}`));
for (let i = 0; i < Math.min(real.windows.length, emu.length); i++) {
  const r = real.windows[i].outcomes, e = emu[i].outcomes; let diff = 0, maxd = 0;
  for (let j = 0; j < r.length; j++) { if (r[j].decision !== e[j].decision) diff++; for (const k of ["clip_score", "s_clip_loss", "normsim_inf"]) maxd = Math.max(maxd, Math.abs((r[j].scores as any)[k] - (e[j].scores as any)[k])); }
  if (i === 1) for (let j = 0; j < 3; j++) console.log(r[j].record.source.offset, e[j].record.source.offset, r[j].scores, e[j].scores, r[j].record.uid, e[j].record.uid);
  console.log("window", i, "decision diffs", diff, "max score diff", maxd, r[0].record.source.offset, e[0].record.source.offset);
}
await engine.close();
const admin = kafka.admin(); await admin.connect(); await admin.deleteTopics({ topics: [topic] }); await admin.disconnect();
