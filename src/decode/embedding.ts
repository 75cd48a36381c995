import { checkRow } from "../score/normalise.ts";
import { BadRecordError } from "./bad-record.ts";
import { EMBEDDING_DTYPES, type EmbeddingDtype, floatsFromBytes } from "./float-bytes.ts";

/**
 * An embedding field's value as either format carries it: a list of numbers (JSON array, Avro
 * array<float>), raw little-endian bytes (Avro `bytes`), or those bytes as a base64 string (JSON).
 */
export function embeddingFromValue(value: unknown, dtype: EmbeddingDtype, field: string): Float32Array {
  if (Array.isArray(value)) {
    const out = new Float32Array(value.length);
    for (let i = 0; i < value.length; i++) {
      const v: unknown = value[i];
      if (typeof v !== "number") {
        throw new BadRecordError("RECORD_UNDECODABLE", `${field}[${i}] is ${describe(v)}, not a number`);
      }
      out[i] = v;
    }
    return out;
  }
  if (value instanceof Uint8Array) return floatsFromBytes(value, dtype, field);
  if (typeof value === "string") return floatsFromBytes(decodeBase64(value, field), dtype, field);
  throw new BadRecordError(
    "RECORD_UNDECODABLE",
    `${field} is ${describe(value)}; expected an array of numbers or base64 of little-endian ${dtype} bytes`,
  );
}

/**
 * Padded, standard-alphabet base64, decoded strictly. Buffer.from(s, "base64") alone skips characters
 * it does not know and also takes the URL-safe alphabet, which would turn a corrupted string into a
 * silently different vector: a string is taken only when its length is a multiple of 4, it has no
 * `-` or `_`, and the bytes decoded are exactly as many as its characters stand for (anything skipped
 * shortens them). Native scans, not a regular expression: this runs once per record on the hot path
 * (a regex over 4 KiB of base64 cost 75 µs a record, most of the decode stage).
 */
export function decodeBase64(s: string, field: string): Buffer {
  const n = s.length;
  const pad = n > 0 && s.charCodeAt(n - 1) === 61 ? (s.charCodeAt(n - 2) === 61 ? 2 : 1) : 0;
  const buf = n % 4 === 0 ? Buffer.from(s, "base64") : undefined;
  if (!buf || buf.length !== (n / 4) * 3 - pad || s.includes("-") || s.includes("_")) {
    throw new BadRecordError(
      "RECORD_UNDECODABLE",
      `${field} is a string but not padded standard base64 (${n} characters${n % 4 ? ", not a multiple of 4" : ""})`,
    );
  }
  return buf;
}

/** `embedding_dtype`: absent means FLOAT32, the dtype DataComp ships. */
export function dtypeFromValue(value: unknown): EmbeddingDtype {
  if (value === undefined || value === null) return "FLOAT32";
  if (typeof value === "string" && (EMBEDDING_DTYPES as readonly string[]).includes(value)) {
    return value as EmbeddingDtype;
  }
  throw new BadRecordError(
    "RECORD_UNDECODABLE",
    `embedding_dtype is ${describe(value)}; expected one of ${EMBEDDING_DTYPES.join(", ")}`,
  );
}

/**
 * Reject a vector that cannot be normalised, then L2-normalise it in place, with the scoring engine's
 * own check (src/score/normalise.ts), so that the decoder and the offline commands make the same unit
 * vectors from the same input.
 */
export function normaliseEmbedding(vec: Float32Array, field: string): void {
  const problem = checkRow(vec, 0, vec.length);
  if (!problem) return;
  // A JSON number such as 1e39 is finite but does not fit a float32, so it arrives as Infinity.
  const hint = problem.message.includes("Infinity") ? " (or a number too large for float32)" : "";
  throw new BadRecordError(problem.code, `${field}: ${problem.message}${hint}`);
}

/** A short description of a wrong value, for messages: its JSON type and, when small, the value. */
export function describe(v: unknown): string {
  if (v === null) return "null";
  if (v === undefined) return "absent";
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (v instanceof Uint8Array) return `${v.byteLength} bytes`;
  if (typeof v === "string")
    return v.length <= 40 ? `the string ${JSON.stringify(v)}` : `a string of ${v.length} characters`;
  if (typeof v === "object") return "an object";
  return `${typeof v} ${String(v)}`;
}
