/**
 * Zombie fencing for window transactions: right before a window commits, confirm that this member
 * still belongs to the consumer group in the generation its partitions were assigned in.
 *
 * Why: the Java client sends the group's generation with the transaction's offsets (KIP-447), so the
 * broker refuses a commit from a member that was expelled from the group (it froze longer than the
 * session timeout) while another member already took its partitions. kafkajs 2.2.4 sends no
 * generation with `sendOffsets`, so such a late commit would land, and the new owner, which read the
 * older committed offsets, would deliver the same records again.
 *
 * How (a lease): a Heartbeat request sent at local time t0 that succeeds proves that at some moment
 * after t0 the coordinator had this member in a stable generation. The coordinator can give the
 * member's partitions to another member only after the member misses its session timeout (or the
 * rebalance timeout, which the source never sets below it), so no earlier than t0 + sessionTimeout.
 * A commit sent within `budgetMs` of t0 (the lease; the source uses half the session timeout)
 * therefore lands while the partitions are still this member's, with room for the broker to write the
 * commit markers. The sink checks the lease again right before the commit, so a process that froze
 * after the heartbeat (a long GC pause, a stopped VM) does not commit on a stale confirmation.
 *
 * A rebalance in progress counts as lost too: it began at a moment this member cannot know, so its
 * timeout bounds nothing here. The window is aborted and its records are re-read by whoever owns
 * their partition after the rebalance, which is what a window holding revoked partitions must do.
 */
import { ClipsieveError } from "../../common/errors.ts";
import type { ConsumerGroupInternals } from "./rejoin-hook.ts";

/** Heartbeat answers that mean the member no longer holds its partitions in this generation. */
const MEMBERSHIP_LOST = new Set([
  "REBALANCE_IN_PROGRESS",
  "ILLEGAL_GENERATION",
  "UNKNOWN_MEMBER_ID",
  "FENCED_INSTANCE_ID",
]);

/**
 * Send a Heartbeat now, not kafkajs's shared, rate-limited one (whose request may have left long ago).
 * Resolves when the coordinator answered without error; rejects with kafkajs's error otherwise.
 */
export async function heartbeatNow(group: ConsumerGroupInternals | undefined): Promise<void> {
  const { memberId, generationId, coordinator, groupId } = group ?? {};
  if (!groupId || !memberId || generationId == null || !coordinator) {
    throw new ClipsieveError(
      "GROUP_MEMBERSHIP_LOST",
      "This filter has not joined the consumer group (or left it): the window is not committed.",
    );
  }
  await coordinator.heartbeat({ groupId, memberId, groupGenerationId: generationId });
}

/** Proof of membership from one heartbeat: good for `budgetMs` after the heartbeat left. */
export interface MembershipLease {
  /** Throws GROUP_MEMBERSHIP_UNCONFIRMED once the lease ran out: call it right before the commit. */
  check(): void;
}

/**
 * Send a heartbeat now and resolve with a lease if it succeeded. Throws GROUP_MEMBERSHIP_LOST when
 * the group rebalances or no longer knows this member, GROUP_MEMBERSHIP_UNCONFIRMED when the answer
 * came too late to rely on, and kafkajs's own error (retriable or not, as kafkajs says) when the
 * request failed.
 */
export async function confirmMembership(
  group: ConsumerGroupInternals | undefined,
  budgetMs: number,
): Promise<MembershipLease> {
  const t0 = Date.now();
  try {
    await heartbeatNow(group);
  } catch (err) {
    const type = (err as { type?: string }).type;
    if (type && MEMBERSHIP_LOST.has(type)) {
      throw new ClipsieveError(
        "GROUP_MEMBERSHIP_LOST",
        `The consumer group answered ${type} before the window's commit: its partitions may be another member's now, so the window is aborted and its records re-read.`,
        { cause: err },
      );
    }
    throw err;
  }
  const lease: MembershipLease = {
    check() {
      const age = Date.now() - t0;
      if (age > budgetMs) {
        throw new ClipsieveError(
          "GROUP_MEMBERSHIP_UNCONFIRMED",
          `The last confirmation that this member holds its partitions is ${age} ms old (budget ${budgetMs} ms, half the session timeout): too old to commit on, so the window is sent again.`,
        );
      }
    },
  };
  lease.check();
  return lease;
}
