/** A row-major float32 matrix: row i is `data.subarray(i * dim, (i + 1) * dim)`. */
export interface Matrix {
  rows: number;
  dim: number;
  data: Float32Array;
}

/**
 * One column of a table. Numbers keep their width through Parquet and Arrow; JSON Lines has one number
 * type, so its numeric columns read back as Float64Array (exact for float32 and int32 values).
 */
export type ColumnData = Float32Array | Float64Array | Int32Array | string[] | (string | null)[];
