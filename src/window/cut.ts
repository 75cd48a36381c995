/**
 * Where windows end: the one window cut of clipsieve, used by `run`, `replay`, `calibrate`, the
 * fidelity emulator and the passthrough benchmark, so that the same records make the same windows
 * whichever of them reads a topic (test/window/cut.unit.test.ts, test/lake/calibrate-windows.kafka.test.ts).
 *
 * A window ends when it holds `windowSize` records, or `lingerMs` after its first record arrived
 * (`cutWindows`, for live streams), or when the input ends. While the negative bank is still filling,
 * a window also takes as many extra records as the bank has rows left to fill (bank priming): so every
 * pool has windowSize + bankSize rows from the first window on. A smaller pool would give every score
 * a smaller normaliser, and the policy's sketch, which keeps all it has seen, would judge the rest of
 * the stream against those inflated scores (BENCHMARKS.md, fidelity: Jaccard 0.883 unprimed against
 * 0.965 primed).
 *
 * Priming counts the records of the windows cut so far, not the bank's rows at the time, so the cut
 * depends on the input alone, not on how far scoring has got. It counts bad records too (they never
 * reach the bank), so the first pools are short by the bad records among them; counting good records
 * only would make the first window longer than the backpressure lets in, and it would be cut by
 * linger time instead, at a point that depends on timing.
 */
import { Observable, type OperatorFunction } from "rxjs";
import { type Clock, type ClockTimer, systemClock } from "../common/clock.ts";
import type { RecordedWindow } from "./window.ts";

/** A window as cut (or re-formed from a recorded run, then with the recorded id, seed and bank). */
export interface FormedWindow<T> {
  items: T[];
  recorded?: RecordedWindow;
}

/** How windows are cut. */
export interface CutSettings {
  /** Records per window once the bank is full. */
  windowSize: number;
  /** Negative bank rows: the first windows take this many extra records between them. */
  bankSize: number;
  /** False: every window has `windowSize` records (no priming; how the filter cut before). */
  primeBank?: boolean;
}

/** Size-based cutting, record by record (no timers): the part of the cut every caller shares. */
export class WindowCut<T> {
  private readonly settings: CutSettings;
  private open: T[] = [];
  /** Records in windows cut so far, up to bankSize: the bank rows already promised. */
  private primed = 0;

  constructor(settings: CutSettings) {
    this.settings = settings;
  }

  /** The size at which the open window is cut. */
  get limit(): number {
    const { windowSize, bankSize, primeBank = true } = this.settings;
    return windowSize + (primeBank ? Math.max(0, bankSize - this.primed) : 0);
  }

  /** Records in the open window. */
  get pending(): number {
    return this.open.length;
  }

  /** Add one record; returns the window it completes, if it completes one. */
  add(item: T): T[] | undefined {
    this.open.push(item);
    return this.open.length >= this.limit ? this.cut() : undefined;
  }

  /** Cut the open window now (linger, end of input); undefined when it is empty. */
  cut(): T[] | undefined {
    if (this.open.length === 0) return undefined;
    const window = this.open;
    this.open = [];
    this.primed = Math.min(this.settings.bankSize, this.primed + window.length);
    return window;
  }
}

/**
 * A `WindowCut` with a linger timer: windows go to `emit` when full, or `lingerMs` after their first
 * record. Used by `cutWindows` and by `reformWindows` for records no recorded window holds.
 */
export class LingeringCut<T> {
  private readonly windows: WindowCut<T>;
  private readonly lingerMs: number;
  private readonly clock: Clock;
  private readonly emit: (window: T[]) => void;
  private timer: ClockTimer | undefined;

  constructor(settings: CutSettings & { lingerMs: number }, clock: Clock, emit: (window: T[]) => void) {
    this.windows = new WindowCut<T>(settings);
    this.lingerMs = settings.lingerMs;
    this.clock = clock;
    this.emit = emit;
  }

  add(item: T): void {
    if (this.windows.pending === 0) this.timer = this.clock.setTimeout(() => this.flush(), this.lingerMs);
    this.send(this.windows.add(item));
  }

  /** Cut the open window now (linger, end of input). */
  flush(): void {
    this.send(this.windows.cut());
  }

  dispose(): void {
    this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  private send(window: T[] | undefined): void {
    if (!window) return;
    this.dispose();
    this.emit(window);
  }
}

/**
 * The cut as an rxjs operator for a live stream: by size (`WindowCut`) or `lingerMs` after a window's
 * first record, whichever comes first; the open window is cut when the input completes.
 */
export function cutWindows<T>(
  settings: CutSettings & { lingerMs: number },
  clock: Clock = systemClock,
): OperatorFunction<T, FormedWindow<T>> {
  return (items$) =>
    new Observable<FormedWindow<T>>((subscriber) => {
      const cut = new LingeringCut<T>(settings, clock, (items) => subscriber.next({ items }));
      const subscription = items$.subscribe({
        next: (item) => cut.add(item),
        error: (err) => subscriber.error(err),
        complete: () => {
          cut.flush();
          subscriber.complete();
        },
      });
      return () => {
        cut.dispose();
        subscription.unsubscribe();
      };
    });
}
