/**
 * Unit-length embeddings (spec §1): the scores assume ||f|| = ||g|| = 1. A zero or non-finite vector is
 * bad input, reported with its code instead of being scored.
 */
import { ClipsieveError, type ErrorCode } from "../common/errors.ts";

/** What is wrong with one embedding: the decode/score stages turn it into a record's `failure`. */
export interface EmbeddingProblem {
  code: Extract<ErrorCode, "EMBEDDING_NOT_FINITE" | "EMBEDDING_ZERO" | "EMBEDDING_DIMENSION_MISMATCH">;
  message: string;
}

/**
 * Checks the row `data[offset .. offset + dim)` and, when it is usable, L2-normalises it in place.
 * Returns the problem (and leaves the row as it was) when the row is short, non-finite or zero.
 */
export function checkRow(data: Float32Array, offset: number, dim: number): EmbeddingProblem | null {
  if (offset + dim > data.length) {
    return {
      code: "EMBEDDING_DIMENSION_MISMATCH",
      message: `embedding has ${Math.max(0, data.length - offset)} values, expected ${dim}`,
    };
  }
  // Sum of squares in float64, so large float32 values cannot overflow it.
  let squares = 0;
  for (let i = offset; i < offset + dim; i++) {
    const v = data[i];
    if (!Number.isFinite(v)) {
      return { code: "EMBEDDING_NOT_FINITE", message: `embedding value ${i - offset} is ${v}` };
    }
    squares += v * v;
  }
  if (squares === 0) return { code: "EMBEDDING_ZERO", message: "embedding is the zero vector" };
  const scale = 1 / Math.sqrt(squares);
  for (let i = offset; i < offset + dim; i++) data[i] *= scale;
  return null;
}

/** A single embedding vector: its length must be exactly `dim`. Normalised in place when usable. */
export function checkEmbedding(vector: Float32Array, dim: number): EmbeddingProblem | null {
  if (vector.length !== dim) {
    return {
      code: "EMBEDDING_DIMENSION_MISMATCH",
      message: `embedding has ${vector.length} values, expected ${dim}`,
    };
  }
  return checkRow(vector, 0, dim);
}

/**
 * L2-normalises every row of a `rows x dim` matrix in place. Throws the first bad row's error, naming
 * `label` (a file, a key) and the row index.
 */
export function normaliseRows(data: Float32Array, rows: number, dim: number, label: string): void {
  if (data.length !== rows * dim) {
    throw new ClipsieveError(
      "EMBEDDING_DIMENSION_MISMATCH",
      `${label}: ${data.length} values do not make ${rows} rows of dimension ${dim}`,
    );
  }
  for (let row = 0; row < rows; row++) {
    const problem = checkRow(data, row * dim, dim);
    if (problem) throw new ClipsieveError(problem.code, `${label}, row ${row}: ${problem.message}`);
  }
}
