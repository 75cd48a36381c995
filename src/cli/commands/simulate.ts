/**
 * `clipsieve simulate`: a synthetic crawl stream with known ground truth on a Kafka topic, and the
 * target set that goes with it (src/simulate/generator.ts describes the records).
 */
import { resolve } from "node:path";
import { type Command, Option } from "commander";
import { createLogger } from "../../common/logger.ts";
import { lshPartitionerOf } from "../../dedup/lsh.ts";
import { createScoringEngine } from "../../score/engine.ts";
import { quietKafkajsNotices } from "../../simulate/broker.ts";
import type { Simulation } from "../../simulate/generator.ts";
import {
  createSimulation,
  SIM_KINDS,
  SIM_ORDERS,
  SIM_PROFILES,
  type SimOrder,
  type SimProfile,
} from "../../simulate/generator.ts";
import { ensureTopic, produceSimulation, simulatorKafka } from "../../simulate/producer.ts";
import { writeSimulationReference, writeSimulationTarget } from "../../simulate/target.ts";
import { integerOption, numberOption, parseBrokers } from "../flags.ts";
import { addKafkaAccessFlags, kafkaAccessOf } from "../kafka-access.ts";

interface SimulateFlags {
  brokers: string;
  topic: string;
  rate: number;
  count: number;
  dim: number;
  seed: number;
  format: "json" | "avro";
  schemaRegistry?: string;
  order: SimOrder;
  profile: SimProfile;
  partitions: number;
  partitionBy: "uid" | "lsh";
  targetOut?: string;
  referenceOut?: string;
  referenceRows: number;
  contaminated: number;
}

export function registerSimulateCommand(program: Command): void {
  addKafkaAccessFlags(
    program
      .command("simulate")
      .description(
        "Produce a synthetic crawl of labelled CLIP-like records (aligned, off_target, mismatched, boilerplate, duplicate) and write the matching target set",
      )
      .requiredOption("--brokers <list>", "Kafka bootstrap brokers, host:port,...")
      .requiredOption("--topic <topic>", "topic to produce to (created if missing)")
      .option(
        "--rate <r>",
        "records per second (0 = as fast as the broker takes them)",
        numberOption("--rate", { min: 0 }),
        0,
      )
      .option("--count <n>", "records", integerOption("--count", 1), 10_000)
      .option("--dim <d>", "embedding dimension", integerOption("--dim", 8), 768)
      .option("--seed <s>", "seed: the same seed gives the same records", integerOption("--seed", 0), 0)
      .addOption(new Option("--format <format>", "value format").choices(["json", "avro"]).default("json"))
      .option("--schema-registry <url>", "Confluent Schema Registry URL (avro)")
      .addOption(
        new Option("--order <order>", "shuffled, or bursty: runs of one topic or one site")
          .choices(SIM_ORDERS)
          .default("shuffled"),
      )
      .addOption(
        new Option("--profile <profile>", "the world's structure: crawl, or longtail (docs/demo.md)")
          .choices(SIM_PROFILES)
          .default("crawl"),
      )
      .option(
        "--partitions <n>",
        "partitions of the topic when it is created",
        integerOption("--partitions", 1),
        1,
      )
      .addOption(
        new Option(
          "--partition-by <how>",
          "uid (the key: copies spread over partitions), or lsh: by a locality-sensitive hash of the image, so near-copies share a partition (docs/streaming.md, Dedup)",
        )
          .choices(["uid", "lsh"])
          .default("uid"),
      )
      .option("--target-out <file>", "where to write the matching target set (default <topic>.target.npz)")
      .option(
        "--reference-out <file>",
        "also write a reference set (for run --reference) with --contaminated near-copies of the stream's aligned images",
      )
      .option("--reference-rows <n>", "rows of the reference set", integerOption("--reference-rows", 1), 2000)
      .option(
        "--contaminated <n>",
        "reference rows that copy a stream image (ground truth: their records' sim-contaminated header)",
        integerOption("--contaminated", 0),
        200,
      ),
  ).action(async (opts: SimulateFlags) => {
    quietKafkajsNotices();
    const logger = createLogger("simulate");
    const access = kafkaAccessOf(opts as unknown as Record<string, unknown>);
    const sim = createSimulation({
      count: opts.count,
      dim: opts.dim,
      seed: opts.seed,
      order: opts.order,
      profile: opts.profile,
    });
    const targetPath = resolve(opts.targetOut ?? `${opts.topic}.target.npz`);
    let plantedSlots: Set<number> | undefined;
    const engine = await createScoringEngine({ logger });
    try {
      const manifest = await writeSimulationTarget(sim, targetPath, engine);
      console.log(`target set ${targetPath}: M=${manifest.rows} D=${manifest.dim} model=${manifest.model}`);
      if (opts.referenceOut) {
        const path = resolve(opts.referenceOut);
        const ref = await writeSimulationReference(sim, path, engine, opts.referenceRows, opts.contaminated);
        plantedSlots = new Set(ref.plantedSlots);
        console.log(
          `reference set ${path}: M=${ref.manifest.rows}, ${opts.contaminated} rows copy stream images`,
        );
      }
    } finally {
      await engine.close();
    }
    const kafka = simulatorKafka(parseBrokers(opts.brokers), logger, access);
    await ensureTopic(kafka, opts.topic, opts.partitions);
    const controller = new AbortController();
    const onSignal = () => controller.abort();
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
    try {
      const result = await produceSimulation(sim, {
        kafka,
        topic: opts.topic,
        format: opts.format,
        schemaRegistryUrl: opts.schemaRegistry,
        schemaRegistryAuth: access.registry,
        rate: opts.rate,
        ...(opts.partitionBy === "lsh" ? { partitionOf: lshPartitionOf(sim, opts.partitions) } : {}),
        ...(plantedSlots ? { contaminated: plantedSlots } : {}),
        signal: controller.signal,
        logger,
      });
      const counts = sim.kindCounts();
      console.log(
        `produced ${result.sent} records to ${opts.topic} in ${result.seconds.toFixed(1)} s ` +
          `(${Math.round(result.sent / Math.max(result.seconds, 1e-3))} records/s), ${opts.order} order, seed ${opts.seed}${opts.profile === "crawl" ? "" : `, ${opts.profile} profile`}`,
      );
      console.log(`kinds (header sim-kind): ${SIM_KINDS.map((k) => `${k} ${counts[k]}`).join(", ")}`);
      if (controller.signal.aborted) process.exitCode = 130;
    } finally {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    }
  });
}

/** Partition by LSH, centred on the stream's first images. */
function lshPartitionOf(
  sim: Simulation,
  partitions: number,
): (r: { imageEmbedding: Float32Array }) => number {
  const { dim, count } = sim.options;
  const lsh = lshPartitionerOf((i) => sim.record(i).imageEmbedding, count, dim, partitions);
  return (r) => lsh.partitionOf(r.imageEmbedding);
}
