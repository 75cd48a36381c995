import { randomBytes } from "node:crypto";
import { type FileHandle, open, readFile, rename, stat, unlink } from "node:fs/promises";
import { basename, dirname, extname, join } from "node:path";
import { ClipsieveError, isClipsieveError } from "../common/errors.ts";

/** An INPUT_FILE_INVALID error whose message starts with the file at fault. */
export function inputError(path: string, message: string, cause?: unknown): ClipsieveError {
  return new ClipsieveError(
    "INPUT_FILE_INVALID",
    `${path}: ${message}`,
    cause === undefined ? undefined : { cause },
  );
}

export function outputError(path: string, message: string, cause?: unknown): ClipsieveError {
  return new ClipsieveError(
    "OUTPUT_FILE_FAILED",
    `${path}: ${message}`,
    cause === undefined ? undefined : { cause },
  );
}

/** Lower-case extension with its dot (".npy"), or "" when the name has none. */
export function extensionOf(path: string): string {
  return extname(path).toLowerCase();
}

/** Fails with INPUT_FILE_INVALID naming the path when it is missing or not a regular file. */
export async function assertReadableFile(path: string): Promise<void> {
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(path);
  } catch (err) {
    throw inputError(path, describeFsError(err), err);
  }
  if (!info.isFile()) throw inputError(path, "not a regular file");
}

export async function readInputBytes(path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    throw inputError(path, describeFsError(err), err);
  }
}

function describeFsError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === "ENOENT") return "file not found";
  if (code === "EACCES" || code === "EPERM") return "permission denied";
  if (code === "EISDIR") return "is a directory, not a file";
  return `cannot read: ${err instanceof Error ? err.message : String(err)}`;
}

/**
 * Writes `path` through a temporary file in the same folder, then renames it over `path`: a reader sees
 * the old file or the complete new one, never half a file (rename is atomic within one file system).
 */
export async function writeFileAtomic(
  path: string,
  write: (file: FileHandle) => Promise<void>,
): Promise<void> {
  const temp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
  let file: FileHandle | undefined;
  try {
    file = await open(temp, "wx");
    await write(file);
    await file.sync();
    await file.close();
    file = undefined;
    await rename(temp, path);
  } catch (err) {
    await file?.close().catch(() => {});
    await unlink(temp).catch(() => {});
    if (isClipsieveError(err)) throw err;
    const reason = err instanceof Error ? err.message : String(err);
    throw outputError(path, `cannot write: ${reason}`, err);
  }
}

/** Most bytes one write asks for: a single write of 2 GiB or more is refused by Node. */
const WRITE_CHUNK = 2 ** 30;

/** Writes all of `bytes` (FileHandle.write may write less than asked). */
export async function writeAll(file: FileHandle, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await file.write(bytes, done, Math.min(WRITE_CHUNK, bytes.length - done));
    done += bytesWritten;
  }
}
