/**
 * The librdkafka adapter, the default: the port (../port.ts) on `@confluentinc/kafka-javascript`'s
 * native API (librdkafka 2.x). Admin calls go through one AdminClient per call (topics, offsets,
 * groups); the filter's consumer and producer are in group-consumer.ts and window-producer.ts; bounded
 * reads in range-consumer.ts.
 */
import { randomUUID } from "node:crypto";
import type { KafkaClient, KafkaClientOptions, RecordProducer, TopicSpec } from "../port.ts";
import { createLibrdkafkaGroupConsumer } from "./group-consumer.ts";
import {
  type AdapterContext,
  baseConfig,
  CODES,
  call,
  connectInSteps,
  disconnectConsumer,
  disconnectProducer,
  errorCode,
  type LibrdkafkaError,
  type RdKafka,
  ReachabilityTracker,
  rdkafka,
  unreachableError,
  untilSecurityFails,
  wireEvents,
} from "./native.ts";
import { consumeLibrdkafkaRange, readTopicToEnd } from "./range-consumer.ts";
import { createLibrdkafkaWindowProducer, produceAll, producerConfig } from "./window-producer.ts";

const ADMIN_TIMEOUT_MS = 30_000;

/** A group coordinator loading, moving or not known yet: asked again, as the client would. */
const COORDINATOR_CODES = new Set<number>([
  CODES.COORDINATOR_LOAD_IN_PROGRESS,
  CODES.COORDINATOR_NOT_AVAILABLE,
  CODES.NOT_COORDINATOR,
  CODES.TIMED_OUT,
]);

async function whileCoordinatorMoves<T>(deadline: number, fn: () => Promise<T>): Promise<T> {
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      const code = errorCode(err);
      if (code === undefined || !COORDINATOR_CODES.has(code) || Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

export function createLibrdkafkaClient(opts: KafkaClientOptions): KafkaClient {
  const ctx: AdapterContext = {
    brokers: opts.brokers,
    clientId: opts.clientId,
    logger: opts.logger,
    reachability: new ReachabilityTracker(opts.brokers, opts.logger),
    security: opts.security,
  };

  const withAdmin = async <T>(what: string, fn: (admin: RdKafka.IAdminClient) => Promise<T>): Promise<T> => {
    const { AdminClient } = rdkafka();
    // Errors go to the reachability tracker, which ends the wait on refused credentials or handshakes.
    const admin = AdminClient.create(
      { ...baseConfig(ctx, "admin"), "statistics.interval.ms": 0 } as never,
      {
        "event.error": (err: LibrdkafkaError) => ctx.reachability.fromError(err),
        "event.log": (entry: { message: string }) => ctx.reachability.fromLog(entry.message),
      } as never,
    );
    // Reach the brokers first, in short steps: an admin request refused half-way would hold the
    // process for its whole timeout (see connectInSteps).
    try {
      await connectInSteps(
        ctx,
        (ms) => call((cb) => admin.listTopics({ timeout: ms }, cb as never)),
        ADMIN_TIMEOUT_MS,
      );
    } catch (err) {
      admin.disconnect();
      const code = errorCode(err);
      if (code === CODES.TIMED_OUT || code === CODES.TRANSPORT || code === CODES.ALL_BROKERS_DOWN)
        throw unreachableError(ctx, what, ADMIN_TIMEOUT_MS, err);
      throw err;
    }
    const op = fn(admin);
    // Disconnecting waits for an admin request in flight: after a refusal, leave that to its end.
    const settled = op.then(
      () => undefined,
      () => undefined,
    );
    try {
      return await untilSecurityFails(ctx, op);
    } catch (err) {
      const code = errorCode(err);
      if (code === CODES.TIMED_OUT || code === CODES.TRANSPORT || code === CODES.ALL_BROKERS_DOWN)
        throw unreachableError(ctx, what, ADMIN_TIMEOUT_MS, err);
      throw err;
    } finally {
      void settled.then(() => admin.disconnect());
    }
  };

  /**
   * A consumer of `groupId` that never joins it: the group's committed offsets are read and written
   * through it (offset fetch and commit). The admin client's offset listing is not used: in this
   * release it crashes the process (SIGSEGV) when the group coordinator answers with an error, as a
   * broker that is still loading does.
   */
  const withGroupConsumer = async <T>(
    groupId: string,
    fn: (c: RdKafka.KafkaConsumer) => Promise<T>,
  ): Promise<T> => {
    const { KafkaConsumer } = rdkafka();
    const consumer = new KafkaConsumer(
      {
        ...baseConfig(ctx, "offsets"),
        "group.id": groupId,
        "enable.auto.commit": false,
        "isolation.level": "read_committed",
        "statistics.interval.ms": 0,
      },
      {},
    );
    try {
      await connectInSteps(
        ctx,
        (ms) => call((cb) => consumer.connect({ timeout: ms }, cb as never)),
        ADMIN_TIMEOUT_MS,
      );
    } catch (err) {
      throw unreachableError(ctx, `offsets of group ${groupId}`, ADMIN_TIMEOUT_MS, err);
    }
    try {
      return await fn(consumer);
    } finally {
      await disconnectConsumer(consumer);
    }
  };

  /** A connected transactional producer, its id initialised (which fences an earlier one). */
  const transactionalProducer = async (
    role: string,
    transactionalId: string,
    timeoutMs: number,
  ): Promise<RdKafka.Producer> => {
    const { Producer } = rdkafka();
    const producer = new Producer({
      ...producerConfig(ctx, role),
      "transactional.id": transactionalId,
      "statistics.interval.ms": 0,
    });
    try {
      await connectInSteps(
        ctx,
        (ms) => call((cb) => producer.connect({ timeout: ms }, cb as never)),
        timeoutMs,
      );
      producer.setPollInterval(50);
      await untilSecurityFails(
        ctx,
        call((cb) => producer.initTransactions(timeoutMs, cb)),
      );
      return producer;
    } catch (err) {
      await disconnectProducer(producer);
      throw unreachableError(ctx, `transactional producer ${transactionalId}`, timeoutMs, err);
    }
  };

  const listOffsets = (topic: string, partitions: number[], spec: RdKafka.OffsetSpec) =>
    withAdmin(`offsets of ${topic}`, (admin) =>
      call<RdKafka.ListOffsetsResult[]>((cb) =>
        admin.listOffsets(
          partitions.map((partition) => ({ topic, partition, offset: spec })),
          { timeout: ADMIN_TIMEOUT_MS, isolationLevel: rdkafka().IsolationLevel.READ_UNCOMMITTED },
          cb,
        ),
      ),
    );

  const partitionsOf = (topic: string): Promise<number[]> =>
    withAdmin(`describing ${topic}`, async (admin) => {
      const [t] = await call<RdKafka.TopicDescription[]>((cb) =>
        admin.describeTopics([topic], { timeout: ADMIN_TIMEOUT_MS }, cb),
      );
      return (t?.partitions ?? []).map((p) => p.partition);
    });

  const endOffsets = async (topic: string) => {
    const partitions = await partitionsOf(topic);
    const { OffsetSpec } = rdkafka();
    const [lows, highs] = await Promise.all([
      listOffsets(topic, partitions, OffsetSpec.EARLIEST),
      listOffsets(topic, partitions, OffsetSpec.LATEST),
    ]);
    const out = new Map<number, { low: bigint; high: bigint }>();
    for (const p of partitions) {
      const low = lows.find((o) => o.partition === p)?.offset ?? 0;
      const high = highs.find((o) => o.partition === p)?.offset ?? 0;
      out.set(p, { low: BigInt(low), high: BigInt(high) });
    }
    return out;
  };

  /** A plain producer (idempotent, acks=all): load, simulate, tests. */
  const recordProducer = (): RecordProducer => {
    const { Producer } = rdkafka();
    const producer = new Producer({ ...producerConfig(ctx, "producer"), dr_cb: true });
    wireEvents(producer, ctx);
    let failures: LibrdkafkaError[] = [];
    producer.on("delivery-report", (err) => {
      if (err) failures.push(err as unknown as LibrdkafkaError);
    });
    return {
      async connect() {
        try {
          await connectInSteps(
            ctx,
            (ms) => call((cb) => producer.connect({ timeout: ms }, cb as never)),
            ADMIN_TIMEOUT_MS,
          );
        } catch (err) {
          throw unreachableError(ctx, "producer", ADMIN_TIMEOUT_MS, err);
        }
        producer.setPollInterval(20);
      },
      async send(topic, records) {
        failures = [];
        await produceAll(producer, topic, records);
        // The records are acknowledged (acks=all) when the flush returns; an outage is waited out.
        for (;;) {
          try {
            await call((cb) => producer.flush(ADMIN_TIMEOUT_MS, cb));
            break;
          } catch (err) {
            if (errorCode(err) !== CODES.TIMED_OUT) throw err;
            opts.logger?.warn({ topic }, "records not acknowledged yet; waiting for the brokers");
          }
        }
        // Delivery reports come with the poll after the flush.
        await new Promise((r) => setImmediate(r));
        if (failures[0]) throw failures[0];
      },
      disconnect: () => disconnectProducer(producer),
    };
  };

  const client: KafkaClient = {
    adapter: "librdkafka",
    brokers: opts.brokers,
    reachability: ctx.reachability,

    async ensureTopics(specs: TopicSpec[], timeoutMs = ADMIN_TIMEOUT_MS) {
      if (specs.length === 0) return;
      const deadline = Date.now() + timeoutMs;
      await withAdmin(`creating topics ${specs.map((s) => s.topic).join(", ")}`, async (admin) => {
        for (const s of specs) {
          await call((cb) =>
            admin.createTopic(
              {
                topic: s.topic,
                num_partitions: s.numPartitions ?? 1,
                replication_factor: -1,
                config: Object.fromEntries((s.configEntries ?? []).map((e) => [e.name, e.value])),
              },
              timeoutMs,
              cb,
            ),
          ).catch((err: unknown) => {
            if (errorCode(err) !== CODES.TOPIC_ALREADY_EXISTS) throw err;
          });
        }
        // A KRaft broker answers UNKNOWN_TOPIC_OR_PARTITION (or no leader) for a moment after creating.
        for (;;) {
          const described = await call<RdKafka.TopicDescription[]>((cb) =>
            admin.describeTopics(
              specs.map((s) => s.topic),
              { timeout: timeoutMs },
              cb,
            ),
          ).catch(() => undefined);
          const ready = described?.every(
            (t) => !t.error && t.partitions.length > 0 && t.partitions.every((p) => p.leader != null),
          );
          if (ready) return;
          if (Date.now() > deadline)
            throw new Error(`topics ${specs.map((s) => s.topic).join(", ")} did not become ready`);
          await new Promise((r) => setTimeout(r, 200));
        }
      });
    },
    listTopics: () =>
      withAdmin("listing topics", (admin) =>
        call<string[]>((cb) => admin.listTopics({ timeout: ADMIN_TIMEOUT_MS }, cb)),
      ),
    deleteTopics: (topics, timeoutMs = ADMIN_TIMEOUT_MS) =>
      withAdmin(`deleting topics ${topics.join(", ")}`, async (admin) => {
        for (const t of topics) await call((cb) => admin.deleteTopic(t, timeoutMs, cb));
        // The controller answers before every broker's metadata has dropped them: wait until the
        // topics are gone from the listing, as a caller that lists or re-creates them expects.
        const deadline = Date.now() + timeoutMs;
        for (;;) {
          const listed = new Set(await call<string[]>((cb) => admin.listTopics({ timeout: timeoutMs }, cb)));
          if (!topics.some((t) => listed.has(t)) || Date.now() > deadline) return;
          await new Promise((r) => setTimeout(r, 100));
        }
      }),
    endOffsets,
    async offsetsAtTime(topic, ms) {
      const ends = await endOffsets(topic);
      const { OffsetSpec } = rdkafka();
      const found = await listOffsets(topic, [...ends.keys()], new OffsetSpec(ms));
      const out = new Map<number, bigint>();
      for (const [p, r] of ends) {
        const o = found.find((f) => f.partition === p)?.offset;
        // -1: no record at or after that time; the partition's end.
        out.set(p, o === undefined || o < 0 ? r.high : BigInt(o));
      }
      return out;
    },
    async committedOffsets(groupId, topic) {
      const partitions = await partitionsOf(topic);
      return withGroupConsumer(groupId, async (consumer) => {
        const got = await whileCoordinatorMoves(Date.now() + ADMIN_TIMEOUT_MS, () =>
          call<RdKafka.TopicPartitionOffset[]>((cb) =>
            consumer.committed(
              partitions.map((partition) => ({ topic, partition })),
              ADMIN_TIMEOUT_MS,
              cb as never,
            ),
          ),
        );
        const out = new Map<number, bigint>();
        for (const p of got) {
          if (typeof p.offset === "number" && p.offset >= 0) out.set(p.partition, BigInt(p.offset));
        }
        return out;
      });
    },
    setCommittedOffsets: (groupId, topic, offsets) =>
      // A group with no members takes a commit from a consumer that never joined it.
      withGroupConsumer(groupId, async (consumer) => {
        consumer.commitSync(
          [...offsets].map(([partition, offset]) => ({ topic, partition, offset: Number(offset) })),
        );
      }),
    async waitForCoordinators(timeoutMs = 60_000) {
      // Initialising a transactional producer needs the transaction coordinator; an offset fetch
      // needs the group's coordinator (both wait while their partitions load).
      await disconnectProducer(
        await transactionalProducer("ready", `clipsieve-ready-${randomUUID()}`, timeoutMs),
      );
      // The group coordinator: an offset fetch for a group, answered once its partition has loaded.
      const deadline = Date.now() + timeoutMs;
      await withGroupConsumer(`clipsieve-ready-${randomUUID()}`, (consumer) =>
        whileCoordinatorMoves(deadline, () =>
          call((cb) =>
            consumer.committed([{ topic: "clipsieve-ready", partition: 0 }], timeoutMs, cb as never),
          ),
        ),
      );
    },
    readTopicToEnd: (topic, onRecord, readOpts) => readTopicToEnd(ctx, client, topic, onRecord, readOpts),
    producer: recordProducer,
    async produceInTransactions(transactions, { transactionalId }) {
      const producer = await transactionalProducer("floor", transactionalId, ADMIN_TIMEOUT_MS);
      try {
        for (const records of transactions) {
          await call((cb) => producer.beginTransaction(cb));
          for (const [topic, list] of records) await produceAll(producer, topic, list);
          await call((cb) => producer.commitTransaction(ADMIN_TIMEOUT_MS, cb));
        }
      } finally {
        await disconnectProducer(producer);
      }
    },
    groupConsumer: (consumerOpts) => createLibrdkafkaGroupConsumer(ctx, consumerOpts),
    windowProducer: (producerOpts) => createLibrdkafkaWindowProducer(ctx, producerOpts),
    rangeConsumer: (rangeOpts) => consumeLibrdkafkaRange(ctx, client, rangeOpts),
    async close() {},
  };
  return client;
}
