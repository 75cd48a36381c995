/**
 * `clipsieve fidelity`: the streaming filter's accepted set against the paper's offline selection.
 * Without --input: the study on simulated pools of two generators, for several window, bank and
 * normaliser settings and both record orders (BENCHMARKS.md, "Fidelity to the paper"). With --input:
 * the same comparison on the first --limit records of a user's topic, with run's settings.
 */
import type { Command } from "commander";
import { FIDELITY_DEFAULTS, formatFidelityReport, runFidelity } from "../../bench/fidelity.ts";
import { formatTopicFidelity } from "../../bench/fidelity-format.ts";
import { runTopicFidelity } from "../../bench/fidelity-topic.ts";
import { ClipsieveError } from "../../common/errors.ts";
import { createLogger } from "../../common/logger.ts";
import { resolveKafkaAccess } from "../../kafka/index.ts";
import { createLakeKafka } from "../../lake/kafka.ts";
import { configFromEnv, DEDUP_KEYS, resolveConfigSubset } from "../../pipeline/config.ts";
import { NORMALISERS, type Normaliser } from "../../score/types.ts";
import { quietKafkajsNotices } from "../../simulate/broker.ts";
import { SIM_ORDERS, SIM_PROFILES, type SimOrder, type SimProfile } from "../../simulate/generator.ts";
import { addConfigFlags } from "../config-flags.ts";
import { choiceListOption, integerListOption, integerOption, parseBrokers, parseInteger } from "../flags.ts";
import { INPUT_SCORING_KEYS, openInputScoring } from "../input-scoring.ts";

/** `run`'s options that `fidelity --input` takes with the same meaning and defaults. */
const TOPIC_KEYS = [...INPUT_SCORING_KEYS, ...DEDUP_KEYS];

export function registerFidelityCommand(program: Command): void {
  const d = FIDELITY_DEFAULTS;
  const command = program
    .command("fidelity")
    .description(
      "Compare the streaming filter's accepted set with the paper's offline selection: on simulated pools (minutes; starts a local broker unless --brokers; run's --dim, --seed and --warmup set the study's, default 64, 0 and 10000), or on the first --limit records of a topic with run's settings (--input)",
    )
    .option(
      "--input <topic>",
      "check a topic of input records instead of simulated pools (with run's settings)",
    )
    .option(
      "--limit <n>",
      "with --input: records to read from the start of the topic",
      integerOption("--limit", 1),
      65_536,
    )
    .option(
      "--offline-draws <k>",
      "with --input: K of the offline reference",
      integerOption("--offline-draws", 1),
      10,
    )
    .option(
      "--brokers <list>",
      "Kafka brokers (with --input: required; else instead of starting a local one)",
    )
    .option("--count <n>", "simulated records per generator", integerOption("--count", 1), d.count)
    .option(
      "--profiles <list>",
      "simulated generators",
      choiceListOption("--profiles", SIM_PROFILES),
      d.profiles,
    )
    .option("--orders <list>", "record orders", choiceListOption("--orders", SIM_ORDERS), d.orders)
    .option("--windows <list>", "window sizes", integerListOption("--windows", 1), d.windows)
    .option("--banks <list>", "negative bank sizes", integerListOption("--banks", 0), d.banks)
    .option(
      "--normalisers <list>",
      "s-CLIPLoss normalisers",
      choiceListOption("--normalisers", NORMALISERS),
      d.normalisers,
    )
    .option(
      "--verify <configs>",
      "window:bank[:normaliser] configurations also run through the real filter on Kafka, comma-separated ('none' for none)",
      (t: string) => (t === "none" ? [] : t.split(",")),
      d.verify,
    )
    .option("--no-noise-floor", "skip the second offline selection (another draw seed)")
    .option("--json", "print the report as JSON");
  addConfigFlags(command, TOPIC_KEYS, { configFile: false }).action(async (opts: Record<string, unknown>) => {
    checkModeFlags(command, opts.input !== undefined);
    const logger = createLogger("fidelity", process.env.CLIPSIEVE_LOG_LEVEL ?? "warn");
    quietKafkajsNotices();
    // Ctrl-C or SIGTERM: exit through process.exit, whose "exit" hook stops the local broker.
    const exitOnSignal = () => process.exit(130);
    process.once("SIGINT", exitOnSignal);
    process.once("SIGTERM", exitOnSignal);
    const progress = (line: string) => process.stderr.write(`${line}\n`);
    if (opts.input !== undefined) {
      await checkTopic(opts, logger, progress);
      return;
    }
    // --dim, --seed and --warmup are run's flags (below); the study reads them with its own defaults.
    const int = (flag: string, value: unknown, fallback: number, min: number) =>
      value === undefined ? fallback : parseInteger(flag, String(value), min);
    const report = await runFidelity({
      brokers: opts.brokers as string | undefined,
      count: opts.count as number,
      dim: int("--dim", opts.dim, d.dim, 8),
      seed: int("--seed", opts.seed, d.seed, 0),
      profiles: opts.profiles as SimProfile[],
      orders: opts.orders as SimOrder[],
      windows: opts.windows as number[],
      banks: opts.banks as number[],
      normalisers: opts.normalisers as Normaliser[],
      verify: opts.verify as string[],
      warmup: int("--warmup", opts.warmup, d.warmup, 0),
      noiseFloor: opts.noiseFloor !== false,
      logger,
      progress,
    });
    console.log(opts.json ? JSON.stringify(report) : formatFidelityReport(report));
  });
}

/** The study's own options, which mean nothing with --input. */
const STUDY_OPTIONS = ["count", "profiles", "orders", "windows", "banks", "normalisers", "verify"];
/** Options of --input only; the study also reads run's --dim, --seed and --warmup. */
const TOPIC_ONLY_OPTIONS = ["limit", "offlineDraws"];
const STUDY_RUN_FLAGS = ["dim", "seed", "warmup"];
/** Run's flags as commander names them (`--then` is the key thenKeep). */
const RUN_FLAG_KEYS = new Set<string>([...TOPIC_KEYS, "then"]);

/** A flag given for the other mode is an error, not silently ignored. */
function checkModeFlags(command: Command, topicMode: boolean): void {
  const given = command.options
    .map((o) => ({ flag: o.long ?? o.flags, key: o.attributeName() }))
    .filter(({ key }) => command.getOptionValueSource(key) === "cli");
  const misplaced = given.filter(({ key }) =>
    topicMode
      ? STUDY_OPTIONS.includes(key)
      : TOPIC_ONLY_OPTIONS.includes(key) || (RUN_FLAG_KEYS.has(key) && !STUDY_RUN_FLAGS.includes(key)),
  );
  if (misplaced.length > 0) {
    const flags = misplaced.map((m) => m.flag).join(", ");
    const what = misplaced.length === 1 ? "is an option" : "are options";
    throw new ClipsieveError(
      "CONFIG_INVALID",
      topicMode
        ? `${flags} ${what} of the simulated study, not of --input`
        : `${flags} ${what} of --input <topic>; the simulated study sets its own (--windows, --banks, --normalisers...)`,
    );
  }
}

/** --input: the user's topic, with run's scoring settings (flags, CLIPSIEVE_* variables, defaults). */
async function checkTopic(
  opts: Record<string, unknown>,
  logger: ReturnType<typeof createLogger>,
  progress: (line: string) => void,
): Promise<void> {
  if (opts.brokers === undefined) {
    throw new ClipsieveError("CONFIG_INVALID", "--input needs --brokers: the topic's Kafka cluster");
  }
  // Run's flags only: the study's own options are not configuration keys.
  const keys: readonly string[] = TOPIC_KEYS;
  const flags = Object.fromEntries(Object.entries(opts).filter(([k]) => keys.includes(k)));
  const config = resolveConfigSubset(TOPIC_KEYS, {
    env: configFromEnv(),
    flags: { ...flags, thenKeep: opts.then },
  });
  if (!config.keep && !config.threshold) {
    throw new ClipsieveError(
      "CONFIG_INVALID",
      "fidelity --input needs the policy to compare: --keep (and --then, --threshold) as run takes them",
    );
  }
  const access = resolveKafkaAccess(config);
  const parts = await openInputScoring(config, access, logger);
  try {
    const report = await runTopicFidelity({
      kafka: createLakeKafka(parseBrokers(opts.brokers as string), "clipsieve-fidelity", logger, access),
      topic: opts.input as string,
      limit: opts.limit as number,
      scoring: parts.scoring,
      rules: { keep: config.keep, thenKeep: config.thenKeep, threshold: config.threshold },
      target: parts.target,
      engine: parts.engine,
      decode: parts.decode,
      offlineDraws: opts.offlineDraws as number,
      noiseFloor: opts.noiseFloor !== false,
      ...(config.dedup || config.reference ? { dedup: config } : {}),
      logger,
      progress,
    });
    console.log(opts.json ? JSON.stringify(report) : formatTopicFidelity(report));
  } finally {
    await parts.close();
  }
}
