/**
 * `load`: a DataComp pool (its `<shard>.parquet` + `<shard>.npz` pairs) produced into Kafka as clipsieve
 * input records, so a historic pool goes through the same path as a live stream. uid, text and url come
 * from the parquet, the embeddings from the npz (rows line up); keys are the uids. JSON values carry
 * base64 float32 embeddings; Avro values use schemas/clip_record.avsc through the schema registry.
 *
 * The producer is idempotent (a retried send is not written twice) and sends shard by shard, row by
 * row, so on a one-partition topic offsets follow the pool's order.
 */

import { readdir } from "node:fs/promises";
import { basename, join } from "node:path";
import { ClipsieveError } from "../common/errors.ts";
import type { Logger } from "../common/logger.ts";
import {
  type AvroRecordEncoder,
  type ClipRecordFields,
  createAvroEncoder,
  encodeJsonRecord,
} from "../decode/encode.ts";
import type { RecordFormat } from "../decode/options.ts";
import { type LshPartitioner, lshPartitionerOf } from "../dedup/lsh.ts";
import { readEmbeddingMatrix } from "../io/embeddings.ts";
import { inputError } from "../io/files.ts";
import { parquetLayout } from "../io/parquet.ts";
import { readParquetColumns } from "../io/table.ts";
import type { KafkaClient, SchemaRegistrySecurity } from "../kafka/index.ts";

export interface Shard {
  name: string;
  parquet: string;
  npz: string;
}

export interface LoadOptions {
  kafka: KafkaClient;
  dir: string;
  topic: string;
  imageKey: string;
  textKey: string;
  /** Teacher model written into every record (the filter dead-letters records naming another one). */
  model?: string;
  format: RecordFormat;
  schemaRegistryUrl?: string;
  schemaRegistryAuth?: SchemaRegistrySecurity;
  /** Partitions of the topic when load has to create it. */
  partitions?: number;
  /**
   * "lsh": each record's partition by a locality-sensitive hash of its image embedding, so near-copies
   * share a partition (the dedup step's scope; src/dedup/lsh.ts), centred on the first shard's first
   * 2,000 images. Default "uid": by key.
   */
  partitionBy?: "uid" | "lsh";
  /** Records per produce request. */
  batchRecords?: number;
  logger: Logger;
  progress?(line: string): void;
}

export interface LoadSummary {
  shards: number;
  records: number;
}

/** The shard pairs of a DataComp folder, by name; a parquet without its npz (or the reverse) is an error. */
export async function listShards(dir: string): Promise<Shard[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    throw inputError(dir, `cannot list the DataComp folder: ${(err as Error).message}`, err);
  }
  const stems = (ext: string) =>
    new Set(names.filter((n) => n.toLowerCase().endsWith(ext)).map((n) => n.slice(0, -ext.length)));
  const parquets = stems(".parquet");
  const npzs = stems(".npz");
  for (const s of parquets)
    if (!npzs.has(s)) throw inputError(join(dir, `${s}.parquet`), `has no ${s}.npz beside it`);
  for (const s of npzs)
    if (!parquets.has(s)) throw inputError(join(dir, `${s}.npz`), `has no ${s}.parquet beside it`);
  if (parquets.size === 0) throw inputError(dir, "holds no <shard>.parquet + <shard>.npz pairs");
  return [...parquets]
    .sort()
    .map((name) => ({ name, parquet: join(dir, `${name}.parquet`), npz: join(dir, `${name}.npz`) }));
}

async function ensureTopic(
  kafka: KafkaClient,
  topic: string,
  partitions: number,
  logger: Logger,
): Promise<void> {
  await kafka.ensureTopics([{ topic, numPartitions: partitions }]);
  logger.info({ topic, partitions }, "the topic is ready");
}

function unitInPlace(v: Float32Array): Float32Array {
  let s = 0;
  for (const x of v) s += x * x;
  const n = Math.sqrt(s) || 1;
  for (let i = 0; i < v.length; i++) v[i] /= n;
  return v;
}

export async function loadDataComp(opts: LoadOptions): Promise<LoadSummary> {
  const { kafka, topic, logger } = opts;
  const shards = await listShards(opts.dir);
  const layouts = await Promise.all(shards.map((s) => parquetLayout(s.parquet)));
  const total = layouts.reduce((n, l) => n + l.rows, 0);
  await ensureTopic(kafka, topic, opts.partitions ?? 1, logger);

  const avro: AvroRecordEncoder | undefined =
    opts.format === "avro"
      ? await createAvroEncoder({
          schemaRegistryUrl: requireRegistry(opts.schemaRegistryUrl),
          schemaRegistryAuth: opts.schemaRegistryAuth,
          topic,
        })
      : undefined;
  const encode = async (rec: ClipRecordFields): Promise<Buffer> =>
    avro ? avro.encode(rec) : encodeJsonRecord(rec, { embeddingEncoding: "base64" });
  const producer = kafka.producer();
  await producer.connect();
  const batchRecords = opts.batchRecords ?? 500;
  let lsh: LshPartitioner | undefined;
  const started = Date.now();
  let records = 0;
  try {
    for (const [i, shard] of shards.entries()) {
      const fields = layouts[i]!.fields.map((f) => f.name);
      if (!fields.includes("uid")) {
        throw inputError(shard.parquet, `no uid column; available: ${fields.join(", ")}`);
      }
      const meta = await readParquetColumns(
        shard.parquet,
        ["uid", "text", "url"].filter((c) => fields.includes(c)),
      );
      const image = await readEmbeddingMatrix(shard.npz, { key: opts.imageKey });
      const text = await readEmbeddingMatrix(shard.npz, { key: opts.textKey });
      const rows = meta.uid!.length;
      if (image.rows !== rows || text.rows !== rows) {
        throw inputError(
          shard.npz,
          `${opts.imageKey} has ${image.rows} rows and ${opts.textKey} ${text.rows}, but ${basename(shard.parquet)} has ${rows}: the rows must line up`,
        );
      }
      if (image.dim !== text.dim) {
        throw inputError(
          shard.npz,
          `${opts.imageKey} has D=${image.dim} but ${opts.textKey} has D=${text.dim}`,
        );
      }
      const d = image.dim;
      if (opts.partitionBy === "lsh" && !lsh) {
        const unit = (r: number) => unitInPlace(image.data.slice(r * d, (r + 1) * d));
        lsh = lshPartitionerOf(unit, rows, d, opts.partitions ?? 1);
      }
      const strings = (name: string) => meta[name] as (string | null)[] | undefined;
      const uids = strings("uid")!;
      for (let start = 0; start < rows; start += batchRecords) {
        const messages = [];
        for (let row = start; row < Math.min(rows, start + batchRecords); row++) {
          const uid = uids[row];
          if (typeof uid !== "string" || uid === "") {
            throw inputError(shard.parquet, `row ${row}: uid is ${JSON.stringify(uid)}`);
          }
          const value = await encode({
            uid,
            text: strings("text")?.[row] ?? null,
            url: strings("url")?.[row] ?? null,
            model: opts.model ?? null,
            imageEmbedding: image.data.subarray(row * d, (row + 1) * d),
            textEmbedding: text.data.subarray(row * d, (row + 1) * d),
          });
          const partition = lsh?.partitionOf(unitInPlace(image.data.slice(row * d, (row + 1) * d)));
          messages.push({ key: uid, value, ...(partition !== undefined ? { partition } : {}) });
        }
        await producer.send(topic, messages);
        records += messages.length;
      }
      const secs = (Date.now() - started) / 1000;
      opts.progress?.(
        `load ${shard.name}: ${rows} records; ${records}/${total} (${((100 * records) / Math.max(total, 1)).toFixed(1)}%)` +
          `, ${secs > 0 ? Math.round(records / secs) : 0} records/s`,
      );
    }
  } finally {
    await producer.disconnect();
    await avro?.close();
  }
  return { shards: shards.length, records };
}

function requireRegistry(url: string | undefined): string {
  if (!url) throw new ClipsieveError("CONFIG_INVALID", "--format avro needs --schema-registry <url>");
  return url;
}
