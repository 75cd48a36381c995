/** Embed stage options and their defaults. Names carry their unit. */
import { ClipsieveError } from "../common/errors.ts";
import type { Device } from "../score/types.ts";

export interface EmbedOptions {
  /** The model folder (docs/embed.md, "The model folder"): encoders, tokenizer, preprocessing, clipsieve.json. */
  modelDir: string;
  /** onnxruntime execution provider; one that cannot load falls back to cpu with a warning. */
  device?: Device;
  /** onnxruntime intra-op threads per encoder. Default: os.availableParallelism(). */
  threads?: number;
  /** Most images in one run of the image encoder. */
  imageBatchSize?: number;
  /** Most captions in one run of the text encoder. */
  textBatchSize?: number;
  /** Images fetched, decoded and waiting for the encoder at once; bounds memory (3 x S x S float32 each). */
  maxPreparedImages?: number;
  /** Give up on a connection (DNS lookup + TCP + TLS) after this long; the try counts as a timeout. */
  fetchConnectTimeoutMs?: number;
  /** Give up on one HTTP try (connect, answer and whole body) after this long. */
  fetchTimeoutMs?: number;
  /**
   * Give up on a record's image this long after the window asked for it, whatever is left: the time
   * waiting for a slot on its host, every retry and every back-off. This is what bounds a window's
   * embed time when a host is slow or down. A fetch that only starts later (fetches start as the
   * encoders make room, `maxPreparedImages`) still gets one whole try of `fetchTimeoutMs`.
   */
  fetchDeadlineMs?: number;
  /** Retries of a fetch that timed out, lost its connection or got 408, 429 or a 5xx. */
  fetchRetries?: number;
  /** Base of the jittered exponential back-off between retries; a host that fails waits for all its fetches. */
  fetchRetryWaitMs?: number;
  /** Most fetches in flight at once, over all hosts. */
  fetchConcurrency?: number;
  /** Most fetches in flight at once to one host (host:port). */
  fetchConcurrencyPerHost?: number;
  /** Largest image body accepted, in bytes (from Content-Length, or counted as it arrives). */
  maxImageBytes?: number;
  /** Largest image accepted, in pixels (width x height), checked before decoding: decompression bombs. */
  maxImagePixels?: number;
  /** X-Robots-Tag directives that opt an image out (compared case-insensitively). */
  optOutDirectives?: string[];
  /** Sent as User-Agent; its first word is the token `X-Robots-Tag: <token>: noai` addresses. */
  userAgent?: string;
  /**
   * Fetch from loopback, private, link-local and other non-public addresses. Off by default: a URL in a
   * record must not reach the filter's own network (cloud metadata services, internal hosts).
   */
  fetchAllowPrivateAddresses?: boolean;
  /**
   * Fraction of records that carry a text embedding and a caption whose caption is encoded again and
   * compared with the given embedding: the check that precomputed embeddings come from this teacher.
   * Chosen by a hash of the record's uid, so a replay checks the same records. 0 turns it off.
   */
  teacherCheckRate?: number;
  /** A checked record whose given text embedding has a cosine below this with ours is dead-lettered. */
  teacherCheckMinCosine?: number;
}

export type ResolvedEmbedOptions = Required<Omit<EmbedOptions, "threads">> & { threads?: number };

export const EMBED_DEFAULTS = {
  device: "cpu",
  imageBatchSize: 32,
  textBatchSize: 64,
  maxPreparedImages: 96,
  fetchConnectTimeoutMs: 5_000,
  fetchTimeoutMs: 15_000,
  fetchDeadlineMs: 60_000,
  fetchRetries: 2,
  fetchRetryWaitMs: 500,
  fetchConcurrency: 64,
  fetchConcurrencyPerHost: 4,
  maxImageBytes: 16 * 1024 * 1024,
  maxImagePixels: 64 * 1024 * 1024,
  optOutDirectives: ["noai", "noimageai"],
  userAgent: "clipsieve/0.1 (+https://github.com/clipsieve/clipsieve)",
  fetchAllowPrivateAddresses: false,
  teacherCheckRate: 0.01,
  teacherCheckMinCosine: 0.9,
} as const satisfies Omit<ResolvedEmbedOptions, "modelDir" | "threads">;

const POSITIVE_INTEGERS = [
  "imageBatchSize",
  "textBatchSize",
  "maxPreparedImages",
  "fetchConnectTimeoutMs",
  "fetchTimeoutMs",
  "fetchDeadlineMs",
  "fetchConcurrency",
  "fetchConcurrencyPerHost",
  "maxImageBytes",
  "maxImagePixels",
] as const;

/** Fill in the defaults and check every option once, naming the option at fault. */
export function resolveEmbedOptions(options: EmbedOptions): ResolvedEmbedOptions {
  const defined = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
  const o = {
    ...EMBED_DEFAULTS,
    optOutDirectives: [...EMBED_DEFAULTS.optOutDirectives],
    ...defined,
  } as ResolvedEmbedOptions;
  const problems: string[] = [];
  if (typeof o.modelDir !== "string" || o.modelDir === "") problems.push("modelDir must name a folder");
  for (const key of POSITIVE_INTEGERS) {
    if (!(Number.isSafeInteger(o[key]) && o[key] > 0))
      problems.push(`${key} must be a positive integer, got ${o[key]}`);
  }
  for (const key of ["fetchRetries", "fetchRetryWaitMs"] as const) {
    if (!(Number.isSafeInteger(o[key]) && o[key] >= 0)) {
      problems.push(`${key} must be a non-negative integer, got ${o[key]}`);
    }
  }
  if (o.threads !== undefined && !(Number.isSafeInteger(o.threads) && o.threads > 0)) {
    problems.push(`threads must be a positive integer, got ${o.threads}`);
  }
  if (!(o.teacherCheckRate >= 0 && o.teacherCheckRate <= 1)) {
    problems.push(`teacherCheckRate must be between 0 and 1, got ${o.teacherCheckRate}`);
  }
  if (!(o.teacherCheckMinCosine >= -1 && o.teacherCheckMinCosine <= 1)) {
    problems.push(`teacherCheckMinCosine must be between -1 and 1, got ${o.teacherCheckMinCosine}`);
  }
  if (o.maxPreparedImages < o.imageBatchSize) {
    problems.push(
      `maxPreparedImages (${o.maxPreparedImages}) must be at least imageBatchSize (${o.imageBatchSize})`,
    );
  }
  if (!Array.isArray(o.optOutDirectives) || o.optOutDirectives.some((d) => typeof d !== "string")) {
    problems.push("optOutDirectives must be a list of strings");
  }
  if (problems.length > 0) {
    throw new ClipsieveError("CONFIG_INVALID", `Invalid embed options:\n  - ${problems.join("\n  - ")}`);
  }
  return o;
}
