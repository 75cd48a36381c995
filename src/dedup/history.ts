/**
 * The dedup history of one scope (an input partition): the image embeddings of the last `horizon`
 * records accepted in it, as float16, with their uid and offset, and a search for the most similar.
 *
 * Rows are numbered by a sequence number (0, 1, ... in acceptance order). They are held like the levels
 * of a log-structured merge tree, so that every row is searched through an index while appending stays
 * cheap: the newest rows (fewer than TAIL_ROWS) are searched exactly; every TAIL_ROWS rows become a
 * segment (./segment.ts), and four consecutive segments of one size become one segment four times as
 * large, up to the top size (at most half the horizon). Whole top-size segments leave once the
 * rows after them cover the horizon, so the history holds between `horizon` and `horizon` + top size
 * + TAIL_ROWS rows: memory is bounded by the horizon (2 D bytes a row, plus the uid and offset).
 *
 * Everything here is a function of the sequence numbers and rows held: segment bounds are aligned to
 * multiples of their size, the first row held is `historyStart(count, horizon)`, and each segment is
 * built from its own rows. A history rebuilt from the committed rows after a restart (`ScopeHistory`
 * started at that row, then fed in order) is the same as the one that was never interrupted.
 */
import { float32ToFloat16Bits } from "../io/float16.ts";
import type { ScoringEngine } from "../score/engine.ts";
import { buildSegment, rowsInOrder, type Segment, searchSegment } from "./segment.ts";

/** Rows searched exactly before they become a segment; also the smallest segment. */
export const TAIL_ROWS = 1024;
/** Segments merged into one of the next size. */
const FANOUT = 4;

type SearchEngine = Pick<ScoringEngine, "nearest" | "bestRows" | "dots">;

/** The largest segment: TAIL_ROWS x 4^k, at most half the horizon (at least TAIL_ROWS). */
export function topSegmentRows(horizon: number): number {
  let size = TAIL_ROWS;
  while (size * FANOUT <= horizon / 2) size *= FANOUT;
  return size;
}

/**
 * The first sequence number held once `count` rows were appended. Rows leave only when the tail is
 * sealed (every TAIL_ROWS rows), in whole top-size segments, once the sealed rows after them cover
 * the horizon.
 */
export function historyStart(count: number, horizon: number): number {
  const top = topSegmentRows(horizon);
  const sealed = TAIL_ROWS * Math.floor(count / TAIL_ROWS);
  return top * Math.floor(Math.max(0, sealed - horizon) / top);
}

/** The most rows a history of this horizon holds. */
export function maxHistoryRows(horizon: number): number {
  return horizon + topSegmentRows(horizon) + TAIL_ROWS;
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
  /** Next sequence number. */
  private next: number;
  /** First sequence number held. */
  private first: number;
  private readonly segments: { segment: Segment; size: number }[] = [];
  private tail: Uint16Array;
  private tailRows = 0;
  /** Entries of the rows held, entries[seq - first]. */
  private entries: HistoryEntry[] = [];

  /** An empty history whose first row will be `start` (a rebuild starts where the one it replaces held). */
  constructor(engine: SearchEngine, o: { dim: number; horizon: number; probes: number; start?: number }) {
    this.engine = engine;
    this.dim = o.dim;
    this.horizon = o.horizon;
    this.probes = o.probes;
    this.next = o.start ?? 0;
    this.first = this.next;
    if (this.next % TAIL_ROWS !== 0) throw new RangeError(`a history starts at a multiple of ${TAIL_ROWS}`);
    this.tail = new Uint16Array(TAIL_ROWS * o.dim);
  }

  /** Rows appended since sequence number 0. */
  get count(): number {
    return this.next;
  }

  /** Rows held now. */
  get rows(): number {
    return this.next - this.first;
  }

  /** Bytes held by embeddings (float16). */
  get embeddingBytes(): number {
    return (this.segments.reduce((s, x) => s + x.segment.rows, 0) + TAIL_ROWS) * this.dim * 2;
  }

  /** The entry of a row held. */
  entry(seq: number): HistoryEntry {
    return this.entries[seq - this.first];
  }

  /** For each of `count` unit queries, the most similar row held (ties: the older row). */
  async search(queries: Float32Array, count: number): Promise<HistoryMatch> {
    const best = new Float32Array(count).fill(Number.NEGATIVE_INFINITY);
    const seq = new Float64Array(count).fill(-1);
    for (const { segment } of this.segments) {
      await searchSegment(this.engine, segment, queries, count, this.dim, this.probes, best, seq);
    }
    if (this.tailRows > 0) {
      const tail: Segment = { from: this.next - this.tailRows, rows: this.tailRows, data: this.tail };
      await searchSegment(this.engine, tail, queries, count, this.dim, this.probes, best, seq);
    }
    return { best, seq };
  }

  /** Append rows (unit float32, or float16 bits; `entries.length` of them) in acceptance order. */
  async append(rows: Float32Array | Uint16Array, entries: readonly HistoryEntry[]): Promise<void> {
    const dim = this.dim;
    const bits =
      rows instanceof Uint16Array ? rows : float32ToFloat16Bits(rows.subarray(0, entries.length * dim));
    for (let i = 0; i < entries.length; ) {
      // A rebuild hands many rows at once: whole aligned segments are built directly, as the merges of
      // their smaller segments would have built them (a segment is a function of its rows alone).
      const direct = this.tailRows === 0 ? this.directSize(entries.length - i) : 0;
      if (direct > 0) {
        for (let j = 0; j < direct; j++) this.entries.push(entries[i + j]);
        this.next += direct;
        await this.pushSegment(bits.slice(i * dim, (i + direct) * dim), direct);
        i += direct;
        continue;
      }
      const take = Math.min(TAIL_ROWS - this.tailRows, entries.length - i);
      this.tail.set(bits.subarray(i * dim, (i + take) * dim), this.tailRows * dim);
      for (let j = 0; j < take; j++) this.entries.push(entries[i + j]);
      this.tailRows += take;
      this.next += take;
      i += take;
      if (this.tailRows === TAIL_ROWS) await this.seal();
    }
  }

  /** The largest segment size, aligned at the next row and at most `available` rows (0: none). */
  private directSize(available: number): number {
    let size = 0;
    const top = topSegmentRows(this.horizon);
    for (let s = TAIL_ROWS; s <= top && s <= available; s *= FANOUT) if (this.next % s === 0) size = s;
    return size;
  }

  /** The full tail becomes a segment. */
  private async seal(): Promise<void> {
    const data = this.tail;
    this.tail = new Uint16Array(TAIL_ROWS * this.dim);
    this.tailRows = 0;
    await this.pushSegment(data, TAIL_ROWS);
  }

  /**
   * The segment of the last `rows` rows appended (`data`, in order, kept) joins the list; equal
   * segments merge upwards; segments past the horizon leave.
   */
  private async pushSegment(data: Uint16Array, rows: number): Promise<void> {
    const dim = this.dim;
    const from = this.next - rows;
    this.segments.push({ segment: await buildSegment(this.engine, data, rows, dim, from), size: rows });
    const top = topSegmentRows(this.horizon);
    for (;;) {
      const n = this.segments.length;
      if (n < FANOUT) break;
      const last = this.segments.slice(n - FANOUT);
      const size = last[0].size;
      if (size >= top || !last.every((s) => s.size === size)) break;
      const merged = new Uint16Array(size * FANOUT * dim);
      for (const [j, s] of last.entries()) merged.set(rowsInOrder(s.segment, dim), j * size * dim);
      const segment = await buildSegment(this.engine, merged, size * FANOUT, dim, last[0].segment.from);
      this.segments.splice(n - FANOUT, FANOUT, { segment, size: size * FANOUT });
    }
    const start = historyStart(this.next, this.horizon);
    while (this.segments.length > 0 && this.segments[0].segment.from < start) {
      const gone = this.segments.shift() as { segment: Segment };
      this.entries.splice(0, gone.segment.rows);
      this.first += gone.segment.rows;
    }
  }
}
