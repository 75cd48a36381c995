/**
 * `clipsieve fidelity`: the streaming filter's accepted set against the paper's offline selection on
 * one simulated pool, for several window and bank sizes and both record orders (BENCHMARKS.md,
 * "Fidelity to the paper").
 */
import type { Command } from "commander";
import { FIDELITY_DEFAULTS, formatFidelityReport, runFidelity } from "../../bench/fidelity.ts";
import { ClipsieveError } from "../../common/errors.ts";
import { createLogger } from "../../common/logger.ts";
import { quietKafkajsNotices } from "../../simulate/broker.ts";
import { SIM_ORDERS, type SimOrder } from "../../simulate/generator.ts";
import { integerListOption, integerOption } from "../flags.ts";

function orders(text: string): SimOrder[] {
  return text.split(",").map((o) => {
    if (!(SIM_ORDERS as readonly string[]).includes(o)) {
      throw new ClipsieveError(
        "CONFIG_INVALID",
        `--orders ${text}: each must be one of ${SIM_ORDERS.join(", ")}`,
      );
    }
    return o as SimOrder;
  });
}

export function registerFidelityCommand(program: Command): void {
  const d = FIDELITY_DEFAULTS;
  program
    .command("fidelity")
    .description(
      "Compare the streaming filter's accepted set with the paper's offline selection on a simulated pool (minutes; starts a local broker unless --brokers)",
    )
    .option("--brokers <list>", "use these Kafka brokers instead of starting a local one")
    .option("--count <n>", "simulated records", integerOption("--count", 1), d.count)
    .option(
      "--dim <d>",
      "embedding dimension (cost, not statistics: see the generator)",
      integerOption("--dim", 8),
      d.dim,
    )
    .option("--seed <s>", "simulation and draw seed", integerOption("--seed", 0), d.seed)
    .option("--orders <list>", "record orders", orders, d.orders)
    .option("--windows <list>", "window sizes", integerListOption("--windows", 1), d.windows)
    .option("--banks <list>", "negative bank sizes", integerListOption("--banks", 0), d.banks)
    .option(
      "--verify <pairs>",
      "window:bank configurations also run through the real filter on Kafka, comma-separated ('none' for none)",
      (t: string) => (t === "none" ? [] : t.split(",")),
      d.verify,
    )
    .option("--warmup <n>", "warm-up records of the filter", integerOption("--warmup", 0), d.warmup)
    .option("--no-noise-floor", "skip the second offline selection (another draw seed)")
    .option("--json", "print the report as JSON")
    .action(async (opts: Record<string, unknown>) => {
      const logger = createLogger("fidelity", process.env.CLIPSIEVE_LOG_LEVEL ?? "warn");
      quietKafkajsNotices();
      // Ctrl-C or SIGTERM: exit through process.exit, whose "exit" hook stops the local broker.
      const exitOnSignal = () => process.exit(130);
      process.once("SIGINT", exitOnSignal);
      process.once("SIGTERM", exitOnSignal);
      const report = await runFidelity({
        brokers: opts.brokers as string | undefined,
        count: opts.count as number,
        dim: opts.dim as number,
        seed: opts.seed as number,
        orders: opts.orders as SimOrder[],
        windows: opts.windows as number[],
        banks: opts.banks as number[],
        verify: opts.verify as string[],
        warmup: opts.warmup as number,
        noiseFloor: opts.noiseFloor !== false,
        logger,
        progress: (line) => process.stderr.write(`${line}\n`),
      });
      console.log(opts.json ? JSON.stringify(report) : formatFidelityReport(report));
    });
}
