/**
 * Offline selection over a whole scored pool, as the paper and DataComp do it (spec §4): "top f by a
 * score" keeps the int(N * f) highest rows, N = every row of the input, and the two-stage recipe ranks
 * the first stage's survivors by a second score while still counting its fraction of the full N.
 *
 * The rules mean what the streaming policy's do (docs/policy.md): `keep` ranks every row, `thenKeep`
 * ranks keep's survivors, and fixed thresholds filter on top without changing what the fractions count.
 * Ties go to the lower row index, so a selection is the same on every machine. A NaN score never passes
 * a threshold and ranks below every number.
 */
import { ClipsieveError } from "../common/errors.ts";

/** Keep the int(N * fraction) highest rows by `score`. */
export interface KeepRule {
  score: string;
  fraction: number;
}

/** Keep rows whose `score` is at or above `min`. */
export interface ThresholdRule {
  score: string;
  min: number;
}

export interface SelectionPlan {
  thresholds: ThresholdRule[];
  keep?: KeepRule;
  /** Second stage: needs `keep`; ranks keep's survivors, fraction of the full N. */
  thenKeep?: KeepRule;
}

export type ScoreColumn = ArrayLike<number>;

/** Parses `<score>=<fraction>` (`s_clip_loss=0.3`); the fraction is in (0, 1]. */
export function parseKeepRule(text: string, flag = "--keep"): KeepRule {
  const match = /^([A-Za-z_][\w.-]*)=(.+)$/.exec(text.trim());
  const fraction = match ? Number(match[2]) : Number.NaN;
  if (!match || !Number.isFinite(fraction) || fraction <= 0 || fraction > 1) {
    throw new ClipsieveError(
      "CONFIG_INVALID",
      `${flag} ${JSON.stringify(text)}: expected <score>=<fraction> with a fraction in (0, 1], e.g. s_clip_loss=0.3`,
    );
  }
  return { score: match[1], fraction };
}

/** Parses `<score>>=<value>` (`clip_score>=0.2`). */
export function parseThresholdRule(text: string, flag = "--threshold"): ThresholdRule {
  const match = /^([A-Za-z_][\w.-]*)>=(.+)$/.exec(text.trim());
  const min = match ? Number(match[2]) : Number.NaN;
  if (!match || match[2].trim() === "" || !Number.isFinite(min)) {
    throw new ClipsieveError(
      "CONFIG_INVALID",
      `${flag} ${JSON.stringify(text)}: expected <score>>=<value> with a finite value, e.g. clip_score>=0.2`,
    );
  }
  return { score: match[1], min };
}

/** The number of rows "top `fraction`" keeps out of `total`: int(total * fraction), as the paper does. */
export function keepCount(total: number, fraction: number): number {
  return Math.floor(total * fraction);
}

/**
 * Among `candidates` (ascending row indices), the `count` highest by `values`, ties to the lower index.
 * Returns ascending row indices. When there are fewer candidates than `count`, all of them.
 */
export function topRows(values: ScoreColumn, candidates: Int32Array, count: number): Int32Array {
  if (count >= candidates.length) return candidates.slice();
  if (count <= 0) return new Int32Array(0);
  // A native numeric sort of the candidate values finds the cut value; rows strictly above it are all
  // kept and rows equal to it fill the rest in index order. NaN sorts last in a typed-array sort, which
  // with the negation below puts it below every number.
  const negated = new Float64Array(candidates.length);
  for (let i = 0; i < candidates.length; i++) {
    const v = values[candidates[i]];
    negated[i] = Number.isNaN(v) ? Number.NaN : -v;
  }
  negated.sort();
  const cut = -negated[count - 1];
  const cutIsNaN = Number.isNaN(cut);
  const isAbove = (v: number) => (cutIsNaN ? !Number.isNaN(v) : v > cut);
  const isTie = (v: number) => (cutIsNaN ? Number.isNaN(v) : v === cut);
  let tiesLeft = count;
  for (let i = 0; i < count; i++) if (isAbove(-negated[i])) tiesLeft--;
  const kept = new Int32Array(count);
  let k = 0;
  for (let i = 0; i < candidates.length; i++) {
    const row = candidates[i];
    const v = values[row];
    if (isAbove(v)) kept[k++] = row;
    else if (tiesLeft > 0 && isTie(v)) {
      kept[k++] = row;
      tiesLeft--;
    }
  }
  return kept;
}

function requireColumn(columns: Record<string, ScoreColumn>, name: string, rows: number): ScoreColumn {
  const column = columns[name];
  if (!column) {
    const known = Object.keys(columns).join(", ");
    throw new ClipsieveError("CONFIG_INVALID", `no score column "${name}" in the scores (columns: ${known})`);
  }
  if (column.length !== rows) {
    throw new ClipsieveError(
      "INPUT_FILE_INVALID",
      `score column "${name}" has ${column.length} rows, expected ${rows}`,
    );
  }
  return column;
}

/**
 * Applies `plan` to a pool of `rows` rows whose scores are `columns` (name -> one value per row).
 * Returns the kept row indices, ascending.
 */
export function selectRows(
  columns: Record<string, ScoreColumn>,
  rows: number,
  plan: SelectionPlan,
): Int32Array {
  if (plan.thenKeep && !plan.keep) {
    throw new ClipsieveError("CONFIG_INVALID", "--then needs --keep: it ranks the rows --keep kept");
  }
  if (plan.thenKeep && plan.keep && plan.thenKeep.fraction > plan.keep.fraction) {
    throw new ClipsieveError(
      "CONFIG_INVALID",
      `--then ${plan.thenKeep.score}=${plan.thenKeep.fraction} keeps more of the pool than --keep ${plan.keep.score}=${plan.keep.fraction}: both fractions are of the full input`,
    );
  }
  const thresholdScores = new Set<string>();
  for (const rule of plan.thresholds) {
    if (thresholdScores.has(rule.score)) {
      throw new ClipsieveError("CONFIG_INVALID", `--threshold: a second threshold on ${rule.score}`);
    }
    thresholdScores.add(rule.score);
  }
  let kept: Int32Array = new Int32Array(rows);
  for (let i = 0; i < rows; i++) kept[i] = i;
  for (const rule of [plan.keep, plan.thenKeep]) {
    if (!rule) continue;
    kept = topRows(requireColumn(columns, rule.score, rows), kept, keepCount(rows, rule.fraction));
  }
  for (const rule of plan.thresholds) {
    const column = requireColumn(columns, rule.score, rows);
    kept = kept.filter((row) => column[row] >= rule.min);
  }
  return kept;
}
