/**
 * `clipsieve calibrate`: thresholds that keep the requested fractions of a sample, saved as a policy
 * state that `run --policy-file` starts from, so a new stream is warm from its first record.
 */
import { writeFile } from "node:fs/promises";
import type { Command } from "commander";
import { ClipsieveError } from "../../common/errors.ts";
import { createLogger } from "../../common/logger.ts";
import { writeFileAtomic } from "../../io/files.ts";
import { type KafkaAccess, resolveKafkaAccess } from "../../kafka/index.ts";
import {
  Calibration,
  type CalibrationResult,
  calibrateFromFiles,
  calibrateFromTopic,
  type InputScoring,
} from "../../lake/calibrate.ts";
import { createLakeKafka } from "../../lake/kafka.ts";
import { parseScoreSource } from "../../lake/score-records.ts";
import { configFromEnv, resolveConfigSubset } from "../../pipeline/config.ts";
import { policySpecOf } from "../../pipeline/settings.ts";
import { describePolicy, type PolicySpec } from "../../policy/index.ts";
import { WindowScorer } from "../../window/scorer.ts";
import { addConfigFlags } from "../config-flags.ts";
import { parseBrokers, parseInteger } from "../flags.ts";
import { INPUT_SCORING_KEYS, openInputScoring } from "../input-scoring.ts";

/** `run`'s options that `calibrate` takes with the same meaning, defaults and environment variables. */
const CALIBRATE_KEYS = INPUT_SCORING_KEYS;

interface CalibrateOptions extends Record<string, unknown> {
  input: string[];
  brokers?: string;
  limit?: string;
  out: string;
  json?: boolean;
  then?: string;
}

export function registerCalibrateCommand(program: Command): void {
  const command = program
    .command("calibrate")
    .description(
      "Run a policy over a sample (input records, a scores topic or score files) and save its state for run --policy-file",
    )
    .requiredOption(
      "--input <sources...>",
      "a topic of input records or of score records, or score files (.jsonl dump, .parquet/.arrow tables)",
    )
    .option("--brokers <list>", "Kafka bootstrap brokers, host:port,... (for a topic)")
    .option("--limit <n>", "use only the first n records of the input")
    .requiredOption("--out <policy.json>", "where to write the policy state")
    .option("--json", "print the result as JSON");
  addConfigFlags(command, CALIBRATE_KEYS, { configFile: false }).action(async (opts: CalibrateOptions) => {
    const logger = createLogger("calibrate");
    const { input, brokers, limit: limitFlag, out, json, then: thenKeep, ...rest } = opts;
    const config = resolveConfigSubset(CALIBRATE_KEYS, {
      env: configFromEnv(),
      flags: { ...rest, thenKeep },
    });
    // Score files need no target set even for NormSim rules: their scores are computed already.
    const spec = policySpecOf(config);
    const limit = limitFlag === undefined ? undefined : parseInteger("--limit", String(limitFlag), 1);
    const windowSize = config.windowSize;
    const access = resolveKafkaAccess(config);
    const calibration = new Calibration(spec);
    const sources = input.map(parseScoreSource);
    let described: string;
    if (sources.length === 1 && sources[0]!.kind === "topic") {
      const topic = sources[0]!.topic;
      const kafka = createLakeKafka(parseBrokers(brokers), "clipsieve-calibrate", logger, access);
      const kind = await calibrateFromTopic({
        kafka,
        topic,
        logger,
        calibration,
        windowSize,
        limit,
        makeInputScoring: () => makeInputScoring(config, access, logger),
      });
      described = `topic ${topic} (${kind === "scores" ? "score records" : "input records, scored here"})`;
    } else {
      const topics = sources.filter((s) => s.kind === "topic");
      if (topics.length > 0) {
        throw new ClipsieveError(
          "CONFIG_INVALID",
          `--input ${input.join(" ")}: give one topic, or files only (no file named ${input[sources.indexOf(topics[0]!)]})`,
        );
      }
      await calibrateFromFiles(
        sources.map((s) => (s.kind === "file" ? s.path : "")),
        calibration,
        { windowSize, limit },
      );
      described = `${sources.length === 1 ? "file" : "files"} ${input.join(", ")}`;
    }
    const result = calibration.result();
    if (result.scored === 0) {
      throw new ClipsieveError(
        "CONFIG_INVALID",
        `--input ${input.join(" ")}: no scored records to calibrate on`,
      );
    }
    await writeFileAtomic(out, (file) => writeFile(file, `${JSON.stringify(result.state)}\n`));
    printResult(result, described, out, spec, json === true);
  });
}

/** Input records are decoded, cut and scored as `run` does, with run's settings (settings.ts). */
async function makeInputScoring(
  config: ResolvedCalibrateConfig,
  access: KafkaAccess,
  logger: ReturnType<typeof createLogger>,
): Promise<InputScoring> {
  const parts = await openInputScoring(config, access, logger);
  return {
    decode: parts.decode,
    scorer: new WindowScorer(parts.engine, parts.scoring.scorer),
    scoreAll: parts.scoring.scoreAll,
    close: parts.close,
  };
}

type ResolvedCalibrateConfig = ReturnType<typeof resolveConfigSubset<(typeof CALIBRATE_KEYS)[number]>>;

function printResult(
  r: CalibrationResult,
  described: string,
  out: string,
  spec: PolicySpec,
  json: boolean,
): void {
  if (json) {
    const { state, ...rest } = r;
    console.log(
      JSON.stringify(
        { ...rest, policyVersion: state.policyVersion, policy: describePolicy(spec), out },
        null,
        2,
      ),
    );
    return;
  }
  const pct = (f: number) => `${(100 * f).toFixed(2)}%`;
  const lines = [
    `calibrated on ${r.read} records of ${described}: ${r.scored} scored, ${r.skipped} without scores, ${r.windows} windows`,
    ...Object.entries(r.thresholds).map(([k, v]) => `  ${k} >= ${v}`),
    `accepted at these cut-offs: ${pct(r.acceptedFraction)} of the sample (decided window by window: ${pct(r.decidedAcceptedFraction)})`,
    ...(r.undeterminedFraction > 0
      ? [
          `  and ${pct(r.undeterminedFraction)} reach every cut-off they have scores for but lack one another needs ` +
            "(not computed: below their window's stage-1 cut-off; --score-all computes every score)",
        ]
      : []),
    `policy ${r.state.policyVersion} -> ${out}`,
    `start a stream from it with: clipsieve run ... ${describePolicy(spec)} --policy-file ${out}`,
  ];
  console.log(lines.join("\n"));
}
