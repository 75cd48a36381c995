import { Kafka, logLevel } from "kafkajs";
import type { Logger } from "../common/logger.ts";

/**
 * The one way clipsieve makes a kafkajs client: its warnings and errors go to the process's structured
 * logger (kafkajs's own logger would print unstructured lines to stdout), lower levels are dropped.
 */
export function createKafkaClient(brokers: string[], clientId: string, logger: Logger): Kafka {
  return new Kafka({
    clientId,
    brokers,
    logLevel: logLevel.WARN,
    logCreator:
      () =>
      ({ level, log }) => {
        const { message, ...extra } = log;
        if (level <= logLevel.ERROR) logger.error(extra, `kafkajs: ${message}`);
        else logger.warn(extra, `kafkajs: ${message}`);
      },
  });
}
