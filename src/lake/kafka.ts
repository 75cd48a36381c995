/**
 * Kafka plumbing shared by the data-lake commands (export, load, diff, dump, calibrate): one client
 * factory whose warnings go to the process logger, and the `--brokers` list parser.
 */
import { ClipsieveError } from "../common/errors.ts";
import type { Logger } from "../common/logger.ts";
import { createKafkaClient, type KafkaClient } from "../kafka/index.ts";

export function parseBrokers(text: string | undefined, flag = "--brokers"): string[] {
  const brokers = (text ?? process.env.CLIPSIEVE_BROKERS ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  if (brokers.length === 0) {
    throw new ClipsieveError(
      "CONFIG_INVALID",
      `${flag} is required to read or write Kafka (host:port,...; or set CLIPSIEVE_BROKERS, as for run)`,
    );
  }
  const bad = brokers.find((b) => !/^[^:\s]+:\d+$/.test(b));
  if (bad !== undefined) throw new ClipsieveError("CONFIG_INVALID", `${flag} ${bad}: expected host:port`);
  return brokers;
}

export function createLakeKafka(brokers: string[], clientId: string, logger: Logger): KafkaClient {
  return createKafkaClient({ brokers, clientId, logger });
}
