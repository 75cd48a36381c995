/**
 * The file side of `export`: accepted records become Parquet files for training, one folder per hour
 * of the record timestamp, and consumer offsets are committed only for records already in durable files.
 *
 * Layout: `<out>/hour=2026-11-27T23/part-<partition>-<firstOffset>.parquet`.
 *
 * Records of one partition are buffered in offset order. A flush of a partition writes one file per hour
 * present in its buffer, each through a temporary name, fsync and rename (then an fsync of the folder),
 * and only then commits the partition's next offset. A partition is flushed when its buffer reaches
 * `maxFileBytes` (so no file is larger), at the end of a bounded run, on stop, and in follow mode when
 * its oldest buffered record is `flushMs` old.
 *
 * Why a crash neither loses nor duplicates (docs/data-lake.md has the long form): a file is named by
 * its partition and the offset of its first record. Every file whose records are not all committed was
 * written by a flush that started at the committed offset C, so its first record f is the first record
 * of its hour at or after C. After a restart the records from C on are read again, and whichever flush
 * takes f takes it as the first record of its hour in that flush, so it writes the same name and
 * replaces the old file whole. Records before C are in files no later run touches.
 */
import { readdirSync } from "node:fs";
import { mkdir, open, readdir, readFile, unlink } from "node:fs/promises";
import { join } from "node:path";
import * as arrow from "apache-arrow";
import { ClipsieveError } from "../common/errors.ts";
import { outputError, writeAll, writeFileAtomic } from "../io/files.ts";
import { parquetBytes } from "../io/parquet.ts";
import { SCORE_NAMES } from "../score/registry.ts";

/** One accepted record, as it goes into a file. */
export interface ExportRecord {
  partition: number;
  offset: bigint;
  /** Record timestamp, ms since the epoch: picks the hour folder. */
  timestampMs: number;
  uid: string;
  text: string | null;
  url: string | null;
  scores: Record<string, number>;
  policyVersion: string | null;
  windowId: string | null;
  /** `topic/partition/offset` of the input record the filter accepted. */
  source: string | null;
  imageEmbedding?: Float32Array;
  textEmbedding?: Float32Array;
}

export interface ExportedFile {
  path: string;
  partition: number;
  firstOffset: bigint;
  records: number;
  bytes: number;
}

export interface ExportWriterOptions {
  dir: string;
  /** The topic exported; recorded in the folder so a second topic cannot mix in. */
  topic: string;
  maxFileBytes: number;
  embeddings: boolean;
  /** Called after a partition's files are durable, with the next offset to read. */
  commit(partition: number, next: bigint): Promise<void>;
  onFile?(file: ExportedFile): void;
}

const MARKER = "_clipsieve_export.json";
const PART = /^part-(\d+)-(\d+)\.parquet$/;
/** writeFileAtomic's temporary names: `.<name>.<pid>.<random>.tmp`. */
const TEMP = /^\.part-\d+-\d+\.parquet\.(\d+)\.[0-9a-f]+\.tmp$/;

export function hourFolder(timestampMs: number): string {
  return `hour=${new Date(timestampMs).toISOString().slice(0, 13)}`;
}

export function fileName(partition: number, firstOffset: bigint): string {
  return `part-${partition}-${firstOffset}.parquet`;
}

/** What a record adds to a file before compression: its strings, numbers and vectors. */
function estimateBytes(r: ExportRecord): number {
  const strings =
    r.uid.length +
    (r.text?.length ?? 0) +
    (r.url?.length ?? 0) +
    (r.policyVersion?.length ?? 0) +
    (r.windowId?.length ?? 0) +
    (r.source?.length ?? 0);
  const vectors = 4 * ((r.imageEmbedding?.length ?? 0) + (r.textEmbedding?.length ?? 0));
  return strings + vectors + 8 * SCORE_NAMES.length + 16 + 6 * 4;
}

interface PartitionBuffer {
  records: ExportRecord[];
  bytes: number;
  /** Date.now() when the oldest buffered record arrived. */
  since: number;
  /** The next offset expected: records before it were taken already (a re-delivery is skipped). */
  next: bigint;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

async function fsyncDir(path: string): Promise<void> {
  const handle = await open(path, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export class ExportWriter {
  private readonly opts: ExportWriterOptions;
  private readonly buffers = new Map<number, PartitionBuffer>();
  private dim: number | undefined;
  files = 0;
  records = 0;

  constructor(opts: ExportWriterOptions) {
    if (!(opts.maxFileBytes > 0)) throw new ClipsieveError("CONFIG_INVALID", "maxFileBytes must be positive");
    this.opts = opts;
  }

  /**
   * Makes the folder, checks it belongs to this topic, and removes temporary files that a killed export
   * left (those of processes no longer running): a reader then never meets half a file.
   */
  async init(): Promise<void> {
    const { dir, topic } = this.opts;
    await mkdir(dir, { recursive: true });
    const marker = join(dir, MARKER);
    let existing: { topic?: string } | undefined;
    try {
      existing = JSON.parse(await readFile(marker, "utf8")) as { topic?: string };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") {
        throw outputError(marker, `unreadable export marker: ${(err as Error).message}`, err);
      }
    }
    if (existing && existing.topic !== topic) {
      throw outputError(
        dir,
        `holds an export of topic ${existing.topic}; export topic ${topic} into another folder`,
      );
    }
    if (!existing) {
      await writeFileAtomic(marker, (f) =>
        writeAll(f, Buffer.from(`${JSON.stringify({ format: "clipsieve.export", version: 1, topic })}\n`)),
      );
    }
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      if (!entry.isDirectory() || !entry.name.startsWith("hour=")) continue;
      for (const name of await readdir(join(dir, entry.name))) {
        const m = TEMP.exec(name);
        if (m && !processAlive(Number(m[1]))) await unlink(join(dir, entry.name, name));
      }
    }
  }

  /** Buffered bytes of all partitions. */
  get bufferedBytes(): number {
    let n = 0;
    for (const b of this.buffers.values()) n += b.bytes;
    return n;
  }

  get bufferedRecords(): number {
    let n = 0;
    for (const b of this.buffers.values()) n += b.records.length;
    return n;
  }

  /** Takes a record (in offset order per partition); flushes its partition when the buffer is full. */
  async add(r: ExportRecord): Promise<void> {
    if (this.opts.embeddings) {
      const d = r.imageEmbedding?.length;
      if (d === undefined || r.textEmbedding?.length !== d) {
        throw new ClipsieveError(
          "LAKE_RECORD_INVALID",
          `partition ${r.partition} offset ${r.offset} (uid ${r.uid}): no image and text embeddings of one length to export`,
        );
      }
      if (this.dim === undefined) this.dim = d;
      else if (d !== this.dim) {
        throw new ClipsieveError(
          "LAKE_RECORD_INVALID",
          `partition ${r.partition} offset ${r.offset} (uid ${r.uid}): embeddings of ${d} values, earlier records had ${this.dim}`,
        );
      }
    }
    const bytes = estimateBytes(r);
    let buffer = this.buffers.get(r.partition);
    if (buffer && r.offset < buffer.next) return;
    if (buffer && buffer.records.length > 0 && buffer.bytes + bytes > this.opts.maxFileBytes) {
      await this.flushPartition(r.partition);
      buffer = this.buffers.get(r.partition);
    }
    if (!buffer) {
      buffer = { records: [], bytes: 0, since: Date.now(), next: 0n };
      this.buffers.set(r.partition, buffer);
    }
    if (buffer.records.length === 0) buffer.since = Date.now();
    buffer.records.push(r);
    buffer.bytes += bytes;
    buffer.next = r.offset + 1n;
  }

  /** Partitions whose oldest buffered record arrived before `olderThan` (ms since the epoch). */
  partitionsBufferedSince(olderThan: number): number[] {
    return [...this.buffers].filter(([, b]) => b.records.length > 0 && b.since <= olderThan).map(([p]) => p);
  }

  async flushPartition(partition: number): Promise<void> {
    const buffer = this.buffers.get(partition);
    if (!buffer || buffer.records.length === 0) return;
    const byHour = new Map<string, ExportRecord[]>();
    for (const r of buffer.records) {
      const hour = hourFolder(r.timestampMs);
      let list = byHour.get(hour);
      if (!list) byHour.set(hour, (list = []));
      list.push(r);
    }
    for (const [hour, records] of byHour) {
      const folder = join(this.opts.dir, hour);
      await mkdir(folder, { recursive: true });
      const path = join(folder, fileName(partition, records[0]!.offset));
      const bytes = parquetBytes(this.table(records));
      await writeFileAtomic(path, (f) => writeAll(f, bytes));
      // The rename is durable only once the folder is.
      await fsyncDir(folder);
      this.files++;
      this.opts.onFile?.({
        path,
        partition,
        firstOffset: records[0]!.offset,
        records: records.length,
        bytes: bytes.length,
      });
    }
    await fsyncDir(this.opts.dir);
    const next = buffer.records[buffer.records.length - 1]!.offset + 1n;
    this.records += buffer.records.length;
    buffer.records = [];
    buffer.bytes = 0;
    await this.opts.commit(partition, next);
  }

  async flushAll(): Promise<void> {
    for (const p of [...this.buffers.keys()].sort((a, b) => a - b)) await this.flushPartition(p);
  }

  /** Forget every buffered record (after a rebalance they are read again from the committed offsets). */
  dropAll(): void {
    this.buffers.clear();
  }

  private table(records: ExportRecord[]): arrow.Table {
    const strings = (pick: (r: ExportRecord) => string | null) =>
      arrow.vectorFromArray(records.map(pick), new arrow.Utf8());
    const columns: Record<string, arrow.Vector> = {
      uid: strings((r) => r.uid),
      text: strings((r) => r.text),
      url: strings((r) => r.url),
    };
    for (const score of SCORE_NAMES) {
      columns[score] = arrow.vectorFromArray(
        records.map((r) => (typeof r.scores[score] === "number" ? r.scores[score]! : null)),
        new arrow.Float64(),
      );
    }
    columns.policy_version = strings((r) => r.policyVersion);
    columns.window_id = strings((r) => r.windowId);
    columns.source = strings((r) => r.source);
    columns.partition = arrow.makeVector(Int32Array.from(records, (r) => r.partition));
    columns.offset = arrow.makeVector(BigInt64Array.from(records, (r) => r.offset));
    columns.timestamp = arrow.vectorFromArray(
      records.map((r) => new Date(r.timestampMs)),
      new arrow.TimestampMillisecond("UTC"),
    );
    if (this.opts.embeddings && this.dim !== undefined) {
      columns.image_embedding = embeddingVector(records, this.dim, (r) => r.imageEmbedding!);
      columns.text_embedding = embeddingVector(records, this.dim, (r) => r.textEmbedding!);
    }
    return new arrow.Table(columns);
  }
}

function embeddingVector(
  records: ExportRecord[],
  dim: number,
  pick: (r: ExportRecord) => Float32Array,
): arrow.Vector {
  const values = new Float32Array(records.length * dim);
  for (let i = 0; i < records.length; i++) values.set(pick(records[i]!), i * dim);
  const type = new arrow.FixedSizeList(dim, new arrow.Field("item", new arrow.Float32(), false));
  const child = arrow.makeData({ type: new arrow.Float32(), length: values.length, data: values });
  return arrow.makeVector(arrow.makeData({ type, length: records.length, nullCount: 0, child }));
}

/** Every exported file under `dir` (complete files only: temporary files start with a dot). */
export function listExportFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (!entry.isDirectory() || !entry.name.startsWith("hour=")) continue;
    for (const name of readdirSync(join(dir, entry.name)).sort()) {
      if (PART.test(name)) out.push(join(dir, entry.name, name));
    }
  }
  return out.sort();
}
