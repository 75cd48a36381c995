import type { ScoreRow } from "../policy/types.ts";
import type { ScoringEngine } from "./engine.ts";
import type { Draw, Pool, TargetSet } from "./types.ts";

/**
 * The score stage for one window: s-CLIPLoss over the pool and its draws, and NormSim of the scored
 * rows against the target set when there is one. One row per scored record, in pool order. Shared by
 * `run`/`replay` and `calibrate`, so a window is scored the same way wherever it is scored.
 */
export async function scorePoolRows(
  engine: ScoringEngine,
  pool: Pool,
  draws: Draw[],
  tau: number,
  target: TargetSet | undefined,
): Promise<ScoreRow[]> {
  const n = pool.scoredRows;
  if (n === 0) return [];
  const s = await engine.sClipLoss(pool, draws, tau);
  const ns = target ? await engine.normSim(pool.image.subarray(0, n * pool.dim), n, target) : undefined;
  const rows: ScoreRow[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const row: ScoreRow = { clip_score: s.clipScore[i], s_clip_loss: s.sClipLoss[i] };
    if (ns) {
      row.normsim_2 = ns.normsim2[i];
      row.normsim_inf = ns.normsimInf[i];
    }
    rows[i] = row;
  }
  return rows;
}
