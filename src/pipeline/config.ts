/**
 * The `run` configuration: the one source of truth for every option of the streaming filter. Values
 * come from (lowest to highest precedence) the defaults below, a JSON config file (`--config`),
 * environment variables `CLIPSIEVE_<KEY_IN_UPPER_SNAKE_CASE>`, and command-line flags. The merged
 * result is validated once, at start, and an error names the key at fault and where it came from.
 */
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { z } from "zod";
import { ClipsieveError } from "../common/errors.ts";
import {
  DEFAULT_DEDUP_HORIZON,
  DEFAULT_DEDUP_PROBES,
  DEFAULT_DEDUP_THRESHOLD,
  DEFAULT_REFERENCE_THRESHOLD,
} from "../dedup/dedup.ts";
import {
  BROKER_PATTERN,
  KAFKA_ADAPTERS,
  SECURITY_KEYS,
  securitySchemaShape,
  splitBrokerList,
} from "../kafka/index.ts";
import { DEFAULT_WARMUP_MODE, DEFAULT_WARMUP_RECORDS, WARMUP_MODES } from "../policy/options.ts";
import { SCORE_NAMES, scoreNeedsTarget } from "../score/registry.ts";
import { NORMALISERS } from "../score/types.ts";
import {
  OUTPUT_TOPICS,
  type OutputTopics,
  outputTopicSchema,
  outputTopicsOf,
  topicName as topic,
} from "../sink/topics.ts";

const positiveInt = z.coerce.number().int().positive();

export const runConfigSchema = z
  .object({
    brokers: z
      .union([z.string(), z.array(z.string())])
      .transform(splitBrokerList)
      .pipe(z.array(z.string().regex(BROKER_PATTERN, "host:port")).min(1))
      .describe("Kafka bootstrap brokers, comma-separated host:port"),
    group: z
      .string()
      .min(1)
      .describe("Consumer group id (also names the transactional ids and the policy state)"),
    input: topic.describe("Input topic of image-text records"),
    ...(outputTopicSchema() as {
      accepted: typeof topic;
      rejected: typeof topic;
      deadLetter: typeof topic;
      scores: typeof topic;
      windowsTopic: z.ZodOptional<typeof topic>;
    }),
    stateTopic: topic
      .optional()
      .describe("Compacted topic holding the policy state (default: <group>-policy-state)"),
    kafkaClient: z
      .enum(KAFKA_ADAPTERS)
      .default(KAFKA_ADAPTERS[0])
      .describe("Kafka client library: librdkafka, or kafkajs (pure JavaScript fallback)"),
    // TLS, SASL and Schema Registry credentials: the one security block (src/kafka/security.ts).
    ...securitySchemaShape,
    format: z.enum(["json", "avro"]).default("json").describe("Input value format"),
    schemaRegistry: z.url().optional().describe("Confluent Schema Registry URL (required for avro)"),
    windowSize: positiveInt.default(4096).describe("Records per window"),
    lingerMs: z.coerce
      .number()
      .int()
      .min(1)
      .default(2000)
      .describe("Cut a window this long after its first record"),
    bankSize: z.coerce.number().int().min(0).default(4096).describe("Negative bank rows (0 = none)"),
    draws: positiveInt.default(5).describe("K: seeded draws per window"),
    batchSize: positiveInt.default(8192).describe("b: contrastive batch size"),
    normaliser: z
      .enum(NORMALISERS)
      .default("draws")
      .describe(
        "s-CLIPLoss normaliser: draws (K random batches of b, the paper's) or pool (the whole window + bank, scaled to b; closer to an offline selection when the pool is larger than b)",
      ),
    tau: z.coerce
      .number()
      .positive()
      .default(0.01)
      .describe("Temperature (0.01 = 1 / OpenAI CLIP's logit scale)"),
    seed: z.coerce.number().int().min(0).default(0).describe("Base seed of the draws"),
    dim: positiveInt.optional().describe("Embedding dimension D (default: the target set's, else 768)"),
    model: z.string().optional().describe("Teacher model records must name (default: the target set's)"),
    target: z.string().optional().describe("Target-set artifact (or .npy/.npz of target image embeddings)"),
    targetProbes: positiveInt
      .optional()
      .describe(
        "Clusters of an indexed target set a record's NormSim_inf visits (default: the artifact's; its cluster count or more: exact)",
      ),
    device: z.enum(["cpu", "cuda", "webgpu"]).default("cpu").describe("onnxruntime execution provider"),
    threads: positiveInt
      .optional()
      .describe(
        "onnxruntime intra-op threads (default: the machine's cores; set it to a container's CPU limit)",
      ),
    keep: z
      .string()
      .optional()
      .describe(
        `Stage 1: keep the top fraction of the stream by a score, <score>=<fraction> (${SCORE_NAMES.join(", ")}; ${SCORE_NAMES.filter(scoreNeedsTarget).join(", ")} need --target)`,
      ),
    thenKeep: z
      .string()
      .optional()
      .describe(
        "Stage 2: of those, keep a top fraction of the FULL stream by another score, <score>=<fraction>",
      ),
    threshold: z
      .union([z.string(), z.array(z.string())])
      .transform((v) => (Array.isArray(v) ? v : [v]))
      .optional()
      .describe("A fixed threshold <score>>=<value> (repeatable; all must pass)"),
    warmup: z.coerce
      .number()
      .int()
      .min(0)
      .optional()
      .describe(`Records before the quantile sketch is trusted (default ${DEFAULT_WARMUP_RECORDS})`),
    warmupMode: z
      .enum(WARMUP_MODES)
      .optional()
      .describe(`What the quantile rules do during warm-up (default ${DEFAULT_WARMUP_MODE}; docs/policy.md)`),
    scoreAll: z
      .union([z.boolean(), z.enum(["true", "false"]).transform((v) => v === "true")])
      .default(false)
      .describe(
        "Compute every score for every record; by default NormSim_inf as the --then score is computed only for the records that pass --keep",
      ),
    dedup: z
      .union([z.boolean(), z.enum(["true", "false"]).transform((v) => v === "true")])
      .default(false)
      .describe(
        "Reject an accepted record whose image is within --dedup-threshold of one accepted earlier in its input partition (near_duplicate)",
      ),
    dedupThreshold: z.coerce
      .number()
      .gt(0)
      .max(1)
      .default(DEFAULT_DEDUP_THRESHOLD)
      .describe("Cosine similarity at or above which a record copies an earlier accepted one"),
    dedupHorizon: positiveInt
      .default(DEFAULT_DEDUP_HORIZON)
      .describe(
        "Accepted records per input partition a record is compared with (memory: about 2 D bytes each)",
      ),
    dedupProbes: positiveInt
      .default(DEFAULT_DEDUP_PROBES)
      .describe("Clusters of each indexed history segment (and reference set) a record visits"),
    dedupHistoryTopic: topic
      .optional()
      .describe("Compacted topic holding the dedup history (default: <scores>-dedup-history)"),
    reference: z
      .string()
      .optional()
      .describe(
        "Reference-set artifact (e.g. evaluation images, from `target build`): an accepted record within --reference-threshold of a row is rejected (near_reference)",
      ),
    referenceThreshold: z.coerce
      .number()
      .gt(0)
      .max(1)
      .default(DEFAULT_REFERENCE_THRESHOLD)
      .describe("Cosine similarity at or above which a record copies a reference row"),
    policyFile: z.string().optional().describe("Start the policy from this state file (from `calibrate`)"),
    delivery: z
      .enum(["exactly-once", "at-least-once"])
      .default("exactly-once")
      .describe("Delivery guarantee"),
    instanceId: z
      .string()
      .min(1)
      .default(hostname())
      .describe("Stable id of this instance (transactional id suffix)"),
    transactionTimeoutMs: positiveInt.default(30000).describe("Kafka transaction timeout"),
    sessionTimeoutMs: z.coerce
      .number()
      .int()
      .min(6000)
      .default(30000)
      .describe("Consumer group session timeout: how soon a dead instance's partitions move to the others"),
    maxQueuedWindows: positiveInt
      .default(2)
      .describe("Windows cut but not yet delivered before fetching pauses"),
    metricsPort: z.coerce
      .number()
      .int()
      .min(0)
      .max(65535)
      .optional()
      .describe("Prometheus /metrics and /healthz port"),
    // embed stage (docs/embed.md): only with modelDir
    modelDir: z
      .string()
      .min(1)
      .optional()
      .describe("CLIP model folder: compute the embeddings records lack from their image and caption"),
    embedBatchSize: positiveInt.optional().describe("Images (captions) per encoder run (default 32 / 64)"),
    fetchConnectTimeoutMs: positiveInt.optional().describe("Image URL connect timeout (default 5000)"),
    fetchTimeoutMs: positiveInt
      .optional()
      .describe("Image URL timeout per try, body included (default 15000)"),
    fetchDeadlineMs: positiveInt
      .optional()
      .describe("Give up on a record's image this long after its window asked (default 60000)"),
    fetchRetries: z.coerce
      .number()
      .int()
      .min(0)
      .optional()
      .describe("Retries of a failed image fetch (default 2)"),
    fetchConcurrencyPerHost: positiveInt.optional().describe("Image fetches in flight per host (default 4)"),
    maxImageBytes: positiveInt.optional().describe("Largest image accepted, bytes (default 16777216)"),
    fetchAllowPrivateAddresses: z
      .union([z.boolean(), z.enum(["true", "false"]).transform((v) => v === "true")])
      .optional()
      .describe("Fetch images from private and loopback addresses (default false)"),
    teacherCheckRate: z.coerce
      .number()
      .min(0)
      .max(1)
      .optional()
      .describe(
        "Fraction of records with embeddings whose caption is re-encoded to check the teacher (default 0.01)",
      ),
  })
  .strict();

export type RunConfigInput = z.input<typeof runConfigSchema>;
export type RunConfig = z.output<typeof runConfigSchema> &
  OutputTopics & { stateTopic: string; dedupHistoryTopic: string };

export type RunConfigKey = keyof typeof runConfigSchema.shape;
export const RUN_CONFIG_KEYS = Object.keys(runConfigSchema.shape) as RunConfigKey[];

/** How a command reaches Kafka and the Schema Registry: the client library and the security block. */
export const KAFKA_ACCESS_KEYS = ["kafkaClient", ...SECURITY_KEYS] as const satisfies readonly RunConfigKey[];

/** The keys that make the policy: `--keep`, `--then`, `--threshold`, `--warmup`, `--warmup-mode`. */
export const POLICY_KEYS = [
  "keep",
  "thenKeep",
  "threshold",
  "warmup",
  "warmupMode",
] as const satisfies readonly RunConfigKey[];

/** The keys of the dedup step (`--dedup`, `--reference`): the filter's, and `fidelity --input`'s. */
export const DEDUP_KEYS = [
  "dedup",
  "dedupThreshold",
  "dedupHorizon",
  "dedupProbes",
  "reference",
  "referenceThreshold",
] as const satisfies readonly RunConfigKey[];

/** Keys only `run` takes: `replay` names its group and versioned output topics itself. */
export const RUN_ONLY_KEYS: readonly RunConfigKey[] = [
  "group",
  "input",
  ...OUTPUT_TOPICS.map((t) => t.key),
  "stateTopic",
  "dedupHistoryTopic",
  "instanceId",
];

/** `deadLetter` -> `dead-letter`; `thenKeep` -> `then` (a `then` key would make the config look like a promise). */
export function flagName(key: string): string {
  return key === "thenKeep" ? "then" : key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** `deadLetter` -> `CLIPSIEVE_DEAD_LETTER`. */
export function envVarName(key: string): string {
  return `CLIPSIEVE_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}

/** Read the options set by environment variables. */
export function configFromEnv(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key of RUN_CONFIG_KEYS) {
    const v = env[envVarName(key)];
    if (v !== undefined && v !== "") out[key] = v;
  }
  return out;
}

export function configFromFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new ClipsieveError("CONFIG_INVALID", `Cannot read config file ${path}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  try {
    const parsed = JSON.parse(text) as unknown;
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
      throw new Error("not a JSON object");
    return parsed as Record<string, unknown>;
  } catch (err) {
    throw new ClipsieveError(
      "CONFIG_INVALID",
      `Config file ${path} is not a JSON object: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
}

/**
 * Merge the layers and validate. `sources` maps each key to where its value came from, so the error
 * for a bad value says "--window-size" or "CLIPSIEVE_WINDOW_SIZE" or "config file x.json: windowSize".
 */
export interface ConfigLayers {
  file?: { path: string; values: Record<string, unknown> };
  env?: Record<string, string>;
  flags?: Record<string, unknown>;
}

/** Merge the layers (defaults < file < env < flags) and validate them against `schema`. */
function mergeAndValidate<S extends z.ZodType>(schema: S, layers: ConfigLayers): z.output<S> {
  const merged: Record<string, unknown> = {};
  const origin: Record<string, string> = {};
  if (layers.file) {
    for (const [k, v] of Object.entries(layers.file.values)) {
      merged[k] = v;
      origin[k] = `config file ${layers.file.path}: "${k}"`;
    }
  }
  for (const [k, v] of Object.entries(layers.env ?? {})) {
    merged[k] = v;
    origin[k] = `environment variable ${envVarName(k)}`;
  }
  for (const [k, v] of Object.entries(layers.flags ?? {})) {
    if (v === undefined) continue;
    merged[k] = v;
    origin[k] = `flag --${flagName(k)}`;
  }
  const result = schema.safeParse(merged);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => {
      const key = issue.code === "unrecognized_keys" ? issue.keys.join(", ") : String(issue.path[0] ?? "");
      const where = origin[key] ?? (key ? `"${key}"` : "config");
      return issue.code === "unrecognized_keys"
        ? `unknown option(s) ${issue.keys.map((k) => `"${k}"`).join(", ")} (${origin[issue.keys[0]] ?? "config"})`
        : `${where}: ${issue.message}`;
    });
    throw new ClipsieveError("CONFIG_INVALID", `Invalid configuration:\n  - ${problems.join("\n  - ")}`);
  }
  const cfg = result.data as { format?: string; schemaRegistry?: string };
  if (cfg.format === "avro" && !cfg.schemaRegistry) {
    throw new ClipsieveError(
      "CONFIG_INVALID",
      "Invalid configuration: format avro needs schemaRegistry (--schema-registry)",
    );
  }
  return result.data;
}

export function resolveRunConfig(layers: ConfigLayers): RunConfig {
  const cfg = mergeAndValidate(runConfigSchema, layers);
  return {
    ...cfg,
    ...outputTopicsOf(cfg),
    stateTopic: cfg.stateTopic ?? `${cfg.group}-policy-state`,
    dedupHistoryTopic: cfg.dedupHistoryTopic ?? `${cfg.scores}-dedup-history`,
  };
}

export type RunConfigValues = z.output<typeof runConfigSchema>;

/**
 * Some of `run`'s options, for another command that takes them with the same meaning (`calibrate`
 * scores and decides as `run` does): the same schema, defaults, environment variables and errors.
 * Environment variables for keys outside `keys` are ignored.
 */
export function resolveConfigSubset<K extends RunConfigKey>(
  keys: readonly K[],
  layers: ConfigLayers,
): Pick<RunConfigValues, K> {
  const mask = Object.fromEntries(keys.map((k) => [k, true])) as { [k in RunConfigKey]?: true };
  const env = Object.fromEntries(
    Object.entries(layers.env ?? {}).filter(([k]) => (keys as readonly string[]).includes(k)),
  );
  return mergeAndValidate(runConfigSchema.pick(mask), { ...layers, env }) as unknown as Pick<
    RunConfigValues,
    K
  >;
}
