/**
 * A record's vocabulary, shared by every stage: where it came from, what it holds once decoded, what
 * marks it bad, and where it ends. Here, not in a stage's folder, so that source, window, score,
 * policy and sink can all name a record without depending on one another.
 */
import type { ErrorCode } from "./errors.ts";

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

/** Where a record goes: its `clipsieve-decision` header and the scores topic's `decision`. */
export type RecordDecision = "accepted" | "rejected" | "dead_letter";

/** The outcome of one record, as the policy (or a stage's failure mark) decided it. */
export interface RecordOutcome {
  record: DecodedRecord;
  decision: RecordDecision;
  /** Closed set: "passed", "below_threshold", ..., or the error code for dead letters. */
  reason: string;
  /** The score whose rule decided a rejection, when there is one. */
  rule?: string;
  scores?: Record<string, number>;
  /** Scores the record was not given on purpose (its policy did not need them), with the reason. */
  notComputed?: Readonly<Record<string, string>>;
  thresholds?: Record<string, number>;
  /** What the record copies, when the dedup step rejected it (`near_duplicate`, `near_reference`). */
  copyOf?: CopyOf;
}

/** What a record rejected by the dedup step copies: an earlier accepted record, or a reference row. */
export type CopyOf =
  | { kind: "record"; uid: string | null; source: SourceRef; similarity: number }
  | { kind: "reference"; row: number; similarity: number };
