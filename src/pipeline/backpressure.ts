/**
 * Backpressure: the source waits while `limit` or more records are fetched but not yet delivered,
 * which bounds the filter's memory at any input rate. Records that a re-formed window still waits
 * for (`replay --reproduce`) do not count (`held.waiting`): holding back the fetch would starve the
 * very window they wait on, whose other members are in partitions not yet read.
 */
import type { Clock } from "../common/clock.ts";

export class Backpressure {
  readonly limit: number;
  /** Records held by the window re-former (reported by it). */
  readonly held = { waiting: 0 };
  private readonly clock: Clock;
  private readonly onChange: (undelivered: number) => void;
  private count = 0;
  private waiters: (() => void)[] = [];

  constructor(limit: number, clock: Clock, onChange: (undelivered: number) => void = () => {}) {
    this.limit = limit;
    this.clock = clock;
    this.onChange = onChange;
  }

  /** Records fetched and not yet delivered (or dropped). */
  get undelivered(): number {
    return this.count;
  }

  get full(): boolean {
    return this.count - this.held.waiting >= this.limit;
  }

  /**
   * Wait while full and `stillWaiting()` holds (false once the filter stops or the fetch's generation
   * is stale). `heartbeat` runs about every second meanwhile, so the group keeps this member.
   */
  async waitForRoom(stillWaiting: () => boolean, heartbeat: () => Promise<void>): Promise<void> {
    while (this.full && stillWaiting()) {
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        this.clock.setTimeout(resolve, 1000);
      });
      await heartbeat();
    }
  }

  /** Records entered the pipeline. */
  taken(records: number): void {
    this.count += records;
    this.onChange(this.count);
  }

  /** Records left it (delivered, or dropped to be re-read). */
  released(records: number): void {
    this.count -= records;
    this.onChange(this.count);
    this.wake();
  }

  /** Let every waiter check again (a rebalance or a stop ends their wait). */
  wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const resolve of waiters) resolve();
  }
}
