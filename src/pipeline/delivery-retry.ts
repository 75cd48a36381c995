/**
 * Retry a window's delivery (a fresh transaction each time) on errors Kafka (or clipsieve) calls
 * retriable, for as long as they last: a broker restart or a leader failover of any length is ridden
 * out (the back-off grows to 10 s; /healthz reports the outage meanwhile). Resolves true once
 * committed, false when a rebalance began before a retry or the group membership was lost (the
 * records will be re-read). Throws a fatal error, or a retriable one once the filter is stopping.
 */
import { type Clock, retryDelayMs } from "../common/clock.ts";
import type { Logger } from "../common/logger.ts";
import { kafkaErrorKind } from "../kafka/index.ts";

export interface RetryContext {
  logger: Logger;
  clock: Clock;
  /** True once the window may no longer be delivered (a rebalance began). */
  rebalanced(): boolean;
  /** True once the filter is stopping: a retriable error then stops it. */
  stopping(): boolean;
}

export { retryDelayMs };

export async function deliverWithRetry(deliver: () => Promise<void>, ctx: RetryContext): Promise<boolean> {
  for (let attempt = 1; ; attempt++) {
    try {
      await deliver();
      return true;
    } catch (err) {
      // The group is rebalancing or dropped this member: the rejoin that follows re-reads the window.
      const kind = kafkaErrorKind(err);
      if (kind === "membership") return false;
      // Each try is a fresh transaction, so an abortable error is as good as a retryable one here.
      const retriable = kind === "retryable" || kind === "abortable";
      if (retriable && ctx.rebalanced()) return false;
      if (!retriable || ctx.stopping()) throw err;
      ctx.logger.warn({ err, attempt }, "window delivery failed; retrying");
      await ctx.clock.sleep(retryDelayMs(attempt));
      // A rebalance that began during the back-off waits for this loop: do not start another try.
      if (ctx.rebalanced()) return false;
    }
  }
}
