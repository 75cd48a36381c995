import { BadRecordError } from "./bad-record.ts";
import { describe } from "./embedding.ts";

// fatal: bytes that are not UTF-8 are a broken record, not text with U+FFFD in it.
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** A JSON record value: one UTF-8 JSON object. */
export function parseJsonValue(value: Buffer): Record<string, unknown> {
  let text: string;
  try {
    text = utf8.decode(value);
  } catch {
    throw new BadRecordError(
      "RECORD_UNDECODABLE",
      `value (${value.byteLength} bytes) is not UTF-8 text, so not JSON`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new BadRecordError("RECORD_UNDECODABLE", `value is not JSON: ${(err as Error).message}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new BadRecordError("RECORD_UNDECODABLE", `value is JSON ${describe(parsed)}, not a JSON object`);
  }
  return parsed as Record<string, unknown>;
}
