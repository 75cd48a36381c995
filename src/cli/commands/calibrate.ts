/**
 * `clipsieve calibrate`: thresholds that keep the requested fractions of a sample, saved as a policy
 * state that `run --policy-file` starts from, so a new stream is warm from its first record.
 */
import { writeFile } from "node:fs/promises";
import { type Command, Option } from "commander";
import { ClipsieveError } from "../../common/errors.ts";
import { createLogger } from "../../common/logger.ts";
import { createDecoder } from "../../decode/decoder.ts";
import { writeFileAtomic } from "../../io/files.ts";
import {
  Calibration,
  type CalibrationResult,
  calibrateFromFiles,
  calibrateFromTopic,
  type InputScoring,
} from "../../lake/calibrate.ts";
import { createLakeKafka } from "../../lake/kafka.ts";
import { parseScoreSource } from "../../lake/score-records.ts";
import { addPolicyOptions, describePolicy, type PolicyFlags, parsePolicyFlags } from "../../policy/index.ts";
import { createScoringEngine } from "../../score/engine.ts";
import { loadTarget, UNKNOWN_MODEL } from "../../score/target-set.ts";
import type { Device } from "../../score/types.ts";
import { WindowScorer } from "../../window/scorer.ts";
import { parseBrokers, parseInteger, parseNumber } from "../flags.ts";

interface CalibrateOptions extends PolicyFlags {
  input: string[];
  brokers?: string;
  format: "json" | "avro";
  schemaRegistry?: string;
  limit?: string;
  target?: string;
  windowSize: string;
  bankSize: string;
  draws: string;
  batchSize: string;
  tau: string;
  seed: string;
  dim?: string;
  model?: string;
  device: Device;
  out: string;
  json?: boolean;
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
    .addOption(
      new Option("--format <format>", "input value format").choices(["json", "avro"]).default("json"),
    )
    .option("--schema-registry <url>", "Confluent Schema Registry URL (avro)")
    .option("--limit <n>", "use only the first n records of the input")
    .option("--target <file>", "target set, for NormSim rules (as for run)")
    .option("--window-size <n>", "records per window, as for run", "4096")
    .option("--bank-size <m>", "negative bank rows, as for run", "4096")
    .option("--draws <k>", "seeded draws per window, as for run", "5")
    .option("--batch-size <b>", "contrastive batch size, as for run", "8192")
    .option("--tau <t>", "temperature, as for run", "0.01")
    .option("--seed <s>", "base seed, as for run", "0")
    .option("--dim <d>", "embedding dimension (default: the target's, else 768)")
    .option("--model <name>", "teacher model records must name (default: the target's)")
    .addOption(
      new Option("--device <device>", "onnxruntime execution provider")
        .choices(["cpu", "cuda", "webgpu"])
        .default("cpu"),
    )
    .requiredOption("--out <policy.json>", "where to write the policy state")
    .option("--json", "print the result as JSON");
  addPolicyOptions(command).action(async (opts: CalibrateOptions) => {
    const logger = createLogger("calibrate");
    const spec = parsePolicyFlags(opts);
    const limit = opts.limit === undefined ? undefined : parseInteger("--limit", opts.limit, 1);
    const windowSize = parseInteger("--window-size", opts.windowSize, 1);
    const calibration = new Calibration(spec);
    const sources = opts.input.map(parseScoreSource);
    let described: string;
    if (sources.length === 1 && sources[0]!.kind === "topic") {
      const topic = sources[0]!.topic;
      const kafka = createLakeKafka(parseBrokers(opts.brokers), "clipsieve-calibrate", logger);
      const kind = await calibrateFromTopic({
        kafka,
        topic,
        logger,
        calibration,
        windowSize,
        limit,
        makeInputScoring: () => makeInputScoring(opts, logger),
      });
      described = `topic ${topic} (${kind === "scores" ? "score records" : "input records, scored here"})`;
    } else {
      const topics = sources.filter((s) => s.kind === "topic");
      if (topics.length > 0) {
        throw new ClipsieveError(
          "CONFIG_INVALID",
          `--input ${opts.input.join(" ")}: give one topic, or files only (no file named ${opts.input[sources.indexOf(topics[0]!)]})`,
        );
      }
      await calibrateFromFiles(
        sources.map((s) => (s.kind === "file" ? s.path : "")),
        calibration,
        { windowSize, limit },
      );
      described = `${sources.length === 1 ? "file" : "files"} ${opts.input.join(", ")}`;
    }
    const result = calibration.result();
    if (result.scored === 0) {
      throw new ClipsieveError(
        "CONFIG_INVALID",
        `--input ${opts.input.join(" ")}: no scored records to calibrate on`,
      );
    }
    await writeFileAtomic(opts.out, (file) => writeFile(file, `${JSON.stringify(result.state)}\n`));
    printResult(result, described, opts.out, spec, opts.json === true);
  });
}

async function makeInputScoring(
  opts: CalibrateOptions,
  logger: ReturnType<typeof createLogger>,
): Promise<InputScoring> {
  const target = opts.target ? await loadTarget(opts.target) : undefined;
  const dim = opts.dim ? parseInteger("--dim", opts.dim, 1) : (target?.dim ?? 768);
  if (target && target.dim !== dim) {
    throw new ClipsieveError(
      "TARGET_MISMATCH",
      `Target set ${opts.target} has D=${target.dim}, but --dim is ${dim}.`,
    );
  }
  const model = opts.model ?? (target && target.model !== UNKNOWN_MODEL ? target.model : undefined);
  const tau = parseNumber("--tau", opts.tau, { min: 0, exclusive: true });
  const engine = await createScoringEngine({ device: opts.device, logger });
  const decoder = await createDecoder(
    { format: opts.format, schemaRegistryUrl: opts.schemaRegistry, expectedDim: dim, expectedModel: model },
    { logger },
  );
  const scorer = new WindowScorer(engine, {
    dim,
    bankSize: parseInteger("--bank-size", opts.bankSize, 0),
    draws: parseInteger("--draws", opts.draws, 1),
    batchSize: parseInteger("--batch-size", opts.batchSize, 1),
    tau,
    seed: parseInteger("--seed", opts.seed, 0),
    target,
  });
  return {
    decode: (raws) => decoder.decodeBatch(raws),
    scorer,
    async close() {
      await decoder.close();
      await engine.close();
    },
  };
}

function printResult(
  r: CalibrationResult,
  described: string,
  out: string,
  spec: ReturnType<typeof parsePolicyFlags>,
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
    `policy ${r.state.policyVersion} -> ${out}`,
    `start a stream from it with: clipsieve run ... ${describePolicy(spec)} --policy-file ${out}`,
  ];
  console.log(lines.join("\n"));
}
