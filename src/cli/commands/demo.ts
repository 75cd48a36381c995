/**
 * `clipsieve demo`: the first five minutes. A simulated, labelled crawl through the real filter with
 * the paper's two-stage policy, on a local broker it starts and stops (or on `--brokers`).
 */
import { type Command, Option } from "commander";
import { pino } from "pino";
import type { Logger } from "../../common/logger.ts";
import { type BrokerHandle, quietKafkajsNotices } from "../../simulate/broker.ts";
import { DEMO_DEFAULTS, runDemo } from "../../simulate/demo.ts";
import { SIM_ORDERS, type SimOrder } from "../../simulate/generator.ts";
import { integerOption } from "../flags.ts";

/**
 * The filter's logger for the demo: JSON lines on stderr as usual, without the errors kafkajs logs
 * (and then retries by itself) while a fresh broker's coordinators finish loading. A first run should
 * not greet the user with errors that fix themselves; anything else still shows.
 */
function demoLogger(level: string): Logger {
  const transient = /coordinator is (not available|loading)/i;
  return pino(
    {
      name: "demo",
      level,
      base: undefined,
      hooks: {
        logMethod(args, method) {
          const first = args[0] as unknown;
          const error =
            typeof first === "object" && first !== null ? (first as { error?: unknown }).error : undefined;
          if (typeof error === "string" && transient.test(error)) return;
          method.apply(this, args);
        },
      },
    },
    pino.destination({ fd: 2, sync: true }),
  );
}

export function registerDemoCommand(program: Command): void {
  const d = DEMO_DEFAULTS;
  program
    .command("demo")
    .description(
      "Run a simulated crawl through the filter (s-CLIPLoss 30% then NormSim 20%) and summarise what it kept; starts and stops a local Kafka broker unless --brokers is given",
    )
    .option("--brokers <list>", "use these Kafka brokers instead of starting a local one")
    .option("--count <n>", "simulated records", integerOption("--count", 1), d.count)
    .option("--dim <d>", "embedding dimension", integerOption("--dim", 8), d.dim)
    .option("--seed <s>", "simulation seed", integerOption("--seed", 0), d.seed)
    .addOption(new Option("--order <order>", "record order").choices(SIM_ORDERS).default(d.order))
    .option(
      "--rate <r>",
      "records per second produced (0 = as fast as possible)",
      integerOption("--rate", 0),
      d.rate,
    )
    .option("--window-size <n>", "records per window", integerOption("--window-size", 1), d.windowSize)
    .option("--bank-size <m>", "negative bank rows", integerOption("--bank-size", 0), d.bankSize)
    .option("--draws <k>", "K, draws per window", integerOption("--draws", 1), d.draws)
    .option("--batch-size <b>", "b, contrastive batch size", integerOption("--batch-size", 1), d.batchSize)
    .option(
      "--linger-ms <ms>",
      "cut a window this long after it opened",
      integerOption("--linger-ms", 1),
      d.lingerMs,
    )
    .option("--keep <score=fraction>", "stage 1", d.keep)
    .option("--then <score=fraction>", "stage 2, fraction of the whole stream", d.thenKeep)
    .option("--warmup <n>", "records before the quantile sketch is trusted", integerOption("--warmup", 0))
    .option("--warmup-mode <mode>", "provisional | accept | reject")
    .option(
      "--keep-topics",
      "keep the demo's topics on a --brokers broker (a local broker is removed anyway)",
    )
    .action(async (opts: Record<string, unknown>) => {
      const logger = demoLogger(process.env.CLIPSIEVE_LOG_LEVEL ?? "warn");
      quietKafkajsNotices();
      const controller = new AbortController();
      let broker: BrokerHandle | undefined;
      let signalled = false;
      const onSignal = (signal: NodeJS.Signals) => {
        if (signalled) {
          // A second signal: no more waiting, but never leave a broker behind.
          broker?.killNow();
          process.exit(130);
        }
        signalled = true;
        process.stderr.write(`\n${signal}: stopping the demo and cleaning up (again to force)\n`);
        controller.abort();
      };
      process.on("SIGINT", onSignal);
      process.on("SIGTERM", onSignal);
      try {
        const result = await runDemo({
          brokers: opts.brokers as string | undefined,
          count: opts.count as number,
          dim: opts.dim as number,
          seed: opts.seed as number,
          order: opts.order as SimOrder,
          rate: opts.rate as number,
          windowSize: opts.windowSize as number,
          bankSize: opts.bankSize as number,
          draws: opts.draws as number,
          batchSize: opts.batchSize as number,
          lingerMs: opts.lingerMs as number,
          keep: opts.keep as string,
          thenKeep: opts.then as string,
          warmup: opts.warmup as number | undefined,
          warmupMode: opts.warmupMode as string | undefined,
          keepTopics: opts.keepTopics === true,
          out: process.stdout,
          tty: process.stdout.isTTY === true,
          logger,
          signal: controller.signal,
          onBroker: (b) => {
            broker = b;
          },
        });
        process.stdout.write(
          result.brokerWasLocal
            ? "\nThe local broker is stopped and its folder removed.\n"
            : `\nTopics ${result.topics[0].replace(/\.input$/, ".*")} ${opts.keepTopics ? "kept" : "deleted"}.\n`,
        );
        if (result.aborted) process.exitCode = 130;
      } finally {
        process.off("SIGINT", onSignal);
        process.off("SIGTERM", onSignal);
      }
    });
}
