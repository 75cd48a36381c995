/**
 * Reads an embedding matrix from the formats embeddings ship in: NumPy .npy/.npz (DataComp's shards),
 * Arrow IPC and Parquet (a list or fixed-size-list column of floats). The result is always row-major
 * float32; float16 and float64 sources are converted.
 */

import { open } from "node:fs/promises";
import type * as arrow from "apache-arrow";
import { createMatrixBuilder, isFloatListType, listColumnToMatrix, readArrowIpc } from "./arrow-columns.ts";
import { assertReadableFile, extensionOf, inputError, readInputBytes } from "./files.ts";
import { type NdArray, npyHeaderLength, parseNpyHeader, readNpy } from "./npy.ts";
import { listNpzKeys, readNpz, readNpzHeader } from "./npz.ts";
import { forEachParquetBatch, parquetLayout } from "./parquet.ts";
import type { Matrix } from "./types.ts";

export type { Matrix } from "./types.ts";

export interface ReadEmbeddingOptions {
  /** The .npz array or the Arrow/Parquet column; needed only when the file holds more than one candidate. */
  key?: string;
}

const ARROW_EXTENSIONS = [".arrow", ".feather", ".ipc"];
const SUPPORTED = [".npy", ".npz", ...ARROW_EXTENSIONS, ".parquet"];

export async function readEmbeddingMatrix(path: string, opts: ReadEmbeddingOptions = {}): Promise<Matrix> {
  const extension = extensionOf(path);
  if (!SUPPORTED.includes(extension)) {
    throw inputError(
      path,
      `unknown embedding file extension '${extension}' (supported: ${SUPPORTED.join(", ")})`,
    );
  }
  await assertReadableFile(path);
  if (extension === ".npy") return ndArrayToMatrix(readNpy(await readInputBytes(path), path), path);
  if (extension === ".npz") return readNpzMatrix(path, opts.key);
  if (extension === ".parquet") return readParquetMatrix(path, opts.key);
  return readArrowMatrix(path, opts.key);
}

/**
 * The (rows, dim) of an embedding file. For .npy and .npz only the array's header is read; other
 * formats are read whole (their rows are not kept), so a target build can size its one buffer before
 * loading shard after shard into it.
 */
export async function readEmbeddingShape(
  path: string,
  opts: ReadEmbeddingOptions = {},
): Promise<{ rows: number; dim: number }> {
  const extension = extensionOf(path);
  let shape: number[];
  if (extension === ".npy") {
    await assertReadableFile(path);
    shape = parseNpyHeader(await readHead(path), path).shape;
  } else if (extension === ".npz") {
    await assertReadableFile(path);
    const key = opts.key ?? (await soleNpzKey(path));
    shape = (await readNpzHeader(path, key)).shape;
  } else {
    const matrix = await readEmbeddingMatrix(path, opts);
    return { rows: matrix.rows, dim: matrix.dim };
  }
  if (shape.length !== 2) {
    throw inputError(path, `expected a 2-D array (rows x dim), got shape (${shape.join(", ")})`);
  }
  return { rows: shape[0]!, dim: shape[1]! };
}

/** The first bytes of a .npy, through its whole header. */
async function readHead(path: string): Promise<Buffer> {
  const file = await open(path, "r");
  try {
    let head = Buffer.alloc(0);
    for (let want = 4096; ; want *= 16) {
      const buffer = Buffer.alloc(want);
      const { bytesRead } = await file.read(buffer, 0, want, 0);
      head = buffer.subarray(0, bytesRead);
      const needed = npyHeaderLength(head);
      if (bytesRead < want || (needed !== undefined && needed <= bytesRead)) return head;
    }
  } finally {
    await file.close();
  }
}

async function soleNpzKey(path: string): Promise<string> {
  const keys = await listNpzKeys(path);
  if (keys.length !== 1) {
    throw inputError(
      path,
      `holds ${keys.length} arrays; choose one with a key: ${keys.join(", ") || "(none)"}`,
    );
  }
  return keys[0]!;
}

function ndArrayToMatrix(arr: NdArray, source: string): Matrix {
  if (arr.shape.length !== 2) {
    throw inputError(source, `expected a 2-D array (rows x dim), got shape (${arr.shape.join(", ")})`);
  }
  const [rows, dim] = arr.shape as [number, number];
  if (arr.data instanceof Float32Array) return { rows, dim, data: arr.data };
  if (arr.data instanceof Float64Array) return { rows, dim, data: new Float32Array(arr.data) };
  throw inputError(source, `dtype ${arr.dtype} is not a float type (expected <f2, <f4 or <f8)`);
}

async function readNpzMatrix(path: string, key: string | undefined): Promise<Matrix> {
  const keys = await listNpzKeys(path);
  let chosen = key;
  if (chosen === undefined) {
    if (keys.length !== 1) {
      throw inputError(
        path,
        `holds ${keys.length} arrays; choose one with a key: ${keys.join(", ") || "(none)"}`,
      );
    }
    chosen = keys[0]!;
  }
  // readNpz names the missing key and lists the available ones
  const arrays = await readNpz(path, [chosen]);
  return ndArrayToMatrix(arrays[chosen]!, `${path}[${chosen}]`);
}

/** The column to read: `key` when given, else the only list column of floats. */
function chooseListColumn(path: string, fields: arrow.Field[], key: string | undefined): string {
  if (key !== undefined) {
    const field = fields.find((f) => f.name === key);
    if (field === undefined) {
      throw inputError(path, `no column '${key}'; available: ${fields.map((f) => f.name).join(", ")}`);
    }
    if (!isFloatListType(field.type)) {
      throw inputError(path, `column '${key}' is ${field.type}, not a list or fixed-size list of floats`);
    }
    return key;
  }
  const candidates = fields.filter((f) => isFloatListType(f.type)).map((f) => f.name);
  if (candidates.length !== 1) {
    const found = candidates.length === 0 ? "none" : candidates.join(", ");
    throw inputError(
      path,
      `expected exactly one list-of-floats column or a key; list-of-floats columns: ${found} (all columns: ${fields.map((f) => f.name).join(", ")})`,
    );
  }
  return candidates[0]!;
}

async function readParquetMatrix(path: string, key: string | undefined): Promise<Matrix> {
  const { fields, rows } = await parquetLayout(path);
  const column = chooseListColumn(path, fields, key);
  const builder = createMatrixBuilder(path, column, rows);
  await forEachParquetBatch(path, [column], (batch) => builder.append(batch.getChild(column)!));
  return builder.finish();
}

async function readArrowMatrix(path: string, key: string | undefined): Promise<Matrix> {
  const table = readArrowIpc(await readInputBytes(path), path);
  const column = chooseListColumn(path, table.schema.fields, key);
  return listColumnToMatrix(table.getChild(column)!, path, column);
}
