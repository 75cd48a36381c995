import type { ErrorCode } from "../common/errors.ts";

/**
 * A record's image or caption cannot be embedded. Thrown inside the embed stage only and turned into
 * the record's `failure`; a separate class from ClipsieveError so that a model failure, which must fail
 * the whole window, is never mistaken for one bad record.
 */
export class EmbedRecordError extends Error {
  readonly code: ErrorCode;
  /** Whether another try may succeed (a timeout, a 503); only the fetcher reads it. */
  readonly retryable: boolean;
  constructor(code: ErrorCode, message: string, retryable = false) {
    super(message);
    this.name = "EmbedRecordError";
    this.code = code;
    this.retryable = retryable;
  }
}
