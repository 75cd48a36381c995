/**
 * Kafka plumbing shared by the data-lake commands (export, load, diff, dump, calibrate): one client
 * factory whose warnings go to the process logger. The `--brokers` list is parsed by `parseBrokers`
 * (src/cli/flags.ts).
 */
import type { Logger } from "../common/logger.ts";
import { createKafkaClient, type KafkaAccess, type KafkaClient } from "../kafka/index.ts";

export function createLakeKafka(
  brokers: string[],
  clientId: string,
  logger: Logger,
  access?: Pick<KafkaAccess, "adapter" | "security">,
): KafkaClient {
  return createKafkaClient({ brokers, clientId, logger, ...access });
}
