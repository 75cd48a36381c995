/**
 * The streaming policy (spec §5): turns each window's scores into one decision per record.
 *
 * Rules, checked in this order; the first that fails names the reason (the order only picks the reason,
 * a record is accepted only when all pass):
 *   1. fixed thresholds, `score >= min`, in SCORE_NAMES order            -> below_threshold
 *   2. keep (stage 1): score >= the running cut-off of the top f1 of every record seen
 *                                                                         -> below_keep_quantile
 *   3. then (stage 2): score >= the running cut-off of the top f2/f1 among the records that passed
 *      stage 1 (a second sketch fed only with stage-1 passers)           -> below_then_quantile
 * The quantile rules ignore the fixed thresholds: their fractions are of the full stream, as offline
 * (spec §4), and the fixed thresholds are an extra filter on top.
 *
 * Order within a window: the window's scores go into the sketches FIRST, then the whole window is
 * decided with the updated cut-offs. Why: (a) every record of a window sees the same cut-offs, so a
 * window's decisions do not depend on the order of records inside it (which the source does not fix
 * across partitions); (b) a cold policy does not judge its first window against an empty sketch: the
 * first window is decided as the offline selection over that window would (spec §4 with the window as
 * the pool; exactly while the sketch is exact, up to about k records), and a window is the streaming
 * counterpart of a shard; (c) a
 * replay of the same windows gives the same decisions. A record thereby counts towards the cut-off it is
 * judged by, which on a stream of thousands of records per window moves the cut-off by a negligible rank.
 *
 * Stage 2 reads its score only for the stage-1 passers, so a caller may compute it for those rows alone
 * (NormSim_inf costs O(M·D) per record): `stageTwoRows` names them before the window is decided, by the
 * same stage-1 step `decide` then runs on the same sketch state. A row below the stage-1 cut-off may
 * lack the stage-2 score unless a fixed threshold (or stage 1 itself) reads it.
 *
 * Warm-up: the records whose ordinal (records seen before, restored ones included, + position in the
 * window) is at most `warmup.records` are in warm-up. Mode "provisional" (default) decides them like any
 * other and only flags them; "accept"/"reject" replace the quantile rules by warmup_accept/warmup_reject.
 * Fixed thresholds need no warm-up and apply in every mode. A policy with no quantile rule has no
 * warm-up. The sketches are fed during warm-up in every mode.
 */
import { z } from "zod";
import { ClipsieveError } from "../common/errors.ts";
import type { ScoreName, ScoreRow } from "../score/registry.ts";
import {
  describePolicy,
  type PolicySpec,
  parsePolicySpec,
  policySpecSchema,
  policyVersion,
  sketchVersion,
} from "./options.ts";
import { KllSketch, kllStateSchema } from "./sketch.ts";
import type { DecisionReason, PolicyDecision } from "./types.ts";

const STATE_FORMAT = "clipsieve.policy-state";

/** Distinct fixed seeds, so the two sketches' compactions are not correlated. */
const KEEP_SKETCH_SEED = 0x6b656570; // "keep"
const THEN_SKETCH_SEED = 0x7468656e; // "then"

export const policyStateSchema = z
  .object({
    format: z.literal(STATE_FORMAT),
    version: z.literal(1),
    policyVersion: z.string().regex(/^[0-9a-f]{12}$/),
    sketchVersion: z.string().regex(/^[0-9a-f]{12}$/),
    spec: policySpecSchema,
    /** Records decided so far (warm-up counts them). */
    records: z.number().int().nonnegative(),
    sketches: z
      .object({
        keep: kllStateSchema.nullable(),
        thenKeep: kllStateSchema.nullable(),
      })
      .strict(),
  })
  .strict();

/**
 * A policy's state: JSON-serialisable, versioned (`format`/`version` for the layout, `policyVersion` for
 * the rules that made it). A calibration's policy file and the compacted policy-state topic hold this.
 */
export type PolicyState = z.output<typeof policyStateSchema>;

export interface PolicyOptions {
  /** Start from this state (not cold): its sketches and record count carry on. */
  state?: PolicyState | unknown;
  /**
   * Accept a state made by a different policy when its sketches were fed the same way (same
   * `sketchVersion`: only `then`'s fraction, the thresholds or the warm-up changed, or keep's fraction
   * without a stage 2). Off by default: a state from another policy is an error.
   */
  reuseSketches?: boolean;
}

export interface Policy {
  /** policyVersion(spec): recorded with the decisions. */
  readonly version: string;
  readonly spec: PolicySpec;
  /** Records decided so far, restored ones included. */
  readonly recordsSeen: number;
  /**
   * One decision per row, in order. Throws POLICY_SCORE_INVALID (and changes nothing) on a bad score.
   * The stage-2 score may be missing (or NaN) on a row below the stage-1 cut-off, which never reads it,
   * unless a fixed threshold or stage 1 itself is on that score: see `stageTwoRows`.
   */
  decide(window: readonly ScoreRow[]): PolicyDecision[];
  /**
   * Which rows of this window need the stage-2 (`--then`) score, asked before the window is decided
   * and given the window's other scores: 1 for each row whose stage-1 score is at or above the stage-1
   * cut-off that `decide(window)` will compute (this window added to the sketch first), 0 for the
   * others. null when every row needs every score: no stage 2, stage 2 on the stage-1 score, a fixed
   * threshold on the stage-2 score, or a stage-1 score that is not a finite number (decide refuses the
   * window). Pure: the policy's state does not change.
   */
  stageTwoRows(window: readonly ScoreRow[]): Uint8Array | null;
  /** The cut-offs in force now (those the last window was decided by). */
  thresholds(): Record<string, number>;
  snapshot(): PolicyState;
}

export function createPolicy(specInput: PolicySpec, options: PolicyOptions = {}): Policy {
  const spec = parsePolicySpec(specInput);
  const version = policyVersion(spec);
  const sketches = sketchVersion(spec);
  const { keep, thenKeep: then, thresholds: fixed, warmup } = spec;
  const thenRatio = keep && then ? then.fraction / keep.fraction : 1;
  // The stage-2 score is read only for the rows that pass stage 1 (they feed the stage-2 sketch and
  // are judged by it), unless another rule reads it for every row.
  const thenForEveryRow =
    then !== undefined && (then.score === keep?.score || fixed.some((t) => t.score === then.score));
  const needed = [
    ...new Set<ScoreName>([
      ...(keep ? [keep.score] : []),
      ...(then && thenForEveryRow ? [then.score] : []),
      ...fixed.map((t) => t.score),
    ]),
  ];

  let keepSketch = keep ? new KllSketch({ k: spec.sketch.k, seed: KEEP_SKETCH_SEED }) : null;
  let thenSketch = then ? new KllSketch({ k: spec.sketch.k, seed: THEN_SKETCH_SEED }) : null;
  let records = 0;

  if (options.state !== undefined) {
    const state = parseState(options.state);
    if (state.policyVersion !== version && !(options.reuseSketches && state.sketchVersion === sketches)) {
      throw new ClipsieveError(
        "POLICY_STATE_MISMATCH",
        `policy state was made by policy ${state.policyVersion} (${describePolicy(state.spec)}) but the ` +
          `configured policy is ${version} (${describePolicy(spec)})` +
          (state.sketchVersion === sketches
            ? "; its sketches are compatible (same sketch version): restore with reuseSketches to carry on"
            : "; its sketches were fed differently and cannot be reused"),
      );
    }
    keepSketch = state.sketches.keep ? KllSketch.fromJSON(state.sketches.keep) : null;
    thenSketch = state.sketches.thenKeep ? KllSketch.fromJSON(state.sketches.thenKeep) : null;
    records = state.records;
    if (keepSketch && keepSketch.count !== records) {
      throw new ClipsieveError(
        "POLICY_STATE_INVALID",
        `policy state counts ${records} records but its keep sketch holds ${keepSketch.count}`,
      );
    }
  }

  function cutoffs(): Record<string, number> {
    const out: Record<string, number> = {};
    if (keep && keepSketch) out[`keep:${keep.score}`] = keepSketch.topFractionCutoff(keep.fraction);
    if (then && thenSketch) out[`then:${then.score}`] = thenSketch.topFractionCutoff(thenRatio);
    for (const t of fixed) out[`threshold:${t.score}`] = t.min;
    return out;
  }

  const isFiniteScore = (value: unknown): value is number =>
    typeof value === "number" && Number.isFinite(value);
  const shown = (value: unknown) => (value === undefined ? "missing" : String(value));

  function checkScores(window: readonly ScoreRow[]): void {
    for (let i = 0; i < window.length; i++) {
      const row = window[i]!;
      for (const score of needed) {
        const value = row[score];
        if (!isFiniteScore(value)) {
          throw new ClipsieveError(
            "POLICY_SCORE_INVALID",
            `window row ${i}: score ${score} is ${shown(value)}; ` +
              `the policy (${describePolicy(spec)}) needs a finite ${score} for every record`,
          );
        }
      }
    }
  }

  /**
   * Stage 1 for a window: a copy of the keep sketch with the window's keep scores added, and its
   * cut-off. `decide` keeps the copy as the new sketch once the window checks out (so a refused window
   * changes nothing); `stageTwoRows` throws it away. One function for both, so the two agree.
   */
  function stageOne(window: readonly ScoreRow[]): { sketch: KllSketch; cut: number } | null {
    if (!keep || !keepSketch) return null;
    const sketch = keepSketch.clone();
    for (const row of window) sketch.add(row[keep.score]!);
    return { sketch, cut: sketch.topFractionCutoff(keep.fraction) };
  }

  function stageTwoRows(window: readonly ScoreRow[]): Uint8Array | null {
    if (!keep || !then || thenForEveryRow) return null;
    if (!window.every((row) => isFiniteScore(row[keep.score]))) return null;
    const { cut } = stageOne(window)!;
    return Uint8Array.from(window, (row) => (row[keep.score]! >= cut ? 1 : 0));
  }

  function decide(window: readonly ScoreRow[]): PolicyDecision[] {
    if (window.length === 0) return [];
    checkScores(window);
    const stage1 = stageOne(window);
    const keepCut = stage1 ? stage1.cut : Number.NEGATIVE_INFINITY;
    if (keep && then && !thenForEveryRow) {
      window.forEach((row, i) => {
        const value = row[then.score];
        if (row[keep.score]! >= keepCut && !isFiniteScore(value)) {
          throw new ClipsieveError(
            "POLICY_SCORE_INVALID",
            `window row ${i}: score ${then.score} is ${shown(value)}, but the record passed stage 1 ` +
              `(${keep.score} ${row[keep.score]} >= cut-off ${keepCut}); the policy (${describePolicy(spec)}) ` +
              `needs a finite ${then.score} for every stage-1 passer (scores written by a filter with ` +
              `another policy hold ${then.score} only for that policy's stage-1 passers)`,
          );
        }
      });
    }
    // Every check passed: from here on the window changes the state.
    if (stage1) keepSketch = stage1.sketch;
    if (keep && then && thenSketch) {
      for (const row of window) {
        if (row[keep.score]! >= keepCut) thenSketch.add(row[then.score]!);
      }
    }
    const thenCut = then && thenSketch ? thenSketch.topFractionCutoff(thenRatio) : Number.NEGATIVE_INFINITY;
    const inForce = Object.freeze(cutoffs());
    const before = records;
    records += window.length;

    const make = (
      accepted: boolean,
      reason: DecisionReason,
      rule: ScoreName | null,
      warm: boolean,
    ): PolicyDecision => ({
      decision: accepted ? "accepted" : "rejected",
      reason,
      rule,
      thresholds: inForce,
      warmup: warm,
    });

    return window.map((row, i) => {
      const warm = keep !== undefined && before + i + 1 <= warmup.records;
      for (const t of fixed) {
        if (!(row[t.score]! >= t.min)) return make(false, "below_threshold", t.score, warm);
      }
      if (warm && warmup.mode === "accept") return make(true, "warmup_accept", null, warm);
      if (warm && warmup.mode === "reject") return make(false, "warmup_reject", null, warm);
      if (keep && !(row[keep.score]! >= keepCut)) return make(false, "below_keep_quantile", keep.score, warm);
      if (then && !(row[then.score]! >= thenCut)) return make(false, "below_then_quantile", then.score, warm);
      return make(true, "passed", null, warm);
    });
  }

  return {
    version,
    spec,
    get recordsSeen() {
      return records;
    },
    decide,
    stageTwoRows,
    thresholds: () => cutoffs(),
    snapshot: (): PolicyState => ({
      format: STATE_FORMAT,
      version: 1,
      policyVersion: version,
      sketchVersion: sketches,
      spec: structuredClone(spec),
      records,
      sketches: {
        keep: keepSketch ? keepSketch.toJSON() : null,
        thenKeep: thenSketch ? thenSketch.toJSON() : null,
      },
    }),
  };
}

function parseState(input: unknown): PolicyState {
  const parsed = policyStateSchema.safeParse(input);
  if (!parsed.success) {
    const issues = parsed.error.issues.map(
      (issue) => `${["state", ...issue.path.map(String)].join(".")}: ${issue.message}`,
    );
    throw new ClipsieveError("POLICY_STATE_INVALID", `policy state is invalid: ${issues.join("; ")}`);
  }
  const state = parsed.data;
  const spec = parsePolicySpec(state.spec, "state.spec");
  // The versions are derived from the spec; a state whose versions disagree with its own spec was edited.
  if (policyVersion(spec) !== state.policyVersion || sketchVersion(spec) !== state.sketchVersion) {
    throw new ClipsieveError(
      "POLICY_STATE_INVALID",
      `policy state's versions (${state.policyVersion}, ${state.sketchVersion}) do not match its own spec`,
    );
  }
  if ((spec.keep === undefined) !== (state.sketches.keep === null)) {
    throw new ClipsieveError(
      "POLICY_STATE_INVALID",
      "policy state: a keep sketch exactly when the spec has keep",
    );
  }
  if ((spec.thenKeep === undefined) !== (state.sketches.thenKeep === null)) {
    throw new ClipsieveError(
      "POLICY_STATE_INVALID",
      "policy state: a thenKeep sketch exactly when the spec has thenKeep",
    );
  }
  return { ...state, spec };
}

/**
 * Merges the states of two instances of the same policy (e.g. two consumers of one topic, or a
 * calibration and a live state): record counts add, sketches merge.
 */
export function mergePolicyStates(a: PolicyState | unknown, b: PolicyState | unknown): PolicyState {
  const left = parseState(a);
  const right = parseState(b);
  if (left.policyVersion !== right.policyVersion) {
    throw new ClipsieveError(
      "POLICY_STATE_MISMATCH",
      `cannot merge policy states of different policies (${left.policyVersion} and ${right.policyVersion})`,
    );
  }
  const merge = (x: unknown, y: unknown) => {
    if (x === null || y === null) return null;
    const sketch = KllSketch.fromJSON(x);
    sketch.merge(KllSketch.fromJSON(y));
    return sketch.toJSON();
  };
  return {
    ...left,
    records: left.records + right.records,
    sketches: {
      keep: merge(left.sketches.keep, right.sketches.keep),
      thenKeep: merge(left.sketches.thenKeep, right.sketches.thenKeep),
    },
  };
}
