/**
 * The policy stage's vocabulary (spec §5: policy, decision). Reasons and decisions are closed sets
 * because they become metric labels and record headers. The scores themselves (names, rows) live in
 * the score registry, ../score/registry.ts.
 */
import type { ScoreName } from "../score/registry.ts";

export const DECISION_REASONS = [
  /** Every rule passed. */
  "passed",
  /** A fixed `--threshold <score>>=<value>` failed; `rule` names the score. */
  "below_threshold",
  /** Below the running cut-off of the top `--keep` fraction (stage 1). */
  "below_keep_quantile",
  /** Passed stage 1, but below the stage-2 cut-off among the stage-1 passers (`--then`). */
  "below_then_quantile",
  /** Warm-up mode "accept": accepted without the quantile rules (fixed thresholds still apply). */
  "warmup_accept",
  /** Warm-up mode "reject": rejected without consulting the quantile rules. */
  "warmup_reject",
] as const;
export type DecisionReason = (typeof DECISION_REASONS)[number];

/** The policy's verdict on one record (the sink turns it into a RecordDecision on Kafka). */
export interface PolicyDecision {
  decision: "accepted" | "rejected";
  reason: DecisionReason;
  /** The score whose rule failed (with the below_* reasons); null otherwise. */
  rule: ScoreName | null;
  /**
   * The cut-offs in force for this record, keyed `keep:<score>`, `then:<score>`, `threshold:<score>`
   * (the same object for every record of a window). Infinity while a top fraction keeps nobody yet.
   */
  thresholds: Readonly<Record<string, number>>;
  /** The record was among the first `warmup.records` records the policy has seen (restored ones count). */
  warmup: boolean;
}
