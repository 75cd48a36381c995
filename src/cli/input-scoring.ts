/**
 * What a command needs to decode and score a topic's input records as `run` does (`calibrate`,
 * `fidelity --input`): run's scoring settings resolved with the target set they name, an engine and
 * a decoder, from the same configuration keys, defaults and variables as `run`.
 */
import type { Logger } from "../common/logger.ts";
import type { DecodedRecord, RawRecord } from "../common/record.ts";
import { createDecoder } from "../decode/decoder.ts";
import type { KafkaAccess } from "../kafka/index.ts";
import { KAFKA_ACCESS_KEYS, type RunConfigValues } from "../pipeline/config.ts";
import {
  resolveScoring,
  SCORING_KEYS,
  type ScoringConfig,
  type ScoringSettings,
} from "../pipeline/settings.ts";
import { createScoringEngine, type ScoringEngine } from "../score/engine.ts";
import { loadTarget, targetLoadOptions } from "../score/target-set.ts";
import type { TargetSet } from "../score/types.ts";

/** `run`'s keys that such a command takes, with the same meaning, defaults and variables. */
export const INPUT_SCORING_KEYS = [
  ...SCORING_KEYS,
  ...KAFKA_ACCESS_KEYS,
  "format",
  "schemaRegistry",
  "device",
  "threads",
] as const;

/** The keys besides the scoring ones that reading input records takes. */
export type InputScoringConfig = ScoringConfig &
  Pick<RunConfigValues, "format" | "schemaRegistry" | "device" | "threads">;

export interface InputScoringParts {
  target?: TargetSet;
  scoring: ScoringSettings;
  engine: ScoringEngine;
  decode(raws: RawRecord[]): Promise<DecodedRecord[]>;
  close(): Promise<void>;
}

export async function openInputScoring(
  config: InputScoringConfig,
  access: KafkaAccess,
  logger: Logger,
): Promise<InputScoringParts> {
  const target = config.target ? await loadTarget(config.target, targetLoadOptions(config)) : undefined;
  const scoring = resolveScoring(config, { target });
  const engine = await createScoringEngine({ device: config.device, logger, threads: config.threads });
  const decoder = await createDecoder(
    {
      format: config.format,
      schemaRegistryUrl: config.schemaRegistry,
      schemaRegistryAuth: access.registry,
      expectedDim: scoring.dim,
      expectedModel: scoring.model,
    },
    { logger },
  ).catch(async (err: unknown) => {
    await engine.close();
    throw err;
  });
  return {
    target,
    scoring,
    engine,
    decode: (raws) => decoder.decodeBatch(raws),
    async close() {
      await decoder.close();
      await engine.close();
    },
  };
}
