/**
 * The filter's output topics, declared once. The run configuration's keys and flags (`--accepted`,
 * ...), replay's versioned `<prefix>.<suffix>` names, the topics the benchmarks and the demo create,
 * and the docs' list all come from this table; `buildWindowOutputs` (outputs.ts) fills them.
 */
import { z } from "zod";

export const OUTPUT_TOPICS = [
  {
    key: "accepted",
    suffix: "accepted",
    description: "Topic for accepted records (original bytes + score headers)",
  },
  {
    key: "rejected",
    suffix: "rejected",
    description: "Topic for rejected records (original bytes + score headers)",
  },
  {
    key: "deadLetter",
    suffix: "dead-letter",
    description: "Topic for records that could not be scored, with the error",
  },
  {
    key: "scores",
    suffix: "scores",
    description: "Topic with one compact score record per input record",
  },
  {
    key: "windowsTopic",
    suffix: "windows",
    description: "Topic with one manifest per window (default: <scores>-windows)",
    defaultFrom: (topics: { scores: string }) => `${topics.scores}-windows`,
  },
] as const;

export type OutputTopicKey = (typeof OUTPUT_TOPICS)[number]["key"];
/** Every output topic's name, by its configuration key. */
export type OutputTopics = Record<OutputTopicKey, string>;

export const topicName = z
  .string()
  .min(1)
  .max(249)
  .regex(/^[a-zA-Z0-9._-]+$/, "a Kafka topic name (letters, digits, . _ -)");

/** The run configuration's output-topic keys (those with a default are optional). */
export function outputTopicSchema(): Record<OutputTopicKey, z.ZodType<string | undefined>> {
  const shape = {} as Record<OutputTopicKey, z.ZodType<string | undefined>>;
  for (const t of OUTPUT_TOPICS) {
    shape[t.key] =
      "defaultFrom" in t ? topicName.optional().describe(t.description) : topicName.describe(t.description);
  }
  return shape;
}

/** The output topics of a configuration, defaults filled in. */
export function outputTopicsOf(
  values: Partial<Record<OutputTopicKey, string>> & { scores: string },
): OutputTopics {
  const out = {} as OutputTopics;
  for (const t of OUTPUT_TOPICS) {
    const given = values[t.key];
    out[t.key] = given ?? ("defaultFrom" in t ? t.defaultFrom(values) : "");
  }
  return out;
}

/** Versioned output topics `<prefix>.<suffix>` (replay, benchmarks, the demo). */
export function prefixedOutputTopics(prefix: string): OutputTopics {
  const out = {} as OutputTopics;
  for (const t of OUTPUT_TOPICS) out[t.key] = `${prefix}.${t.suffix}`;
  return out;
}

/** Every output topic's name, in declaration order. */
export function outputTopicNames(topics: OutputTopics): string[] {
  return OUTPUT_TOPICS.map((t) => topics[t.key]);
}
