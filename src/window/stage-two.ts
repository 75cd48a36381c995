/**
 * The policy's stage 2 as a row selector for the window scorer: under `--keep s_clip_loss=0.3 --then
 * normsim_inf=0.2` a record below the stage-1 cut-off is rejected whatever its NormSim_inf, and the
 * stage-2 sketch never sees it, so only the stage-1 passers need NormSim_inf, the score that costs
 * O(M·D) per record. `run`, `replay`, `calibrate` and the fidelity emulator score through this unless
 * `scoreAll` is set; the decisions are the same either way (docs/policy.md).
 */
import type { DecisionReason, Policy } from "../policy/index.ts";
import { scoreIsDeferrable } from "../score/registry.ts";
import type { RowSelector } from "../score/window-scores.ts";

/** What a record's scores record says of a stage-2 score it was not given. */
export const STAGE_TWO_SKIPPED: DecisionReason = "below_keep_quantile";

/**
 * A selector for the scores of the next window `policy` decides, or undefined when the policy has no
 * stage 2 or its score is cheap (computed for every row anyway). Make one per window, right before
 * scoring it, and decide the window with the same policy before any other window.
 */
export function stageTwoSelector(policy: Policy): RowSelector | undefined {
  const then = policy.spec.thenKeep;
  if (!then || !scoreIsDeferrable(then.score)) return undefined;
  return { score: then.score, reason: STAGE_TWO_SKIPPED, select: (rows) => policy.stageTwoRows(rows) };
}
