/**
 * The group consumer on librdkafka. It commits nothing itself (the window producer commits offsets
 * with the outputs, KIP-447), hands fetched records to the pipeline, and waits while the pipeline has
 * no room: that wait is the backpressure. librdkafka heartbeats on its own threads meanwhile, so a
 * slow window never costs the group membership (`max.poll.interval.ms` is the limit on one wait).
 *
 * One loop owns the consumer: it fetches (`consume`), hands the records over, and handles the
 * rebalance events between two fetches. librdkafka delivers those events while a fetch runs on a
 * worker thread; the loop queues them and acts only when no fetch is in flight, so a revoke never
 * races a fetch:
 *
 * - revoke (eager protocol: every partition): `beforeRejoin` lets the pipeline finish the window in
 *   flight while the partitions are still this member's, then `unassign`. A fetch that returned
 *   while the revoke was pending is dropped: its records are re-read from the committed offsets.
 * - assign: `generation` goes up, then `assign`; librdkafka fetches each partition from its
 *   committed offset (read_committed, and KIP-447's stable offsets: it waits for a pending
 *   transaction of the previous owner to finish first).
 *
 * Why eager and not cooperative-sticky: a window mixes records of all the member's partitions, and
 * the pipeline fences a rebalance by generation (everything fetched before it is dropped and re-read).
 * A cooperative rebalance keeps some partitions fetching from where they were, so dropping their
 * records would lose them; docs/streaming.md says more.
 */
import type { RawRecord } from "../../common/record.ts";
import { securityFailureOf } from "../errors.ts";
import type { GroupConsumer, GroupConsumerOptions } from "../port.ts";
import {
  type AdapterContext,
  baseConfig,
  CODES,
  call,
  connectInSteps,
  disconnectConsumer,
  type LibrdkafkaError,
  type RdKafka,
  rdkafka,
  toRawRecord,
  unreachableError,
  wireEvents,
} from "./native.ts";

/** What the window producer needs of a group consumer of this adapter (and nothing else sees). */
export interface LibrdkafkaConsumerInternals {
  consumer: RdKafka.KafkaConsumer;
  /**
   * True once this member learnt that the group dropped it (a session timeout: a long pause, a
   * frozen process), until its next assignment. librdkafka then sends offsets with no generation,
   * which the broker does not fence (a transactional commit without a generation is taken as from a
   * producer outside the group), so the window producer must not send or commit them.
   */
  membershipLost(): boolean;
  /** The current generation (bumped by every assignment). */
  generation(): number;
}

const internals = new WeakMap<GroupConsumer, LibrdkafkaConsumerInternals>();

export function librdkafkaConsumerInternals(consumer: GroupConsumer): LibrdkafkaConsumerInternals {
  const found = internals.get(consumer);
  if (!found) throw new Error("a librdkafka window producer needs a consumer of the librdkafka adapter");
  return found;
}

type RebalanceEvent = { kind: "assign" | "revoke"; partitions: RdKafka.Assignment[]; lost: boolean };

/** Fetch at most this long per `consume` call: how soon a queued rebalance event is handled. */
const FETCH_WAIT_MS = 100;

export function createLibrdkafkaGroupConsumer(
  ctx: AdapterContext,
  opts: GroupConsumerOptions,
): GroupConsumer {
  const { KafkaConsumer } = rdkafka();
  const sessionTimeout = opts.sessionTimeoutMs ?? 30_000;
  const maxPerCall = opts.maxRecordsPerCall ?? 4096;
  const events: RebalanceEvent[] = [];
  let wake: (() => void) | undefined;
  const consumer = new KafkaConsumer(
    {
      ...baseConfig(ctx, "consumer"),
      "group.id": opts.groupId,
      "enable.auto.commit": false,
      "enable.auto.offset.store": false,
      "isolation.level": "read_committed",
      "session.timeout.ms": sessionTimeout,
      "heartbeat.interval.ms": 3000,
      // Also the rebalance timeout: how long a rebalance waits for a member finishing its window.
      "max.poll.interval.ms": Math.max(300_000, sessionTimeout),
      "partition.assignment.strategy": "range,roundrobin",
      "enable.partition.eof": true,
      "fetch.max.bytes": 32 * 1024 * 1024,
      "max.partition.fetch.bytes": 8 * 1024 * 1024,
      "fetch.wait.max.ms": 100,
      // Bounded pre-fetch: the pipeline's own queue is the buffer that matters.
      "queued.max.messages.kbytes": 64 * 1024,
      rebalance_cb: (err: LibrdkafkaError, assignment: RdKafka.Assignment[]) => {
        if (!running) {
          // Leaving the group (stop): nothing is in flight any more.
          if (err.code === CODES.ASSIGN_PARTITIONS) consumer.assign(assignment);
          else consumer.unassign();
          return;
        }
        const kind = err.code === CODES.ASSIGN_PARTITIONS ? "assign" : "revoke";
        const lost = kind === "revoke" && assignmentLost();
        // Known at once, not when the loop gets to the event: no window commits from here on.
        if (lost) lostMembership = true;
        events.push({ kind, partitions: assignment, lost });
        wake?.();
      },
    },
    { "auto.offset.reset": "earliest" },
  );
  const assignmentLost = (): boolean =>
    (consumer as unknown as { assignmentLost(): boolean }).assignmentLost();
  let lostMembership = false;
  let failed: Error | undefined;
  // End-of-partition events of the fetch in hand (emitted before its callback).
  const eofs: { partition: number; offset: number }[] = [];
  consumer.on("partition.eof", (eof) => {
    eofs.push({ partition: eof.partition, offset: eof.offset });
  });
  wireEvents(consumer, ctx, (err) => {
    failed = err;
    opts.onCrash?.(err);
  });

  let generation = 0;
  let assigned: RdKafka.Assignment[] = [];
  let paused = false;
  let running = false;
  let loop: Promise<void> | undefined;

  const handleRebalance = async (event: RebalanceEvent): Promise<void> => {
    if (event.kind === "revoke") {
      opts.logger.info(
        { lost: event.lost, partitions: event.partitions.map((p) => p.partition), groupId: opts.groupId },
        event.lost ? "partitions lost (this member was dropped from the group)" : "partitions revoked",
      );
      // The partitions are still this member's: the window in flight commits (or fails) now. After a
      // lost assignment the window producer refuses to commit (membershipLost), so this is quick.
      await opts.beforeRejoin?.().catch(() => undefined);
      consumer.unassign();
      assigned = [];
      opts.metrics?.consumerLag.reset();
      return;
    }
    generation++;
    lostMembership = false;
    assigned = event.partitions;
    opts.logger.info(
      {
        generation,
        assignment: { [opts.topic]: event.partitions.map((p) => p.partition) },
        groupId: opts.groupId,
      },
      "joined consumer group; undelivered records of earlier generations will be re-read",
    );
    opts.onRebalance?.(generation);
    consumer.assign(event.partitions);
  };

  const fetch = (): Promise<RdKafka.Message[]> =>
    call<RdKafka.Message[]>((cb) => consumer.consume(maxPerCall, cb as never)).catch((err: unknown) => {
      // A refusal (no ACL for the group or the topic, refused credentials) never passes: stop.
      if (securityFailureOf(err)) {
        failed = err as Error;
        opts.onCrash?.(err as Error);
        return [];
      }
      // Transient fetch errors (a broker away) are librdkafka's to retry; nothing was handed over.
      opts.logger.debug({ err }, "fetch failed; retrying");
      return [];
    });

  /** Hand one partition's run of records over, again and again until the pipeline takes it. */
  const handOver = async (records: RawRecord[], gen: number): Promise<boolean> => {
    for (let attempt = 0; ; attempt++) {
      if (!running || gen !== generation || events.length > 0) return false;
      try {
        await opts.onRecords(records, gen, async () => {});
        return true;
      } catch (err) {
        // The schema registry down, say: the same records are handed again after a pause.
        opts.logger.warn({ err, attempt }, "records not taken; handing them again");
        await new Promise((r) => setTimeout(r, Math.min(10_000, 500 * 2 ** attempt)));
      }
    }
  };

  const run = async (): Promise<void> => {
    while (running && !failed) {
      while (events.length > 0) await handleRebalance(events.shift() as RebalanceEvent);
      if (paused || assigned.length === 0) {
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, FETCH_WAIT_MS);
        });
        wake = undefined;
        // An empty assignment still needs polling: rebalance events are served by a fetch.
        if (paused) continue;
      }
      const gen = generation;
      eofs.length = 0;
      const messages = await fetch();
      // A rebalance event arrived during the fetch: its records may be of revoked partitions.
      if (events.length > 0 || gen !== generation) continue;
      await deliver(messages, gen);
    }
  };

  const deliver = async (messages: RdKafka.Message[], gen: number): Promise<void> => {
    // Runs of consecutive records of one partition, in fetch order.
    let run: RawRecord[] = [];
    let runPartition = -1;
    const flush = async (): Promise<boolean> => {
      if (run.length === 0) return true;
      const records = run;
      run = [];
      const taken = await handOver(records, gen);
      if (!taken) return false;
      opts.metrics?.recordsIn.inc({ topic: opts.topic }, records.length);
      opts.onFetched?.(runPartition, records[records.length - 1].source.offset);
      return true;
    };
    for (const m of messages) {
      if (m.partition !== runPartition) {
        if (!(await flush())) return;
        runPartition = m.partition;
      }
      run.push(toRawRecord(m));
    }
    if (!(await flush())) return;
    // End of a partition reached: how far it was read, transaction markers included (a range that
    // ends in a commit marker is finished by this).
    for (const eof of eofs.splice(0)) {
      if (eof.offset > 0) opts.onFetched?.(eof.partition, String(eof.offset - 1));
      reportLag(eof.partition);
    }
  };

  const reportLag = (partition: number): void => {
    if (!opts.metrics) return;
    try {
      const { highOffset } = consumer.getWatermarkOffsets(opts.topic, partition);
      const [pos] = consumer.position([{ topic: opts.topic, partition }]);
      if (pos && typeof pos.offset === "number" && pos.offset >= 0)
        opts.metrics.consumerLag.set({ partition: String(partition) }, Math.max(0, highOffset - pos.offset));
    } catch {
      // not known yet
    }
  };

  const groupConsumer: GroupConsumer = {
    get generation() {
      return generation;
    },
    async start() {
      const connectMs = 60_000;
      try {
        await connectInSteps(
          ctx,
          (ms) => call((cb) => consumer.connect({ timeout: ms }, cb as never)),
          connectMs,
        );
      } catch (err) {
        throw unreachableError(ctx, `consumer group ${opts.groupId}`, connectMs, err);
      }
      consumer.setDefaultConsumeTimeout(FETCH_WAIT_MS);
      consumer.subscribe([opts.topic]);
      running = true;
      loop = run().catch((err: unknown) => {
        failed = err as Error;
        opts.onCrash?.(err as Error);
      });
    },
    pause() {
      paused = true;
    },
    async stop() {
      running = false;
      wake?.();
      await loop;
      // Leaving the group revokes the partitions once more; with the loop stopped, the rebalance
      // callback unassigns at once (the pipeline has drained or abandoned its windows by now).
      await disconnectConsumer(consumer);
    },
  };
  internals.set(groupConsumer, {
    consumer,
    membershipLost: () => lostMembership || assignmentLost(),
    generation: () => generation,
  });
  return groupConsumer;
}
