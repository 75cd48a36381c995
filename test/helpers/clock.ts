/**
 * A clock the test moves by hand (`advance`): the pipeline's parts take a `Clock` from their context
 * (src/common/clock.ts), so a unit test of a linger, a back-off or a health timeout runs in
 * microseconds and cannot be flaky under load.
 */
import type { Clock, ClockTimer } from "../../src/common/clock.ts";

interface Pending {
  at: number;
  fn: () => void;
  timer: ClockTimer;
}

export class ManualClock implements Clock {
  private wall: number;
  private mono = 0;
  private pending: Pending[] = [];
  /** Every sleep asked for, in ms (delivery back-offs, for instance). */
  readonly sleeps: number[] = [];

  constructor(startMs = 1_800_000_000_000) {
    this.wall = startMs;
  }

  now(): number {
    return this.wall;
  }

  monotonic(): number {
    return this.mono;
  }

  setTimeout(fn: () => void, ms: number): ClockTimer {
    const timer: ClockTimer = { id: Symbol("timer") };
    this.pending.push({ at: this.mono + ms, fn, timer });
    return timer;
  }

  clearTimeout(timer: ClockTimer | undefined): void {
    this.pending = this.pending.filter((p) => p.timer !== timer);
  }

  sleep(ms: number): Promise<void> {
    this.sleeps.push(ms);
    return new Promise((resolve) => this.setTimeout(resolve, ms));
  }

  /** Timers not yet fired. */
  get timers(): number {
    return this.pending.length;
  }

  /** Move time on by `ms`, firing due timers in order (and letting promises they resolve run). */
  async advance(ms: number): Promise<void> {
    const until = this.mono + ms;
    for (;;) {
      this.pending.sort((a, b) => a.at - b.at);
      const next = this.pending[0];
      if (!next || next.at > until) break;
      this.pending.shift();
      this.wall += next.at - this.mono;
      this.mono = next.at;
      next.fn();
      await flush();
    }
    this.wall += until - this.mono;
    this.mono = until;
    await flush();
  }
}

/** Let queued promise callbacks run. */
export async function flush(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise<void>((r) => setImmediate(r));
}
