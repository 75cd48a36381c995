import type { Kafka } from "kafkajs";
import type { TopicSpec } from "../port.ts";

/**
 * Create the topics that do not exist yet, and return once their metadata answers for every partition.
 *
 * kafkajs's own `waitForLeaders` retries only while a leader is missing; a KRaft broker that has just
 * started, or is busy, can also answer UNKNOWN_TOPIC_OR_PARTITION for a topic it created a moment ago.
 * Both are transient: retried here until `timeoutMs`. A topic another process created meanwhile is fine.
 */
export async function ensureTopics(kafka: Kafka, specs: TopicSpec[], timeoutMs = 30_000): Promise<void> {
  if (specs.length === 0) return;
  const admin = kafka.admin();
  await admin.connect();
  const deadline = Date.now() + timeoutMs;
  try {
    for (;;) {
      try {
        const existing = new Set(await admin.listTopics());
        const missing = specs.filter((s) => !existing.has(s.topic));
        if (missing.length > 0) {
          await admin
            .createTopics({
              waitForLeaders: false,
              topics: missing.map((s) => ({
                topic: s.topic,
                numPartitions: s.numPartitions ?? 1,
                configEntries: s.configEntries,
              })),
            })
            .catch((err: unknown) => {
              if ((err as { type?: string }).type !== "TOPIC_ALREADY_EXISTS") throw err;
            });
        }
        const { topics } = await admin.fetchTopicMetadata({ topics: specs.map((s) => s.topic) });
        const ready = topics.every(
          (t) => t.partitions.length > 0 && t.partitions.every((p) => p.leader >= 0),
        );
        if (ready) return;
      } catch (err) {
        if ((err as { retriable?: boolean }).retriable !== true || Date.now() > deadline) throw err;
      }
      if (Date.now() > deadline)
        throw new Error(`topics ${specs.map((s) => s.topic).join(", ")} did not become ready`);
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    await admin.disconnect();
  }
}
