/**
 * Read a whole topic as it stands now (read_committed), then stop: for small topics clipsieve reads
 * at start-up (policy state, window manifests) and for commands that compare topics.
 *
 * "As it stands now": the high watermarks are captured first, and the read ends once every partition
 * was consumed up to them. Batches holding only transaction markers or aborted records never reach the
 * message handler, but kafkajs still reports their last offset (END_BATCH_PROCESS), which is what
 * moves the position past a trailing commit marker. An open transaction below the watermark delays
 * the end until it completes (or `timeoutMs`).
 */
import { randomUUID } from "node:crypto";
import type { Kafka, KafkaMessage } from "kafkajs";

export interface TopicMessage {
  partition: number;
  message: KafkaMessage;
}

export async function topicEndOffsets(
  kafka: Kafka,
  topic: string,
): Promise<Map<number, { low: bigint; high: bigint }>> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const offsets = await admin.fetchTopicOffsets(topic);
    return new Map(offsets.map((o) => [o.partition, { low: BigInt(o.low), high: BigInt(o.high) }]));
  } finally {
    await admin.disconnect();
  }
}

export async function readTopicToEnd(
  kafka: Kafka,
  topic: string,
  onMessage: (m: TopicMessage) => void,
  opts: { timeoutMs?: number } = {},
): Promise<{ complete: boolean }> {
  const ends = await topicEndOffsets(kafka, topic);
  const remaining = new Set([...ends].filter(([, o]) => o.high > o.low).map(([p]) => p));
  if (remaining.size === 0) return { complete: true };
  const consumer = kafka.consumer({ groupId: `clipsieve-reader-${randomUUID()}`, readUncommitted: false });
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    return await new Promise<{ complete: boolean }>((resolve, reject) => {
      const timer = setTimeout(() => resolve({ complete: false }), opts.timeoutMs ?? 60_000);
      consumer.on(consumer.events.END_BATCH_PROCESS, (e) => {
        const end = ends.get(e.payload.partition);
        if (end && BigInt(e.payload.lastOffset) + 1n >= end.high) remaining.delete(e.payload.partition);
        if (remaining.size === 0) {
          clearTimeout(timer);
          resolve({ complete: true });
        }
      });
      consumer
        .run({
          eachMessage: async ({ partition, message }) => {
            const end = ends.get(partition);
            if (end && BigInt(message.offset) < end.high) onMessage({ partition, message });
          },
        })
        .catch(reject);
    });
  } finally {
    await consumer.disconnect();
  }
}
