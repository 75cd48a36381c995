/**
 * A "before rejoin" callback for kafkajs consumers: the equivalent of the Java client's
 * `onPartitionsRevoked`, which kafkajs 2.2.4 does not have.
 *
 * Why: with the eager rebalance protocol, a partition's next owner reads the group's committed offset
 * as soon as the rebalance completes. A window transaction that the old owner still has in flight
 * (it carries that partition's offsets) would commit after that read, and its records would be
 * delivered twice. The rebalance cannot complete before every member has sent its JoinGroup, so a
 * member that finishes its in-flight transaction before rejoining closes the gap; that is what
 * Kafka Streams did before KIP-447 and what the Java client's revoke callback is for.
 *
 * How: every (re)join of a kafkajs consumer goes through `ConsumerGroup.prototype.joinAndSync` (first
 * join, rebalance, unknown member, stale metadata). We wrap it once per process and, before the real
 * join, await the callback carried by the consumer's own partition assigner (a public extension
 * point, so the callback reaches exactly the consumer it belongs to). kafkajs is pinned to an exact
 * version; `installRejoinHook` throws if the method is not where this expects it, and
 * test/kafka/rejoin-hook.kafka.test.ts proves against a real broker that a second member's join waits.
 */
import { createRequire } from "node:module";
import { type PartitionAssigner, PartitionAssigners } from "kafkajs";

const BEFORE_REJOIN = Symbol.for("clipsieve.beforeRejoin");
const GROUP_SEEN = Symbol.for("clipsieve.groupSeen");

/**
 * The parts of kafkajs's ConsumerGroup that src/kafka/membership.ts reads to confirm, right before a
 * window commits, that this member still holds its partitions.
 */
export interface ConsumerGroupInternals {
  groupId: string;
  memberId: string | null;
  generationId: number | null;
  coordinator?: {
    heartbeat(request: { groupId: string; memberId: string; groupGenerationId: number }): Promise<unknown>;
  };
}

interface HookCarrier {
  [BEFORE_REJOIN]?: () => Promise<void>;
  [GROUP_SEEN]?: (group: ConsumerGroupInternals) => void;
}

type JoinAndSync = (this: { assigners?: unknown[] }, ...args: unknown[]) => Promise<unknown>;
interface ConsumerGroupClass {
  prototype: { joinAndSync: JoinAndSync; [BEFORE_REJOIN]?: true };
}

let installed = false;

/** Wrap kafkajs's join once per process; idempotent. */
export function installRejoinHook(): void {
  if (installed) return;
  const require = createRequire(import.meta.url);
  const ConsumerGroup = require("kafkajs/src/consumer/consumerGroup.js") as ConsumerGroupClass;
  const proto = ConsumerGroup?.prototype;
  if (typeof proto?.joinAndSync !== "function") {
    throw new Error(
      "kafkajs internals changed: ConsumerGroup.prototype.joinAndSync is missing, so in-flight " +
        "transactions could not be finished before a rebalance (see src/kafka/rejoin-hook.ts)",
    );
  }
  if (!proto[BEFORE_REJOIN]) {
    const join = proto.joinAndSync;
    proto.joinAndSync = async function (this: { assigners?: unknown[] }, ...args: unknown[]) {
      for (const assigner of this.assigners ?? []) {
        (assigner as HookCarrier)[GROUP_SEEN]?.(this as unknown as ConsumerGroupInternals);
        const hook = (assigner as HookCarrier)[BEFORE_REJOIN];
        // The hook must never stop the join: a member that does not rejoin is expelled anyway.
        if (hook) await hook().catch(() => undefined);
      }
      return join.apply(this, args);
    };
    proto[BEFORE_REJOIN] = true;
  }
  installed = true;
}

/**
 * The round-robin assigner (kafkajs's default) carrying `beforeRejoin`: pass it as the consumer's only
 * `partitionAssigners` entry. The hook should not throw; a rejection is ignored. `onGroup` receives
 * the consumer's ConsumerGroup at its first join (for src/kafka/membership.ts).
 */
export function assignerWithRejoinHook(
  beforeRejoin: () => Promise<void>,
  onGroup?: (group: ConsumerGroupInternals) => void,
): PartitionAssigner {
  installRejoinHook();
  return (config) =>
    Object.assign(PartitionAssigners.roundRobin(config), {
      [BEFORE_REJOIN]: beforeRejoin,
      [GROUP_SEEN]: onGroup,
    } satisfies HookCarrier);
}
