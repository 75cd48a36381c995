import type { ErrorCode } from "../common/errors.ts";

/**
 * Thrown inside the decode stage only, and caught by the decoder, which turns it into the record's
 * `failure`. A separate class (not ClipsieveError) so that a registry outage, which is a
 * ClipsieveError and must fail the whole window, can never be mistaken for a bad record.
 */
export class BadRecordError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.name = "BadRecordError";
    this.code = code;
  }
}
