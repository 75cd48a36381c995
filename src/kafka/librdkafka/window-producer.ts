/**
 * Delivery of a window's outputs to Kafka, on librdkafka.
 *
 * exactly-once: one transaction per window holds every output record, the policy state and the
 * consumer's next offsets, sent with the consumer's group metadata (KIP-447): the broker refuses the
 * offsets of a member that is no longer in the group's current generation, so a zombie's late commit
 * is fenced by the protocol, and the next owner of a partition reads stable offsets (it waits for a
 * transaction still open on them). No membership check of clipsieve's own is needed.
 * at-least-once: an idempotent producer sends, and the offsets are committed once every record was
 * acknowledged.
 *
 * A broker outage is ridden out: librdkafka keeps the records queued and reconnects; a commit that
 * timed out is retried (the same commit, as librdkafka asks); one the broker aborted meanwhile (it
 * outlived the transaction timeout) fails the window, which the pipeline delivers again in a new
 * transaction. The commit and abort calls get timeouts of their own (the transaction timeout), not
 * the 5 s the KafkaJS-style layer fixes.
 */
import { ClipsieveError } from "../../common/errors.ts";
import { kafkaErrorKind } from "../errors.ts";
import { holdWindowTransactionForTests } from "../fault.ts";
import type { WindowDelivery, WindowProducer, WindowProducerOptions } from "../port.ts";
import { type LibrdkafkaConsumerInternals, librdkafkaConsumerInternals } from "./group-consumer.ts";
import {
  type AdapterContext,
  baseConfig,
  CODES,
  call,
  connectInSteps,
  disconnectProducer,
  errorCode,
  type LibrdkafkaError,
  type RdKafka,
  rdkafka,
  toHeaderList,
  unreachableError,
  untilSecurityFails,
  wireEvents,
} from "./native.ts";

/** Settings of a producer that writes whole windows: large batches, a queue that holds a window. */
export function producerConfig(ctx: AdapterContext, role: string): Record<string, unknown> {
  return {
    ...baseConfig(ctx, role),
    "enable.idempotence": true,
    acks: "all",
    "linger.ms": 5,
    "batch.size": 1_000_000,
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 2_097_151,
    "message.send.max.retries": 2_147_483_647,
  };
}

/** Queue records, polling for room when librdkafka's queue is full. */
export async function produceAll(
  producer: RdKafka.Producer,
  topic: string,
  records: readonly {
    key?: Buffer | string | null;
    value: Buffer | string | null;
    headers?: Record<string, Buffer | string>;
    partition?: number;
  }[],
): Promise<void> {
  for (const r of records) {
    const value = typeof r.value === "string" ? Buffer.from(r.value) : r.value;
    for (;;) {
      try {
        producer.produce(
          topic,
          r.partition ?? null,
          value,
          r.key ?? null,
          null,
          undefined,
          toHeaderList(r.headers),
        );
        break;
      } catch (err) {
        if (errorCode(err) !== CODES.QUEUE_FULL) throw err;
        producer.poll();
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    }
  }
}

/** The window's next offsets in librdkafka's shape. */
function partitionOffsets(window: WindowDelivery): RdKafka.TopicPartitionOffset[] {
  return [...window.offsets].flatMap(([topic, parts]) =>
    [...parts].map(([partition, offset]) => ({ topic, partition, offset: Number(offset) })),
  );
}

export function createLibrdkafkaWindowProducer(
  ctx: AdapterContext,
  opts: WindowProducerOptions,
): WindowProducer {
  const exactlyOnce = opts.delivery === "exactly-once";
  const timeoutMs = Math.max(10_000, opts.transactionTimeoutMs);
  let deliveryErrors: LibrdkafkaError[] = [];
  let fatal: LibrdkafkaError | undefined;

  const makeProducer = (): RdKafka.Producer => {
    const { Producer } = rdkafka();
    const p = new Producer({
      ...producerConfig(ctx, "producer"),
      ...(exactlyOnce
        ? { "transactional.id": opts.transactionalId, "transaction.timeout.ms": opts.transactionTimeoutMs }
        : { dr_cb: true }),
    });
    wireEvents(p, ctx, (err) => {
      fatal = err;
    });
    if (!exactlyOnce) {
      p.on("delivery-report", (err) => {
        if (err) deliveryErrors.push(err as unknown as LibrdkafkaError);
      });
    }
    return p;
  };
  let producer = makeProducer();

  /**
   * The native connect or init in flight. A disconnect waits for it, for as long as its timeout,
   * even after the brokers refused the credentials and the caller stopped waiting.
   */
  let inFlight: Promise<void> | undefined;
  const track = <T>(p: Promise<T>): Promise<T> => {
    const settled = p.then(
      () => undefined,
      () => undefined,
    );
    inFlight = settled;
    void settled.then(() => {
      if (inFlight === settled) inFlight = undefined;
    });
    return p;
  };
  const connect = async (): Promise<void> => {
    fatal = undefined;
    await connectOnce();
  };
  const connectOnce = async (): Promise<void> => {
    try {
      await connectInSteps(
        ctx,
        (ms) => track(call((cb) => producer.connect({ timeout: ms }, cb as never))),
        timeoutMs,
      );
      producer.setPollInterval(50);
      // Fences (and aborts the open transaction of) an earlier incarnation of this instance.
      if (exactlyOnce)
        await untilSecurityFails(ctx, track(call((cb) => producer.initTransactions(timeoutMs, cb))));
    } catch (err) {
      if (errorCode(err) === CODES.TIMED_OUT || errorCode(err) === CODES.TRANSPORT)
        throw unreachableError(ctx, `transactional producer ${opts.transactionalId}`, timeoutMs, err);
      throw err;
    }
  };

  const reinitialise = async (): Promise<void> => {
    await disconnectProducer(producer);
    producer = makeProducer();
    await connect();
  };

  /** Commit, retrying a commit that timed out or failed retriably (librdkafka's contract). */
  const commit = async (): Promise<void> => {
    for (let attempt = 0; ; attempt++) {
      try {
        await call((cb) => producer.commitTransaction(timeoutMs, cb));
        return;
      } catch (err) {
        const e = err as LibrdkafkaError;
        if (!e.isRetriable || e.isTxnRequiresAbort || e.isFatal) throw err;
        opts.logger.warn({ attempt, code: e.code }, `window commit not answered (${e.message}); retrying it`);
        await new Promise((r) => setTimeout(r, Math.min(5_000, 250 * 2 ** attempt)));
      }
    }
  };

  const deliverExactlyOnce = async (
    window: WindowDelivery,
    member: LibrdkafkaConsumerInternals,
  ): Promise<void> => {
    const { consumer, membershipLost, generation } = member;
    const refuseIfLost = () => {
      if (window.generation !== undefined && window.generation !== generation())
        throw new ClipsieveError(
          "GROUP_MEMBERSHIP_LOST",
          `the window's records were fetched in generation ${window.generation}, and the group is in ${generation()} now: the window is aborted and re-read by the partitions' owner`,
        );
      if (membershipLost())
        throw new ClipsieveError(
          "GROUP_MEMBERSHIP_LOST",
          "the consumer group dropped this member (its session timed out): the window is aborted and re-read by the partitions' owner",
        );
    };
    await call((cb) => producer.beginTransaction(cb));
    const startedAt = Date.now();
    try {
      for (const [topic, records] of window.messages) await produceAll(producer, topic, records);
      const offsets = partitionOffsets(window);
      await holdWindowTransactionForTests(opts.logger);
      // The group checks the consumer's generation here (KIP-447): a member dropped meanwhile (the
      // hold above, a long pause) gets its offsets refused. Once librdkafka has learnt of the drop it
      // sends no generation, which the broker does not check: hence the look before and after.
      refuseIfLost();
      await call((cb) => producer.sendOffsetsToTransaction(offsets, consumer, timeoutMs, cb));
      refuseIfLost();
      await commit();
    } catch (err) {
      const e = err as LibrdkafkaError;
      const code = errorCode(err);
      if (kafkaErrorKind(err) === "membership") {
        // The group moved on: refused by the check above, or by the broker (KIP-447: this member was
        // dropped, or a rebalance began). The window is aborted and re-read by the partitions' owner.
        await call((cb) => producer.abortTransaction(timeoutMs, cb)).catch(() => reinitialise());
        const lost =
          err instanceof ClipsieveError
            ? err
            : new ClipsieveError(
                "GROUP_MEMBERSHIP_LOST",
                `the consumer group refused the window's offsets (${e.message}): the window is aborted and re-read by the partitions' owner`,
                { cause: err },
              );
        opts.logger.info({ code: lost.code }, lost.message);
        throw lost;
      }
      const fenced = code === CODES.PRODUCER_FENCED || code === CODES.FENCED;
      const expired = Date.now() - startedAt >= opts.transactionTimeoutMs;
      // Fenced while the transaction was younger than its timeout: another producer took this
      // transactional id (the same instanceId twice). That one goes on; this one must stop.
      if (fenced && !expired) throw err;
      if (e.isFatal || fatal || fenced) {
        // The broker aborted the transaction (it outlived transaction.timeout.ms) and bumped the
        // epoch, which librdkafka reports as a fence: this producer takes no other transaction. A
        // new one with the same transactional id does; nothing of the window was committed, so it
        // is delivered again.
        opts.logger.warn(
          { transactionTimeoutMs: opts.transactionTimeoutMs, code, openMs: Date.now() - startedAt },
          expired
            ? `the broker expired the window's transaction (${e.message}); re-initialising the producer`
            : `the window's transaction failed fatally (${e.message}); re-initialising the producer`,
        );
        await reinitialise();
        throw new ClipsieveError(
          "KAFKA_TRANSACTION_EXPIRED",
          `the broker aborted the window's transaction (${e.message}); it is delivered again in a new one`,
          { cause: err },
        );
      }
      opts.logger.warn({ code }, `window delivery failed (${e.message}); aborting its transaction`);
      await call((cb) => producer.abortTransaction(timeoutMs, cb)).catch((abortErr: unknown) => {
        opts.logger.warn({ err: abortErr }, "abort failed; re-initialising the producer");
        return reinitialise();
      });
      throw err;
    }
  };

  const deliverAtLeastOnce = async (
    window: WindowDelivery,
    consumer: RdKafka.KafkaConsumer,
  ): Promise<void> => {
    deliveryErrors = [];
    for (const [topic, records] of window.messages) await produceAll(producer, topic, records);
    await call((cb) => producer.flush(timeoutMs, cb));
    const failed = deliveryErrors[0];
    if (failed) throw failed;
    consumer.commitSync(partitionOffsets(window));
  };

  return {
    connect,
    async deliver(window, groupConsumer) {
      const member = librdkafkaConsumerInternals(groupConsumer);
      if (exactlyOnce) await deliverExactlyOnce(window, member);
      else await deliverAtLeastOnce(window, member.consumer);
    },
    // commitTransaction returns once the coordinator wrote the commit; the next owner's offset fetch
    // waits for stable offsets (KIP-447). Nothing is left to wait for.
    async settle() {},
    async close() {
      // A connect the brokers refused is still waiting out its timeout in librdkafka: disconnect
      // once it ends, without holding the caller (a failed start exits at once).
      if (inFlight) {
        const p = producer;
        void inFlight.then(() => disconnectProducer(p));
        return;
      }
      await disconnectProducer(producer);
    },
  };
}
