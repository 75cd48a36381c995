/**
 * `clipsieve run`: the streaming filter. Flags, a JSON config file (`--config`) and CLIPSIEVE_*
 * environment variables all feed one validated configuration (src/pipeline/config.ts).
 */
import { type Command, Option } from "commander";
import { createLogger } from "../../common/logger.ts";
import { KAFKA_ADAPTERS } from "../../kafka/index.ts";
import { configFromEnv, configFromFile, type RunConfig, resolveRunConfig } from "../../pipeline/config.ts";
import { buildPipeline, type Pipeline } from "../../pipeline/pipeline.ts";

const collect = (value: string, previous: string[] = []) => [...previous, value];

/** The scoring, policy and delivery flags, shared by `run` and `replay`. */
export function addFilterOptions(command: Command): Command {
  return command
    .option("--config <file>", "JSON config file (keys as in docs/streaming.md; flags override it)")
    .option("--brokers <list>", "Kafka bootstrap brokers, host:port,...")
    .addOption(
      new Option("--kafka-client <name>", "Kafka client library (default librdkafka)").choices([
        ...KAFKA_ADAPTERS,
      ]),
    )
    .addOption(new Option("--format <format>", "input value format").choices(["json", "avro"]))
    .option("--schema-registry <url>", "Confluent Schema Registry URL (avro)")
    .option("--window-size <n>", "records per window (default 4096)")
    .option("--linger-ms <ms>", "cut a window this long after its first record (default 2000)")
    .option("--bank-size <m>", "negative bank rows (default 4096)")
    .option("--draws <k>", "seeded draws per window (default 5)")
    .option("--batch-size <b>", "contrastive batch size (default 8192)")
    .option("--tau <t>", "temperature (default 0.01)")
    .option("--seed <s>", "base seed (default 0)")
    .option("--dim <d>", "embedding dimension (default: the target's, else 768)")
    .option("--model <name>", "teacher model records must name (default: the target's)")
    .option("--target <file>", "target set (artifact, or .npy/.npz of target image embeddings)")
    .addOption(
      new Option("--device <device>", "onnxruntime execution provider").choices(["cpu", "cuda", "webgpu"]),
    )
    .option("--threads <n>", "onnxruntime threads (default: all cores; set to the container's CPU limit)")
    .option("--keep <score=fraction>", "top fraction (stage 1), e.g. s_clip_loss=0.3")
    .option("--then <score=fraction>", "second stage, fraction of the whole stream, e.g. normsim_inf=0.2")
    .option("--threshold <score>=value>", "fixed threshold, e.g. s_clip_loss>=0.1 (repeatable)", collect)
    .option("--warmup <n>", "records before the quantile sketch is trusted (default 10000)")
    .option("--warmup-mode <mode>", "provisional | accept | reject (see docs/policy.md)")
    .option("--policy-file <file>", "start the policy from this state (e.g. from `calibrate`)")
    .addOption(
      new Option("--delivery <mode>", "delivery guarantee").choices(["exactly-once", "at-least-once"]),
    )
    .option("--instance-id <id>", "stable id of this instance (default: host name)")
    .option("--transaction-timeout-ms <ms>", "Kafka transaction timeout (default 30000)")
    .option("--session-timeout-ms <ms>", "consumer group session timeout (default 30000)")
    .option("--max-queued-windows <n>", "windows fetched but undelivered before fetching pauses (default 2)")
    .option("--model-dir <dir>", "CLIP model folder: embed records that lack embeddings (docs/embed.md)")
    .option("--embed-batch-size <n>", "images (captions) per encoder run (default 32 / 64)")
    .option("--fetch-connect-timeout-ms <ms>", "image URL connect timeout (default 5000)")
    .option("--fetch-timeout-ms <ms>", "image URL timeout per try (default 15000)")
    .option("--fetch-deadline-ms <ms>", "give up on a record's image after this long (default 60000)")
    .option("--fetch-retries <n>", "retries of a failed image fetch (default 2)")
    .option("--fetch-concurrency-per-host <n>", "image fetches in flight per host (default 4)")
    .option("--max-image-bytes <n>", "largest image accepted (default 16777216)")
    .option("--fetch-allow-private-addresses", "fetch images from private and loopback addresses")
    .option(
      "--teacher-check-rate <f>",
      "fraction of records whose caption is re-encoded to check the teacher (default 0.01)",
    )
    .option("--metrics-port <port>", "serve Prometheus /metrics and /healthz on this port");
}

/** Merge defaults, the config file, CLIPSIEVE_* variables and flags into one validated config. */
export function configFromOptions(
  opts: Record<string, unknown>,
  overrides: Record<string, unknown> = {},
): RunConfig {
  // `--then` is `thenKeep` in the config (a `then` key would make the object look like a promise).
  const { config: configPath, then: thenKeep, ...rest } = opts;
  return resolveRunConfig({
    file:
      typeof configPath === "string" ? { path: configPath, values: configFromFile(configPath) } : undefined,
    env: configFromEnv(),
    flags: { ...rest, thenKeep, ...overrides },
  });
}

/** Stop on SIGTERM/SIGINT: drain the window in flight; a second signal exits at once. */
export function closeOnSignals(pipeline: Pipeline, logger: ReturnType<typeof createLogger>): () => void {
  let signalled = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) {
      logger.warn({ signal }, "second signal: exiting now");
      process.exit(130);
    }
    signalled = true;
    logger.info({ signal }, "stopping: draining the window in flight");
    void pipeline.close();
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  return () => {
    process.off("SIGTERM", onSignal);
    process.off("SIGINT", onSignal);
  };
}

export function registerRunCommand(program: Command): void {
  const run = program
    .command("run")
    .description(
      "Filter a Kafka topic of image-text records into accepted / rejected / dead-letter, exactly once",
    )
    .option("--group <id>", "consumer group id")
    .option("--input <topic>", "input topic")
    .option("--accepted <topic>", "accepted topic")
    .option("--rejected <topic>", "rejected topic")
    .option("--dead-letter <topic>", "dead-letter topic")
    .option("--scores <topic>", "scores topic (one record per input)")
    .option("--windows-topic <topic>", "window manifests topic (default <scores>-windows)")
    .option("--state-topic <topic>", "policy state topic (default <group>-policy-state)");
  addFilterOptions(run).action(async (opts: Record<string, unknown>) => {
    const logger = createLogger("run");
    const pipeline = await buildPipeline(configFromOptions(opts), logger);
    const release = closeOnSignals(pipeline, logger);
    try {
      await pipeline.start();
      await pipeline.done;
      logger.info("stopped cleanly");
    } finally {
      release();
    }
  });
}
