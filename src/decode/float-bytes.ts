import { BadRecordError } from "./bad-record.ts";

/** How an embedding's bytes encode its values: IEEE 754, little-endian (the `embedding_dtype` field). */
export type EmbeddingDtype = "FLOAT32" | "FLOAT16";

export const EMBEDDING_DTYPES: readonly EmbeddingDtype[] = ["FLOAT32", "FLOAT16"];

export const BYTES_PER_VALUE: Readonly<Record<EmbeddingDtype, number>> = { FLOAT32: 4, FLOAT16: 2 };

/** Node 24 has DataView's float16 accessors; the ES2023 lib typings do not declare them yet. */
interface Float16DataView extends DataView {
  getFloat16(byteOffset: number, littleEndian?: boolean): number;
  setFloat16(byteOffset: number, value: number, littleEndian?: boolean): void;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function viewOf(bytes: Uint8Array): Float16DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength) as Float16DataView;
}

/**
 * Read little-endian floats into a new Float32Array. Through a DataView, not a typed-array view on
 * the bytes: Avro and base64 hand out slices at any byte offset, and a Float32Array needs 4-byte
 * alignment (and the host's byte order).
 */
export function floatsFromBytes(bytes: Uint8Array, dtype: EmbeddingDtype, field: string): Float32Array {
  const width = BYTES_PER_VALUE[dtype];
  if (bytes.byteLength % width !== 0) {
    throw new BadRecordError(
      "RECORD_UNDECODABLE",
      `${field} has ${bytes.byteLength} bytes, not a multiple of ${width} (${dtype} values)`,
    );
  }
  const n = bytes.byteLength / width;
  const out = new Float32Array(n);
  if (dtype === "FLOAT32" && LITTLE_ENDIAN) {
    // The bytes are already this host's float32s: one copy, whatever their alignment.
    new Uint8Array(out.buffer).set(bytes);
    return out;
  }
  const view = viewOf(bytes);
  if (dtype === "FLOAT32") {
    for (let i = 0; i < n; i++) out[i] = view.getFloat32(i * 4, true);
  } else {
    for (let i = 0; i < n; i++) out[i] = view.getFloat16(i * 2, true);
  }
  return out;
}

/** Write values as little-endian floats (FLOAT16 rounds to nearest, ties to even). */
export function floatsToBytes(values: ArrayLike<number>, dtype: EmbeddingDtype): Buffer {
  const width = BYTES_PER_VALUE[dtype];
  const out = Buffer.alloc(values.length * width);
  const view = viewOf(out);
  if (dtype === "FLOAT32") {
    for (let i = 0; i < values.length; i++) view.setFloat32(i * 4, values[i], true);
  } else {
    for (let i = 0; i < values.length; i++) view.setFloat16(i * 2, values[i], true);
  }
  return out;
}
