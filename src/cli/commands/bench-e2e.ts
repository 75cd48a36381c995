/**
 * `clipsieve bench-e2e`: the filter end to end through Kafka next to a passthrough that does no
 * scoring (BENCHMARKS.md, "End-to-end through Kafka"). `npm run bench` runs it after `bench`.
 */

import { type Command, Option } from "commander";
import { E2E_DEFAULTS, formatE2eReport, runE2eBench } from "../../bench/e2e.ts";
import { ClipsieveError } from "../../common/errors.ts";
import { createLogger } from "../../common/logger.ts";
import { KAFKA_ADAPTERS, type KafkaAdapterName } from "../../kafka/index.ts";
import { quietKafkajsNotices } from "../../simulate/broker.ts";
import { integerListOption, integerOption } from "../flags.ts";

export function registerBenchE2eCommand(program: Command): void {
  const d = E2E_DEFAULTS;
  program
    .command("bench-e2e")
    .description(
      "Measure the filter end to end through Kafka (records/s, produce-to-decision latency, peak memory) next to a passthrough and the bare client's floor, for each Kafka adapter; starts a local broker unless --brokers",
    )
    .option("--brokers <list>", "use these Kafka brokers instead of starting a local one")
    .option("--count <n>", "records of the backlog runs", integerOption("--count", 1), d.count)
    .option("--dim <d>", "embedding dimension", integerOption("--dim", 8), d.dim)
    .option("--seed <s>", "simulation seed", integerOption("--seed", 0), d.seed)
    .option(
      "--steady-seconds <s>",
      "length of the steady-rate runs",
      integerOption("--steady-seconds", 1),
      d.steadySeconds,
    )
    .option(
      "--repeats <n>",
      "backlog runs of each kind; the fastest counts",
      integerOption("--repeats", 1),
      d.repeats,
    )
    .addOption(
      new Option("--kafka-client <name...>", "Kafka adapters to measure (default: all)").choices([
        ...KAFKA_ADAPTERS,
      ]),
    )
    .option(
      "--target-rows <list>",
      "instead: the filter with the 2,048-row target, then with clustered targets of these sizes (e.g. 100000,1000000,2100000), first adapter only",
      integerListOption("--target-rows", 1),
    )
    .option(
      "--pool-banks <list>",
      "instead: the filter with its defaults, then with --normaliser pool and these bank sizes (e.g. 8192,12288), first adapter only",
      integerListOption("--pool-banks", 0),
    )
    .option(
      "--dedup-rows <list>",
      "instead: the filter with its defaults, then with --dedup over a history already holding these numbers of rows (e.g. 1000000), first adapter only",
      integerListOption("--dedup-rows", 0),
    )
    .option("--json", "print one JSON object instead of text")
    .action(
      async (opts: {
        brokers?: string;
        count: number;
        dim: number;
        seed: number;
        steadySeconds: number;
        repeats: number;
        kafkaClient?: KafkaAdapterName[];
        targetRows?: number[];
        poolBanks?: number[];
        dedupRows?: number[];
        json?: boolean;
      }) => {
        if ([opts.targetRows, opts.poolBanks, opts.dedupRows].filter(Boolean).length > 1) {
          throw new ClipsieveError(
            "CONFIG_INVALID",
            "--target-rows, --pool-banks and --dedup-rows are different benchmarks: give one",
          );
        }
        quietKafkajsNotices();
        // Ctrl-C or SIGTERM: exit through process.exit, whose "exit" hook stops the local broker.
        const exitOnSignal = () => process.exit(130);
        process.once("SIGINT", exitOnSignal);
        process.once("SIGTERM", exitOnSignal);
        const logger = createLogger("bench-e2e", process.env.CLIPSIEVE_LOG_LEVEL ?? "warn");
        const report = await runE2eBench({
          brokers: opts.brokers,
          count: opts.count,
          dim: opts.dim,
          seed: opts.seed,
          steadySeconds: opts.steadySeconds,
          repeats: opts.repeats,
          adapters: opts.kafkaClient,
          ...(opts.targetRows ? { targetRows: opts.targetRows } : {}),
          ...(opts.poolBanks ? { poolBanks: opts.poolBanks } : {}),
          ...(opts.dedupRows ? { dedupRows: opts.dedupRows } : {}),
          logger,
          progress: (line) => process.stderr.write(`${line}\n`),
        });
        console.log(opts.json ? JSON.stringify(report) : formatE2eReport(report));
      },
    );
}
