/**
 * Where a streaming selection departs from the offline one, record by record (the fidelity study and
 * `clipsieve fidelity --input`): the share of each cause, so a gap is explained by figures.
 *
 * - `stage1Jaccard`: the stage-1 passers (top `--keep` fraction) of both sides; `stage2Jaccard`: the
 *   accepted records among those both sides pass at stage 1 (stage 2 alone, on the same records).
 * - `sketchRankError`: the largest, over windows, of |records seen at or above the window's stage-1
 *   cut-off - floor(f * n)| / n, n the records seen so far: the running sketch's rank error where it
 *   cuts, to hold against its guarantee (docs/policy.md, "The quantile sketch: KLL").
 * - `exactCutJaccard`: the streamed s-CLIPLoss with the offline selection's exact cut-offs over the
 *   whole sample (NormSim from the offline side, where it is the same score): what is left once the
 *   running sketch and the warm-up are taken out. When it is no higher than the streaming Jaccard,
 *   the gap is in the scores, not in the cut-offs.
 * - `streamNoise` against `floorNoise`: the spread of (streamed - offline) s-CLIPLoss, and of two
 *   offline runs with other draw seeds; the ratio says how much noisier a record's streamed normaliser
 *   is than the paper's K-draw average.
 * - `warmupJaccard` / `afterWarmupJaccard`: the records the policy decided during its warm-up, and
 *   after it; `firstWindowRate` / `laterRate`: the share of records decided differently in the first
 *   (primed) window and in the windows after it.
 */
import type { RecordOutcome } from "../common/record.ts";
import { type SelectionPlan, selectRows } from "../policy/offline-select.ts";

export interface OfflineSelection {
  /** Record keys, in the order of the score columns. */
  keys: string[];
  /** The offline score columns (at least s_clip_loss, and what the plan ranks by). */
  columns: Record<string, Float32Array>;
  /** Stage-1 passers (the plan's keep rule alone; every selected record when there is none). */
  stage1: Set<string>;
  selected: Set<string>;
}

export interface Agreement {
  jaccard: number;
  stage1Jaccard: number;
  stage2Jaccard: number;
  /** NaN without a keep rule. */
  sketchRankError: number;
  exactCutJaccard: number;
  /** Standard deviation of streamed minus offline s-CLIPLoss. */
  streamNoise: number;
  /** Standard deviation of offline minus offline (another draw seed) s-CLIPLoss; NaN when not run. */
  floorNoise: number;
  warmupJaccard: number;
  afterWarmupJaccard: number;
  /** Records decided differently (accepted on one side only). */
  disagreements: number;
  /** Share of the first window's records decided differently. */
  firstWindowRate: number;
  /** Share of the later windows' records decided differently. */
  laterRate: number;
}

export function jaccard(
  a: ReadonlySet<string>,
  b: ReadonlySet<string>,
  within?: ReadonlySet<string>,
): number {
  let inter = 0;
  let union = 0;
  for (const x of a) {
    if (within && !within.has(x)) continue;
    union++;
    if (b.has(x)) inter++;
  }
  for (const x of b) {
    if (within && !within.has(x)) continue;
    if (!a.has(x)) union++;
  }
  return union === 0 ? 1 : inter / union;
}

/** The offline selection of a plan over score columns, with its stage-1 set. */
export function offlineSets(
  keys: string[],
  columns: Record<string, Float32Array>,
  plan: SelectionPlan,
): { stage1: Set<string>; selected: Set<string> } {
  const rows = keys.length;
  const pick = (p: SelectionPlan) => new Set(Array.from(selectRows(columns, rows, p), (i) => keys[i]));
  const selected = pick(plan);
  const stage1 = plan.thenKeep ? pick({ thresholds: plan.thresholds, keep: plan.keep }) : selected;
  return { stage1, selected };
}

function spread(diffs: number[]): number {
  if (diffs.length === 0) return Number.NaN;
  let sum = 0;
  for (const d of diffs) sum += d;
  const mean = sum / diffs.length;
  let sq = 0;
  for (const d of diffs) sq += (d - mean) ** 2;
  return Math.sqrt(sq / diffs.length);
}

export function analyseAgreement(opts: {
  offline: OfflineSelection;
  /** Offline s-CLIPLoss with another draw seed, in `offline.keys` order. */
  offlineAgain?: Float32Array;
  /** The streaming side's windows, in stream order. */
  windows: readonly { outcomes: readonly RecordOutcome[] }[];
  keyOf(outcome: RecordOutcome): string;
  plan: SelectionPlan;
  warmup: number;
}): Agreement {
  const { offline, plan } = opts;
  const index = new Map(offline.keys.map((k, i) => [k, i]));
  const accepted = new Set<string>();
  const stage1 = new Set<string>();
  const inWarmup = new Set<string>();
  const afterWarmup = new Set<string>();
  const streamed = Float32Array.from(offline.columns.s_clip_loss);
  const noise: number[] = [];
  let seen = 0;
  for (const w of opts.windows) {
    for (const o of w.outcomes) {
      // Dead-lettered records are not decided: they neither count towards the policy's warm-up nor
      // take part in the comparison.
      if (o.decision === "dead_letter") continue;
      const key = opts.keyOf(o);
      (seen++ < opts.warmup ? inWarmup : afterWarmup).add(key);
      if (o.decision === "accepted") accepted.add(key);
      if (o.decision === "accepted" || o.reason === "below_then_quantile") stage1.add(key);
      const i = index.get(key);
      const s = o.scores?.s_clip_loss;
      if (i !== undefined && s !== undefined) {
        streamed[i] = s;
        noise.push(s - offline.columns.s_clip_loss[i]);
      }
    }
  }
  const bothStage1 = new Set([...stage1].filter((k) => offline.stage1.has(k)));
  const sketchRankError = rankError(opts.windows, plan);
  const exactCut = offlineSets(offline.keys, { ...offline.columns, s_clip_loss: streamed }, plan).selected;
  const floor: number[] = [];
  if (opts.offlineAgain) {
    for (let i = 0; i < offline.keys.length; i++)
      floor.push(opts.offlineAgain[i] - offline.columns.s_clip_loss[i]);
  }
  let disagreements = 0;
  let first = 0;
  let firstRecords = 0;
  opts.windows.forEach((w, wi) => {
    for (const o of w.outcomes) {
      if (o.decision === "dead_letter") continue;
      if (wi === 0) firstRecords++;
      const key = opts.keyOf(o);
      if (accepted.has(key) !== offline.selected.has(key)) {
        disagreements++;
        if (wi === 0) first++;
      }
    }
  });
  const laterRecords = seen - firstRecords;
  return {
    jaccard: jaccard(accepted, offline.selected),
    stage1Jaccard: jaccard(stage1, offline.stage1),
    stage2Jaccard: jaccard(accepted, offline.selected, bothStage1),
    sketchRankError,
    exactCutJaccard: jaccard(exactCut, offline.selected),
    streamNoise: spread(noise),
    floorNoise: spread(floor),
    warmupJaccard: jaccard(accepted, offline.selected, inWarmup),
    afterWarmupJaccard: jaccard(accepted, offline.selected, afterWarmup),
    disagreements,
    firstWindowRate: firstRecords === 0 ? 0 : first / firstRecords,
    laterRate: laterRecords === 0 ? 0 : (disagreements - first) / laterRecords,
  };
}

/** The stage-1 cut-off's largest rank error over the windows (see the header). */
function rankError(windows: readonly { outcomes: readonly RecordOutcome[] }[], plan: SelectionPlan): number {
  if (!plan.keep) return Number.NaN;
  const { score, fraction } = plan.keep;
  const seen: number[] = [];
  let worst = 0;
  for (const w of windows) {
    let cut: number | undefined;
    for (const o of w.outcomes) {
      const v = o.scores?.[score];
      if (v !== undefined) seen.push(v);
      cut ??= o.thresholds?.[`keep:${score}`];
    }
    if (cut === undefined || !Number.isFinite(cut) || seen.length === 0) continue;
    let above = 0;
    for (const v of seen) if (v >= cut) above++;
    worst = Math.max(worst, Math.abs(above - Math.floor(fraction * seen.length)) / seen.length);
  }
  return worst;
}
