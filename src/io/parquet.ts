/**
 * Parquet through parquet-wasm, read from a file-backed Blob: the reader fetches the footer and the
 * chunks of the requested columns only, so a wide DataComp metadata file is not loaded whole. Data
 * comes out in record batches, which keeps parquet-wasm's WebAssembly memory (it grows and never
 * shrinks) near one row group's column chunks instead of a whole decoded table.
 */
import { openAsBlob } from "node:fs";
import * as arrow from "apache-arrow";
import * as pq from "parquet-wasm/node";
import { isClipsieveError } from "../common/errors.ts";
import { assertReadableFile, inputError } from "./files.ts";

const BATCH_ROWS = 8192;

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

async function withParquet<T>(path: string, use: (file: pq.ParquetFile) => Promise<T>): Promise<T> {
  await assertReadableFile(path);
  let file: pq.ParquetFile;
  try {
    file = await pq.ParquetFile.fromFile(await openAsBlob(path));
  } catch (err) {
    throw inputError(path, `not a readable Parquet file: ${errorText(err)}`, err);
  }
  try {
    return await use(file);
  } finally {
    file.free();
  }
}

function schemaOf(file: pq.ParquetFile): arrow.Schema {
  return arrow.tableFromIPC(file.schema().intoIPCStream()).schema;
}

/** The file's top-level fields and its row count, without reading any column data. */
export async function parquetLayout(path: string): Promise<{ fields: arrow.Field[]; rows: number }> {
  return withParquet(path, async (file) => ({
    fields: schemaOf(file).fields,
    rows: file.metadata().fileMetadata().numRows(),
  }));
}

/**
 * Calls `onBatch` with each record batch of the named top-level columns (all of them when omitted),
 * in file order; the batch's columns come in file order too. A missing name fails listing the
 * available columns.
 */
export async function forEachParquetBatch(
  path: string,
  columns: string[] | undefined,
  onBatch: (batch: arrow.Table) => void,
): Promise<arrow.Schema> {
  return withParquet(path, async (file) => {
    const schema = schemaOf(file);
    const available = schema.fields.map((f) => f.name);
    const missing = (columns ?? []).filter((name) => !available.includes(name));
    if (missing.length > 0) {
      throw inputError(
        path,
        `no column ${missing.map((m) => `'${m}'`).join(", ")}; available: ${available.join(", ")}`,
      );
    }
    let stream: ReadableStream<pq.RecordBatch>;
    try {
      stream = await file.stream({ batchSize: BATCH_ROWS, ...(columns === undefined ? {} : { columns }) });
    } catch (err) {
      throw inputError(path, `cannot read Parquet data: ${errorText(err)}`, err);
    }
    try {
      for await (const batch of stream) onBatch(arrow.tableFromIPC(batch.intoIPCStream()));
    } catch (err) {
      if (isClipsieveError(err)) throw err;
      throw inputError(path, `cannot read Parquet data: ${errorText(err)}`, err);
    }
    return columns === undefined ? schema : schema.select(columns);
  });
}

/** Reads the named top-level columns (all when omitted) as one Arrow table of many batches. */
export async function readParquetTable(path: string, columns?: string[]): Promise<arrow.Table> {
  const batches: arrow.RecordBatch[] = [];
  const schema = await forEachParquetBatch(path, columns, (table) => batches.push(...table.batches));
  return batches.length === 0 ? new arrow.Table(schema) : new arrow.Table(batches);
}

/** Encodes an Arrow table as Parquet bytes (Snappy-compressed pages). */
export function parquetBytes(table: arrow.Table): Uint8Array {
  const wasmTable = pq.Table.fromIPCStream(arrow.tableToIPC(table, "stream"));
  const properties = new pq.WriterPropertiesBuilder().setCompression(pq.Compression.SNAPPY).build();
  return pq.writeParquet(wasmTable, properties);
}
