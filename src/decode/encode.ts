/**
 * The writing side of the record formats, for the stream simulator, the loader and tests: what a
 * producer of clipsieve's input would do.
 */

import { readFileSync } from "node:fs";
import { ClipsieveError } from "../common/errors.ts";
import type { SchemaRegistrySecurity } from "../kafka/index.ts";
import { type EmbeddingDtype, floatsToBytes } from "./float-bytes.ts";
import { DECODER_DEFAULTS } from "./options.ts";
import { createRegistryClient, loadRegistryLib, registryFailure, registryStatus } from "./registry.ts";

/** One record's fields. Embeddings are written as given (normalised or not). */
export interface ClipRecordFields {
  uid: string;
  text?: string | null;
  url?: string | null;
  model?: string | null;
  imageEmbedding?: ArrayLike<number> | null;
  textEmbedding?: ArrayLike<number> | null;
  /** The image file itself (JSON: base64 `image_bytes`; Avro: bytes). */
  imageBytes?: Uint8Array | null;
}

export type JsonEncodeOptions =
  | { embeddingEncoding: "array" }
  | { embeddingEncoding: "base64"; embeddingDtype?: EmbeddingDtype };

/** A JSON record value (UTF-8). Absent and null fields are left out. */
export function encodeJsonRecord(rec: ClipRecordFields, opts: JsonEncodeOptions): Buffer {
  const out: Record<string, unknown> = { uid: rec.uid };
  if (rec.text != null) out.text = rec.text;
  if (rec.url != null) out.url = rec.url;
  if (rec.model != null) out.model = rec.model;
  if (rec.imageBytes != null) out.image_bytes = Buffer.from(rec.imageBytes).toString("base64");
  if (opts.embeddingEncoding === "base64") {
    const dtype = opts.embeddingDtype ?? "FLOAT32";
    out.embedding_dtype = dtype;
    if (rec.imageEmbedding != null)
      out.image_embedding = floatsToBytes(rec.imageEmbedding, dtype).toString("base64");
    if (rec.textEmbedding != null)
      out.text_embedding = floatsToBytes(rec.textEmbedding, dtype).toString("base64");
  } else {
    if (rec.imageEmbedding != null) out.image_embedding = jsonNumbers(rec.imageEmbedding, "image_embedding");
    if (rec.textEmbedding != null) out.text_embedding = jsonNumbers(rec.textEmbedding, "text_embedding");
  }
  return Buffer.from(JSON.stringify(out), "utf8");
}

// JSON.stringify would quietly write NaN and Infinity as null.
function jsonNumbers(values: ArrayLike<number>, field: string): number[] {
  const out = Array.from(values);
  const bad = out.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) {
    throw new ClipsieveError(
      "EMBEDDING_NOT_FINITE",
      `${field}[${bad}] is ${out[bad]}, which JSON cannot hold as a number; use embeddingEncoding "base64"`,
    );
  }
  return out;
}

/** The Avro schema clipsieve's records are written with (schemas/clip_record.avsc), as JSON text. */
export function clipRecordSchema(): string {
  return readFileSync(new URL("../../schemas/clip_record.avsc", import.meta.url), "utf8");
}

export interface AvroEncoderOptions {
  schemaRegistryUrl: string;
  /** Basic auth and a CA bundle for the registry (src/kafka/security.ts). */
  schemaRegistryAuth?: SchemaRegistrySecurity;
  /** Records are for this topic; the schema is registered under the subject `<topic>-value`. */
  topic: string;
  schemaRegistryTimeoutMs?: number;
  schemaRegistryMaxRetries?: number;
  schemaRegistryRetryWaitMs?: number;
}

export interface AvroRecordEncoder {
  /** The id the registry gave the schema: bytes 1-4 of every value. */
  readonly schemaId: number;
  readonly subject: string;
  /** A Confluent-framed Avro value. */
  encode(rec: ClipRecordFields, opts?: { embeddingDtype?: EmbeddingDtype }): Promise<Buffer>;
  close(): Promise<void>;
}

/** Register clip_record.avsc (idempotent: the same schema keeps its id) and write values with it. */
export async function createAvroEncoder(options: AvroEncoderOptions): Promise<AvroRecordEncoder> {
  const conn = { ...DECODER_DEFAULTS, ...options };
  const { AvroSerializer, SerdeType, SubjectNameStrategyType } = await loadRegistryLib();
  const client = await createRegistryClient(conn);
  const subject = `${options.topic}-value`;
  let schemaId: number;
  try {
    schemaId = await client.register(subject, { schemaType: "AVRO", schema: clipRecordSchema() });
  } catch (err) {
    throw registryFailure(err, options.schemaRegistryUrl, `registering the record schema under ${subject}`);
  }
  // useSchemaId pins the writer schema to the one just registered, whatever else the subject holds.
  const serializer = new AvroSerializer(client, SerdeType.VALUE, {
    useSchemaId: schemaId,
    subjectNameStrategyType: SubjectNameStrategyType.TOPIC,
  });
  return {
    schemaId,
    subject,
    async encode(rec, opts = {}) {
      const dtype = opts.embeddingDtype ?? "FLOAT32";
      const msg = {
        uid: rec.uid,
        text: rec.text ?? null,
        url: rec.url ?? null,
        model: rec.model ?? null,
        embedding_dtype: dtype,
        image_embedding: rec.imageEmbedding == null ? null : floatsToBytes(rec.imageEmbedding, dtype),
        text_embedding: rec.textEmbedding == null ? null : floatsToBytes(rec.textEmbedding, dtype),
        image_bytes: rec.imageBytes == null ? null : Buffer.from(rec.imageBytes),
      };
      try {
        return await serializer.serialize(options.topic, msg);
      } catch (err) {
        // A value that does not fit the schema is the caller's bug, not an outage: let it through as is.
        if (registryStatus(err) === undefined) throw err;
        throw registryFailure(err, options.schemaRegistryUrl, `fetching schema id ${schemaId}`);
      }
    },
    async close() {
      serializer.close();
      await client.close();
    },
  };
}
