import type { ErrorCode } from "../common/errors.ts";

/** Where a record came from: its Kafka coordinates. */
export interface SourceRef {
  topic: string;
  partition: number;
  /** Kafka offset as a decimal string (kafkajs's representation). */
  offset: string;
}

/** The pipeline stage that found a record bad. */
export type FailureStage = "decode" | "embed" | "score";

/** A bad record is data, not an exception: the stage marks it and the rest of the window flows on. */
export interface RecordFailure {
  code: ErrorCode;
  stage: FailureStage;
  message: string;
}

/** A record as it arrives from Kafka, before decoding. */
export interface RawRecord {
  source: SourceRef;
  key: Buffer | null;
  /** The original value bytes; forwarded unchanged to the accepted/rejected topics. */
  value: Buffer | null;
  headers: Record<string, Buffer | string | undefined>;
  /** Record timestamp, ms since the epoch, as a decimal string. */
  timestamp: string;
}

/** A decoded record: the raw record plus what the decoder read from it, or the reason it could not. */
export interface DecodedRecord extends RawRecord {
  uid?: string;
  text?: string;
  url?: string;
  /** The teacher model that made the embeddings, when the record names it. */
  model?: string;
  /** L2-normalised image embedding (length D). */
  imageEmbedding?: Float32Array;
  /** L2-normalised text embedding (length D). */
  textEmbedding?: Float32Array;
  /** The image itself (JPEG, PNG, WebP, GIF or AVIF bytes), when the record carries it: the embed stage encodes it. */
  imageBytes?: Buffer;
  failure?: RecordFailure;
}
