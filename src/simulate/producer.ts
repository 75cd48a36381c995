/**
 * Writes a simulated stream to a Kafka topic in clipsieve's input format (JSON or Confluent Avro),
 * optionally at a fixed rate. The label of every record travels in its headers, which clipsieve keeps
 * on the accepted and rejected copies, so a reader of the outputs can tally decisions per kind:
 *
 *   sim-kind   aligned | off_target | mismatched | boilerplate | duplicate
 *   sim-topic  the topic cluster (0-based); the first half are the target set's topics
 *   sim-site   the site (0-based)
 *
 * (Not `clipsieve-*`: the filter replaces its own headers on the copies it writes.)
 */
import { ClipsieveError } from "../common/errors.ts";
import type { Logger } from "../common/logger.ts";
import {
  type AvroRecordEncoder,
  type ClipRecordFields,
  createAvroEncoder,
  encodeJsonRecord,
} from "../decode/encode.ts";
import {
  createKafkaClient,
  type KafkaAccess,
  type KafkaClient,
  type OutboundRecord,
  type SchemaRegistrySecurity,
} from "../kafka/index.ts";
import type { SimRecord, Simulation } from "./generator.ts";

export const SIM_HEADERS = {
  kind: "sim-kind",
  topic: "sim-topic",
  site: "sim-site",
  /** The record's near-copy cluster (SimRecord.cluster): copies share it. */
  cluster: "sim-cluster",
  /** "1" on a record whose image was planted in the reference set (simulate --reference-out). */
  contaminated: "sim-contaminated",
} as const;

export interface ProduceOptions {
  kafka: KafkaClient;
  topic: string;
  format: "json" | "avro";
  schemaRegistryUrl?: string;
  schemaRegistryAuth?: SchemaRegistrySecurity;
  /** Slots whose images were planted in a reference set: their records get the sim-contaminated header. */
  contaminated?: ReadonlySet<number>;
  /** The partition of each record (e.g. by LSH, src/dedup/lsh.ts); unset: by key (the uid). */
  partitionOf?: (r: SimRecord) => number;
  /** Records per second; unset or 0: as fast as the broker takes them. */
  rate?: number;
  /** Stop early (the records sent so far stay sent). */
  signal?: AbortSignal;
  /** Called after each acknowledged request with the records sent so far. */
  onProgress?(sent: number): void;
  logger?: Logger;
}

export interface ProduceResult {
  sent: number;
  seconds: number;
}

/** The brokers' default `message.max.bytes` is 1 MiB per record batch; stay under it per request. */
const MAX_REQUEST_BYTES = 900_000;

/** Make a Kafka client whose warnings and errors go to `logger`. */
export function simulatorKafka(
  brokers: string[],
  logger: Logger,
  access?: Pick<KafkaAccess, "adapter" | "security">,
  clientId = "clipsieve-simulate",
): KafkaClient {
  return createKafkaClient({ brokers, clientId, logger, ...access });
}

/** Create `topic` with `partitions` partitions unless it exists. */
export async function ensureTopic(kafka: KafkaClient, topic: string, partitions = 1): Promise<void> {
  await kafka.ensureTopics([{ topic, numPartitions: partitions }]);
}

/** A simulated record's fields as the record format has them (docs/record-format.md). */
export function simRecordFields(r: SimRecord): ClipRecordFields {
  return {
    uid: r.uid,
    text: r.text,
    url: r.url,
    model: r.model,
    imageEmbedding: r.imageEmbedding,
    textEmbedding: r.textEmbedding,
  };
}

export function simHeaders(r: SimRecord): Record<string, string> {
  return {
    [SIM_HEADERS.kind]: r.kind,
    [SIM_HEADERS.topic]: String(r.topic),
    [SIM_HEADERS.site]: String(r.site),
    [SIM_HEADERS.cluster]: String(r.cluster),
  };
}

/** Produce every record of `sim` (in stream order) to `options.topic`. Keys are the uids. */
export async function produceSimulation(sim: Simulation, options: ProduceOptions): Promise<ProduceResult> {
  const rate = options.rate ?? 0;
  if (!(rate >= 0 && Number.isFinite(rate))) {
    throw new ClipsieveError("CONFIG_INVALID", `rate must be a number >= 0 (records/s), got ${rate}`);
  }
  let avro: AvroRecordEncoder | undefined;
  if (options.format === "avro") {
    if (!options.schemaRegistryUrl) {
      throw new ClipsieveError("CONFIG_INVALID", "--format avro needs --schema-registry <url>");
    }
    avro = await createAvroEncoder({
      schemaRegistryUrl: options.schemaRegistryUrl,
      schemaRegistryAuth: options.schemaRegistryAuth,
      topic: options.topic,
    });
  }
  // Idempotent: a Produce request retried after a timeout must not write its records twice.
  const producer = options.kafka.producer();
  await producer.connect();
  const started = performance.now();
  let sent = 0;
  // One request at a time: with more in flight kafkajs may hand them to the broker out of order, and
  // the stream's order (the bursty runs, the offsets a study matches records by) is part of what is
  // simulated.
  const send = async (messages: OutboundRecord[]) => {
    await producer.send(options.topic, messages);
    sent += messages.length;
    options.onProgress?.(sent);
  };
  try {
    // A chunk is at most a tenth of a second's worth at the given rate, so the rate holds smoothly.
    const chunkRecords = rate > 0 ? Math.max(1, Math.floor(rate / 10)) : Number.POSITIVE_INFINITY;
    let chunk: OutboundRecord[] = [];
    let chunkBytes = 0;
    for (const r of sim.records()) {
      if (options.signal?.aborted) break;
      const fields = simRecordFields(r);
      const value = avro
        ? await avro.encode(fields)
        : encodeJsonRecord(fields, { embeddingEncoding: "base64" });
      const partition = options.partitionOf?.(r);
      const headers = simHeaders(r);
      if (options.contaminated?.has(r.slot)) headers[SIM_HEADERS.contaminated] = "1";
      chunk.push({ key: r.uid, value, headers, ...(partition !== undefined ? { partition } : {}) });
      chunkBytes += value.length + r.uid.length + 64;
      if (chunkBytes >= MAX_REQUEST_BYTES || chunk.length >= chunkRecords) {
        await send(chunk);
        chunk = [];
        chunkBytes = 0;
        if (rate > 0) {
          const wait = started + (sent / rate) * 1000 - performance.now();
          if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        }
      }
    }
    if (chunk.length > 0 && !options.signal?.aborted) await send(chunk);
  } finally {
    await producer.disconnect();
    await avro?.close();
  }
  return { sent, seconds: (performance.now() - started) / 1000 };
}
