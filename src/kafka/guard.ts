/**
 * One reading of a secured cluster's refusals, for both adapters: every call of a `KafkaClient`
 * (and of the consumers and producers it makes) that fails because the cluster refused who we are
 * (SASL), would not be trusted (TLS) or refused what we asked (an ACL) fails with a one-line coded
 * error naming the brokers, the principal and, for an ACL, the resource: KAFKA_AUTH_FAILED,
 * KAFKA_TLS_FAILED, KAFKA_NOT_AUTHORIZED (docs/errors.md). The client's own error stays as `cause`.
 * Objects keep their identity (methods are wrapped in place), since adapters recognise their own.
 */
import { ClipsieveError, type ErrorCode } from "../common/errors.ts";
import { type SecurityFailure, securityFailureOf } from "./errors.ts";
import type { GroupConsumerOptions, KafkaClient, WindowProducerOptions } from "./port.ts";
import { describeSecurity, type KafkaSecurity } from "./security.ts";

/** What a call was about, to name the resource an ACL refused. */
interface CallSubject {
  topics?: readonly string[];
  group?: string;
  transactionalId?: string;
}

const RESOURCE_NAMES = {
  topic: (s: CallSubject) =>
    s.topics && s.topics.length > 0
      ? `topic ${s.topics.join(" or ")} (grant READ/WRITE and DESCRIBE)`
      : "a topic (grant READ/WRITE and DESCRIBE)",
  group: (s: CallSubject) =>
    s.group ? `consumer group ${s.group} (grant READ)` : "a consumer group (grant READ)",
  cluster: () => "the cluster (IDEMPOTENT_WRITE or CREATE)",
  transactionalId: (s: CallSubject) =>
    s.transactionalId
      ? `transactional id ${s.transactionalId} (grant WRITE and DESCRIBE)`
      : "a transactional id",
} as const;

export function securityError(
  failure: SecurityFailure,
  ctx: { brokers: readonly string[]; security?: KafkaSecurity },
  subject: CallSubject,
  cause: unknown,
): ClipsieveError {
  const who = describeSecurity(ctx.security);
  const brokers = ctx.brokers.join(", ");
  const codes: Record<SecurityFailure["kind"], ErrorCode> = {
    authentication: "KAFKA_AUTH_FAILED",
    tls: "KAFKA_TLS_FAILED",
    authorization: "KAFKA_NOT_AUTHORIZED",
  };
  const message =
    failure.kind === "authentication"
      ? `Kafka brokers ${brokers} refused the credentials (${who}): ${failure.detail}`
      : failure.kind === "tls"
        ? `the TLS handshake with Kafka brokers ${brokers} failed (${who}): ${failure.detail}`
        : `Kafka brokers ${brokers} refused ${who}: no ACL allows it on ${RESOURCE_NAMES[failure.resource ?? "topic"](subject)}: ${failure.detail}`;
  return new ClipsieveError(codes[failure.kind], message, { cause });
}

type AnyFn = (...args: unknown[]) => unknown;

/** Wrap `obj`'s methods in place so that their promises reject with coded security errors. */
function guardMethods<T extends object>(obj: T, convert: (err: unknown) => unknown, skip: string[] = []): T {
  for (const key of Object.keys(obj)) {
    if (skip.includes(key)) continue;
    const desc = Object.getOwnPropertyDescriptor(obj, key);
    if (!desc || typeof desc.value !== "function") continue;
    const fn = desc.value as AnyFn;
    (obj as Record<string, unknown>)[key] = (...args: unknown[]) => {
      const result = fn.apply(obj, args);
      return result instanceof Promise
        ? result.catch((err: unknown) => Promise.reject(convert(err)))
        : result;
    };
  }
  return obj;
}

/** The client, its refusals coded. */
export function guardSecurityErrors(client: KafkaClient, security: KafkaSecurity | undefined): KafkaClient {
  const ctx = { brokers: client.brokers, security };
  const converter = (subject: CallSubject) => (err: unknown) => {
    const failure = securityFailureOf(err);
    return failure ? securityError(failure, ctx, subject, err) : err;
  };
  const groupConsumer = client.groupConsumer.bind(client);
  const windowProducer = client.windowProducer.bind(client);
  const rangeConsumer = client.rangeConsumer.bind(client);
  const producer = client.producer.bind(client);
  const ensureTopics = client.ensureTopics.bind(client);
  const readTopicToEnd = client.readTopicToEnd.bind(client);
  const endOffsets = client.endOffsets.bind(client);
  guardMethods(client, converter({}), ["groupConsumer", "windowProducer", "rangeConsumer", "producer"]);
  Object.assign(client, {
    ensureTopics: (specs: Parameters<KafkaClient["ensureTopics"]>[0], timeoutMs?: number) =>
      ensureTopics(specs, timeoutMs).catch((err: unknown) =>
        Promise.reject(converter({ topics: specs.map((s) => s.topic) })(err)),
      ),
    readTopicToEnd: (...args: Parameters<KafkaClient["readTopicToEnd"]>) =>
      readTopicToEnd(...args).catch((err: unknown) => Promise.reject(converter({ topics: [args[0]] })(err))),
    endOffsets: (topic: string) =>
      endOffsets(topic).catch((err: unknown) => Promise.reject(converter({ topics: [topic] })(err))),
    producer() {
      const p = producer();
      const send = p.send.bind(p);
      guardMethods(p, converter({}), ["send"]);
      p.send = (topic, records) =>
        send(topic, records).catch((err: unknown) => Promise.reject(converter({ topics: [topic] })(err)));
      return p;
    },
    groupConsumer(opts: GroupConsumerOptions) {
      const convert = converter({ topics: [opts.topic], group: opts.groupId });
      const onCrash = opts.onCrash;
      const consumer = groupConsumer({
        ...opts,
        onCrash: onCrash ? (err: Error) => onCrash(convert(err) as Error) : undefined,
      });
      return guardMethods(consumer, convert);
    },
    windowProducer(opts: WindowProducerOptions) {
      const producer = windowProducer(opts);
      const deliver = producer.deliver.bind(producer);
      guardMethods(producer, converter({ group: opts.groupId, transactionalId: opts.transactionalId }), [
        "deliver",
      ]);
      producer.deliver = (window, consumer) =>
        deliver(window, consumer).catch((err: unknown) =>
          Promise.reject(
            converter({
              topics: [...window.messages.keys()],
              group: opts.groupId,
              transactionalId: opts.transactionalId,
            })(err),
          ),
        );
      return producer;
    },
    async rangeConsumer(opts: Parameters<KafkaClient["rangeConsumer"]>[0]) {
      const convert = converter({ topics: [opts.topic], group: opts.groupId });
      try {
        const range = guardMethods(await rangeConsumer(opts), convert);
        // `finished` is a promise property, not a method.
        const finished = range.finished.catch((err: unknown) => Promise.reject(convert(err)));
        finished.catch(() => {});
        Object.defineProperty(range, "finished", { value: finished });
        return range;
      } catch (err) {
        throw convert(err);
      }
    },
  });
  return client;
}
