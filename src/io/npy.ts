/**
 * NumPy .npy files (format versions 1.0, 2.0 and 3.0), little-endian, C or Fortran order. The format:
 * https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
 */
import { ClipsieveError } from "../common/errors.ts";
import { float16BitsToFloat32, float32ToFloat16Bits } from "./float16.ts";
import { type PyValue, parsePyLiteral } from "./py-literal.ts";

export type NdArrayData =
  | Float32Array
  | Float64Array
  | Int32Array
  | BigInt64Array
  | BigUint64Array
  | Uint8Array
  | Int8Array
  | Int16Array
  | Uint16Array
  | Uint32Array;

/**
 * An n-dimensional array in C (row-major) order. `dtype` is numpy's descr ("<f4", "|u1", "|b1"...);
 * "<f2" (float16) arrays hold their values widened to a Float32Array, and "|b1" (bool) a Uint8Array of 0/1.
 */
export interface NdArray {
  dtype: string;
  shape: number[];
  data: NdArrayData;
}

interface DtypeInfo {
  itemSize: number;
  /** The typed array that holds the values in memory. */
  arrayType: { new (length: number): NdArrayData; readonly name: string };
  /** Typed array over the file's own bytes, when it differs from arrayType (float16 only). */
  storedType?: { new (buffer: ArrayBufferLike, byteOffset: number, length: number): Uint16Array };
}

const DTYPES: Record<string, DtypeInfo> = {
  "<f2": { itemSize: 2, arrayType: Float32Array, storedType: Uint16Array },
  "<f4": { itemSize: 4, arrayType: Float32Array },
  "<f8": { itemSize: 8, arrayType: Float64Array },
  "|i1": { itemSize: 1, arrayType: Int8Array },
  "<i2": { itemSize: 2, arrayType: Int16Array },
  "<i4": { itemSize: 4, arrayType: Int32Array },
  "<i8": { itemSize: 8, arrayType: BigInt64Array },
  "|u1": { itemSize: 1, arrayType: Uint8Array },
  "<u2": { itemSize: 2, arrayType: Uint16Array },
  "<u4": { itemSize: 4, arrayType: Uint32Array },
  "<u8": { itemSize: 8, arrayType: BigUint64Array },
  "|b1": { itemSize: 1, arrayType: Uint8Array },
};

/** The dtypes readNpy and writeNpy support, in numpy's canonical spelling. */
export const NPY_DTYPES: readonly string[] = Object.keys(DTYPES);

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // "\x93NUMPY"
const ARRAY_ALIGN = 64;
// numpy leaves room in the header for the first axis to grow to this many digits (in-place appends).
const GROWTH_AXIS_MAX_DIGITS = 21;
const UID_DESCR = "[('f0', '<u8'), ('f1', '<u8')]";
const UID_PATTERN = /^[0-9a-fA-F]{32}$/;

export interface NpyHeader {
  version: [number, number];
  /** descr as parsed: a string for plain dtypes, a list of (name, dtype) tuples for structured ones. */
  descr: PyValue;
  fortranOrder: boolean;
  shape: number[];
  /** Byte offset of the array data from the start of the file. */
  dataOffset: number;
}

function invalid(source: string, message: string): ClipsieveError {
  return new ClipsieveError("INPUT_FILE_INVALID", `${source}: ${message}`);
}

/**
 * How many bytes from the start of a .npy the header takes (magic, lengths and header text), or
 * undefined while `head` is too short to say.
 */
export function npyHeaderLength(head: Uint8Array): number | undefined {
  if (head.length < 12) return undefined;
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  return head[6] === 1 ? 10 + view.getUint16(8, true) : 12 + view.getUint32(8, true);
}

/** Parses and checks a .npy header. `source` names the file (or npz entry) in error messages. */
export function parseNpyHeader(bytes: Uint8Array, source = "npy data"): NpyHeader {
  if (bytes.length < 10 || MAGIC.some((b, i) => bytes[i] !== b)) {
    throw invalid(source, "not a .npy file (no \\x93NUMPY magic)");
  }
  const major = bytes[6]!;
  const minor = bytes[7]!;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let headerStart: number;
  let headerLength: number;
  if (major === 1) {
    headerStart = 10;
    headerLength = view.getUint16(8, true);
  } else if (major === 2 || major === 3) {
    if (bytes.length < 12) throw invalid(source, "truncated .npy header");
    headerStart = 12;
    headerLength = view.getUint32(8, true);
  } else {
    throw invalid(source, `unsupported .npy format version ${major}.${minor}`);
  }
  const dataOffset = headerStart + headerLength;
  if (dataOffset > bytes.length) throw invalid(source, "truncated .npy header");
  const headerBytes = bytes.subarray(headerStart, dataOffset);
  // Versions 1 and 2 store the header in latin1; version 3 allows utf8 (structured field names).
  const text = new TextDecoder(major === 3 ? "utf-8" : "latin1").decode(headerBytes);

  let dict: PyValue;
  try {
    dict = parsePyLiteral(text.trim());
  } catch (err) {
    throw invalid(source, `unreadable .npy header: ${(err as Error).message}`);
  }
  if (dict === null || typeof dict !== "object" || Array.isArray(dict)) {
    throw invalid(source, "the .npy header is not a dict");
  }
  const { descr, fortran_order: fortranOrder, shape } = dict;
  if (descr === undefined) throw invalid(source, "the .npy header has no 'descr'");
  if (typeof fortranOrder !== "boolean")
    throw invalid(source, "the .npy header's 'fortran_order' is not a bool");
  if (
    !Array.isArray(shape) ||
    !shape.every((d) => typeof d === "number" && Number.isSafeInteger(d) && d >= 0)
  ) {
    throw invalid(source, `the .npy header's 'shape' is not a tuple of sizes: ${JSON.stringify(shape)}`);
  }
  return { version: [major, minor], descr, fortranOrder, shape: shape as number[], dataOffset };
}

/** numpy's canonical spelling of a plain descr, or an error naming what is wrong with it. */
function canonicalDtype(descr: PyValue, source: string): string {
  if (typeof descr !== "string") {
    throw invalid(
      source,
      `structured dtype ${formatPyValue(descr)} is not supported here (a DataComp uid file? read it with readUidNpy)`,
    );
  }
  const match = /^([<>|=]?)([a-z?])(\d*)$/.exec(descr);
  if (match !== null) {
    const [, order, kindChar, sizeText] = match;
    const kind = kindChar === "?" ? "b" : kindChar!;
    const size = sizeText === "" ? (kind === "b" ? 1 : 0) : Number(sizeText);
    const key = size === 1 ? `|${kind}1` : `<${kind}${size}`;
    if (DTYPES[key] !== undefined) {
      if (order === ">" && size > 1) {
        throw invalid(
          source,
          `big-endian dtype '${descr}' is not supported; save it little-endian (numpy: arr.astype('<${kind}${size}'))`,
        );
      }
      return key;
    }
  }
  throw invalid(source, `unsupported dtype '${descr}' (supported: ${NPY_DTYPES.join(", ")})`);
}

function elementCount(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** A typed array over `count` items at `offset` of `bytes`, copied only when misaligned. */
function typedView<T>(
  type: { new (buffer: ArrayBufferLike, byteOffset: number, length: number): T },
  itemSize: number,
  bytes: Uint8Array,
  offset: number,
  count: number,
): T {
  const start = bytes.byteOffset + offset;
  if (start % itemSize === 0) return new type(bytes.buffer, start, count);
  const copy = bytes.slice(offset, offset + count * itemSize);
  return new type(copy.buffer, 0, count);
}

/** Reorders Fortran-order (column-major) values into C order, for any number of dimensions. */
function fortranToC<T extends NdArrayData>(values: T, shape: number[]): T {
  const out = new (values.constructor as new (length: number) => T)(values.length);
  const fortranStrides: number[] = [];
  let stride = 1;
  for (const size of shape) {
    fortranStrides.push(stride);
    stride *= size;
  }
  const index = new Array<number>(shape.length).fill(0);
  let source = 0;
  for (let i = 0; i < values.length; i++) {
    out[i] = values[source]!;
    // advance the C-order counter (last axis fastest) and keep the Fortran offset in step
    for (let axis = shape.length - 1; axis >= 0; axis--) {
      index[axis]!++;
      source += fortranStrides[axis]!;
      if (index[axis]! < shape[axis]!) break;
      source -= fortranStrides[axis]! * shape[axis]!;
      index[axis] = 0;
    }
  }
  return out;
}

/**
 * Reads a .npy file's bytes. The result's data views `bytes` where alignment allows (no copy), so
 * changing one changes the other. `source` names the file in error messages. `halfBits` keeps a "<f2"
 * array's IEEE half-precision bit patterns (a Uint16Array view) instead of widening it to float32.
 */
export function readNpy(bytes: Uint8Array, source = "npy data", opts: { halfBits?: boolean } = {}): NdArray {
  const header = parseNpyHeader(bytes, source);
  const dtype = canonicalDtype(header.descr, source);
  const info = DTYPES[dtype]!;
  const count = elementCount(header.shape);
  const needed = header.dataOffset + count * info.itemSize;
  if (bytes.length < needed) {
    throw invalid(
      source,
      `truncated: shape ${formatShape(header.shape)} of ${dtype} needs ${needed} bytes, the data has ${bytes.length}`,
    );
  }
  let data: NdArrayData;
  if (info.storedType !== undefined) {
    const bits = typedView(info.storedType, 2, bytes, header.dataOffset, count);
    data = opts.halfBits ? bits : float16BitsToFloat32(bits);
  } else {
    const type = info.arrayType as unknown as {
      new (buffer: ArrayBufferLike, byteOffset: number, length: number): NdArrayData;
    };
    data = typedView(type, info.itemSize, bytes, header.dataOffset, count);
  }
  if (header.fortranOrder && header.shape.length > 1) data = fortranToC(data, header.shape);
  return { dtype, shape: [...header.shape], data };
}

/** Python's repr of a tuple of ints: (), (3,), (2, 3). */
function formatShape(shape: number[]): string {
  if (shape.length === 1) return `(${shape[0]},)`;
  return `(${shape.join(", ")})`;
}

function formatPyValue(value: PyValue): string {
  if (typeof value === "string") return `'${value}'`;
  if (Array.isArray(value)) return `[${value.map(formatPyValue).join(", ")}]`;
  return JSON.stringify(value);
}

/** The header numpy's np.save writes (format 1.0, or 2.0 when it does not fit), byte for byte. */
function npyHeader(descrRepr: string, shape: number[]): Buffer {
  let dict = `{'descr': ${descrRepr}, 'fortran_order': False, 'shape': ${formatShape(shape)}, }`;
  if (shape.length > 0) dict += " ".repeat(GROWTH_AXIS_MAX_DIGITS - String(shape[0]).length);
  const text = Buffer.from(dict, "latin1");
  for (const [major, prefixLength] of [
    [1, 10],
    [2, 12],
  ] as const) {
    const unpadded = prefixLength + text.length + 1; // +1: the closing newline
    const padding = ARRAY_ALIGN - (unpadded % ARRAY_ALIGN); // numpy pads 1..64, never 0
    const headerLength = text.length + padding + 1;
    if (major === 1 && headerLength > 0xffff) continue;
    const out = Buffer.alloc(prefixLength + headerLength, 0x20);
    out.set(MAGIC, 0);
    out[6] = major;
    out[7] = 0;
    if (major === 1) out.writeUInt16LE(headerLength, 8);
    else out.writeUInt32LE(headerLength, 8);
    out.set(text, prefixLength);
    out[out.length - 1] = 0x0a;
    return out;
  }
  throw new Error("unreachable: a .npy 2.0 header holds 4 GiB");
}

function bytesOf(data: ArrayBufferView): Buffer {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/**
 * Serialises an array as np.save does (format 1.0, C order): the same bytes numpy writes for the
 * same dtype and shape. "<f2" takes a Float32Array and rounds it to float16 (nearest-even).
 */
export function writeNpy(arr: NdArray): Buffer {
  return Buffer.concat(npyParts(arr));
}

/**
 * writeNpy's bytes as the header and the body (a view of the array's memory, no copy), so an archive
 * writer can write an array of gigabytes without a second copy of it. A "<f2" array may also be given as
 * its half-precision bit patterns (a Uint16Array), written as they are.
 */
export function npyParts(arr: NdArray): [Buffer, Buffer] {
  const info = DTYPES[arr.dtype];
  if (info === undefined) {
    throw new ClipsieveError(
      "OUTPUT_FILE_FAILED",
      `cannot write .npy: unsupported dtype '${arr.dtype}' (supported: ${NPY_DTYPES.join(", ")})`,
    );
  }
  const halfBits = info.storedType !== undefined && arr.data instanceof Uint16Array;
  if (!(arr.data instanceof info.arrayType) && !halfBits) {
    throw new ClipsieveError(
      "OUTPUT_FILE_FAILED",
      `cannot write .npy: dtype ${arr.dtype} needs a ${info.arrayType.name}, got a ${arr.data.constructor.name}`,
    );
  }
  if (!arr.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new ClipsieveError("OUTPUT_FILE_FAILED", `cannot write .npy: bad shape [${arr.shape.join(", ")}]`);
  }
  const count = elementCount(arr.shape);
  if (arr.data.length !== count) {
    throw new ClipsieveError(
      "OUTPUT_FILE_FAILED",
      `cannot write .npy: shape ${formatShape(arr.shape)} holds ${count} values, the data has ${arr.data.length}`,
    );
  }
  const body =
    info.storedType !== undefined && !halfBits ? float32ToFloat16Bits(arr.data as Float32Array) : arr.data;
  return [npyHeader(`'${arr.dtype}'`, arr.shape), bytesOf(body)];
}

/** Splits a 32-hex-digit uid into DataComp's (int(uid[:16], 16), int(uid[16:32], 16)). */
function uidHalves(uid: string): [bigint, bigint] {
  return [BigInt(`0x${uid.slice(0, 16)}`), BigInt(`0x${uid.slice(16, 32)}`)];
}

/**
 * DataComp's subset file: the uids as a sorted .npy of dtype [('', u8), ('', u8)] (numpy names the
 * fields f0, f1), each uid split into two unsigned 64-bit halves. Sorted by (high, low) unsigned, as
 * np.sort orders the structured array; duplicates are kept, as np.sort keeps them.
 */
export function writeUidNpy(uids: string[]): Buffer {
  const pairs: [bigint, bigint][] = uids.map((uid, index) => {
    if (typeof uid !== "string" || !UID_PATTERN.test(uid)) {
      throw new ClipsieveError(
        "INPUT_FILE_INVALID",
        `uid ${JSON.stringify(uid)} (index ${index}) is not 32 hexadecimal digits`,
      );
    }
    return uidHalves(uid);
  });
  pairs.sort(([ah, al], [bh, bl]) => (ah !== bh ? (ah < bh ? -1 : 1) : al < bl ? -1 : al > bl ? 1 : 0));
  const values = new BigUint64Array(pairs.length * 2);
  pairs.forEach(([high, low], i) => {
    values[2 * i] = high;
    values[2 * i + 1] = low;
  });
  return Buffer.concat([npyHeader(UID_DESCR, [pairs.length]), bytesOf(values)]);
}

function isUidDescr(descr: PyValue): boolean {
  return (
    Array.isArray(descr) &&
    descr.length === 2 &&
    descr.every(
      (field) =>
        Array.isArray(field) &&
        field.length === 2 &&
        typeof field[0] === "string" &&
        typeof field[1] === "string" &&
        /^[<|=]?u8$/.test(field[1]),
    )
  );
}

/**
 * Reads a DataComp uid .npy (dtype [('f0', '<u8'), ('f1', '<u8')], or a plain (n, 2) '<u8' array)
 * back to 32-digit lower-case hex uids, in file order.
 */
export function readUidNpy(bytes: Uint8Array, source = "uid npy"): string[] {
  const header = parseNpyHeader(bytes, source);
  let values: BigUint64Array;
  if (isUidDescr(header.descr) && header.shape.length === 1) {
    const count = header.shape[0]! * 2;
    if (bytes.length < header.dataOffset + count * 8) throw invalid(source, "truncated uid data");
    values = typedView(BigUint64Array, 8, bytes, header.dataOffset, count);
  } else if (header.descr === "<u8" && header.shape.length === 2 && header.shape[1] === 2) {
    values = readNpy(bytes, source).data as BigUint64Array;
  } else {
    throw invalid(
      source,
      `not a DataComp uid file: expected dtype ${UID_DESCR} with shape (n,), got ${formatPyValue(header.descr)} with shape ${formatShape(header.shape)}`,
    );
  }
  const uids = new Array<string>(values.length / 2);
  for (let i = 0; i < uids.length; i++) {
    uids[i] =
      values[2 * i]!.toString(16).padStart(16, "0") + values[2 * i + 1]!.toString(16).padStart(16, "0");
  }
  return uids;
}
