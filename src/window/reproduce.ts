/**
 * Re-forming recorded windows (`replay --reproduce`). Instead of cutting windows by size and time, the
 * windows of an earlier run are rebuilt from their manifests: the same members in the same order, the
 * same bank rows, the same id and seed, so the same settings give the same scores bit for bit.
 *
 * Records arrive in partition order, not in the original run's window order, so they wait here until
 * every member of the next recorded window has arrived. Good rows that a later window uses as bank
 * rows are kept (and only those, and only until their last use), so memory stays proportional to the
 * bank and to how far the partitions drift apart, not to the whole replay.
 */
import { Observable, type OperatorFunction } from "rxjs";
import { type Clock, systemClock } from "../common/clock.ts";
import type { Logger } from "../common/logger.ts";
import type { DecodedRecord, SourceRef } from "../common/record.ts";
import { type FormedWindow, LingeringCut } from "./cut.ts";
import { decodeRuns } from "./ranges.ts";
import type { RecordedWindow, WindowManifest } from "./window.ts";

const coord = (r: SourceRef) => `${r.topic}\u0000${r.partition}\u0000${r.offset}`;

interface Planned {
  manifest: WindowManifest;
  members: string[];
  failed: string[];
  bank: SourceRef[];
}

export interface ReproducedWindow {
  records: DecodedRecord[];
  recorded: RecordedWindow;
}

export class ReproduceWindower {
  private readonly planned: Planned[];
  private next = 0;
  /** Arrived records not yet emitted in a window. */
  private readonly waiting = new Map<string, DecodedRecord>();
  /** Embeddings of emitted good records that later windows use as bank rows. */
  private readonly bankRows = new Map<string, { image: Float32Array; text: Float32Array }>();
  /** Index of the last window that uses a coordinate as a bank row. */
  private readonly lastBankUse = new Map<string, number>();
  /** Coordinates some recorded window holds (others are not part of the reproduced range). */
  private readonly known = new Set<string>();

  constructor(manifests: readonly WindowManifest[]) {
    const ordered = [...manifests].sort(
      (a, b) =>
        a.planned_at - b.planned_at || (a.window_id < b.window_id ? -1 : a.window_id > b.window_id ? 1 : 0),
    );
    this.planned = ordered.map((manifest, i) => {
      const members = decodeRuns(manifest.members).map(coord);
      const failed = decodeRuns(manifest.failed).map(coord);
      const bank = decodeRuns(manifest.bank);
      for (const c of [...members, ...failed]) this.known.add(c);
      for (const b of bank) this.lastBankUse.set(coord(b), i);
      return { manifest, members, failed, bank };
    });
  }

  get remaining(): number {
    return this.planned.length - this.next;
  }

  /** Whether some recorded window holds this record. */
  holds(ref: SourceRef): boolean {
    return this.known.has(coord(ref));
  }

  /** Add arrived records; returns the recorded windows that became complete, in recorded order. */
  add(records: readonly DecodedRecord[]): ReproducedWindow[] {
    for (const r of records) this.waiting.set(coord(r.source), r);
    const out: ReproducedWindow[] = [];
    while (this.next < this.planned.length) {
      const p = this.planned[this.next];
      if (![...p.members, ...p.failed].every((c) => this.waiting.has(c))) break;
      const windowRecords = [...p.members, ...p.failed].map((c) => this.waiting.get(c) as DecodedRecord);
      const dim = p.manifest.dim;
      const image = new Float32Array(p.bank.length * dim);
      const text = new Float32Array(p.bank.length * dim);
      p.bank.forEach((ref, i) => {
        const row = this.bankRows.get(coord(ref));
        if (!row)
          throw new Error(`recorded bank row ${ref.topic}/${ref.partition}/${ref.offset} was never seen`);
        image.set(row.image, i * dim);
        text.set(row.text, i * dim);
      });
      out.push({
        records: windowRecords,
        recorded: { id: p.manifest.window_id, seed: p.manifest.seed, bank: { image, text, refs: p.bank } },
      });
      for (const c of [...p.members, ...p.failed]) {
        const r = this.waiting.get(c) as DecodedRecord;
        this.waiting.delete(c);
        const last = this.lastBankUse.get(c);
        if (last !== undefined && last > this.next && r.imageEmbedding && r.textEmbedding) {
          this.bankRows.set(c, { image: r.imageEmbedding, text: r.textEmbedding });
        }
      }
      for (const ref of p.bank)
        if (this.lastBankUse.get(coord(ref)) === this.next) this.bankRows.delete(coord(ref));
      this.next++;
    }
    return out;
  }
}

/**
 * Re-form recorded windows in a stream (`replay --reproduce`). Records no recorded window holds (the
 * range went past the recorded run) wait until every recorded window is formed, then are cut into
 * ordinary windows by the filter's own cut (`strayCut`: size, linger, no priming, the bank being
 * warm by then). `held.waiting` reports how many records wait here, so that the backpressure does not
 * count them: holding back the fetch would starve the very window they wait on.
 */
export function reformWindows<T>(
  manifests: readonly WindowManifest[],
  recordOf: (item: T) => DecodedRecord,
  context: {
    logger: Logger;
    held: { waiting: number };
    strayCut: { windowSize: number; lingerMs: number };
    clock?: Clock;
  },
): OperatorFunction<T, FormedWindow<T>> {
  const { logger, held, clock = systemClock } = context;
  return (items$) =>
    new Observable<FormedWindow<T>>((subscriber) => {
      const windower = new ReproduceWindower(manifests);
      const items = new Map<DecodedRecord, T>();
      const early: T[] = [];
      let strays = 0;
      const strayCut = new LingeringCut<T>({ ...context.strayCut, bankSize: 0 }, clock, (window) => {
        strays += window.length;
        subscriber.next({ items: window });
      });

      const take = (item: T): void => {
        const record = recordOf(item);
        if (!windower.holds(record.source)) {
          if (windower.remaining > 0) early.push(item);
          else strayCut.add(item);
          return;
        }
        items.set(record, item);
        for (const w of windower.add([record])) {
          const formed = w.records.map((r) => items.get(r) as T);
          for (const r of w.records) items.delete(r);
          subscriber.next({ items: formed, recorded: w.recorded });
        }
        if (windower.remaining === 0) for (const stray of early.splice(0)) strayCut.add(stray);
      };

      const subscription = items$.subscribe({
        next: (item) => {
          try {
            take(item);
          } catch (err) {
            subscriber.error(err);
          }
          held.waiting = items.size + early.length;
        },
        error: (err) => subscriber.error(err),
        complete: () => {
          held.waiting = 0;
          if (windower.remaining > 0) {
            logger.warn(
              { windows: windower.remaining },
              "recorded windows left incomplete: their records were not all read",
            );
          }
          for (const stray of early.splice(0)) strayCut.add(stray);
          strayCut.flush();
          if (strays > 0) {
            logger.warn(
              { records: strays },
              "records outside the recorded windows were cut into new windows",
            );
          }
          subscriber.complete();
        },
      });
      return () => {
        strayCut.dispose();
        subscription.unsubscribe();
      };
    });
}

/**
 * How the recorded windows' scoring differs from the settings a replay scores them with, one line per
 * setting (empty: none). A replay re-forms the same pools and draws, but only the same settings give
 * the recorded scores again; `replay --reproduce` warns with these lines rather than refusing, since
 * rescoring recorded windows with other settings can be the point.
 */
export function scoringDifferences(
  manifests: readonly WindowManifest[],
  settings: { draws: number; batchSize: number; tau: number; normaliser?: "draws" | "pool" },
): string[] {
  const normaliser = settings.normaliser ?? "draws";
  const recorded = (m: WindowManifest) => ({
    normaliser: m.normaliser ?? "draws",
    batch_size: m.batch_size,
    tau: m.tau,
    // K means nothing to the pool normaliser.
    draws: (m.normaliser ?? "draws") === "pool" ? undefined : m.draws,
  });
  const now = {
    normaliser,
    batch_size: settings.batchSize,
    tau: settings.tau,
    draws: normaliser === "pool" ? undefined : settings.draws,
  };
  const out: string[] = [];
  for (const key of ["normaliser", "batch_size", "tau", "draws"] as const) {
    const values = new Set(manifests.map((m) => recorded(m)[key]));
    values.delete(now[key]);
    values.delete(undefined); // not applicable (K of a pool window)
    if (values.size > 0) {
      out.push(`${key}: recorded ${[...values].map(String).join(", ")}, this replay ${String(now[key])}`);
    }
  }
  return out;
}
