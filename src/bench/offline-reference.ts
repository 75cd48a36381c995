/**
 * The paper's offline selection of a sample, the reference the fidelity figures compare against: the
 * whole sample as one pool, K seeded random partitions into batches of b (the engine calls of
 * `clipsieve score`), then the policy's rules over the whole sample (`clipsieve select`'s code). Used
 * by the simulated study (./fidelity.ts) and `fidelity --input` (./fidelity-topic.ts).
 */
import type { SelectionPlan } from "../policy/offline-select.ts";
import { makeDraws } from "../score/draws.ts";
import type { ScoringEngine } from "../score/engine.ts";
import type { TargetSet } from "../score/types.ts";
import { type OfflineSelection, offlineSets } from "./agreement.ts";

export interface OfflineSample {
  /** Row i's key (uid, or source coordinates). */
  keys: string[];
  dim: number;
  image: Float32Array;
  text: Float32Array;
}

export async function selectOffline(
  engine: ScoringEngine,
  sample: OfflineSample,
  o: { batchSize: number; draws: number; seed: number; tau: number; plan: SelectionPlan; target?: TargetSet },
): Promise<OfflineSelection> {
  const { keys, dim, image, text } = sample;
  const n = keys.length;
  const draws = makeDraws(n, { seed: o.seed, draws: o.draws, batchSize: o.batchSize });
  const loss = await engine.sClipLoss({ dim, scoredRows: n, bankRows: 0, image, text }, draws, o.tau);
  const columns: Record<string, Float32Array> = { s_clip_loss: loss.sClipLoss, clip_score: loss.clipScore };
  // Only the NormSims the rules rank or filter by.
  const { plan } = o;
  const ruled = new Set([...plan.thresholds.map((t) => t.score), plan.keep?.score, plan.thenKeep?.score]);
  const two = ruled.has("normsim_2");
  const inf = ruled.has("normsim_inf");
  if (o.target && (two || inf)) {
    const ns = await engine.normSim(image, n, o.target, { two, inf });
    if (inf) columns.normsim_inf = ns.normsimInf;
    if (two && ns.normsim2) columns.normsim_2 = ns.normsim2;
  }
  return { keys, columns, ...offlineSets(keys, columns, plan) };
}
