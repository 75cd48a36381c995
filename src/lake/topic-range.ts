/**
 * Reading a topic to the end offsets captured at start (bounded), or on and on (`follow`), with
 * `read_committed`: the data-lake commands' one way of consuming Kafka.
 *
 * A partition is finished when the consumer has fetched through its end offset, or when the group's
 * committed offset (at start, or committed since) is at or past it. Progress is taken from the offset
 * of the last entry of each fetched batch, transaction markers and aborted records included: a range
 * usually ends in a commit marker, an offset no record carries. The end is the high watermark, so a
 * transaction still open at start is waited for (at most the producer's transaction timeout) and the
 * range holds exactly what was committed or aborted before it.
 *
 * A group (re)join starts over from the committed offsets, as kafkajs does: the caller drops what it
 * held and not yet committed (`onRebalance`), and the progress marks are reset the same way.
 */
import { ClipsieveError } from "../common/errors.ts";
import type { KafkaClient, RangeConsumer, RangeConsumerOptions } from "../kafka/index.ts";

export type { RangeBatch, RangeConsumer } from "../kafka/index.ts";

export interface ConsumeRangeOptions extends RangeConsumerOptions {
  kafka: KafkaClient;
}

/** Low and high offsets of every partition now. */
export async function topicOffsets(
  kafka: KafkaClient,
  topic: string,
  groupId?: string,
): Promise<{ low: Map<number, bigint>; high: Map<number, bigint>; committed: Map<number, bigint> }> {
  const topics = await kafka.listTopics();
  if (!topics.includes(topic)) {
    throw new ClipsieveError("CONFIG_INVALID", `topic ${topic} does not exist on the brokers`);
  }
  const offsets = await kafka.endOffsets(topic);
  const low = new Map([...offsets].map(([p, o]) => [p, o.low]));
  const high = new Map([...offsets].map(([p, o]) => [p, o.high]));
  const committed =
    groupId === undefined ? new Map<number, bigint>() : await kafka.committedOffsets(groupId, topic);
  return { low, high, committed };
}

export async function consumeRange(opts: ConsumeRangeOptions): Promise<RangeConsumer> {
  const { kafka, ...rest } = opts;
  await topicOffsets(kafka, opts.topic); // a clear error for a topic that does not exist
  return kafka.rangeConsumer(rest);
}
