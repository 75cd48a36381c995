/**
 * The flags by which a command reaches Kafka and the Schema Registry: the client library
 * (`--kafka-client`) and the security block (TLS, SASL, registry credentials; src/kafka/security.ts).
 * Every command that talks to Kafka takes these same flags, made from the run configuration's schema,
 * with the same CLIPSIEVE_* variables; `run` and `replay` take them with the rest of their
 * configuration.
 */
import type { Command } from "commander";
import { type KafkaAccess, resolveKafkaAccess } from "../kafka/index.ts";
import { configFromEnv, KAFKA_ACCESS_KEYS, resolveConfigSubset } from "../pipeline/config.ts";
import { addConfigFlags } from "./config-flags.ts";

export function addKafkaAccessFlags(command: Command): Command {
  return addConfigFlags(command, KAFKA_ACCESS_KEYS, { configFile: false });
}

/** The client library and the security block, from the flags given and the CLIPSIEVE_* variables. */
export function kafkaAccessOf(opts: Record<string, unknown>): KafkaAccess {
  const flags = Object.fromEntries(KAFKA_ACCESS_KEYS.map((k) => [k, opts[k]]));
  return resolveKafkaAccess(resolveConfigSubset(KAFKA_ACCESS_KEYS, { env: configFromEnv(), flags }));
}
