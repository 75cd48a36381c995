/** Decode stage options. Names carry their unit. */
import { ClipsieveError } from "../common/errors.ts";
import type { SchemaRegistrySecurity } from "../kafka/index.ts";

/** How record values are encoded on the input topic (docs/record-format.md). */
export type RecordFormat = "json" | "avro";

export interface DecoderOptions {
  /** `json`: a UTF-8 JSON object. `avro`: Confluent-framed Avro, writer schema from the registry. */
  format: RecordFormat;
  /** Confluent Schema Registry base URL; required for `avro`. */
  schemaRegistryUrl?: string;
  /** Basic auth and a CA bundle for the registry (src/kafka/security.ts). */
  schemaRegistryAuth?: SchemaRegistrySecurity;
  /**
   * D: every embedding must have exactly this many values. Unset: only image against text is checked;
   * the decoder never learns D from the records, since a wrong first record would then set it.
   */
  expectedDim?: number;
  /** Teacher model the records must name; a record naming another one is dead-lettered. */
  expectedModel?: string;
  /**
   * Accept records without `image_embedding` and/or `text_embedding` (they stay undefined): the embed
   * stage computes them from `image_bytes` / `url` and `text`. Off: such a record is RECORD_MISSING_FIELD.
   */
  embeddingsOptional?: boolean;
  /** Give up on one registry request after this long (it then counts as a failed try). */
  schemaRegistryTimeoutMs?: number;
  /** Retries of a registry request that got no answer or a 408/429/5xx, before decode throws. */
  schemaRegistryMaxRetries?: number;
  /** Base of the jittered exponential wait between those retries. */
  schemaRegistryRetryWaitMs?: number;
}

export type ResolvedDecoderOptions = DecoderOptions &
  Required<
    Pick<DecoderOptions, "schemaRegistryTimeoutMs" | "schemaRegistryMaxRetries" | "schemaRegistryRetryWaitMs">
  >;

export const DECODER_DEFAULTS = {
  schemaRegistryTimeoutMs: 10_000,
  schemaRegistryMaxRetries: 3,
  schemaRegistryRetryWaitMs: 1000,
} as const;

/** Fill in the defaults and check every option once, naming the option at fault. */
export function resolveDecoderOptions(options: DecoderOptions): ResolvedDecoderOptions {
  const resolved: ResolvedDecoderOptions = {
    ...DECODER_DEFAULTS,
    ...stripUndefined(options),
    format: options.format,
  };
  const problems: string[] = [];
  if (resolved.format !== "json" && resolved.format !== "avro") {
    problems.push(`format must be "json" or "avro", got ${JSON.stringify(resolved.format)}`);
  }
  if (resolved.format === "avro" && !resolved.schemaRegistryUrl) {
    problems.push("format avro needs schemaRegistryUrl (the Confluent Schema Registry base URL)");
  }
  if (resolved.schemaRegistryUrl !== undefined && !isHttpUrl(resolved.schemaRegistryUrl)) {
    problems.push(
      `schemaRegistryUrl must be an http(s) URL, got ${JSON.stringify(resolved.schemaRegistryUrl)}`,
    );
  }
  if (
    resolved.expectedDim !== undefined &&
    !(Number.isInteger(resolved.expectedDim) && resolved.expectedDim > 0)
  ) {
    problems.push(`expectedDim must be a positive integer, got ${resolved.expectedDim}`);
  }
  if (resolved.expectedModel !== undefined && resolved.expectedModel === "") {
    problems.push("expectedModel must not be empty (leave it unset to accept any teacher)");
  }
  for (const key of [
    "schemaRegistryTimeoutMs",
    "schemaRegistryMaxRetries",
    "schemaRegistryRetryWaitMs",
  ] as const) {
    const v = resolved[key];
    if (!(Number.isInteger(v) && v >= 0)) problems.push(`${key} must be a non-negative integer, got ${v}`);
  }
  if (problems.length > 0) {
    throw new ClipsieveError("CONFIG_INVALID", `Invalid decoder options:\n  - ${problems.join("\n  - ")}`);
  }
  return resolved;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function isHttpUrl(s: string): boolean {
  try {
    const u = new URL(s);
    return u.protocol === "http:" || u.protocol === "https:";
  } catch {
    return false;
  }
}
