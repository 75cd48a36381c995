/**
 * The source stage: the input topic, read by a member of the filter's consumer group. It commits
 * nothing itself (the sink commits offsets with the outputs), hands each fetched batch to the pipeline,
 * and waits while the pipeline has no room: that wait is the backpressure. How a client library does
 * this, rebalances included, is its adapter's business (src/kafka/kafkajs/group-consumer.ts).
 */
import type { GroupConsumer, GroupConsumerOptions, KafkaClient } from "../kafka/index.ts";

export interface KafkaSourceOptions extends GroupConsumerOptions {
  kafka: KafkaClient;
}

export type KafkaSource = GroupConsumer;

export function createKafkaSource({ kafka, ...opts }: KafkaSourceOptions): KafkaSource {
  return kafka.groupConsumer(opts);
}
