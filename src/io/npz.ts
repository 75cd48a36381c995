/**
 * NumPy .npz archives: a zip of `<key>.npy` entries, stored (np.savez) or deflated (np.savez_compressed).
 * Reading walks the central directory only and inflates just the requested entries, because a DataComp
 * shard's .npz holds several ~110k x 768 float32 arrays and a caller usually wants one of them.
 */
import { constants as bufferConstants } from "node:buffer";
import { promisify } from "node:util";
import { crc32, deflateRaw } from "node:zlib";
import yauzl from "yauzl";
import { ClipsieveError } from "../common/errors.ts";
import { inputError, outputError, writeAll, writeFileAtomic } from "./files.ts";
import { type NdArray, type NpyHeader, npyHeaderLength, npyParts, parseNpyHeader, readNpy } from "./npy.ts";

const deflateRawAsync = promisify(deflateRaw);

const NPY_SUFFIX = ".npy";
// Without ZIP64 records a zip cannot hold an entry, offset or size at or above 4 GiB, nor 65535 entries.
const ZIP32_LIMIT = 0xffffffff;
const ZIP32_MAX_ENTRIES = 0xffff;

/** np.load's name for an entry: the file name less its .npy suffix. */
function keyOf(fileName: string): string {
  return fileName.endsWith(NPY_SUFFIX) ? fileName.slice(0, -NPY_SUFFIX.length) : fileName;
}

function openZip(path: string): Promise<yauzl.ZipFile> {
  return new Promise((resolve, reject) => {
    yauzl.open(path, { lazyEntries: true, autoClose: false }, (err, zip) => {
      if (err !== null) {
        const code = (err as NodeJS.ErrnoException).code;
        const reason =
          code === "ENOENT" ? "file not found" : `not a readable .npz (zip) file: ${err.message}`;
        reject(inputError(path, reason, err));
      } else {
        resolve(zip);
      }
    });
  });
}

/** Every entry of the central directory; reads no entry data. */
function listEntries(zip: yauzl.ZipFile, path: string): Promise<yauzl.Entry[]> {
  return new Promise((resolve, reject) => {
    const entries: yauzl.Entry[] = [];
    zip.on("entry", (entry: yauzl.Entry) => {
      entries.push(entry);
      zip.readEntry();
    });
    zip.once("end", () => resolve(entries));
    zip.once("error", (err: Error) =>
      reject(inputError(path, `corrupt .npz (zip) file: ${err.message}`, err)),
    );
    zip.readEntry();
  });
}

/** Inflates one entry into a single buffer of its declared size, checking its length and CRC-32. */
function readEntryBytes(zip: yauzl.ZipFile, entry: yauzl.Entry, source: string): Promise<Buffer> {
  if (entry.uncompressedSize > bufferConstants.MAX_LENGTH) {
    return Promise.reject(
      inputError(source, `entry of ${entry.uncompressedSize} bytes is larger than this process can hold`),
    );
  }
  return new Promise((resolve, reject) => {
    zip.openReadStream(entry, (err, stream) => {
      if (err !== null) {
        reject(inputError(source, `cannot read the zip entry: ${err.message}`, err));
        return;
      }
      let out: Buffer;
      try {
        out = Buffer.allocUnsafe(entry.uncompressedSize);
      } catch (cause) {
        stream.destroy();
        reject(inputError(source, `cannot allocate ${entry.uncompressedSize} bytes for the entry`, cause));
        return;
      }
      let filled = 0;
      let crc = 0;
      stream.on("data", (chunk: Buffer) => {
        if (filled + chunk.length > out.length) {
          stream.destroy(new Error(`inflates past its declared size of ${out.length} bytes`));
          return;
        }
        out.set(chunk, filled);
        filled += chunk.length;
        crc = crc32(chunk, crc);
      });
      stream.once("error", (cause: Error) =>
        reject(inputError(source, `corrupt zip entry: ${cause.message}`, cause)),
      );
      stream.once("end", () => {
        if (filled !== out.length) {
          reject(inputError(source, `corrupt zip entry: ${filled} bytes, ${out.length} declared`));
        } else if (crc >>> 0 !== entry.crc32 >>> 0) {
          reject(inputError(source, "corrupt zip entry: CRC-32 mismatch"));
        } else {
          resolve(out);
        }
      });
    });
  });
}

async function withZip<T>(
  path: string,
  use: (zip: yauzl.ZipFile, entries: yauzl.Entry[]) => Promise<T>,
): Promise<T> {
  const zip = await openZip(path);
  try {
    return await use(zip, await listEntries(zip, path));
  } finally {
    zip.close();
  }
}

/** The array names in an .npz, in archive order (as np.load(path).files lists them). */
export async function listNpzKeys(path: string): Promise<string[]> {
  return withZip(path, async (_zip, entries) => entries.map((entry) => keyOf(entry.fileName)));
}

/**
 * Reads the named arrays of an .npz; no other entry is inflated. Fails with INPUT_FILE_INVALID naming
 * the path and listing the available keys when one is missing.
 */
export async function readNpz(
  path: string,
  keys: string[],
  opts: { halfBits?: boolean } = {},
): Promise<Record<string, NdArray>> {
  return withZip(path, async (zip, entries) => {
    const byKey = new Map(entries.map((entry) => [keyOf(entry.fileName), entry]));
    const missing = keys.filter((key) => !byKey.has(key));
    if (missing.length > 0) {
      throw inputError(
        path,
        `no array ${missing.map((k) => `'${k}'`).join(", ")} in the .npz; available: ${[...byKey.keys()].join(", ") || "(none)"}`,
      );
    }
    const result: Record<string, NdArray> = {};
    for (const key of keys) {
      const entry = byKey.get(key)!;
      const source = `${path}[${key}]`;
      if (!entry.fileName.endsWith(NPY_SUFFIX)) throw inputError(source, "entry is not a .npy array");
      result[key] = readNpy(await readEntryBytes(zip, entry, source), source, opts);
    }
    return result;
  });
}

/**
 * The .npy header of one array of an .npz, read from the first bytes of its entry only (no array data is
 * inflated past the header): a shard's shape before its rows are loaded.
 */
export async function readNpzHeader(path: string, key: string): Promise<NpyHeader> {
  return withZip(path, async (zip, entries) => {
    const entry = entries.find((e) => keyOf(e.fileName) === key);
    if (entry === undefined) {
      throw inputError(
        path,
        `no array '${key}' in the .npz; available: ${entries.map((e) => keyOf(e.fileName)).join(", ") || "(none)"}`,
      );
    }
    const source = `${path}[${key}]`;
    return new Promise<NpyHeader>((resolve, reject) => {
      zip.openReadStream(entry, (err, stream) => {
        if (err !== null) {
          reject(inputError(source, `cannot read the zip entry: ${err.message}`, err));
          return;
        }
        let head = Buffer.alloc(0);
        let settled = false;
        const settle = (fn: () => void) => {
          if (settled) return;
          settled = true;
          stream.destroy();
          fn();
        };
        stream.on("data", (chunk: Buffer) => {
          head = Buffer.concat([head, chunk]);
          // A header is complete once its declared length has arrived (npyHeaderLength: undefined before).
          const needed = npyHeaderLength(head);
          if (needed !== undefined && head.length >= needed) {
            settle(() => {
              try {
                resolve(parseNpyHeader(head, source));
              } catch (parseErr) {
                reject(parseErr);
              }
            });
          }
        });
        stream.once("error", (cause: Error) =>
          settle(() => reject(inputError(source, `corrupt zip entry: ${cause.message}`, cause))),
        );
        stream.once("end", () =>
          settle(() => {
            try {
              resolve(parseNpyHeader(head, source));
            } catch (parseErr) {
              reject(parseErr);
            }
          }),
        );
      });
    });
  });
}

interface CentralRecord {
  name: Buffer;
  method: number;
  crc: number;
  compressedSize: number;
  size: number;
  offset: number;
}

// A fixed timestamp (1980-01-01 00:00, the DOS epoch) keeps the archive's bytes reproducible.
const DOS_TIME = 0;
const DOS_DATE = (1 << 5) | 1;
const FLAG_UTF8_NAME = 0x0800;

function nameFlags(name: string): number {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: matching non-ASCII is the point
  return /^[\u0000-\u007f]*$/.test(name) ? 0 : FLAG_UTF8_NAME;
}

function localHeader(r: CentralRecord, flags: number): Buffer {
  const out = Buffer.alloc(30);
  out.writeUInt32LE(0x04034b50, 0);
  out.writeUInt16LE(r.method === 8 ? 20 : 10, 4); // version needed to extract
  out.writeUInt16LE(flags, 6);
  out.writeUInt16LE(r.method, 8);
  out.writeUInt16LE(DOS_TIME, 10);
  out.writeUInt16LE(DOS_DATE, 12);
  out.writeUInt32LE(r.crc, 14);
  out.writeUInt32LE(r.compressedSize, 18);
  out.writeUInt32LE(r.size, 22);
  out.writeUInt16LE(r.name.length, 26);
  out.writeUInt16LE(0, 28);
  return Buffer.concat([out, r.name]);
}

function centralHeader(r: CentralRecord, flags: number): Buffer {
  const out = Buffer.alloc(46);
  out.writeUInt32LE(0x02014b50, 0);
  out.writeUInt16LE(20, 4); // version made by: MS-DOS, spec 2.0
  out.writeUInt16LE(r.method === 8 ? 20 : 10, 6);
  out.writeUInt16LE(flags, 8);
  out.writeUInt16LE(r.method, 10);
  out.writeUInt16LE(DOS_TIME, 12);
  out.writeUInt16LE(DOS_DATE, 14);
  out.writeUInt32LE(r.crc, 16);
  out.writeUInt32LE(r.compressedSize, 20);
  out.writeUInt32LE(r.size, 24);
  out.writeUInt16LE(r.name.length, 28);
  // extra length, comment length, disk number, internal and external attributes: all zero
  out.writeUInt32LE(r.offset, 42);
  return Buffer.concat([out, r.name]);
}

function endOfCentralDirectory(count: number, size: number, offset: number): Buffer {
  const out = Buffer.alloc(22);
  out.writeUInt32LE(0x06054b50, 0);
  out.writeUInt16LE(count, 8);
  out.writeUInt16LE(count, 10);
  out.writeUInt32LE(size, 12);
  out.writeUInt32LE(offset, 16);
  return out;
}

/**
 * Writes arrays as an .npz that np.load reads: stored entries by default (as np.savez), deflated with
 * `compress` (as np.savez_compressed). Atomic: the file appears complete or not at all. Archives that
 * would need ZIP64 (an entry or the whole file at 4 GiB or more) are refused with OUTPUT_FILE_FAILED.
 */
export async function writeNpz(
  path: string,
  arrays: Record<string, NdArray>,
  opts: { compress?: boolean } = {},
): Promise<void> {
  const keys = Object.keys(arrays);
  if (keys.length > ZIP32_MAX_ENTRIES) throw outputError(path, `too many arrays for a zip: ${keys.length}`);
  await writeFileAtomic(path, async (file) => {
    const records: { record: CentralRecord; flags: number }[] = [];
    let offset = 0;
    for (const key of keys) {
      const name = `${key}${NPY_SUFFIX}`;
      let parts: [Buffer, Buffer];
      try {
        parts = npyParts(arrays[key]!);
      } catch (err) {
        throw err instanceof ClipsieveError ? outputError(path, `array '${key}': ${err.message}`, err) : err;
      }
      // Stored entries are written as header + a view of the array (no copy of a large array).
      const size = parts[0].length + parts[1].length;
      const data = opts.compress ? [await deflateRawAsync(Buffer.concat(parts))] : parts;
      const compressedSize = data.reduce((sum, part) => sum + part.length, 0);
      const record: CentralRecord = {
        name: Buffer.from(name, "utf8"),
        method: opts.compress ? 8 : 0,
        crc: crc32(parts[1], crc32(parts[0])) >>> 0,
        compressedSize,
        size,
        offset,
      };
      if (size >= ZIP32_LIMIT || offset + compressedSize + 30 + record.name.length >= ZIP32_LIMIT) {
        throw outputError(
          path,
          `array '${key}' takes the archive past 4 GiB, which needs ZIP64 (not supported)`,
        );
      }
      const flags = nameFlags(name);
      const header = localHeader(record, flags);
      await writeAll(file, header);
      for (const part of data) await writeAll(file, part);
      offset += header.length + compressedSize;
      records.push({ record, flags });
    }
    const central = Buffer.concat(records.map(({ record, flags }) => centralHeader(record, flags)));
    if (offset + central.length >= ZIP32_LIMIT) {
      throw outputError(path, "the archive reaches 4 GiB, which needs ZIP64 (not supported)");
    }
    await writeAll(file, central);
    await writeAll(file, endOfCentralDirectory(records.length, central.length, offset));
  });
}
