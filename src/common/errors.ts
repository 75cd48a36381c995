/**
 * The error catalogue. Every error clipsieve raises on purpose has a stable `code`; code (never message
 * text) decides behaviour, and `docs/errors.md` lists the same codes (a test keeps the two in step).
 *
 * `retryable` says whether repeating the same operation may succeed (a broker hiccup) or never will
 * (a malformed record, a bad flag).
 */
export const ERROR_CODES = {
  // configuration and command line
  CONFIG_INVALID: {
    retryable: false,
    summary: "A flag, config file key or environment variable is invalid.",
  },
  // local broker
  BROKER_JARS_FETCH_FAILED: { retryable: true, summary: "Maven could not fetch the Kafka broker's jars." },
  BROKER_START_FAILED: {
    retryable: true,
    summary: "The local Kafka broker did not start or did not answer in time.",
  },
  JAVA_NOT_FOUND: { retryable: false, summary: "No `java` (17+) on PATH for the local broker." },
  // input files and records
  INPUT_FILE_INVALID: { retryable: false, summary: "An input file cannot be read or has the wrong shape." },
  EMBEDDING_DIMENSION_MISMATCH: { retryable: false, summary: "An embedding has the wrong number of values." },
  EMBEDDING_NOT_FINITE: { retryable: false, summary: "An embedding holds NaN or Infinity." },
  EMBEDDING_ZERO: { retryable: false, summary: "An embedding is the zero vector and cannot be normalised." },
  TARGET_MISMATCH: {
    retryable: false,
    summary: "The target set's dimension or teacher differs from the records'.",
  },
  TARGET_SET_INVALID: {
    retryable: false,
    summary:
      "A target-set artifact fails its content hash, or its layout or version is not one clipsieve reads.",
  },
  // scoring engine
  SCORER_FAILED: { retryable: true, summary: "onnxruntime failed to run a scoring graph." },
  PROVIDER_UNAVAILABLE: { retryable: false, summary: "The requested execution provider cannot load." },
  DRAWS_INVALID: {
    retryable: false,
    summary: "A draw is not a partition of the pool's rows 0..n-1 into non-empty batches.",
  },
  // output files
  OUTPUT_FILE_FAILED: {
    retryable: false,
    summary:
      "An output file cannot be written: unsupported format, size or column type, or a file system error.",
  },
  // streaming policy
  POLICY_SCORE_INVALID: {
    retryable: false,
    summary: "A score the policy needs is missing or not a finite number.",
  },
  POLICY_STATE_INVALID: { retryable: false, summary: "A saved policy state or sketch is malformed." },
  POLICY_STATE_MISMATCH: {
    retryable: false,
    summary: "A saved policy state was made by a different policy than the one configured.",
  },
  // streaming filter: group membership (src/kafka/kafkajs/membership.ts)
  GROUP_MEMBERSHIP_LOST: {
    retryable: false,
    summary:
      "Right before a window's commit, the consumer group answered that it is rebalancing or no longer knows this member: the window is aborted and its records are re-read by their partition's owner.",
  },
  GROUP_MEMBERSHIP_UNCONFIRMED: {
    retryable: true,
    summary:
      "The group coordinator answered the heartbeat before a window's commit too late to be sure the partitions are still this member's: the window is delivered again in a new transaction.",
  },
  KAFKA_TRANSACTION_EXPIRED: {
    retryable: true,
    summary:
      "The broker aborted a window's transaction because it stayed open longer than --transaction-timeout-ms (a long pause, a slow broker): nothing of it was committed; the producer is re-initialised and the window is delivered again in a new transaction.",
  },
  KAFKA_UNREACHABLE: {
    retryable: true,
    summary:
      "No Kafka broker answered a call within its timeout: the message names the brokers tried, for how long, and what failed. A running filter rides an outage out instead (it reconnects, /healthz says so meanwhile); this error ends a command that could not start.",
  },
  KAFKA_AUTH_FAILED: {
    retryable: false,
    summary:
      "A broker (or the OAUTHBEARER token endpoint) refused clipsieve's credentials: a wrong password, an unknown user, a SASL mechanism the listener does not offer, a refused client secret. The message names the broker and the mechanism and user, never the secret. Nothing was read or written.",
  },
  KAFKA_TLS_FAILED: {
    retryable: false,
    summary:
      "The TLS handshake with a broker failed: its certificate is not signed by a CA in --ssl-ca-file (or the system's), does not name the host (--ssl-check-hostname), or the broker refused the client certificate. The message names the broker and what the client library reported.",
  },
  KAFKA_NOT_AUTHORIZED: {
    retryable: false,
    summary:
      "The cluster's ACLs refuse an operation: the message names the broker, the principal's operation and the resource (a topic to read or write, the consumer group, the transactional id, the cluster). The window in flight is aborted, so no output becomes visible and no offset moves; grant the ACL (docs/operations.md) and start again.",
  },
  KAFKA_CLIENT_UNAVAILABLE: {
    retryable: false,
    summary:
      "The librdkafka client (@confluentinc/kafka-javascript) is not built on this machine: build it (node scripts/build-librdkafka.ts) or choose the pure-JavaScript adapter with kafkaClient kafkajs (CLIPSIEVE_KAFKA_CLIENT=kafkajs).",
  },
  // record decoding (the decode stage marks the record; only the registry errors are thrown)
  RECORD_TOMBSTONE: {
    retryable: false,
    summary: "The record's value is null (a tombstone): nothing to score.",
  },
  RECORD_UNDECODABLE: {
    retryable: false,
    summary: "The record's value is not valid JSON/Avro, or a field has the wrong type or encoding.",
  },
  RECORD_MISSING_FIELD: {
    retryable: false,
    summary: "The record lacks a required field (uid, an embedding).",
  },
  SCHEMA_UNKNOWN: {
    retryable: false,
    summary: "An Avro record's framing is not Confluent's (magic byte 0) or its schema id is not registered.",
  },
  SCHEMA_REGISTRY_UNAVAILABLE: {
    retryable: true,
    summary: "The schema registry did not answer, or answered with a server error.",
  },
  SCHEMA_REGISTRY_REQUEST_FAILED: {
    retryable: false,
    summary: "The schema registry refused a request (authorisation, or a request it calls invalid).",
  },
  // embed stage (a bad image or caption marks the record; a model that cannot load or run is thrown)
  EMBED_MODEL_INVALID: {
    retryable: false,
    summary:
      "The --model-dir folder lacks a file the embed stage needs, or a file's content or the encoders' inputs and outputs are not what it reads.",
  },
  EMBED_FAILED: { retryable: true, summary: "onnxruntime failed to run a CLIP encoder on a batch." },
  IMAGE_MISSING: {
    retryable: false,
    summary: "The record has no image embedding, no image bytes and no image URL: nothing to embed.",
  },
  TEXT_MISSING: {
    retryable: false,
    summary: "The record has no text embedding and no caption: nothing to embed.",
  },
  IMAGE_FETCH_TIMEOUT: {
    retryable: true,
    summary: "The image URL did not connect, answer or finish in time (after the retries).",
  },
  IMAGE_FETCH_FAILED: {
    retryable: true,
    summary:
      "The image URL could not be fetched: an HTTP error status (named in the message), a refused or reset connection, a bad URL or a blocked address.",
  },
  IMAGE_TOO_LARGE: {
    retryable: false,
    summary: "The image is larger than maxImageBytes, or has more pixels than maxImagePixels.",
  },
  IMAGE_CONTENT_TYPE: {
    retryable: false,
    summary: "The image URL answered with a Content-Type that is not an image (text/html, say).",
  },
  IMAGE_OPTED_OUT: {
    retryable: false,
    summary: "The image URL answered with an X-Robots-Tag opt-out (noai, noimageai): the image is not used.",
  },
  IMAGE_CORRUPT: {
    retryable: false,
    summary: "The image bytes are not a JPEG, PNG, WebP, GIF or AVIF image that decodes.",
  },
  EMBEDDING_TEACHER_MISMATCH: {
    retryable: false,
    summary:
      "A record's precomputed embedding disagrees with the embed stage's own encoding of the same image or caption.",
  },
  // data-lake commands (export, load, diff, dump, calibrate)
  LAKE_RECORD_INVALID: {
    retryable: false,
    summary:
      "A record read by export, diff, dump or calibrate is not the kind the command expects (a score record, an accepted record with clipsieve-scores).",
  },
  LAKE_COMMIT_FAILED: {
    retryable: true,
    summary:
      "export wrote its files but could not commit the consumer offsets; running it again rewrites those records under the same file names.",
  },
} as const satisfies Record<string, { retryable: boolean; summary: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export class ClipsieveError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ClipsieveError";
    this.code = code;
    this.retryable = ERROR_CODES[code].retryable;
  }
}

export function isClipsieveError(err: unknown, code?: ErrorCode): err is ClipsieveError {
  return err instanceof ClipsieveError && (code === undefined || err.code === code);
}
