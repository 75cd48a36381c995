/**
 * Time, as the pipeline's parts see it. Every part that waits, times or reads the wall clock takes a
 * `Clock` from its context instead of calling `Date.now()`, `performance.now()` or `setTimeout`, so a
 * unit test drives time by hand (test/helpers/clock.ts) instead of sleeping.
 */
export interface Clock {
  /** Wall-clock time, ms since the epoch (manifests, health messages). */
  now(): number;
  /** Monotonic time in ms, for durations (stage timings). */
  monotonic(): number;
  /** Call `fn` after `ms`; the timer never keeps the process alive. */
  setTimeout(fn: () => void, ms: number): ClockTimer;
  clearTimeout(timer: ClockTimer | undefined): void;
  /** Resolve after `ms`. */
  sleep(ms: number): Promise<void>;
}

/** An opaque timer handle. */
export type ClockTimer = { readonly id: unknown };

export const systemClock: Clock = {
  now: () => Date.now(),
  monotonic: () => performance.now(),
  setTimeout(fn, ms) {
    const t = setTimeout(fn, ms);
    t.unref();
    return { id: t };
  },
  clearTimeout(timer) {
    if (timer) clearTimeout(timer.id as NodeJS.Timeout);
  },
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

/**
 * The wait before try `attempt + 1` of an operation retried through a broker outage (a window's
 * delivery, the dedup history's read-back): 400 ms, doubling, at most 10 s.
 */
export function retryDelayMs(attempt: number): number {
  return Math.min(10_000, 200 * 2 ** attempt);
}
