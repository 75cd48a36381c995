import type { Logger } from "../common/logger.ts";
import { silentLogger } from "../common/logger.ts";
import type { DecodedRecord, RawRecord } from "../common/record.ts";
import { type AvroValueReader, createAvroValueReader } from "./avro.ts";
import { BadRecordError } from "./bad-record.ts";
import { normaliseEmbedding } from "./embedding.ts";
import { type RecordContent, readRecordFields } from "./fields.ts";
import { parseJsonValue } from "./json.ts";
import { type DecoderOptions, type ResolvedDecoderOptions, resolveDecoderOptions } from "./options.ts";

export interface DecoderContext {
  logger?: Logger;
}

export interface Decoder {
  /**
   * Never throws for a bad record: it comes back with `failure` set (stage "decode"). Throws only when
   * the schema registry fails it (ClipsieveError SCHEMA_REGISTRY_UNAVAILABLE, retryable, or
   * SCHEMA_REGISTRY_REQUEST_FAILED): that is no fault of the record, so it must not be dead-lettered.
   */
  decode(raw: RawRecord): Promise<DecodedRecord>;
  /** The records in order, each decoded as by `decode`. */
  decodeBatch(raws: RawRecord[]): Promise<DecodedRecord[]>;
  close(): Promise<void>;
}

/** The decode stage: Kafka value bytes to uid, text, url, model and L2-normalised float32 embeddings. */
export async function createDecoder(options: DecoderOptions, ctx: DecoderContext = {}): Promise<Decoder> {
  const opts = resolveDecoderOptions(options);
  const logger = ctx.logger ?? silentLogger;
  const avro: AvroValueReader | undefined =
    opts.format === "avro"
      ? await createAvroValueReader({ ...opts, schemaRegistryUrl: opts.schemaRegistryUrl as string })
      : undefined;

  async function readObject(value: Buffer, topic: string): Promise<Record<string, unknown>> {
    return avro ? avro.read(value, topic) : parseJsonValue(value);
  }

  async function decode(raw: RawRecord): Promise<DecodedRecord> {
    const content: Partial<RecordContent> = {};
    try {
      if (raw.value === null) {
        throw new BadRecordError("RECORD_TOMBSTONE", "value is null (a tombstone): nothing to score");
      }
      readRecordFields(await readObject(raw.value, raw.source.topic), content);
      checkAndNormalise(content as RecordContent, opts);
      return { ...raw, ...content };
    } catch (err) {
      if (!(err instanceof BadRecordError)) throw err;
      const { topic, partition, offset } = raw.source;
      logger.debug({ topic, partition, offset, code: err.code }, "record failed to decode");
      // Keep what was read (uid, text, url, model) for the dead-letter record, but no half-checked vector.
      const { imageEmbedding: _image, textEmbedding: _text, imageBytes: _bytes, ...kept } = content;
      return {
        ...raw,
        ...kept,
        failure: { code: err.code, stage: "decode", message: `${locate(raw, content.uid)}: ${err.message}` },
      };
    }
  }

  let closed = false;
  return {
    decode,
    async decodeBatch(raws) {
      const out: DecodedRecord[] = [];
      for (const raw of raws) out.push(await decode(raw));
      return out;
    },
    async close() {
      if (closed) return;
      closed = true;
      await avro?.close();
    },
  };
}

/**
 * The checks that need the decoder's expectations. A teacher mismatch comes first: a record from
 * another model is wrong whatever its vectors look like, and its score would be silently meaningless.
 */
function checkAndNormalise(c: RecordContent, opts: ResolvedDecoderOptions): void {
  if (opts.expectedModel !== undefined && c.model !== undefined && c.model !== opts.expectedModel) {
    throw new BadRecordError(
      "TARGET_MISMATCH",
      `model is ${JSON.stringify(c.model)} but this decoder expects ${JSON.stringify(opts.expectedModel)}: ` +
        "embeddings of different teachers cannot be scored together",
    );
  }
  const { imageEmbedding: image, textEmbedding: text } = c;
  if ((!image || !text) && !opts.embeddingsOptional) {
    const missing = [!image && "image_embedding", !text && "text_embedding"].filter(Boolean).join(" and ");
    throw new BadRecordError("RECORD_MISSING_FIELD", `${missing} ${!image && !text ? "are" : "is"} missing`);
  }
  for (const [field, vec] of [
    ["image_embedding", image],
    ["text_embedding", text],
  ] as const) {
    if (!vec) continue; // absent only with embeddingsOptional: the embed stage computes it
    if (vec.length === 0) throw new BadRecordError("EMBEDDING_DIMENSION_MISMATCH", `${field} is empty`);
    if (opts.expectedDim !== undefined && vec.length !== opts.expectedDim) {
      throw new BadRecordError(
        "EMBEDDING_DIMENSION_MISMATCH",
        `${field} has ${vec.length} values, expected ${opts.expectedDim} (decoder option expectedDim)`,
      );
    }
  }
  if (image && text && image.length !== text.length) {
    throw new BadRecordError(
      "EMBEDDING_DIMENSION_MISMATCH",
      `image_embedding has ${image.length} values but text_embedding has ${text.length}`,
    );
  }
  if (image) normaliseEmbedding(image, "image_embedding");
  if (text) normaliseEmbedding(text, "text_embedding");
}

function locate(raw: RawRecord, uid: string | undefined): string {
  const { topic, partition, offset } = raw.source;
  if (uid === undefined) return `record ${topic}/${partition}@${offset}`;
  return `record ${topic}/${partition}@${offset} (uid ${uid.length > 64 ? `${uid.slice(0, 64)}...` : uid})`;
}
