/**
 * `clipsieve run`: the streaming filter. Flags, a JSON config file (`--config`) and CLIPSIEVE_*
 * environment variables all feed one validated configuration (src/pipeline/config.ts).
 */
import type { Command } from "commander";
import { createLogger } from "../../common/logger.ts";
import {
  configFromEnv,
  configFromFile,
  RUN_CONFIG_KEYS,
  RUN_ONLY_KEYS,
  type RunConfig,
  resolveRunConfig,
} from "../../pipeline/config.ts";
import { buildPipeline, type Pipeline } from "../../pipeline/pipeline.ts";
import { addConfigFlags } from "../config-flags.ts";

/** The scoring, policy and delivery flags `run` and `replay` share: every configuration key but run's own. */
export function addFilterOptions(command: Command): Command {
  return addConfigFlags(
    command,
    RUN_CONFIG_KEYS.filter((k) => !RUN_ONLY_KEYS.includes(k)),
  );
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
    );
  addConfigFlags(run).action(async (opts: Record<string, unknown>) => {
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
