import { createSimulation } from "../src/simulate/generator.ts";
import { createScoringEngine } from "../src/score/engine.ts";
import { makeDraws } from "../src/score/draws.ts";
import { createLogger } from "../src/common/logger.ts";
const logger = createLogger("x", "warn");
const N = 8192, D = 32, W = 2048;
const sim = createSimulation({ count: N, dim: D, seed: 0, order: "shuffled" });
const engine = await createScoringEngine({ logger });
const get = (from: number, n: number) => { const im = new Float32Array(n * D), tx = new Float32Array(n * D); for (let i = 0; i < n; i++) { const r = sim.record(from + i); im.set(r.imageEmbedding, i * D); tx.set(r.textEmbedding, i * D); } return [im, tx]; };
const [i1, t1] = get(2048, W); const [i0, t0] = get(0, W);
const cat = (a: Float32Array, b: Float32Array) => { const c = new Float32Array(a.length + b.length); c.set(a); c.set(b, a.length); return c; };
for (const [name, pool] of [["with bank", { dim: D, scoredRows: W, bankRows: W, image: cat(i1, i0), text: cat(t1, t0) }], ["no bank", { dim: D, scoredRows: W, bankRows: 0, image: i1, text: t1 }]] as const) {
  const n = pool.scoredRows + pool.bankRows;
  const s = await engine.sClipLoss(pool, makeDraws(n, { seed: 1, draws: 1, batchSize: 32768 }), 0.01);
  console.log(name, s.sClipLoss.slice(0, 3));
}
await engine.close();
