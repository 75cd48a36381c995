/**
 * Column tables (scores, selections, DataComp metadata) as Parquet, Arrow IPC file or JSON Lines,
 * chosen by the file extension. Writes are atomic: readers see the old file or the complete new one.
 */
import type { FileHandle } from "node:fs/promises";
import * as arrow from "apache-arrow";
import { columnToVector, readArrowIpc, vectorToColumn } from "./arrow-columns.ts";
import { extensionOf, inputError, outputError, readInputBytes, writeAll, writeFileAtomic } from "./files.ts";
import { parquetBytes, readParquetTable } from "./parquet.ts";
import type { ColumnData } from "./types.ts";

export type { ColumnData } from "./types.ts";

const ARROW_EXTENSIONS = [".arrow", ".feather", ".ipc"];
const READ_EXTENSIONS = [".parquet", ...ARROW_EXTENSIONS, ".jsonl"];
const WRITE_EXTENSIONS = [".parquet", ".arrow", ".feather", ".jsonl"];
const JSONL_ROWS_PER_WRITE = 4096;

function checkColumns(path: string, columns: Record<string, ColumnData>): { names: string[]; rows: number } {
  const names = Object.keys(columns);
  if (names.length === 0) throw outputError(path, "a table needs at least one column");
  const rows = columns[names[0]!]!.length;
  for (const name of names) {
    const column = columns[name]!;
    const isColumn =
      column instanceof Float32Array ||
      column instanceof Float64Array ||
      column instanceof Int32Array ||
      Array.isArray(column);
    if (!isColumn) {
      throw outputError(
        path,
        `column '${name}' is not a Float32Array, Float64Array, Int32Array or string array`,
      );
    }
    if (Array.isArray(column)) {
      const bad = column.findIndex((value) => value !== null && typeof value !== "string");
      if (bad >= 0) throw outputError(path, `column '${name}' row ${bad} is neither a string nor null`);
    }
    if (column.length !== rows) {
      throw outputError(path, `column '${name}' has ${column.length} rows, column '${names[0]}' has ${rows}`);
    }
  }
  return { names, rows };
}

/**
 * Writes the columns, in their key order, to `path`: .parquet, .arrow/.feather (Arrow IPC file) or
 * .jsonl (one object per row). JSON Lines numbers are the shortest decimal that reads back to the same
 * float64 (for a float32 column, the float64 of the float32 value); NaN and +-Infinity become null.
 */
export async function writeTable(path: string, columns: Record<string, ColumnData>): Promise<void> {
  const extension = extensionOf(path);
  if (!WRITE_EXTENSIONS.includes(extension)) {
    throw outputError(
      path,
      `unknown table extension '${extension}' (supported: ${WRITE_EXTENSIONS.join(", ")})`,
    );
  }
  const { names, rows } = checkColumns(path, columns);
  if (extension === ".jsonl") {
    await writeFileAtomic(path, (file) => writeJsonLines(file, names, rows, columns));
    return;
  }
  const vectors: Record<string, arrow.Vector> = {};
  for (const name of names) vectors[name] = columnToVector(columns[name]!, path, name);
  const table = new arrow.Table(vectors);
  const bytes = extension === ".parquet" ? parquetBytes(table) : arrow.tableToIPC(table, "file");
  await writeFileAtomic(path, (file) => writeAll(file, bytes));
}

function jsonNumber(value: number): string {
  if (!Number.isFinite(value)) return "null";
  return Object.is(value, -0) ? "-0" : String(value);
}

async function writeJsonLines(
  file: FileHandle,
  names: string[],
  rows: number,
  columns: Record<string, ColumnData>,
): Promise<void> {
  const keys = names.map((name) => JSON.stringify(name));
  const data = names.map((name) => columns[name]!);
  for (let start = 0; start < rows; start += JSONL_ROWS_PER_WRITE) {
    const lines: string[] = [];
    for (let row = start; row < Math.min(rows, start + JSONL_ROWS_PER_WRITE); row++) {
      const fields = data.map((column, c) => {
        const value = column[row];
        const text =
          typeof value === "number" ? jsonNumber(value) : value === null ? "null" : JSON.stringify(value);
        return `${keys[c]}:${text}`;
      });
      lines.push(`{${fields.join(",")}}\n`);
    }
    await writeAll(file, Buffer.from(lines.join(""), "utf8"));
  }
}

function tableToColumns(table: arrow.Table, path: string, names?: string[]): Record<string, ColumnData> {
  const out: Record<string, ColumnData> = {};
  for (const name of names ?? table.schema.fields.map((f) => f.name)) {
    out[name] = vectorToColumn(table.getChild(name)!, path, name);
  }
  return out;
}

/**
 * Reads a whole table written by writeTable (or by pandas/pyarrow). Numeric JSON Lines columns read
 * back as Float64Array (null as NaN); a key missing from a line reads as null.
 */
export async function readTable(path: string): Promise<Record<string, ColumnData>> {
  const extension = extensionOf(path);
  if (!READ_EXTENSIONS.includes(extension)) {
    throw inputError(
      path,
      `unknown table extension '${extension}' (supported: ${READ_EXTENSIONS.join(", ")})`,
    );
  }
  if (extension === ".parquet") return tableToColumns(await readParquetTable(path), path);
  const bytes = await readInputBytes(path);
  if (extension === ".jsonl") return parseJsonLines(bytes.toString("utf8"), path);
  return tableToColumns(readArrowIpc(bytes, path), path);
}

/** Reads just the named columns of a Parquet file (e.g. DataComp metadata's uid, text, url), in that order. */
export async function readParquetColumns(path: string, names: string[]): Promise<Record<string, ColumnData>> {
  const unique = [...new Set(names)];
  return tableToColumns(await readParquetTable(path, unique), path, unique);
}

interface JsonColumn {
  kind: "number" | "string" | undefined;
  values: (number | string | null)[];
}

function parseJsonLines(text: string, path: string): Record<string, ColumnData> {
  const columns = new Map<string, JsonColumn>();
  let rows = 0;
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === "") continue;
    const where = `line ${i + 1}`;
    let record: unknown;
    try {
      record = JSON.parse(line);
    } catch (err) {
      throw inputError(path, `${where} is not valid JSON: ${(err as Error).message}`, err);
    }
    if (record === null || typeof record !== "object" || Array.isArray(record)) {
      throw inputError(path, `${where} is not a JSON object`);
    }
    for (const [key, value] of Object.entries(record)) {
      let column = columns.get(key);
      if (column === undefined) {
        column = { kind: undefined, values: new Array(rows).fill(null) };
        columns.set(key, column);
      }
      if (value !== null) {
        const kind = typeof value;
        if (kind !== "number" && kind !== "string") {
          throw inputError(
            path,
            `${where}: '${key}' holds a ${Array.isArray(value) ? "array" : kind}; a column holds numbers or strings`,
          );
        }
        if (column.kind !== undefined && column.kind !== kind) {
          throw inputError(
            path,
            `${where}: '${key}' is a ${kind} here but a ${column.kind} on earlier lines`,
          );
        }
        column.kind = kind;
      }
      column.values.push(value as number | string | null);
    }
    rows++;
    for (const column of columns.values()) if (column.values.length < rows) column.values.push(null);
  }
  const out: Record<string, ColumnData> = {};
  for (const [key, column] of columns) {
    if (column.kind === "number") {
      out[key] = Float64Array.from(column.values, (v) => (v === null ? Number.NaN : (v as number)));
    } else {
      out[key] = column.values as (string | null)[];
    }
  }
  return out;
}
