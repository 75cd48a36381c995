/**
 * The score registry: every score clipsieve computes, declared once. Its name is the same key
 * everywhere (records, headers, flags, metrics, files); `SCORE_NAMES`, `ScoreName` and `ScoreRow`
 * are derived from here, and `scorePoolRows` (./window-scores.ts) computes a window's scores by
 * running the families below. A new score is one entry in `SCORES` and, if no family produces it
 * yet, one family in `SCORE_FAMILIES` (the types refuse a family that leaves one of its scores out).
 * A family marked `deferrable` is costly per row and computes each row on its own: a window computes
 * it only for the rows its policy needs when the policy says which (NormSim_inf, for the stage-1
 * passers; docs/policy.md, "Scores computed only where needed").
 *
 * Only types are imported: the policy and the data lake read the names without loading the engine.
 */
import type { ScoringEngine } from "./engine.ts";
import type { Draw, Pool, TargetSet } from "./types.ts";

interface ScoreSpec {
  readonly name: string;
  /** One line, for help texts and docs. */
  readonly description: string;
  /** The score exists only when a target set is configured (`--target`). */
  readonly needsTarget: boolean;
  /** The family (`SCORE_FAMILIES`) whose computation produces it. */
  readonly family: string;
}

/** Every score, in the canonical order (columns, thresholds, headers). */
export const SCORES = [
  {
    name: "clip_score",
    description: "CLIPScore: the cosine similarity of the record's image and text embeddings",
    needsTarget: false,
    family: "s_clip_loss",
  },
  {
    name: "s_clip_loss",
    description:
      "s-CLIPLoss: the CLIP score less its contrastive normaliser (mean over the window's draws, or over its whole pool scaled to b)",
    needsTarget: false,
    family: "s_clip_loss",
  },
  {
    name: "normsim_2",
    description: "NormSim_2: the L2 norm of the image embedding's similarities to the target set",
    needsTarget: true,
    family: "normsim_2",
  },
  {
    name: "normsim_inf",
    description: "NormSim_inf: the image embedding's highest similarity to a target-set embedding",
    needsTarget: true,
    family: "normsim_inf",
  },
] as const satisfies readonly ScoreSpec[];

type ScoreEntry = (typeof SCORES)[number];

/** The scores a policy can select on; the same keys everywhere (records, headers, flags, metrics). */
export type ScoreName = ScoreEntry["name"];
type NamesOf<T extends readonly ScoreSpec[]> = { readonly [I in keyof T]: T[I]["name"] };
/** The score names in registry order, as a tuple (`z.enum(SCORE_NAMES)`). */
export const SCORE_NAMES = SCORES.map((s) => s.name) as unknown as NamesOf<typeof SCORES>;

/**
 * One record's scores: those that need a target set exist only when one (or NormSim_2-D) is
 * configured.
 */
export type ScoreRow = {
  [S in ScoreEntry as S["needsTarget"] extends false ? S["name"] : never]: number;
} & { [S in ScoreEntry as S["needsTarget"] extends true ? S["name"] : never]?: number };

/** The computations that produce scores; each produces all the scores that name it. */
export type ScoreFamilyId = ScoreEntry["family"];
type FamilyScore<F extends ScoreFamilyId> = Extract<ScoreEntry, { family: F }>["name"];
type FamilyNeedsTarget<F extends ScoreFamilyId> = true extends Extract<
  ScoreEntry,
  { family: F }
>["needsTarget"]
  ? true
  : false;

/** What a family computes from: one window's pool, its draws and tau, and the target set. */
export interface ScoreInputs {
  engine: ScoringEngine;
  pool: Pool;
  draws: Draw[];
  tau: number;
  target: TargetSet | undefined;
  /**
   * Only for a `deferrable` family: compute these scored rows only (pool row indices, ascending); the
   * family's columns then hold one value per listed row, in this order. Absent: every scored row.
   */
  rows?: Int32Array;
}

/** One value per scored row of the pool (row i = pool row i), for each of the family's scores. */
export type ScoreColumns<N extends string> = Record<N, ArrayLike<number>>;

interface ScoreFamily<F extends ScoreFamilyId> {
  /** One line, for docs. */
  readonly description: string;
  /**
   * Costly per row, and each row's value depends on that row alone: worth computing for the rows a
   * policy needs only, and `compute` honours `rows`.
   */
  readonly deferrable?: true;
  compute(
    inputs: FamilyNeedsTarget<F> extends true ? ScoreInputs & { target: TargetSet } : ScoreInputs,
  ): Promise<ScoreColumns<FamilyScore<F>>>;
}

export const SCORE_FAMILIES = {
  s_clip_loss: {
    description: "s-CLIPLoss over the pool (scored rows plus the negative bank), its K draws and tau",
    async compute({ engine, pool, draws, tau }) {
      const s = await engine.sClipLoss(pool, draws, tau);
      return { clip_score: s.clipScore, s_clip_loss: s.sClipLoss };
    },
  },
  normsim_2: {
    description: "NormSim_2 of the pool's scored image rows, from the target set's T^T T: O(D^2) per row",
    async compute({ engine, pool, target }) {
      const n = pool.scoredRows;
      const ns = await engine.normSim(pool.image.subarray(0, n * pool.dim), n, target, {
        two: true,
        inf: false,
      });
      return { normsim_2: ns.normsim2 };
    },
  },
  normsim_inf: {
    description: "NormSim_inf of the pool's scored image rows against every target row: O(M·D) per row",
    deferrable: true,
    async compute({ engine, pool, target, rows }) {
      const { dim, scoredRows } = pool;
      const which = { two: false, inf: true };
      if (!rows) {
        const ns = await engine.normSim(pool.image.subarray(0, scoredRows * dim), scoredRows, target, which);
        return { normsim_inf: ns.normsimInf };
      }
      // onnxruntime multiplies a lone row on a matrix-vector path whose last bits differ from the
      // many-row product the row gets when the whole window is scored; the row twice keeps a lone
      // pick on the many-row path, so its value is the one scoring every row gives.
      const lone = rows.length === 1 && scoredRows > 1;
      const picked = lone ? Int32Array.of(rows[0]!, rows[0]!) : rows;
      const ns = await engine.normSim(gatherRows(pool.image, dim, picked), picked.length, target, which);
      return { normsim_inf: lone ? ns.normsimInf.subarray(0, 1) : ns.normsimInf };
    },
  },
} as const satisfies { readonly [F in ScoreFamilyId]: ScoreFamily<F> };

/** The listed rows of a row-major matrix, copied into one contiguous matrix (the engine takes blocks). */
function gatherRows(matrix: Float32Array, dim: number, rows: Int32Array): Float32Array {
  const out = new Float32Array(rows.length * dim);
  rows.forEach((row, j) => {
    out.set(matrix.subarray(row * dim, (row + 1) * dim), j * dim);
  });
  return out;
}

/** A family as `scorePoolRows` runs it: its scores in registry order, and whether it needs a target. */
export interface ScoreFamilyRun {
  readonly id: ScoreFamilyId;
  readonly scores: readonly ScoreName[];
  readonly needsTarget: boolean;
  /** Computes the rows asked for only (`ScoreInputs.rows`). */
  readonly deferrable: boolean;
  /** Call only with a target when `needsTarget`, and with `rows` only when `deferrable`. */
  compute(inputs: ScoreInputs): Promise<Partial<ScoreColumns<ScoreName>>>;
}

/** The families in the order of their first score (the order in which a window computes them). */
export const SCORE_FAMILY_RUNS: readonly ScoreFamilyRun[] = [...new Set(SCORES.map((s) => s.family))].map(
  (id) => {
    const scores = SCORES.filter((s) => s.family === id);
    return {
      id,
      scores: scores.map((s) => s.name),
      needsTarget: scores.some((s) => s.needsTarget),
      deferrable: (SCORE_FAMILIES[id] as { readonly deferrable?: true }).deferrable === true,
      // The `needsTarget` guard at the call site stands in for the narrower input type.
      compute: SCORE_FAMILIES[id].compute as ScoreFamilyRun["compute"],
    };
  },
);

/** Whether a score exists only with a target set (`--target`). */
export function scoreNeedsTarget(name: ScoreName): boolean {
  return SCORES.some((s) => s.name === name && s.needsTarget);
}

/** Whether any of these names (a policy's rule scores; undefined where a rule is absent) needs a target set. */
export function scoresNeedingTarget(names: readonly (string | undefined)[]): boolean {
  return names.some((name) => SCORES.some((s) => s.name === name && s.needsTarget));
}

/** Whether a score's family can compute it for some rows only (`deferrable`). */
export function scoreIsDeferrable(name: ScoreName): boolean {
  return SCORE_FAMILY_RUNS.some((f) => f.deferrable && f.scores.includes(name));
}
