/**
 * The Kafka side of `export`: reads an accepted topic in a consumer group (read_committed), decodes each
 * record's value for uid, text, url and embeddings, takes its scores from the `clipsieve-scores`
 * header, and hands it to the ExportWriter, which commits the group's offsets only after the files
 * holding the records are durable. Bounded by the end offsets captured at start unless `follow`.
 *
 * One lock serialises everything that touches the buffers: fetched batches, follow-mode timed flushes,
 * the rebalance drop and the final flush.
 */

import { ClipsieveError } from "../common/errors.ts";
import type { Logger } from "../common/logger.ts";
import type { DecodedRecord } from "../common/record.ts";
import { createDecoder } from "../decode/decoder.ts";
import type { RecordFormat } from "../decode/options.ts";
import { writeAll, writeFileAtomic } from "../io/files.ts";
import { writeUidNpy } from "../io/npy.ts";
import { readParquetColumns } from "../io/table.ts";
import type { SchemaRegistrySecurity } from "../kafka/index.ts";
import { type KafkaClient, kafkaErrorKind } from "../kafka/index.ts";
import { HEADER } from "../sink/outputs.ts";
import { type ExportedFile, type ExportRecord, ExportWriter, listExportFiles } from "./export-writer.ts";
import { consumeRange, type RangeConsumer } from "./topic-range.ts";

export interface ExportOptions {
  kafka: KafkaClient;
  topic: string;
  group: string;
  out: string;
  embeddings: boolean;
  maxFileBytes: number;
  follow: boolean;
  /** Follow mode: a partition's buffer is written once its oldest record is this old. */
  flushMs: number;
  format: RecordFormat;
  schemaRegistryUrl?: string;
  schemaRegistryAuth?: SchemaRegistrySecurity;
  /** Also write DataComp's uid .npy over every file in `out`. */
  uidsNpy?: string;
  logger: Logger;
  /** A progress line (every `progressEveryMs` and at the end). */
  progress?(line: string): void;
  progressEveryMs?: number;
  onFile?(file: ExportedFile): void;
  /** Stop: write what is buffered, commit, and return. */
  signal?: AbortSignal;
  sessionTimeoutMs?: number;
}

export interface ExportSummary {
  records: number;
  files: number;
  /** Rows of the uid .npy, when asked for. */
  uids?: number;
  stopped: boolean;
}

function header(r: DecodedRecord, name: string): string | undefined {
  const v = r.headers[name];
  return v === undefined ? undefined : v.toString();
}

function where(r: DecodedRecord): string {
  return `topic ${r.source.topic} partition ${r.source.partition} offset ${r.source.offset}${r.uid ? ` (uid ${r.uid})` : ""}`;
}

/** An accepted record as a row of the export: its value decoded, its scores from the header. */
export function toExportRecord(r: DecodedRecord, embeddings: boolean): ExportRecord {
  if (r.failure) {
    throw new ClipsieveError(
      "LAKE_RECORD_INVALID",
      `${where(r)}: the value does not decode (${r.failure.code}: ${r.failure.message}); is --format right?`,
    );
  }
  const scoresText = header(r, HEADER.scores);
  if (scoresText === undefined) {
    throw new ClipsieveError(
      "LAKE_RECORD_INVALID",
      `${where(r)}: no ${HEADER.scores} header; export reads the accepted topic of clipsieve run`,
    );
  }
  let scores: unknown;
  try {
    scores = JSON.parse(scoresText);
  } catch {
    scores = undefined;
  }
  // A null is a score the record was not given (`clipsieve-not-computed` says why): a null cell.
  if (
    typeof scores !== "object" ||
    scores === null ||
    Object.values(scores).some((v) => typeof v !== "number" && v !== null)
  ) {
    throw new ClipsieveError(
      "LAKE_RECORD_INVALID",
      `${where(r)}: ${HEADER.scores} is not a JSON object of numbers (or nulls)`,
    );
  }
  const numbers = Object.fromEntries(
    Object.entries(scores as Record<string, number | null>).filter(([, v]) => v !== null),
  ) as Record<string, number>;
  return {
    partition: r.source.partition,
    offset: BigInt(r.source.offset),
    timestampMs: Number(r.timestamp),
    uid: r.uid ?? "",
    text: r.text ?? null,
    url: r.url ?? null,
    scores: numbers,
    policyVersion: header(r, HEADER.policyVersion) ?? null,
    windowId: header(r, HEADER.windowId) ?? null,
    source: header(r, HEADER.source) ?? null,
    ...(embeddings ? { imageEmbedding: r.imageEmbedding, textEmbedding: r.textEmbedding } : {}),
  };
}

/** DataComp's uid .npy over every exported file (earlier runs' included), written whole. */
export async function writeExportedUids(dir: string, path: string): Promise<number> {
  const uids: string[] = [];
  for (const file of listExportFiles(dir)) {
    const { uid } = await readParquetColumns(file, ["uid"]);
    for (const u of uid as (string | null)[]) if (u !== null) uids.push(u);
  }
  const bytes = writeUidNpy(uids);
  await writeFileAtomic(path, (f) => writeAll(f, bytes));
  return uids.length;
}

export async function runExport(opts: ExportOptions): Promise<ExportSummary> {
  const { logger } = opts;
  const decoder = await createDecoder(
    {
      format: opts.format,
      schemaRegistryUrl: opts.schemaRegistryUrl,
      schemaRegistryAuth: opts.schemaRegistryAuth,
    },
    { logger },
  );
  let lock: Promise<unknown> = Promise.resolve();
  const locked = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = lock.then(fn);
    lock = run.catch(() => {});
    return run;
  };
  let range: RangeConsumer | undefined;
  const writer = new ExportWriter({
    dir: opts.out,
    topic: opts.topic,
    maxFileBytes: opts.maxFileBytes,
    embeddings: opts.embeddings,
    onFile: opts.onFile,
    commit: (partition, next) => commitWithRetry(() => range!.commit(partition, next), logger),
  });
  await writer.init();

  const started = Date.now();
  let lastProgress = "";
  const progressLine = (final = false) => {
    const state = `${writer.records} records in ${writer.files} files`;
    const buffered = final ? "" : `, ${writer.bufferedRecords} buffered`;
    // An idle follower stays quiet: a line only when something moved.
    if (!final && state + buffered === lastProgress) return;
    lastProgress = state + buffered;
    const secs = (Date.now() - started) / 1000;
    const rate = secs > 0 ? Math.round(writer.records / secs) : 0;
    opts.progress?.(`export ${opts.topic}: ${state}${buffered}, ${rate} records/s`);
  };

  let failure: unknown;
  range = await consumeRange({
    kafka: opts.kafka,
    topic: opts.topic,
    groupId: opts.group,
    follow: opts.follow,
    logger,
    sessionTimeoutMs: opts.sessionTimeoutMs,
    onBatch: ({ records, heartbeat }) =>
      locked(async () => {
        const decoded = await decoder.decodeBatch(records);
        for (const d of decoded) await writer.add(toExportRecord(d, opts.embeddings));
        await heartbeat();
      }),
    onRebalance: () =>
      locked(async () => {
        logger.info({ topic: opts.topic }, "rebalance: buffered records are dropped and read again");
        writer.dropAll();
      }),
  });

  const timers: NodeJS.Timeout[] = [];
  if (opts.follow) {
    timers.push(
      setInterval(
        () => {
          locked(async () => {
            for (const p of writer.partitionsBufferedSince(Date.now() - opts.flushMs))
              await writer.flushPartition(p);
          }).catch((err: unknown) => {
            failure ??= err;
          });
        },
        Math.min(1000, opts.flushMs),
      ),
    );
  }
  if (opts.progress) timers.push(setInterval(() => progressLine(), opts.progressEveryMs ?? 2000));

  const aborted = new Promise<void>((resolve) => {
    if (opts.signal?.aborted) resolve();
    opts.signal?.addEventListener("abort", () => resolve(), { once: true });
  });
  let stopped = false;
  try {
    await Promise.race([range.finished, aborted.then(() => (stopped = true))]);
    // Stop intake, let the batch in hand finish, then write and commit what is buffered.
    range.pause();
    await locked(async () => {
      if (failure) throw failure;
      await writer.flushAll();
    });
  } finally {
    for (const t of timers) clearInterval(t);
    await range.stop();
    await decoder.close();
  }
  if (failure) throw failure;
  const summary: ExportSummary = { records: writer.records, files: writer.files, stopped };
  if (opts.uidsNpy) summary.uids = await writeExportedUids(opts.out, opts.uidsNpy);
  progressLine(true);
  return summary;
}

/**
 * A commit is retried while Kafka calls the error retriable (a coordinator moving); any other failure
 * stops the export. Carrying on past a failed commit would let a second uncommitted flush of the same
 * partition begin after it, and the restart argument (docs/data-lake.md) needs every uncommitted file
 * to start at the committed offset.
 */
async function commitWithRetry(commit: () => Promise<void>, logger: Logger, attempts = 4): Promise<void> {
  for (let i = 1; ; i++) {
    try {
      return await commit();
    } catch (err) {
      // A membership error means the group must be rejoined: this member's view is stale.
      if (i >= attempts || kafkaErrorKind(err) !== "retryable") {
        throw new ClipsieveError(
          "LAKE_COMMIT_FAILED",
          `the files are written but the offset commit failed (${(err as Error).message}); ` +
            "run export again: it rewrites those records under the same file names",
          { cause: err },
        );
      }
      logger.warn({ err, attempt: i }, "offset commit failed; retrying");
      await new Promise((r) => setTimeout(r, 200 * i));
    }
  }
}
