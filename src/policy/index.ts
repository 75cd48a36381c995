/** Re-exported for the policy's callers; the source of truth is the score registry. */
export { SCORE_NAMES, type ScoreName, type ScoreRow } from "../score/registry.ts";
export {
  DEFAULT_WARMUP_MODE,
  DEFAULT_WARMUP_RECORDS,
  describePolicy,
  type PolicyFlags,
  type PolicySpec,
  type PolicySpecInput,
  parsePolicyFlags,
  parsePolicySpec,
  policySpecSchema,
  policyVersion,
  sketchVersion,
  WARMUP_MODES,
  type WarmupMode,
} from "./options.ts";
export {
  createPolicy,
  mergePolicyStates,
  type Policy,
  type PolicyOptions,
  type PolicyState,
  policyStateSchema,
} from "./policy.ts";
export { DEFAULT_SKETCH_K, type KllOptions, KllSketch, type KllState, kllStateSchema } from "./sketch.ts";
export { DECISION_REASONS, type DecisionReason, type PolicyDecision } from "./types.ts";
