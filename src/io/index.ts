export { type ReadEmbeddingOptions, readEmbeddingMatrix, readEmbeddingShape } from "./embeddings.ts";
export {
  type NdArray,
  type NdArrayData,
  NPY_DTYPES,
  parseNpyHeader,
  readNpy,
  readUidNpy,
  writeNpy,
  writeUidNpy,
} from "./npy.ts";
export { listNpzKeys, readNpz, readNpzHeader, writeNpz } from "./npz.ts";
export { readParquetColumns, readTable, writeTable } from "./table.ts";
export type { ColumnData, Matrix } from "./types.ts";
