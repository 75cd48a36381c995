/**
 * The filter's settings, resolved once from the run configuration and what it names (the target
 * set, the embed stage's teacher), before anything connects: every later part reads these, none
 * reads the raw configuration again. Inconsistent settings fail here, with the key at fault.
 */
import { ClipsieveError } from "../common/errors.ts";
import { type PolicySpec, parsePolicyFlags } from "../policy/index.ts";
import { type ScoreName, scoreNeedsTarget } from "../score/registry.ts";
import type { TargetSet } from "../score/types.ts";
import { type OutputTopics, outputTopicsOf } from "../sink/topics.ts";
import type { CutSettings } from "../window/cut.ts";
import type { ScorerSettings } from "../window/scorer.ts";
import { POLICY_KEYS, type RunConfig, type RunConfigKey, type RunConfigValues } from "./config.ts";

/** The keys that say how windows are cut, scored and decided: `run`'s, and `calibrate`'s. */
export const SCORING_KEYS = [
  "dim",
  "model",
  "target",
  "targetProbes",
  "windowSize",
  "bankSize",
  "draws",
  "batchSize",
  "normaliser",
  "tau",
  "seed",
  ...POLICY_KEYS,
  "scoreAll",
] as const satisfies readonly RunConfigKey[];

/** Linger time matters only to a live stream (`run`, `replay`): a bounded read never waits for more. */
export type ScoringConfig = Pick<RunConfigValues, (typeof SCORING_KEYS)[number]> &
  Partial<Pick<RunConfigValues, "lingerMs">>;

/** How windows are cut, scored and decided, resolved. */
export interface ScoringSettings {
  /** Embedding dimension D: --dim, else the target set's, else the embed teacher's, else 768. */
  dim: number;
  /** The teacher every record must name: --model, else the target set's, else the embed teacher's. */
  model: string | undefined;
  policy: PolicySpec;
  /**
   * Every score for every record. Off: the policy's stage-2 score, when costly (NormSim_inf), only for
   * each window's stage-1 passers (src/window/stage-two.ts); the decisions are the same.
   */
  scoreAll: boolean;
  cut: CutSettings;
  scorer: ScorerSettings;
}

export interface PipelineSettings extends ScoringSettings {
  cut: CutSettings & { lingerMs: number };
  topics: OutputTopics;
  /** Records fetched but not delivered before the source waits (at least one primed first window). */
  maxUndelivered: number;
  transactionalId: string;
}

/** What the configuration names, once loaded: the target set and the embed stage's teacher. */
export interface NamedArtifacts {
  target?: TargetSet;
  embed?: { dim: number; model: string };
}

export function resolveScoring(config: ScoringConfig, named: NamedArtifacts = {}): ScoringSettings {
  const { target, embed } = named;
  const dim = config.dim ?? target?.dim ?? embed?.dim ?? 768;
  if (target && target.dim !== dim) {
    throw new ClipsieveError(
      "TARGET_MISMATCH",
      `Target set ${config.target} has D=${target.dim}, but --dim is ${dim}.`,
    );
  }
  const model =
    config.model ?? (target && target.model !== "unknown" ? target.model : undefined) ?? embed?.model;
  const policy = policySpecOf(config);
  const needsTarget = policyScores(policy).filter(scoreNeedsTarget);
  if (needsTarget.length > 0 && !target) {
    throw new ClipsieveError(
      "CONFIG_INVALID",
      `The policy uses ${needsTarget.join(", ")}, which needs --target <file>.`,
    );
  }
  return {
    dim,
    model,
    policy,
    scoreAll: config.scoreAll,
    cut: { windowSize: config.windowSize, bankSize: config.bankSize },
    scorer: {
      dim,
      bankSize: config.bankSize,
      draws: config.draws,
      batchSize: config.batchSize,
      normaliser: config.normaliser,
      tau: config.tau,
      seed: config.seed,
      target,
    },
  };
}

/** The policy the configuration's `keep`, `thenKeep`, `threshold` and `warmup*` keys describe. */
export function policySpecOf(
  config: Pick<RunConfigValues, "keep" | "thenKeep" | "threshold" | "warmup" | "warmupMode">,
): PolicySpec {
  return parsePolicyFlags({
    keep: config.keep,
    // biome-ignore lint/suspicious/noThenProperty: the value of the --then flag, as the policy's parser names it
    then: config.thenKeep,
    threshold: config.threshold,
    warmup: config.warmup,
    warmupMode: config.warmupMode,
  });
}

export function resolveSettings(config: RunConfig, named: NamedArtifacts = {}): PipelineSettings {
  const scoring = resolveScoring(config, named);
  return {
    ...scoring,
    cut: { ...scoring.cut, lingerMs: config.lingerMs },
    topics: outputTopicsOf(config),
    maxUndelivered: maxUndelivered(config),
    transactionalId: `clipsieve-${config.group}-${config.instanceId}`,
  };
}

/** The scores a policy's rules read. */
export function policyScores(spec: PolicySpec): ScoreName[] {
  return [spec.keep?.score, spec.thenKeep?.score, ...spec.thresholds.map((t) => t.score)].filter(
    (s): s is NonNullable<typeof s> => s !== undefined,
  );
}

/** Records fetched but undelivered before the source waits: maxQueuedWindows windows, or more. */
export function maxUndelivered(
  config: Pick<RunConfig, "maxQueuedWindows" | "windowSize" | "bankSize">,
): number {
  // A primed first window holds windowSize + bankSize records: intake must not pause before.
  return Math.max(config.maxQueuedWindows * config.windowSize, config.windowSize + config.bankSize);
}
