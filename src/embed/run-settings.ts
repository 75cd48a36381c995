/**
 * What `clipsieve run` needs from the embed stage: its options from the run configuration's keys, and
 * the start-up check that the model folder's teacher is the one the rest of the filter expects.
 */
import { ClipsieveError } from "../common/errors.ts";
import type { Device } from "../score/types.ts";
import type { EmbedOptions } from "./options.ts";
import type { EmbedStage } from "./types.ts";

/** The run configuration keys of the embed stage (src/pipeline/config.ts, docs/streaming.md). */
export interface EmbedRunSettings {
  modelDir?: string;
  device?: Device;
  embedBatchSize?: number;
  fetchConnectTimeoutMs?: number;
  fetchTimeoutMs?: number;
  fetchDeadlineMs?: number;
  fetchRetries?: number;
  fetchConcurrencyPerHost?: number;
  maxImageBytes?: number;
  fetchAllowPrivateAddresses?: boolean;
  teacherCheckRate?: number;
}

export function embedOptionsFromRun(config: EmbedRunSettings & { modelDir: string }): EmbedOptions {
  return {
    modelDir: config.modelDir,
    device: config.device,
    imageBatchSize: config.embedBatchSize,
    textBatchSize: config.embedBatchSize,
    fetchConnectTimeoutMs: config.fetchConnectTimeoutMs,
    fetchTimeoutMs: config.fetchTimeoutMs,
    fetchDeadlineMs: config.fetchDeadlineMs,
    fetchRetries: config.fetchRetries,
    fetchConcurrencyPerHost: config.fetchConcurrencyPerHost,
    maxImageBytes: config.maxImageBytes,
    fetchAllowPrivateAddresses: config.fetchAllowPrivateAddresses,
    teacherCheckRate: config.teacherCheckRate,
  };
}

/**
 * Records with precomputed embeddings and records the stage embeds are scored together, against the
 * same target set: all must come from one teacher. The filter's D and model (from --dim / --model,
 * else the target set, else the model folder) must be the model folder's.
 */
export function checkEmbedTeacher(
  stage: Pick<EmbedStage, "model" | "dim">,
  expected: { dim: number; model: string | undefined; modelDir: string },
): void {
  if (expected.dim !== stage.dim) {
    throw new ClipsieveError(
      "TARGET_MISMATCH",
      `The model folder ${expected.modelDir} makes D=${stage.dim} embeddings (${stage.model}), but the filter's D is ${expected.dim} (--dim or the target set)`,
    );
  }
  if (expected.model !== undefined && expected.model !== stage.model) {
    throw new ClipsieveError(
      "TARGET_MISMATCH",
      `The model folder ${expected.modelDir} holds ${JSON.stringify(stage.model)}, but the filter expects ${JSON.stringify(expected.model)} (--model or the target set's teacher)`,
    );
  }
}
