import type { ScoringEngine } from "./engine.ts";
import { SCORE_FAMILY_RUNS, type ScoreName, type ScoreRow } from "./registry.ts";
import type { Draw, Pool, TargetSet } from "./types.ts";

/**
 * The score stage for one window: every family of the score registry (./registry.ts) over the pool,
 * its draws and tau; a family whose scores need a target set only when there is one. One row per
 * scored record, in pool order, its keys in registry order. Shared by `run`/`replay` and
 * `calibrate`, so a window is scored the same way wherever it is scored.
 */
/**
 * Every score the registry can compute for the pool's scored rows, as columns (row i = pool row i):
 * those that need a target set only when there is one. The offline `score` command writes these.
 */
export async function scorePoolColumns(
  engine: ScoringEngine,
  pool: Pool,
  draws: Draw[],
  tau: number,
  target: TargetSet | undefined,
): Promise<Partial<Record<ScoreName, ArrayLike<number>>>> {
  const out: Partial<Record<ScoreName, ArrayLike<number>>> = {};
  for (const family of SCORE_FAMILY_RUNS) {
    if (family.needsTarget && !target) continue;
    const columns = await family.compute({ engine, pool, draws, tau, target });
    for (const name of family.scores) out[name] = columns[name] as ArrayLike<number>;
  }
  return out;
}

export async function scorePoolRows(
  engine: ScoringEngine,
  pool: Pool,
  draws: Draw[],
  tau: number,
  target: TargetSet | undefined,
): Promise<ScoreRow[]> {
  const n = pool.scoredRows;
  if (n === 0) return [];
  const rows: Record<string, number>[] = Array.from({ length: n }, () => ({}));
  const columns = await scorePoolColumns(engine, pool, draws, tau, target);
  for (const [name, column] of Object.entries(columns)) {
    for (let i = 0; i < n; i++) rows[i][name] = column[i];
  }
  return rows as ScoreRow[];
}
