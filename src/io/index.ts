export { type ReadEmbeddingOptions, readEmbeddingMatrix } from "./embeddings.ts";
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
export { listNpzKeys, readNpz, writeNpz } from "./npz.ts";
export { readParquetColumns, readTable, writeTable } from "./table.ts";
export type { ColumnData, Matrix } from "./types.ts";
