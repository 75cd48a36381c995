import type { Logger } from "../common/logger.ts";
import type { DecodedRecord } from "../common/record.ts";
import type { Device } from "../score/types.ts";

export interface EmbedContext {
  logger?: Logger;
}

/** Where an embed call's time went, summed over the call (seconds), for the benchmark and debug logs. */
export interface EmbedTimings {
  /** Waiting for image bytes (fetch), per image, summed: overlaps with everything else. */
  fetchSeconds: number;
  /** Decoding and preprocessing, per image, summed: runs on libvips' threads, overlapped. */
  preprocessSeconds: number;
  tokenizeSeconds: number;
  imageEncoderSeconds: number;
  textEncoderSeconds: number;
  /** Wall time of the call. */
  totalSeconds: number;
  images: number;
  texts: number;
  failed: number;
}

export interface EmbedStage {
  /**
   * Fills `imageEmbedding` / `textEmbedding` (L2-normalised float32, length `dim`) of the records that
   * lack them, from their image (bytes or URL) and caption. A record that cannot be embedded gets
   * `failure` ({code, stage: "embed", message}); records that already failed are left alone. Never
   * throws for a bad record; throws ClipsieveError only when an encoder fails to run.
   */
  embed(records: DecodedRecord[]): Promise<EmbedTimings>;
  /** The teacher's name from clipsieve.json. */
  readonly model: string;
  /** D. */
  readonly dim: number;
  /** The execution provider in use after any fallback. */
  readonly provider: Device;
  close(): Promise<void>;
}
