/**
 * The score stage for one window: every family of the score registry (./registry.ts) over the pool,
 * its draws and tau; a family whose scores need a target set only when there is one. Shared by
 * `run`/`replay`, `calibrate`, the fidelity emulator and the offline `score` command, so a window is
 * scored the same way wherever it is scored.
 *
 * A `RowSelector` (from the policy: src/window/stage-two.ts) lets a window skip a costly score on the
 * rows that do not need it: the other families run first, the selector reads their scores and picks
 * the rows, and the deferrable family that produces the selector's score runs on those rows alone.
 */
import type { ScoringEngine } from "./engine.ts";
import { SCORE_FAMILY_RUNS, SCORE_NAMES, type ScoreName, type ScoreRow } from "./registry.ts";
import type { Draw, Pool, TargetSet } from "./types.ts";

/** The scores left out of a row on purpose, each with the reason (e.g. `below_keep_quantile`). */
export type NotComputed = Readonly<Partial<Record<ScoreName, string>>>;

/** Which rows need a costly score, asked once the window's other scores are known. */
export interface RowSelector {
  /** The score computed for the selected rows only; its family must be `deferrable`. */
  readonly score: ScoreName;
  /** Recorded with every row left without it. */
  readonly reason: string;
  /** 1 for each row (one per scored record, the other scores filled in) that needs it; null: all do. */
  select(rows: readonly ScoreRow[]): Uint8Array | null;
}

export interface PoolScores {
  /** One row per scored record, in pool order, its keys in registry order. */
  rows: ScoreRow[];
  /** Per row: the scores left out of it and why; undefined where every score was computed. */
  notComputed: (NotComputed | undefined)[];
}

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

/** A score's values for every scored row; `has` marks the rows that have one, when not all do. */
interface Column {
  values: ArrayLike<number>;
  has?: Uint8Array;
}

/** The rows as objects, keys in registry order; a row that lacks a score has no key for it. */
function assemble(n: number, columns: ReadonlyMap<ScoreName, Column>): ScoreRow[] {
  const rows: Record<string, number>[] = Array.from({ length: n }, () => ({}));
  for (const name of SCORE_NAMES) {
    const column = columns.get(name);
    if (!column) continue;
    for (let i = 0; i < n; i++) if (!column.has || column.has[i]) rows[i][name] = column.values[i];
  }
  return rows as ScoreRow[];
}

/**
 * The window's scores, one row per scored record. With a selector, the family of its score is
 * computed only for the rows it picks; the other rows lack that family's scores and say why.
 */
export async function scorePoolRows(
  engine: ScoringEngine,
  pool: Pool,
  draws: Draw[],
  tau: number,
  target: TargetSet | undefined,
  selector?: RowSelector,
): Promise<PoolScores> {
  const n = pool.scoredRows;
  if (n === 0) return { rows: [], notComputed: [] };
  const inputs = { engine, pool, draws, tau, target };
  const families = SCORE_FAMILY_RUNS.filter((f) => !f.needsTarget || target);
  const deferred = selector && families.find((f) => f.scores.includes(selector.score));
  if (deferred && !deferred.deferrable) {
    throw new Error(
      `score ${selector.score} cannot be computed for some rows only (its family is not deferrable)`,
    );
  }
  const columns = new Map<ScoreName, Column>();
  for (const family of families) {
    if (family === deferred) continue;
    const computed = await family.compute(inputs);
    for (const name of family.scores) columns.set(name, { values: computed[name] as ArrayLike<number> });
  }
  const notComputed: (NotComputed | undefined)[] = new Array(n).fill(undefined);
  if (deferred) {
    const picked = selector.select(assemble(n, columns));
    if (picked && picked.length !== n) {
      throw new Error(`the row selector picked from ${picked.length} rows, not the window's ${n}`);
    }
    const rows = picked ? indicesOf(picked) : null;
    if (!rows || rows.length === n) {
      const computed = await deferred.compute(inputs);
      for (const name of deferred.scores) columns.set(name, { values: computed[name] as ArrayLike<number> });
    } else {
      const computed = rows.length > 0 ? await deferred.compute({ ...inputs, rows }) : undefined;
      const has = Uint8Array.from(picked!, (p) => (p ? 1 : 0));
      for (const name of deferred.scores) {
        // Scattered back to pool rows; float32 values widen to float64 exactly.
        const values = new Float64Array(n).fill(Number.NaN);
        const part = computed?.[name] as ArrayLike<number> | undefined;
        if (part) for (let j = 0; j < rows.length; j++) values[rows[j]!] = part[j]!;
        columns.set(name, { values, has });
      }
      const why: NotComputed = Object.freeze(
        Object.fromEntries(deferred.scores.map((name) => [name, selector.reason])),
      );
      for (let i = 0; i < n; i++) if (!has[i]) notComputed[i] = why;
    }
  }
  return { rows: assemble(n, columns), notComputed };
}

function indicesOf(picked: Uint8Array): Int32Array {
  let count = 0;
  for (const p of picked) if (p) count++;
  const out = new Int32Array(count);
  let j = 0;
  picked.forEach((p, i) => {
    if (p) out[j++] = i;
  });
  return out;
}
