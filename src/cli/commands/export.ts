/**
 * `clipsieve export --input <accepted topic> --out <dir>`: accepted records as Parquet files for
 * training, one folder per hour, with exactly-once offsets (docs/data-lake.md).
 */
import { type Command, Option } from "commander";
import { ClipsieveError } from "../../common/errors.ts";
import { createLogger } from "../../common/logger.ts";
import { runExport } from "../../lake/export.ts";
import { createLakeKafka } from "../../lake/kafka.ts";
import { parseBrokers, parseInteger } from "../flags.ts";
import { addKafkaAccessFlags, kafkaAccessOf } from "../kafka-access.ts";

interface ExportFlags {
  input: string;
  out: string;
  brokers?: string;
  group?: string;
  embeddings?: boolean;
  maxFileBytes: string;
  uidsNpy?: string;
  follow?: boolean;
  flushMs: string;
  format: "json" | "avro";
  schemaRegistry?: string;
  sessionTimeoutMs: string;
}

export const DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024;

export function registerExportCommand(program: Command): void {
  addKafkaAccessFlags(
    program
      .command("export")
      .description(
        "Write an accepted topic to Parquet files by hour, committing offsets only after files are durable",
      )
      .requiredOption("--input <topic>", "accepted topic of clipsieve run")
      .requiredOption(
        "--out <dir>",
        "output folder: <dir>/hour=YYYY-MM-DDTHH/part-<partition>-<firstOffset>.parquet",
      )
      .option("--brokers <list>", "Kafka bootstrap brokers, host:port,...")
      .option(
        "--group <id>",
        "consumer group that remembers what is exported (default clipsieve-export-<input>)",
      )
      .option("--embeddings", "also write image_embedding and text_embedding (fixed-size lists of float32)")
      .option(
        "--max-file-bytes <n>",
        "largest file, counted before compression; also what one partition buffers",
        String(DEFAULT_MAX_FILE_BYTES),
      )
      .option("--uids-npy <file>", "also write DataComp's uid .npy over everything exported into --out")
      .option("--follow", "keep exporting new records instead of stopping at the end offsets seen at start")
      .option(
        "--flush-ms <ms>",
        "with --follow: write a partition's records at the latest this long after the first",
        "60000",
      )
      .addOption(
        new Option("--format <format>", "record value format").choices(["json", "avro"]).default("json"),
      )
      .option("--schema-registry <url>", "Confluent Schema Registry URL (avro)")
      .option(
        "--session-timeout-ms <ms>",
        "consumer group session timeout: how soon a restarted export takes over from a killed one",
        "30000",
      ),
  ).action(async (flags: ExportFlags) => {
    const logger = createLogger("export");
    const brokers = parseBrokers(flags.brokers);
    const access = kafkaAccessOf(flags as unknown as Record<string, unknown>);
    if (flags.format === "avro" && !flags.schemaRegistry) {
      throw new ClipsieveError("CONFIG_INVALID", "--format avro needs --schema-registry <url>");
    }
    const controller = new AbortController();
    const onSignal = (signal: NodeJS.Signals) => {
      if (controller.signal.aborted) process.exit(130);
      logger.info({ signal }, "stopping: writing what is buffered and committing");
      controller.abort();
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
    try {
      const summary = await runExport({
        kafka: createLakeKafka(brokers, "clipsieve-export", logger, access),
        topic: flags.input,
        group: flags.group ?? `clipsieve-export-${flags.input}`,
        out: flags.out,
        embeddings: flags.embeddings === true,
        maxFileBytes: parseInteger("--max-file-bytes", flags.maxFileBytes, 1),
        follow: flags.follow === true,
        flushMs: parseInteger("--flush-ms", flags.flushMs, 1),
        format: flags.format,
        schemaRegistryUrl: flags.schemaRegistry,
        schemaRegistryAuth: access.registry,
        uidsNpy: flags.uidsNpy,
        logger,
        progress: (line) => process.stderr.write(`${line}\n`),
        signal: controller.signal,
        sessionTimeoutMs: parseInteger("--session-timeout-ms", flags.sessionTimeoutMs, 1),
      });
      console.log(
        `exported ${summary.records} records into ${summary.files} files under ${flags.out}` +
          (summary.uids !== undefined ? `; ${summary.uids} uids -> ${flags.uidsNpy}` : ""),
      );
    } finally {
      process.off("SIGTERM", onSignal);
      process.off("SIGINT", onSignal);
    }
  });
}
