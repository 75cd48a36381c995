/**
 * The sink stage: a window's outputs, its policy state and the consumer offsets it completes, written
 * together (exactly-once: one Kafka transaction per window) or outputs first, then offsets
 * (at-least-once). How a client library does it is its adapter's business
 * (src/kafka/kafkajs/window-producer.ts).
 */
import type { KafkaClient, WindowDelivery, WindowProducer, WindowProducerOptions } from "../kafka/index.ts";

export type { WindowDelivery };

export interface KafkaSinkOptions extends WindowProducerOptions {
  kafka: KafkaClient;
}

export type KafkaSink = WindowProducer;

export function createKafkaSink({ kafka, ...opts }: KafkaSinkOptions): KafkaSink {
  return kafka.windowProducer(opts);
}
