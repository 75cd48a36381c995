/**
 * Conversions between Arrow vectors and clipsieve's plain arrays: embedding columns (list or
 * fixed-size-list of floats) to a float32 matrix, scalar columns to ColumnData and back.
 *
 * arrow-js keeps a sliced Data's `values` and `valueOffsets` already shifted by its offset (only the
 * validity bitmap keeps the offset), so rows index them directly; getValid applies the offset.
 */
import * as arrow from "apache-arrow";
import { inputError, outputError } from "./files.ts";
import { float16BitsToFloat32 } from "./float16.ts";
import type { ColumnData, Matrix } from "./types.ts";

type FloatValues = Float32Array | Float64Array | Uint16Array;

/** A list, large-list or fixed-size-list whose items are floats (16, 32 or 64 bit). */
export function isFloatListType(type: arrow.DataType): boolean {
  const isList =
    arrow.DataType.isList(type) || arrow.DataType.isLargeList(type) || arrow.DataType.isFixedSizeList(type);
  return isList && arrow.DataType.isFloat(type.children[0]?.type);
}

/** Fills one float32 matrix from a list-of-floats column that arrives in one or more batches. */
export interface MatrixBuilder {
  append(vector: arrow.Vector): void;
  finish(): Matrix;
}

/**
 * A builder for a `rows`-row matrix: row 0 sets the dimension and every other row must match it.
 * Fails naming the source, column and row for a null row, a null item or a ragged row.
 */
export function createMatrixBuilder(source: string, column: string, rows: number): MatrixBuilder {
  let dim: number | undefined;
  let out = new Float32Array(0);
  let row = 0;

  const append = (vector: arrow.Vector) => {
    const type = vector.type as arrow.DataType;
    if (!isFloatListType(type)) {
      throw inputError(source, `column '${column}' is ${type}, not a list or fixed-size list of floats`);
    }
    const fixedSize = arrow.DataType.isFixedSizeList(type)
      ? (type as arrow.FixedSizeList).listSize
      : undefined;
    const half = (type.children[0]!.type as arrow.Float).precision === arrow.Precision.HALF;
    if (row + vector.length > rows) {
      throw inputError(source, `column '${column}' has more rows than the ${rows} the file declares`);
    }
    for (const chunk of vector.data) {
      const child = chunk.children[0]!;
      const values = child.values as FloatValues;
      for (let r = 0; r < chunk.length; r++, row++) {
        if (!chunk.getValid(r)) throw inputError(source, `column '${column}' row ${row} is null`);
        const start = fixedSize === undefined ? Number(chunk.valueOffsets[r]) : r * fixedSize;
        const length = fixedSize ?? Number(chunk.valueOffsets[r + 1]) - start;
        if (dim === undefined) {
          dim = length;
          out = new Float32Array(rows * dim);
        } else if (length !== dim) {
          throw inputError(
            source,
            `column '${column}' row ${row} has ${length} values, row 0 has ${dim} (ragged rows)`,
          );
        }
        if (child.nullCount > 0) {
          for (let k = start; k < start + length; k++) {
            if (!child.getValid(k))
              throw inputError(source, `column '${column}' row ${row} holds a null value`);
          }
        }
        const items = values.subarray(start, start + length);
        out.set(half ? float16BitsToFloat32(items as Uint16Array) : items, row * length);
      }
    }
    // an empty fixed-size-list column still has a dimension
    if (dim === undefined && fixedSize !== undefined && rows === 0) dim = fixedSize;
  };

  const finish = (): Matrix => {
    if (row !== rows)
      throw inputError(source, `column '${column}' has ${row} rows, the file declares ${rows}`);
    return { rows, dim: dim ?? 0, data: out };
  };
  return { append, finish };
}

/** The embeddings of a list or fixed-size-list column of floats as a float32 matrix. */
export function listColumnToMatrix(vector: arrow.Vector, source: string, column: string): Matrix {
  const builder = createMatrixBuilder(source, column, vector.length);
  builder.append(vector);
  return builder.finish();
}

/** Copies a column of a fixed-width numeric type into `out`, nulls as NaN (float) or an error (int). */
function copyNumbers(
  vector: arrow.Vector,
  out: Float32Array | Float64Array | Int32Array,
  source: string,
  column: string,
): void {
  const half = arrow.DataType.isFloat(vector.type) && vector.type.precision === arrow.Precision.HALF;
  const big = arrow.DataType.isInt(vector.type) && vector.type.bitWidth === 64;
  let row = 0;
  for (const chunk of vector.data) {
    const values = chunk.values as ArrayLike<number | bigint>;
    const converted = half ? float16BitsToFloat32(values as Uint16Array) : values;
    for (let r = 0; r < chunk.length; r++, row++) {
      if (!chunk.getValid(r)) {
        if (out instanceof Int32Array) throw inputError(source, `column '${column}' row ${row} is null`);
        out[row] = Number.NaN;
      } else if (big) {
        const value = values[r] as bigint;
        if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
          throw inputError(
            source,
            `column '${column}' row ${row} holds ${value}, beyond a float64's exact integers`,
          );
        }
        out[row] = Number(value);
      } else {
        out[row] = converted[r] as number;
      }
    }
  }
}

/**
 * A scalar Arrow column as ColumnData: floats keep their width (float16 widens to Float32Array);
 * integers up to 32 bits become Int32Array (uint32 and 64-bit ones Float64Array, exact to 2^53);
 * booleans Int32Array of 0/1; strings string[], or (string | null)[] when the column has nulls.
 */
export function vectorToColumn(vector: arrow.Vector, source: string, column: string): ColumnData {
  const type = vector.type as arrow.DataType;
  const rows = vector.length;
  if (arrow.DataType.isFloat(type)) {
    const out = type.precision === arrow.Precision.DOUBLE ? new Float64Array(rows) : new Float32Array(rows);
    copyNumbers(vector, out, source, column);
    return out;
  }
  if (arrow.DataType.isInt(type)) {
    const fitsInt32 = type.bitWidth < 32 || (type.bitWidth === 32 && type.isSigned);
    const out = fitsInt32 ? new Int32Array(rows) : new Float64Array(rows);
    copyNumbers(vector, out, source, column);
    return out;
  }
  if (arrow.DataType.isBool(type)) {
    const out = new Int32Array(rows);
    for (let i = 0; i < rows; i++) {
      const value = vector.get(i) as boolean | null;
      if (value === null) throw inputError(source, `column '${column}' row ${i} is null`);
      out[i] = value ? 1 : 0;
    }
    return out;
  }
  const isString =
    arrow.DataType.isUtf8(type) ||
    arrow.DataType.isLargeUtf8(type) ||
    arrow.DataType.isUtf8View(type) ||
    (arrow.DataType.isDictionary(type) && arrow.DataType.isUtf8(type.dictionary));
  if (isString) {
    const out = new Array<string | null>(rows);
    for (let i = 0; i < rows; i++) out[i] = (vector.get(i) as string | null) ?? null;
    return out;
  }
  throw inputError(
    source,
    `column '${column}' has type ${type}, which clipsieve does not read as a table column`,
  );
}

/** A ColumnData as an Arrow vector (strings as nullable Utf8). */
export function columnToVector(data: ColumnData, path: string, column: string): arrow.Vector {
  if (data instanceof Float32Array || data instanceof Float64Array || data instanceof Int32Array) {
    return arrow.makeVector(data);
  }
  if (Array.isArray(data)) {
    const bad = data.findIndex((value) => value !== null && typeof value !== "string");
    if (bad >= 0) throw outputError(path, `column '${column}' row ${bad} is neither a string nor null`);
    return arrow.vectorFromArray(data, new arrow.Utf8());
  }
  throw outputError(
    path,
    `column '${column}' is not a Float32Array, Float64Array, Int32Array or string array`,
  );
}

/** Parses Arrow IPC bytes, file or stream format (arrow-js tells them apart by their magic). */
export function readArrowIpc(bytes: Uint8Array, path: string): arrow.Table {
  try {
    return arrow.tableFromIPC(bytes);
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    const hint = /compress/i.test(reason)
      ? " (compressed Arrow IPC is not supported: write it uncompressed, e.g. pyarrow feather.write_feather(..., compression='uncompressed'), or as Parquet)"
      : "";
    throw inputError(path, `not a readable Arrow IPC file or stream: ${reason}${hint}`, err);
  }
}
