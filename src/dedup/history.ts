/**
 * The dedup history of one scope (an input partition): the image embeddings of the last `horizon`
 * records accepted in it, as float16, with their uid and offset, and a search for the most similar.
 *
 * Rows are numbered by a sequence number (0, 1, ... in acceptance order) and held in segments of
 * `segmentRows(horizon)` (half the horizon) rows, aligned to multiples of that size (./segment.ts: each
 * searched exactly while young, then through an inverted file trained on its own first rows). A whole
 * segment leaves once the rows after it cover the horizon, so the history holds between `horizon` and
 * `horizon` + half the horizon + GROUP_ROWS rows: memory is bounded by the horizon (2 D bytes a row,
 * plus the uid and offset).
 *
 * Everything here is a function of the sequence numbers and rows held: segment bounds are aligned,
 * the first row held is `historyStart(count, horizon)` (evaluated at group boundaries), and each
 * segment is built from its own rows. A history rebuilt from the committed rows after a restart
 * (`ScopeHistory` started at that row, then fed in order) is the same as the one that ran on.
 */
import { float32ToFloat16Bits } from "../io/float16.ts";
import { GROUP_ROWS, type SearchEngine, Segment } from "./segment.ts";

/** The most first rows of a segment searched exactly before its centres are trained on them. */
const TRAIN_ROWS = 16_384;

/** Rows of a segment: half the horizon, rounded up to whole groups. */
export function segmentRows(horizon: number): number {
  return GROUP_ROWS * Math.max(1, Math.ceil(horizon / 2 / GROUP_ROWS));
}

/**
 * The first sequence number held once `count` rows were appended: whole segments leave, once the rows
 * after them (counted in whole groups) cover the horizon.
 */
export function historyStart(count: number, horizon: number): number {
  const size = segmentRows(horizon);
  const grouped = GROUP_ROWS * Math.floor(count / GROUP_ROWS);
  return size * Math.floor(Math.max(0, grouped - horizon) / size);
}

/** The most rows a history of this horizon holds. */
export function maxHistoryRows(horizon: number): number {
  return horizon + segmentRows(horizon) + GROUP_ROWS;
}

/** What the history keeps of each row besides its embedding. */
export interface HistoryEntry {
  uid: string | null;
  offset: string;
}

export interface HistoryMatch {
  /** Per query, the largest inner product found (-Infinity when the history is empty). */
  best: Float32Array;
  /** Per query, the sequence number of that row (-1 when none). */
  seq: Float64Array;
}

export class ScopeHistory {
  readonly dim: number;
  readonly horizon: number;
  readonly probes: number;
  private readonly engine: SearchEngine;
  private readonly size: number;
  /** Next sequence number. */
  private next: number;
  /** First sequence number held. */
  private first: number;
  private readonly segments: Segment[] = [];
  /** Entries of the rows held, entries[seq - first]. */
  private entries: HistoryEntry[] = [];

  /** An empty history whose first row will be `start` (a rebuild starts where the one it replaces held). */
  constructor(engine: SearchEngine, o: { dim: number; horizon: number; probes: number; start?: number }) {
    this.engine = engine;
    this.dim = o.dim;
    this.horizon = o.horizon;
    this.probes = o.probes;
    this.size = segmentRows(o.horizon);
    this.next = o.start ?? 0;
    this.first = this.next;
    if (this.next % this.size !== 0) throw new RangeError(`a history starts at a multiple of ${this.size}`);
  }

  /** Rows appended since sequence number 0. */
  get count(): number {
    return this.next;
  }

  /** Rows held now. */
  get rows(): number {
    return this.next - this.first;
  }

  /** Bytes of float16 held. */
  get embeddingBytes(): number {
    return this.segments.reduce((s, x) => s + x.bytes, 0);
  }

  /** The entry of a row held. */
  entry(seq: number): HistoryEntry {
    return this.entries[seq - this.first];
  }

  /** For each of `count` unit queries, the most similar row held (ties: the older row). */
  async search(queries: Float32Array, count: number): Promise<HistoryMatch> {
    const best = new Float32Array(count).fill(Number.NEGATIVE_INFINITY);
    const seq = new Float64Array(count).fill(-1);
    for (const segment of this.segments) await segment.search(queries, count, this.probes, best, seq);
    return { best, seq };
  }

  /** Append rows (unit float32, or float16 bits; `entries.length` of them) in acceptance order. */
  async append(rows: Float32Array | Uint16Array, entries: readonly HistoryEntry[]): Promise<void> {
    const dim = this.dim;
    const bits =
      rows instanceof Uint16Array ? rows : float32ToFloat16Bits(rows.subarray(0, entries.length * dim));
    for (let i = 0; i < entries.length; ) {
      let segment = this.segments[this.segments.length - 1];
      if (!segment || segment.full) {
        segment = new Segment(this.engine, { from: this.next, size: this.size, trainRows: TRAIN_ROWS, dim });
        this.segments.push(segment);
      }
      // Up to the segment's end and the next group boundary, where rows may leave.
      const toGroup = GROUP_ROWS - (this.next % GROUP_ROWS);
      const take = Math.min(segment.size - segment.rows, toGroup, entries.length - i);
      await segment.append(bits.subarray(i * dim, (i + take) * dim), take);
      for (let j = 0; j < take; j++) this.entries.push(entries[i + j]);
      this.next += take;
      i += take;
      if (this.next % GROUP_ROWS === 0) this.evict();
    }
  }

  private evict(): void {
    const start = historyStart(this.next, this.horizon);
    while (this.segments.length > 0 && this.segments[0].from < start) {
      const gone = this.segments.shift() as Segment;
      this.entries.splice(0, gone.rows);
      this.first += gone.rows;
    }
  }
}
