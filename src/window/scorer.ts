/**
 * The window scorer: the one place a window becomes scores. Its good records, then the negative bank,
 * form the pool (`planWindow`); the K draws come from the window's seed; the engine computes every
 * score of the registry the target set allows (`scorePoolRows`), a costly one only for the rows a
 * selector picks when the caller gives one (./stage-two.ts); and the window's scored rows join the
 * bank once the caller keeps the window (`remember`). `run`, `replay`, `calibrate`, the fidelity
 * emulator and the lake's rescoring all score through it, so a window is scored the same way wherever
 * it is scored.
 *
 * `score` and `remember` are two steps because the filter may drop a scored window (a rebalance moved
 * its partitions): its rows must not become negatives for windows that follow.
 */
import type { Clock } from "../common/clock.ts";
import { systemClock } from "../common/clock.ts";
import type { DecodedRecord } from "../common/record.ts";
import type { ScoringEngine } from "../score/engine.ts";
import type { ScoreRow } from "../score/registry.ts";
import type { Normaliser, TargetSet } from "../score/types.ts";
import { type NotComputed, type RowSelector, scorePoolRows } from "../score/window-scores.ts";
import { NegativeBank } from "./bank.ts";
import { planWindow, type RecordedWindow, type WindowPlan } from "./window.ts";

/** How windows are scored (the paper's settings, spec §3). */
export interface ScorerSettings {
  dim: number;
  /** Negative bank rows (0 = no bank). */
  bankSize: number;
  /** K: seeded draws per window. */
  draws: number;
  /** b: contrastive batch size. */
  batchSize: number;
  /** How R is estimated (default "draws", the paper's). */
  normaliser?: Normaliser;
  tau: number;
  /** Base seed; each window's seed derives from it and the window id. */
  seed: number;
  target?: TargetSet;
}

export interface ScoredWindow {
  plan: WindowPlan;
  /** One row per scored record (`plan.scoredIndex` order); bad records are not scored. */
  rows: ScoreRow[];
  /** Per row: the scores a selector left out and why (absent, or undefined for a row: none). */
  notComputed?: readonly (NotComputed | undefined)[];
}

export interface ScoreOptions {
  /** Re-form this recorded window (its id, seed and bank rows). */
  recorded?: RecordedWindow;
  /** Compute the selector's score only for the rows it picks. */
  selector?: RowSelector;
}

export class WindowScorer {
  readonly settings: ScorerSettings;
  private readonly engine: ScoringEngine;
  private readonly bank: NegativeBank | undefined;
  private readonly clock: Clock;

  constructor(engine: ScoringEngine, settings: ScorerSettings, clock: Clock = systemClock) {
    this.engine = engine;
    this.settings = settings;
    this.clock = clock;
    this.bank = settings.bankSize > 0 ? new NegativeBank(settings.bankSize, settings.dim) : undefined;
  }

  /** Rows in the bank now. */
  get bankRows(): number {
    return this.bank?.size ?? 0;
  }

  /** Plan and score a window. */
  async score(records: DecodedRecord[], { recorded, selector }: ScoreOptions = {}): Promise<ScoredWindow> {
    const { dim, seed, draws, batchSize, normaliser, tau, target } = this.settings;
    const plan = planWindow(
      records,
      this.bank,
      { dim, baseSeed: seed, draws, batchSize, normaliser, tau, plannedAt: this.clock.now() },
      recorded,
    );
    const { rows, notComputed } = await scorePoolRows(
      this.engine,
      plan.pool,
      plan.draws,
      tau,
      target,
      selector,
    );
    return { plan, rows, notComputed };
  }

  /** The window is kept: its scored rows become negatives for the windows that follow. */
  remember({ plan }: ScoredWindow): void {
    if (!this.bank) return;
    const n = plan.pool.scoredRows;
    const dim = this.settings.dim;
    this.bank.push(
      plan.pool.image.subarray(0, n * dim),
      plan.pool.text.subarray(0, n * dim),
      plan.scoredIndex.map((i) => plan.records[i].source),
    );
  }

  /** Score a window and keep it: for callers that never drop a window. */
  async scoreAndRemember(records: DecodedRecord[], selector?: RowSelector): Promise<ScoredWindow> {
    const scored = await this.score(records, { selector });
    this.remember(scored);
    return scored;
  }
}
