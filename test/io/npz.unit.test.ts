import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { crc32, inflateRawSync } from "node:zlib";
import { isClipsieveError } from "../../src/common/errors.ts";
import type { NdArray } from "../../src/io/npy.ts";
import { listNpzKeys, readNpz, writeNpz } from "../../src/io/npz.ts";

const fixtures = fileURLToPath(new URL("./fixtures/", import.meta.url));
const work = mkdtempSync(join(tmpdir(), "clipsieve-npz-"));
after(() => rmSync(work, { recursive: true, force: true }));

/** make_fixtures.py's grid(): (i * cols + j) * 0.125 - 1, row-major. */
const grid = (count: number) => Array.from({ length: count }, (_, k) => k * 0.125 - 1);

async function rejectsInput(promise: Promise<unknown>, ...fragments: string[]) {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(isClipsieveError(err, "INPUT_FILE_INVALID"), `expected INPUT_FILE_INVALID, got ${String(err)}`);
    for (const fragment of fragments)
      assert.ok(err.message.includes(fragment), `"${err.message}" lacks "${fragment}"`);
    return true;
  });
}

/** Where an entry's data starts, from its local file header (found by its name's first occurrence). */
function entryDataStart(zip: Buffer, fileName: string): number {
  const nameAt = zip.indexOf(Buffer.from(fileName));
  const header = nameAt - 30;
  assert.equal(zip.readUInt32LE(header), 0x04034b50);
  return nameAt + zip.readUInt16LE(header + 26) + zip.readUInt16LE(header + 28);
}

for (const file of ["shard_stored.npz", "shard_deflated.npz"]) {
  describe(`numpy's ${file}`, () => {
    const path = fixtures + file;

    test("lists the keys in archive order", async () => {
      assert.deepEqual(await listNpzKeys(path), ["l14_img", "l14_txt", "b32_img"]);
    });

    test("reads just the requested arrays", async () => {
      const arrays = await readNpz(path, ["l14_txt", "b32_img"]);
      assert.deepEqual(Object.keys(arrays), ["l14_txt", "b32_img"]);
      assert.equal(arrays.l14_txt!.dtype, "<f4");
      assert.deepEqual(arrays.l14_txt!.shape, [4, 8]);
      assert.deepEqual(
        Array.from(arrays.l14_txt!.data as Float32Array),
        grid(32).map((v) => -v),
      );
      assert.equal(arrays.b32_img!.dtype, "<f2");
      assert.deepEqual(arrays.b32_img!.shape, [4, 3]);
      assert.deepEqual(Array.from(arrays.b32_img!.data as Float32Array), grid(12));
    });

    test("never inflates an entry that was not asked for", async () => {
      // Damage l14_img's data: reading the other keys must not notice, reading it must.
      const zip = readFileSync(path);
      const start = entryDataStart(zip, "l14_img.npy");
      for (let i = start + 8; i < start + 40; i++) zip[i] = zip[i]! ^ 0x5a;
      const damaged = join(work, `damaged-${file}`);
      writeFileSync(damaged, zip);
      const arrays = await readNpz(damaged, ["b32_img", "l14_txt"]);
      assert.deepEqual(Array.from(arrays.b32_img!.data as Float32Array), grid(12));
      await rejectsInput(readNpz(damaged, ["l14_img"]), damaged, "l14_img", "corrupt");
    });

    test("names the missing key and lists the available ones", async () => {
      await rejectsInput(
        readNpz(path, ["l14_img", "clip_img"]),
        path,
        "'clip_img'",
        "l14_img, l14_txt, b32_img",
      );
    });
  });
}

describe("reading errors", () => {
  test("a missing file", async () => {
    const path = join(work, "absent.npz");
    await rejectsInput(listNpzKeys(path), path, "not found");
    await rejectsInput(readNpz(path, ["a"]), path, "not found");
  });

  test("a file that is not a zip", async () => {
    const path = join(work, "not-a-zip.npz");
    copyFileSync(fixtures + "f4_2x3.npy", path);
    await rejectsInput(readNpz(path, ["a"]), path, "zip");
  });

  test("an entry that is not a valid .npy", async () => {
    const zip = readFileSync(fixtures + "shard_stored.npz");
    const start = entryDataStart(zip, "b32_img.npy");
    zip.write("XXXXXX", start, "latin1"); // the magic, not the data; the CRC-32 catches this first
    const path = join(work, "bad-magic.npz");
    writeFileSync(path, zip);
    await rejectsInput(readNpz(path, ["b32_img"]), path, "b32_img");
  });
});

describe("writeNpz", () => {
  // The same array as fixtures/f4_2x3.npy, so each entry must hold numpy's bytes for it.
  const f4: NdArray = {
    dtype: "<f4",
    shape: [2, 3],
    data: Float32Array.of(1.5, -2.25, 0.1, 3e-8, 65504, -0),
  };
  const u8: NdArray = { dtype: "<u8", shape: [2], data: BigUint64Array.of(0n, 2n ** 64n - 1n) };
  const numpyF4 = readFileSync(fixtures + "f4_2x3.npy");
  const numpyU8 = readFileSync(fixtures + "u8_2.npy");

  test("stores entries as np.savez does", async () => {
    const path = join(work, "stored.npz");
    await writeNpz(path, { emb: f4, "uid/half": u8 });
    const zip = readFileSync(path);
    const start = entryDataStart(zip, "emb.npy");
    const header = zip.indexOf(Buffer.from("emb.npy")) - 30;
    assert.equal(zip.readUInt16LE(header + 8), 0, "method 0: stored");
    assert.equal(zip.readUInt32LE(header + 14), crc32(numpyF4) >>> 0);
    assert.deepEqual(zip.subarray(start, start + numpyF4.length), numpyF4);
    const second = entryDataStart(zip, "uid/half.npy");
    assert.deepEqual(zip.subarray(second, second + numpyU8.length), numpyU8);
  });

  test("deflates entries with compress, as np.savez_compressed does", async () => {
    const path = join(work, "deflated.npz");
    await writeNpz(path, { emb: f4 }, { compress: true });
    const zip = readFileSync(path);
    const header = zip.indexOf(Buffer.from("emb.npy")) - 30;
    assert.equal(zip.readUInt16LE(header + 8), 8, "method 8: deflate");
    const compressedSize = zip.readUInt32LE(header + 18);
    const start = entryDataStart(zip, "emb.npy");
    assert.deepEqual(inflateRawSync(zip.subarray(start, start + compressedSize)), numpyF4);
  });

  test("round-trips through readNpz, and overwrites atomically", async () => {
    for (const compress of [false, true]) {
      const path = join(work, `roundtrip-${compress}.npz`);
      writeFileSync(path, "an older file");
      const name = "café";
      await writeNpz(path, { [name]: f4, b: u8 }, { compress });
      assert.deepEqual(await listNpzKeys(path), [name, "b"]);
      const arrays = await readNpz(path, ["b", name]);
      assert.equal(arrays[name]!.dtype, "<f4");
      assert.deepEqual(arrays[name]!.shape, [2, 3]);
      assert.deepEqual(Array.from(arrays[name]!.data as Float32Array), Array.from(f4.data as Float32Array));
      assert.deepEqual(Array.from(arrays.b!.data as BigUint64Array), [0n, 2n ** 64n - 1n]);
    }
    assert.deepEqual(
      readdirSync(work).filter((f) => f.endsWith(".tmp")),
      [],
    );
  });

  test("refuses a bad array, naming the key, and leaves no file behind", async () => {
    const path = join(work, "bad.npz");
    await assert.rejects(
      writeNpz(path, { good: f4, wrong: { dtype: "<f4", shape: [4], data: Float32Array.of(1) } }),
      (err: unknown) => isClipsieveError(err, "OUTPUT_FILE_FAILED") && err.message.includes("'wrong'"),
    );
    assert.deepEqual(
      readdirSync(work).filter((f) => f.startsWith("bad.npz") || f.startsWith(".bad.npz")),
      [],
    );
  });
});
