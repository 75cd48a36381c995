/**
 * The one door to Kafka. Every stage, command and benchmark gets its client here and talks to it
 * through the port's types (port.ts); only the adapter folders import a client library.
 */
import { ClipsieveError } from "../common/errors.ts";
import { guardSecurityErrors } from "./guard.ts";
import { createKafkajsClient } from "./kafkajs/client.ts";
import { createLibrdkafkaClient } from "./librdkafka/client.ts";
import { KAFKA_ADAPTERS, type KafkaAdapterName, type KafkaClient, type KafkaClientOptions } from "./port.ts";

export { BROKER_PATTERN, parseBrokers, splitBrokerList } from "./brokers.ts";
export { type KafkaErrorKind, kafkaErrorKind } from "./errors.ts";
export * from "./port.ts";
export {
  describeSecurity,
  type KafkaAccess,
  type KafkaSecurity,
  resolveKafkaAccess,
  resolveSchemaRegistrySecurity,
  resolveSecurity,
  SASL_MECHANISMS,
  type SchemaRegistrySecurity,
  SECRET_ENV,
  SECURITY_KEYS,
  SECURITY_PROTOCOLS,
  type SecurityKey,
  type SecurityValues,
  securitySchemaShape,
} from "./security.ts";

/** The adapter a client gets when none is named: `CLIPSIEVE_KAFKA_CLIENT`, else librdkafka. */
export function defaultKafkaAdapter(env: NodeJS.ProcessEnv = process.env): KafkaAdapterName {
  return (env.CLIPSIEVE_KAFKA_CLIENT || KAFKA_ADAPTERS[0]) as KafkaAdapterName;
}

export function createKafkaClient(opts: KafkaClientOptions): KafkaClient {
  const adapter = opts.adapter ?? defaultKafkaAdapter();
  switch (adapter) {
    case "librdkafka":
      return guardSecurityErrors(createLibrdkafkaClient(opts), opts.security);
    case "kafkajs":
      return guardSecurityErrors(createKafkajsClient(opts), opts.security);
    default:
      throw new ClipsieveError(
        "CONFIG_INVALID",
        `kafkaClient ${JSON.stringify(adapter)}: expected one of ${KAFKA_ADAPTERS.join(", ")}`,
      );
  }
}
