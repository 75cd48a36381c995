import type { Command } from "commander";
import { createLogger } from "../../common/logger.ts";
import {
  DEFAULT_KAFKA_VERSION,
  defaultStateDir,
  localBrokerStatus,
  startLocalBroker,
  stopLocalBroker,
} from "../../kafka/local-broker.ts";
import { parseInteger } from "../flags.ts";

/** `clipsieve kafka start|stop|status`: the local single-node KRaft broker (no Docker needed). */
export function registerKafkaCommand(program: Command): void {
  const kafka = program
    .command("kafka")
    .description("Run a local single-node Apache Kafka broker (KRaft, Java 17 + Maven, no Docker)");

  kafka
    .command("start")
    .description("Fetch the broker's jars (first time), format storage, start it and wait until it answers")
    .option("--dir <path>", "state folder (data, logs, pid)", defaultStateDir())
    .option("--port <n>", "client port (0 = any free port)", "9092")
    .option("--controller-port <n>", "KRaft controller port (0 = any free port)", "9093")
    .option("--kafka-version <v>", "Apache Kafka version from Maven Central", DEFAULT_KAFKA_VERSION)
    .option("--heap <size>", "JVM heap", "768m")
    .action(
      async (opts: {
        dir: string;
        port: string;
        controllerPort: string;
        kafkaVersion: string;
        heap: string;
      }) => {
        const state = await startLocalBroker({
          stateDir: opts.dir,
          port: parseInteger("--port", opts.port, 0, 65535),
          controllerPort: parseInteger("--controller-port", opts.controllerPort, 0, 65535),
          kafkaVersion: opts.kafkaVersion,
          heap: opts.heap,
          logger: createLogger("kafka"),
        });
        console.log(state.brokers);
      },
    );

  kafka
    .command("stop")
    .description("Stop the local broker started from the state folder")
    .option("--dir <path>", "state folder", defaultStateDir())
    .action(async (opts: { dir: string }) => {
      const stopped = await stopLocalBroker(opts.dir);
      console.log(stopped ? "stopped" : "not running");
    });

  kafka
    .command("status")
    .description("Say whether the local broker runs and answers; exit 1 when it does not")
    .option("--dir <path>", "state folder", defaultStateDir())
    .action(async (opts: { dir: string }) => {
      const status = await localBrokerStatus(opts.dir);
      if (status.running && status.state) {
        console.log(
          `${status.answering ? "running" : "starting"} ${status.state.brokers} (pid ${status.state.pid}, Kafka ${status.state.kafkaVersion})`,
        );
      } else console.log("not running");
      if (!status.answering) process.exitCode = 1;
    });
}
