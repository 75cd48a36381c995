/**
 * `clipsieve load --datacomp <dir> --topic <topic>`: a DataComp pool into Kafka as clipsieve records,
 * so a historic pool replays through the same path as a live stream (docs/data-lake.md).
 */
import { type Command, Option } from "commander";
import { createLogger } from "../../common/logger.ts";
import { createLakeKafka } from "../../lake/kafka.ts";
import { loadDataComp } from "../../lake/load.ts";
import { parseBrokers, parseInteger } from "../flags.ts";
import { addKafkaAccessFlags, kafkaAccessOf } from "../kafka-access.ts";

interface LoadFlags {
  datacomp: string;
  topic: string;
  brokers?: string;
  imageKey: string;
  textKey: string;
  model?: string;
  format: "json" | "avro";
  schemaRegistry?: string;
  partitions: string;
  partitionBy: "uid" | "lsh";
}

export function registerLoadCommand(program: Command): void {
  addKafkaAccessFlags(
    program
      .command("load")
      .description(
        "Produce a DataComp pool (<shard>.parquet + <shard>.npz pairs) into Kafka as clipsieve records",
      )
      .requiredOption("--datacomp <dir>", "folder of DataComp shards")
      .requiredOption("--topic <topic>", "topic to produce to (created when missing)")
      .option("--brokers <list>", "Kafka bootstrap brokers, host:port,...")
      .option("--image-key <key>", "npz array of image embeddings", "l14_img")
      .option("--text-key <key>", "npz array of text embeddings", "l14_txt")
      .option("--model <teacher>", "teacher model named in every record (e.g. openai/clip-vit-large-patch14)")
      .addOption(
        new Option("--format <format>", "record value format").choices(["json", "avro"]).default("json"),
      )
      .option("--schema-registry <url>", "Confluent Schema Registry URL (avro)")
      .option("--partitions <n>", "partitions when the topic has to be created", "1")
      .addOption(
        new Option(
          "--partition-by <how>",
          "uid (by key), or lsh: by a locality-sensitive hash of the image, so near-copies share a partition for --dedup",
        )
          .choices(["uid", "lsh"])
          .default("uid"),
      ),
  ).action(async (flags: LoadFlags) => {
    const logger = createLogger("load");
    const partitions = parseInteger("--partitions", flags.partitions, 1);
    const access = kafkaAccessOf(flags as unknown as Record<string, unknown>);
    const summary = await loadDataComp({
      kafka: createLakeKafka(parseBrokers(flags.brokers), "clipsieve-load", logger, access),
      dir: flags.datacomp,
      topic: flags.topic,
      imageKey: flags.imageKey,
      textKey: flags.textKey,
      model: flags.model,
      format: flags.format,
      schemaRegistryUrl: flags.schemaRegistry,
      schemaRegistryAuth: access.registry,
      partitions,
      partitionBy: flags.partitionBy,
      logger,
      progress: (line) => process.stderr.write(`${line}\n`),
    });
    console.log(`loaded ${summary.records} records from ${summary.shards} shards into ${flags.topic}`);
  });
}
