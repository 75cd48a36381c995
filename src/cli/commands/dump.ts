/**
 * `clipsieve dump --topic <t> --out <file.jsonl>`: a scores (or windows) topic as JSON Lines, read with
 * read_committed up to the end offsets captured at start, written whole. `diff` and `calibrate` read
 * such a file like the topic.
 */
import type { Command } from "commander";
import { createLogger } from "../../common/logger.ts";
import { createLakeKafka } from "../../lake/kafka.ts";
import { dumpTopic } from "../../lake/score-records.ts";
import { parseBrokers } from "../flags.ts";
import { addKafkaAccessFlags, kafkaAccessOf } from "../kafka-access.ts";

export function registerDumpCommand(program: Command): void {
  addKafkaAccessFlags(
    program
      .command("dump")
      .description("Write a topic of JSON values (scores, window manifests) to a JSON Lines file")
      .requiredOption("--topic <topic>", "topic to read, from the beginning to its end offsets at start")
      .requiredOption("--out <file.jsonl>", "output file (written to a temporary name, then renamed)")
      .option("--brokers <list>", "Kafka bootstrap brokers, host:port,..."),
  ).action(async (opts: { topic: string; out: string; brokers?: string }) => {
    const logger = createLogger("dump");
    const access = kafkaAccessOf(opts);
    const kafka = createLakeKafka(parseBrokers(opts.brokers), "clipsieve-dump", logger, access);
    const n = await dumpTopic(kafka, opts.topic, opts.out, logger);
    console.log(`${n} records of topic ${opts.topic} -> ${opts.out}`);
  });
}
