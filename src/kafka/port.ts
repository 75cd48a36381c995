/**
 * The Kafka port: everything clipsieve's stages ask of Kafka, in clipsieve's own types. No client
 * library's type appears here; an adapter folder (`librdkafka/`, the default, and `kafkajs/`, the
 * pure-JavaScript fallback; see docs/architecture.md) is the only place that imports one, and `createKafkaClient` (index.ts) is the
 * only way to get an adapter. test/kafka/boundary.unit.test.ts keeps it so.
 *
 * Offsets travel as decimal strings on records (as the wire and both clients give them) and as
 * `bigint` in offset maps, where they are compared and added to.
 */

import type { Logger } from "../common/logger.ts";
import type { PipelineMetrics } from "../common/metrics.ts";
import type { RawRecord } from "../common/record.ts";
import type { KafkaSecurity } from "./security.ts";

/** The client libraries clipsieve can run on; the first is the default. */
export const KAFKA_ADAPTERS = ["librdkafka", "kafkajs"] as const;
export type KafkaAdapterName = (typeof KAFKA_ADAPTERS)[number];

export interface KafkaClientOptions {
  brokers: readonly string[];
  clientId: string;
  /** Where the client's own warnings and errors go; none: they are dropped. */
  logger?: Logger;
  /**
   * Default: `CLIPSIEVE_KAFKA_CLIENT` if set, else `librdkafka` (`@confluentinc/kafka-javascript`);
   * `kafkajs` is the pure-JavaScript fallback.
   */
  adapter?: KafkaAdapterName;
  /**
   * Hears the duration of each produce request and each transaction-commit request (offsets into the
   * transaction, commit) its producers make, where the client reports them: the benchmarks' breakdown.
   */
  onRequest?(kind: "produce" | "commit", seconds: number): void;
  /** TLS and SASL (src/kafka/security.ts); none: plaintext. */
  security?: KafkaSecurity;
}

/** Whether the brokers answer: `/healthz` and `clipsieve_broker_reachable` read it. */
export interface BrokerReachability {
  readonly reachable: boolean;
  /** When `reachable` last changed (ms since the epoch). */
  readonly since: number;
  /** What failed, while unreachable. */
  readonly detail: string;
}

export interface TopicSpec {
  topic: string;
  numPartitions?: number;
  configEntries?: { name: string; value: string }[];
}

/** A record as read by the bounded readers (policy state, manifests, diff). */
export interface TopicRecord {
  partition: number;
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
  headers: Record<string, Buffer | string | undefined>;
  timestamp: string;
}

/** A record to write. */
export interface OutboundRecord {
  key?: Buffer | string | null;
  value: Buffer | string | null;
  headers?: Record<string, Buffer | string>;
  partition?: number;
}

/** Records for one topic. */
export interface TopicRecords {
  topic: string;
  records: OutboundRecord[];
}

export interface PartitionRange {
  low: bigint;
  high: bigint;
}

/** A plain (idempotent, acks=all) producer: load, simulate, tests. */
export interface RecordProducer {
  connect(): Promise<void>;
  send(topic: string, records: OutboundRecord[]): Promise<void>;
  disconnect(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------------
// The streaming filter's consumer and producer

export interface GroupConsumerOptions {
  groupId: string;
  topic: string;
  logger: Logger;
  metrics?: PipelineMetrics;
  /**
   * Receives each fetched batch, in parts of at most `maxRecordsPerCall` records; resolves when the
   * pipeline has taken the part (it may wait for room first, calling `heartbeat` meanwhile). A part
   * whose call throws is handed again later.
   */
  onRecords(records: RawRecord[], generation: number, heartbeat: () => Promise<void>): Promise<void>;
  /** The consumer stopped for good (the client will not restart it). */
  onCrash?(err: Error): void;
  /** Called after each group (re)join with the new generation. */
  onRebalance?(generation: number): void;
  /**
   * Called after each batch was taken, with its last offset: transaction markers included, and also
   * for batches holding only markers or aborted records, which never reach `onRecords`.
   */
  onFetched?(partition: number, lastOffset: string): void;
  /**
   * Awaited before this member gives up its partitions (a rebalance), while they are still its own:
   * finish (or give up) the window in flight here, so the next owner reads offsets that include it.
   */
  beforeRejoin?(): Promise<void>;
  sessionTimeoutMs?: number;
  /** Largest part of a batch handed to one `onRecords` call (default: the whole batch). */
  maxRecordsPerCall?: number;
}

export interface GroupConsumer {
  /** Bumped by every group (re)join; records carry the generation they were fetched in. */
  readonly generation: number;
  start(): Promise<void>;
  /** Stop fetching the topic (the records in hand are still delivered). */
  pause(): void;
  stop(): Promise<void>;
}

/** One window's outputs and the consumer offsets (next record to read) they complete. */
export interface WindowDelivery {
  messages: Map<string, OutboundRecord[]>;
  offsets: Map<string, Map<number, string>>;
  /**
   * The consumer generation the window's records were fetched in. When given, a window whose
   * generation is no longer the consumer's is refused (GROUP_MEMBERSHIP_LOST) right up to its commit.
   */
  generation?: number;
}

export interface WindowProducerOptions {
  delivery: "exactly-once" | "at-least-once";
  groupId: string;
  transactionalId: string;
  transactionTimeoutMs: number;
  /** Largest produce request (bytes); brokers refuse record batches above `message.max.bytes`. */
  maxRequestBytes?: number;
  logger: Logger;
}

export interface WindowProducer {
  /** For exactly-once this also fences (and aborts the open transaction of) an earlier incarnation. */
  connect(): Promise<void>;
  /**
   * Deliver one window, its outputs and `consumer`'s offsets together (exactly-once: one transaction;
   * at-least-once: outputs acked, then offsets committed). Throws if it could not; the transaction is
   * then aborted. A member that lost its partitions meanwhile gets GROUP_MEMBERSHIP_LOST.
   */
  deliver(window: WindowDelivery, consumer: GroupConsumer): Promise<void>;
  /**
   * Wait (at most `timeoutMs`) until the group's committed offsets include those of the last window
   * delivered, for a member about to give up its partitions.
   */
  settle(timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------------
// Ranges: the data-lake commands' consumer

export interface RangeBatch {
  partition: number;
  /** The records of one fetch of one partition, in offset order (never empty). */
  records: RawRecord[];
  heartbeat(): Promise<void>;
}

export interface RangeConsumerOptions {
  topic: string;
  logger: Logger;
  /** A consumer group that resumes from its committed offsets; default: a fresh group (from the start). */
  groupId?: string;
  /** Do not stop at the end offsets captured at start. */
  follow?: boolean;
  onBatch(batch: RangeBatch): Promise<void>;
  /** After every group (re)join but the first: records handed over and not committed will come again. */
  onRebalance?(generation: number): void | Promise<void>;
  sessionTimeoutMs?: number;
}

export interface RangeConsumer {
  /** End offset of each partition, captured at start (the high watermarks). */
  readonly ends: ReadonlyMap<number, bigint>;
  /** Resolves when every assigned partition is finished (never, with `follow`), or on `stop`. */
  readonly finished: Promise<void>;
  /** Commit `next` as the group's offset for `partition` (the next record to read). */
  commit(partition: number, next: bigint): Promise<void>;
  /** Stop fetching (records in hand are still handed over). */
  pause(): void;
  /** Stop fetching and leave the group; waits for the batch in hand. */
  stop(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------------

export interface KafkaClient {
  readonly adapter: KafkaAdapterName;
  readonly brokers: readonly string[];
  /** Kept up to date by the clients this client made (librdkafka: from each broker's state). */
  readonly reachability: BrokerReachability;

  /** Create the topics that do not exist yet; resolves once every partition has a leader. */
  ensureTopics(specs: TopicSpec[], timeoutMs?: number): Promise<void>;
  listTopics(): Promise<string[]>;
  deleteTopics(topics: string[], timeoutMs?: number): Promise<void>;
  /** Low and high watermark of every partition. */
  endOffsets(topic: string): Promise<Map<number, PartitionRange>>;
  /** Per partition, the first offset whose timestamp is at or after `ms` (the high watermark if none). */
  offsetsAtTime(topic: string, ms: number): Promise<Map<number, bigint>>;
  /** The group's committed offsets for `topic` (partitions without one are absent). */
  committedOffsets(groupId: string, topic: string): Promise<Map<number, bigint>>;
  /** Set the committed offsets of a group that has no active members (a replay's fresh group). */
  setCommittedOffsets(groupId: string, topic: string, offsets: ReadonlyMap<number, bigint>): Promise<void>;
  /** Resolves once the group and transaction coordinators serve requests (a broker just started). */
  waitForCoordinators(timeoutMs?: number): Promise<void>;

  /**
   * Read a whole topic as it stands now (read_committed), then stop: the high watermarks are captured
   * first, and the read ends once every partition was consumed up to them (or `timeoutMs`).
   */
  readTopicToEnd(
    topic: string,
    onRecord: (record: TopicRecord) => void,
    opts?: { timeoutMs?: number },
  ): Promise<{ complete: boolean }>;

  producer(): RecordProducer;
  /**
   * Write each element of `transactions` (records by topic) in one transaction of a bare
   * transactional producer, in order: the client floor that `bench-e2e` holds the pipeline against.
   */
  produceInTransactions(
    transactions: readonly Map<string, OutboundRecord[]>[],
    opts: { transactionalId: string },
  ): Promise<void>;

  groupConsumer(opts: GroupConsumerOptions): GroupConsumer;
  windowProducer(opts: WindowProducerOptions): WindowProducer;
  rangeConsumer(opts: RangeConsumerOptions): Promise<RangeConsumer>;

  /** Close the connections this client keeps for its admin calls. */
  close(): Promise<void>;
}
