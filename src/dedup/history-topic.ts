/**
 * The dedup history in Kafka: written in the window's own transaction, so what a restarted (or
 * rebalanced) filter reads back is exactly the history of the decisions that were committed, never of
 * a window that was scored but not delivered.
 *
 * Each scope's rows are cut into chunks of `chunkRows` consecutive sequence numbers; a window that
 * accepted rows in a scope writes the chunks they fall in (the open chunk again, whole, with its
 * earlier rows). The topic is compacted and a chunk's key is `<scope>#<slot>`, the slot being the chunk
 * number modulo enough slots to cover the largest history: so the topic keeps about 1.5 horizons per
 * scope however long the filter runs, and a new chunk replaces the one that many rows older.
 *
 * Value: a 4-byte big-endian length, a JSON header (scope, chunk, chunkRows, rows, dim, uids, offsets),
 * then rows x dim float16 values, little-endian.
 */

import { retryDelayMs } from "../common/clock.ts";
import { ClipsieveError, isClipsieveError } from "../common/errors.ts";
import type { Logger } from "../common/logger.ts";
import type { SourceRef } from "../common/record.ts";
import { type KafkaClient, kafkaErrorKind } from "../kafka/index.ts";
import type { OutMessage } from "../sink/outputs.ts";
import { type HistoryEntry, historyStart, maxHistoryRows, segmentRows } from "./history.ts";

/** A scope: the input partition a record came from. */
export function scopeOf(source: SourceRef): string {
  return `${source.topic}/${source.partition}`;
}

/** Rows per chunk: a power of two of at most 256, and at most 512 KiB of float16 per message. */
export function chunkRowsFor(dim: number): number {
  let rows = 256;
  while (rows > 1 && rows * dim * 2 > 512 * 1024) rows /= 2;
  return rows;
}

interface ChunkHeader {
  scope: string;
  chunk: number;
  chunkRows: number;
  rows: number;
  dim: number;
  uids: (string | null)[];
  offsets: string[];
}

/** One chunk read back: its header, and its message (whose float16 rows `chunkBits` reads). */
export interface HistoryChunk {
  header: ChunkHeader;
  value: Buffer;
}

/** A scope's committed history as read back: rows from sequence number `start`, chunk by chunk. */
export interface LoadedScope {
  start: number;
  count: number;
  chunks: HistoryChunk[];
}

export function encodeChunk(header: ChunkHeader, bits: Uint16Array): Buffer {
  const json = Buffer.from(JSON.stringify(header));
  const out = Buffer.alloc(4 + json.length + bits.byteLength);
  out.writeUInt32BE(json.length, 0);
  json.copy(out, 4);
  Buffer.from(bits.buffer, bits.byteOffset, bits.byteLength).copy(out, 4 + json.length);
  return out;
}

export function decodeChunkHeader(value: Buffer): ChunkHeader {
  const length = value.readUInt32BE(0);
  return JSON.parse(value.subarray(4, 4 + length).toString()) as ChunkHeader;
}

/** A chunk's rows, float16 bit patterns (a copy: the Buffer's offset need not be even, as a Uint16Array's must). */
export function chunkBits(value: Buffer): Uint16Array {
  const body = value.subarray(4 + value.readUInt32BE(0));
  const bits = new Uint16Array(body.length / 2);
  Buffer.from(bits.buffer).set(body);
  return bits;
}

export function decodeChunk(value: Buffer): { header: ChunkHeader; bits: Uint16Array } {
  return { header: decodeChunkHeader(value), bits: chunkBits(value) };
}

/** The open chunk of one scope: rows accepted since the last full chunk. */
interface OpenChunk {
  chunk: number;
  bits: Uint16Array;
  entries: HistoryEntry[];
}

export interface HistoryTopicOptions {
  topic: string;
  dim: number;
  horizon: number;
}

export class HistoryTopic {
  readonly topic: string;
  private readonly dim: number;
  private readonly horizon: number;
  private readonly chunkRows: number;
  private readonly slots: number;
  private readonly open = new Map<string, OpenChunk>();
  private readonly kafka: KafkaClient;
  private readonly logger: Logger;

  constructor(kafka: KafkaClient, o: HistoryTopicOptions, logger: Logger) {
    this.kafka = kafka;
    this.logger = logger;
    this.topic = o.topic;
    this.dim = o.dim;
    this.horizon = o.horizon;
    this.chunkRows = chunkRowsFor(o.dim);
    this.slots = Math.ceil(maxHistoryRows(o.horizon) / this.chunkRows) + 2;
  }

  /** The topic exists and is compacted (one partition: it is read whole after a restart or rebalance). */
  async ensure(): Promise<void> {
    await this.kafka.ensureTopics([
      {
        topic: this.topic,
        numPartitions: 1,
        configEntries: [
          { name: "cleanup.policy", value: "compact" },
          // Smaller segments than the broker's 1 GiB, so that replaced chunks are compacted away soon.
          { name: "segment.bytes", value: String(64 * 1024 * 1024) },
        ],
      },
    ]);
  }

  /** Forget the open chunks (the histories are about to be read back). */
  reset(): void {
    this.open.clear();
  }

  /**
   * The committed history of each of `scopes` (read_committed, the whole topic; the newest value of
   * each key), from the first row a history of this horizon holds.
   */
  async load(scopes: ReadonlySet<string>): Promise<Map<string, LoadedScope>> {
    // A broker outage is waited out, as a window's delivery is: the next window needs this history.
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.loadOnce(scopes);
      } catch (err) {
        const kind = kafkaErrorKind(err);
        if (kind !== "retryable" && !isClipsieveError(err, "KAFKA_UNREACHABLE")) throw err;
        this.logger.warn(
          { err, attempt, topic: this.topic },
          "reading the dedup history back failed; retrying",
        );
        await new Promise((r) => setTimeout(r, retryDelayMs(attempt)));
      }
    }
  }

  private async loadOnce(scopes: ReadonlySet<string>): Promise<Map<string, LoadedScope>> {
    const latest = new Map<string, { value: Buffer; offset: bigint }>();
    const t0 = performance.now();
    let bytes = 0;
    const { complete } = await this.kafka.readTopicToEnd(
      this.topic,
      (m) => {
        const key = m.key?.toString() ?? "";
        const scope = key.slice(0, key.lastIndexOf("#"));
        if (!scopes.has(scope)) return;
        if (m.value === null) latest.delete(key);
        else {
          latest.set(key, { value: m.value, offset: BigInt(m.offset) });
          bytes += m.value.length;
        }
      },
      { timeoutMs: 600_000 },
    );
    if (!complete) {
      throw new ClipsieveError(
        "KAFKA_UNREACHABLE",
        `reading the dedup history topic ${this.topic} did not finish in 10 minutes`,
      );
    }
    const byScope = new Map<string, (HistoryChunk & { offset: bigint })[]>();
    for (const { value, offset } of latest.values()) {
      const header = decodeChunkHeader(value);
      const list = byScope.get(header.scope) ?? [];
      list.push({ header, value, offset });
      byScope.set(header.scope, list);
    }
    latest.clear();
    const out = new Map<string, LoadedScope>();
    for (const [scope, chunks] of byScope) {
      const loaded = this.usable(scope, chunks);
      if (loaded) out.set(scope, loaded);
    }
    const rows = [...out.values()].reduce((s, l) => s + l.count - l.start, 0);
    this.logger.info(
      {
        topic: this.topic,
        scopes: out.size,
        rows,
        mb: Math.round(bytes / 2 ** 20),
        ms: Math.round(performance.now() - t0),
      },
      "dedup history read back",
    );
    return out;
  }

  /**
   * A scope's chunks in order, from the first row its history holds; undefined if none are usable.
   * The newest chunk is the one written last (the highest offset: the topic has one partition), not
   * the highest number: after a change of D (a new history from chunk 0) older chunks of higher
   * numbers may linger in slots not yet rewritten, and after a change of horizon (other slots) one
   * number may be held twice. Only chunks like the newest, the last written of each number, count.
   */
  private usable(scope: string, all: (HistoryChunk & { offset: bigint })[]): LoadedScope | undefined {
    const newestChunk = all.reduce((a, b) => (b.offset > a.offset ? b : a));
    const newest = newestChunk.header;
    if (newest.dim !== this.dim) {
      this.logger.warn(
        { scope, dim: newest.dim },
        "the dedup history was written with another dimension; starting it empty",
      );
      return undefined;
    }
    const byNumber = new Map<number, HistoryChunk & { offset: bigint }>();
    for (const c of all) {
      const h = c.header;
      if (h.dim !== newest.dim || h.chunkRows !== newest.chunkRows || h.chunk > newest.chunk) continue;
      const seen = byNumber.get(h.chunk);
      if (!seen || c.offset > seen.offset) byNumber.set(h.chunk, c);
    }
    const rowsPer = newest.chunkRows;
    const count = newest.chunk * rowsPer + newest.rows;
    let start = historyStart(count, this.horizon);
    // The chunks from `start` must all be there, consecutive and full (but the newest).
    const chunks: HistoryChunk[] = [newestChunk];
    for (let n = newest.chunk - 1; n >= 0 && (n + 1) * rowsPer > start; n--) {
      const c = byNumber.get(n);
      if (!c || c.header.rows !== rowsPer) break;
      chunks.unshift(c);
    }
    const earliest = chunks[0].header.chunk * rowsPer;
    if (earliest > start) {
      const size = segmentRows(this.horizon);
      const from = Math.ceil(earliest / size) * size;
      this.logger.warn(
        { scope, wanted: start, held: earliest, from },
        "the dedup history topic lacks rows the horizon needs (retention or compaction); starting after the gap",
      );
      start = from;
    }
    const used = chunks.filter((c) => (c.header.chunk + 1) * rowsPer > start);
    return { start, count, chunks: used };
  }

  /** The chunk the open rows of `scope` continue from after a read-back. */
  adopt(scope: string, loaded: LoadedScope): void {
    const last = loaded.chunks[loaded.chunks.length - 1];
    if (!last || last.header.rows === last.header.chunkRows) return;
    this.open.set(scope, {
      chunk: last.header.chunk,
      bits: chunkBits(last.value),
      entries: last.header.uids.map((uid, i) => ({ uid, offset: last.header.offsets[i] })),
    });
  }

  /**
   * The messages that record rows appended to `scope` (`count` = rows appended before them): the open
   * chunk's rows with the new ones, then any further chunks.
   */
  messages(scope: string, count: number, bits: Uint16Array, entries: readonly HistoryEntry[]): OutMessage[] {
    const dim = this.dim;
    const rowsPer = this.chunkRows;
    const out: OutMessage[] = [];
    let open: OpenChunk | undefined = this.open.get(scope);
    const chunkNow = Math.floor(count / rowsPer);
    if (!open || open.chunk !== chunkNow) {
      open = { chunk: chunkNow, bits: new Uint16Array(0), entries: [] };
      if (count % rowsPer !== 0) {
        // Rows of this chunk written before this process started are not in memory: they were read
        // back (adopt); a chunk that was never adopted starts at its first row.
        this.logger.warn({ scope, count }, "dedup history: an open chunk was not read back");
      }
    }
    let i = 0;
    while (i < entries.length) {
      const room = rowsPer - open.entries.length;
      const take = Math.min(room, entries.length - i);
      const merged: Uint16Array = new Uint16Array((open.entries.length + take) * dim);
      merged.set(open.bits);
      merged.set(bits.subarray(i * dim, (i + take) * dim), open.entries.length * dim);
      open = { chunk: open.chunk, bits: merged, entries: [...open.entries, ...entries.slice(i, i + take)] };
      i += take;
      const header: ChunkHeader = {
        scope,
        chunk: open.chunk,
        chunkRows: rowsPer,
        rows: open.entries.length,
        dim,
        uids: open.entries.map((e) => e.uid),
        offsets: open.entries.map((e) => e.offset),
      };
      out.push({
        key: `${scope}#${open.chunk % this.slots}`,
        value: encodeChunk(header, open.bits),
        headers: {},
      });
      if (open.entries.length === rowsPer)
        open = { chunk: open.chunk + 1, bits: new Uint16Array(0), entries: [] };
    }
    this.open.set(scope, open);
    return out;
  }
}
