import { BadRecordError } from "./bad-record.ts";
import { decodeBase64, describe, dtypeFromValue, embeddingFromValue } from "./embedding.ts";

/** What a record's value holds, read but not yet checked against the decoder's expectations. */
export interface RecordContent {
  uid: string;
  text?: string;
  url?: string;
  model?: string;
  /** As written (not normalised); absent when the record has none. */
  imageEmbedding?: Float32Array;
  textEmbedding?: Float32Array;
  /** The image file itself (JSON: base64; Avro: bytes), for the embed stage. */
  imageBytes?: Buffer;
}

/**
 * Read the record fields from a decoded JSON object or Avro record into `into`. Both formats share the
 * field names (snake_case) and the rules: a missing uid is RECORD_MISSING_FIELD, a field of the wrong
 * type is RECORD_UNDECODABLE, fields clipsieve does not know are ignored. A missing embedding is left
 * absent here; the decoder decides what that means. `into` is filled as fields are read, so that a
 * record that fails half-way still carries its uid (and text, url, model) to the dead-letter topic.
 */
export function readRecordFields(
  obj: Record<string, unknown>,
  into: Partial<RecordContent> = {},
): RecordContent {
  const uid = optionalString(obj, "uid");
  if (uid === undefined || uid === "") {
    throw new BadRecordError("RECORD_MISSING_FIELD", `uid is ${uid === "" ? "empty" : "missing"}`);
  }
  into.uid = uid;
  const text = optionalString(obj, "text");
  if (text !== undefined) into.text = text;
  const url = optionalString(obj, "url");
  if (url !== undefined) into.url = url;
  const model = optionalString(obj, "model");
  if (model === "") {
    throw new BadRecordError(
      "RECORD_UNDECODABLE",
      "model is an empty string; name the teacher or leave it out",
    );
  }
  if (model !== undefined) into.model = model;
  const dtype = dtypeFromValue(obj["embedding_dtype"]);
  for (const [field, key] of [
    ["image_embedding", "imageEmbedding"],
    ["text_embedding", "textEmbedding"],
  ] as const) {
    const value = obj[field];
    if (value !== undefined && value !== null) into[key] = embeddingFromValue(value, dtype, field);
  }
  const image = obj["image_bytes"];
  if (image instanceof Uint8Array) into.imageBytes = Buffer.from(image);
  else if (typeof image === "string") into.imageBytes = decodeBase64(image, "image_bytes");
  else if (image !== undefined && image !== null) {
    throw new BadRecordError("RECORD_UNDECODABLE", `image_bytes is ${describe(image)}, not base64 or bytes`);
  }
  return into as RecordContent;
}

/** null and absent are the same (Avro writes a missing optional field as null). */
function optionalString(obj: Record<string, unknown>, key: string): string | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string")
    throw new BadRecordError("RECORD_UNDECODABLE", `${key} is ${describe(v)}, not a string`);
  return v;
}
