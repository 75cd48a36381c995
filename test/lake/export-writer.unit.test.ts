/**
 * The export's file side without Kafka: crashes between a flush's files and its commit, restarts with
 * other file sizes, and a killed write's temporary file. Files are read back with parquet-wasm and
 * apache-arrow directly, not through the code under test.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import * as arrow from "apache-arrow";
import * as pq from "parquet-wasm/node";
import { type ExportRecord, ExportWriter } from "../../src/lake/export-writer.ts";
import { mulberry32 } from "../helpers/records.ts";

const HOUR = 3_600_000;
const BASE = Date.UTC(2026, 10, 27, 22, 0, 0);
const DIM = 4;

/** Records of two partitions whose timestamps wander across three hours, out of order near the edges. */
function makeRecords(perPartition: number): ExportRecord[] {
  const rand = mulberry32(11);
  const out: ExportRecord[] = [];
  for (const partition of [0, 1]) {
    for (let i = 0; i < perPartition; i++) {
      const hour = Math.min(2, Math.floor((3 * i) / perPartition) + (rand() < 0.15 ? 1 : 0));
      const uid = (partition * 100_000 + i).toString(16).padStart(32, "0");
      out.push({
        partition,
        offset: BigInt(i * 2 + 5), // gaps, as transaction markers leave
        timestampMs: BASE + hour * HOUR + Math.floor(rand() * HOUR),
        uid,
        text: i % 7 === 0 ? null : `caption ${uid}`,
        url: `https://example.com/${uid}.jpg`,
        scores: { clip_score: rand(), s_clip_loss: rand() - 0.5 },
        policyVersion: "abcdefabcdef",
        windowId: `w-${Math.floor(i / 10)}`,
        source: `in/${partition}/${i}`,
        imageEmbedding: Float32Array.from({ length: DIM }, () => rand()),
        textEmbedding: Float32Array.from({ length: DIM }, () => rand()),
      });
    }
  }
  return out;
}

interface Row {
  partition: number;
  offset: bigint;
  uid: string;
  text: string | null;
  s_clip_loss: number;
  normsim_2: number | null;
  timestamp: number;
  image_embedding: Float32Array;
}

/** Every row of every complete file, read with parquet-wasm + apache-arrow. */
function readBack(dir: string): { rows: Row[]; files: string[]; hidden: string[] } {
  const rows: Row[] = [];
  const files: string[] = [];
  const hidden: string[] = [];
  for (const hour of readdirSync(dir).filter((n) => n.startsWith("hour="))) {
    for (const name of readdirSync(join(dir, hour))) {
      if (name.startsWith(".")) {
        hidden.push(name);
        continue;
      }
      files.push(`${hour}/${name}`);
      const table = arrow.tableFromIPC(pq.readParquet(readFileSync(join(dir, hour, name))).intoIPCStream());
      for (const r of table) {
        const row = r.toJSON() as Record<string, unknown>;
        const ts = Number(row.timestamp);
        assert.equal(
          `hour=${new Date(ts).toISOString().slice(0, 13)}`,
          hour,
          `${name}: record in the wrong hour`,
        );
        rows.push({
          partition: row.partition as number,
          offset: row.offset as bigint,
          uid: row.uid as string,
          text: row.text as string | null,
          s_clip_loss: row.s_clip_loss as number,
          normsim_2: row.normsim_2 as number | null,
          timestamp: ts,
          image_embedding: (row.image_embedding as arrow.Vector).toArray() as Float32Array,
        });
      }
      // A file holds one partition, and its name is that partition and its first offset.
      const m = /^part-(\d+)-(\d+)\.parquet$/.exec(name);
      assert.ok(m, name);
      const offsets = table.getChild("offset")!.toArray() as BigInt64Array;
      assert.equal(String(offsets[0]), m[2]);
      assert.ok(
        (table.getChild("partition")!.toArray() as Int32Array).every((p) => p === Number(m[1])),
        name,
      );
    }
  }
  return { rows, files, hidden };
}

/**
 * One run of the writer over the records from the committed offsets on. `crashAfterCommits`: the
 * commit after that many succeeded throws, as a process killed between rename and commit would.
 */
async function run(
  dir: string,
  records: ExportRecord[],
  committed: Map<number, bigint>,
  maxFileBytes: number,
  crashAfterCommits = Number.POSITIVE_INFINITY,
): Promise<boolean> {
  let commits = 0;
  const writer = new ExportWriter({
    dir,
    topic: "acc",
    maxFileBytes,
    embeddings: true,
    async commit(partition, next) {
      if (commits >= crashAfterCommits) throw new Error("killed before the commit");
      commits++;
      assert.ok(next > (committed.get(partition) ?? -1n), "commits only move forward");
      committed.set(partition, next);
    },
  });
  await writer.init();
  // The two partitions interleave as fetches of either would.
  const queue = [0, 1].map((p) =>
    records.filter((r) => r.partition === p && r.offset >= (committed.get(p) ?? 0n)),
  );
  try {
    while (queue.some((q) => q.length > 0)) {
      for (const q of queue) for (const r of q.splice(0, 7)) await writer.add(r);
    }
    await writer.flushAll();
    return true;
  } catch (err) {
    assert.equal((err as Error).message, "killed before the commit");
    return false;
  }
}

test("crashes between files and commits, restarts with other file sizes: every record once", async () => {
  const dir = mkdtempSync(join(tmpdir(), "clipsieve-export-writer-"));
  const records = makeRecords(400);
  const committed = new Map<number, bigint>();

  assert.equal(await run(dir, records, committed, 3000, 5), false);
  const afterFirst = readBack(dir);
  assert.ok(afterFirst.files.length > 5, "the first run wrote files before it was killed");
  const exportedFirst = afterFirst.rows.length;
  // Some files hold records past the committed offsets: a naive restart would duplicate them.
  assert.ok(
    afterFirst.rows.some((r) => r.offset >= (committed.get(r.partition) ?? 0n)),
    "the killed run left uncommitted files",
  );

  // A write killed half-way leaves its temporary file (of a process that no longer runs).
  const hour = afterFirst.files[0]!.split("/")[0]!;
  const stale = `.part-0-999.parquet.2147483646.0badc0de.tmp`;
  writeFileSync(join(dir, hour, stale), "half a file");

  assert.equal(await run(dir, records, committed, 5200, 9), false);
  assert.equal(await run(dir, records, committed, 1700), true);

  const { rows, hidden } = readBack(dir);
  assert.deepEqual(hidden, [], "no temporary file is left");
  assert.ok(exportedFirst < rows.length);
  const seen = new Map<string, number>();
  for (const r of rows) {
    const key = `${r.partition}/${r.offset}`;
    seen.set(key, (seen.get(key) ?? 0) + 1);
  }
  const duplicates = [...seen].filter(([, n]) => n > 1).map(([k]) => k);
  assert.deepEqual(duplicates, [], "no record is exported twice");
  assert.equal(seen.size, records.length, "every record is exported");
  // the last record of each partition is at offset 399 * 2 + 5
  assert.deepEqual(
    committed,
    new Map([
      [0, 804n],
      [1, 804n],
    ]),
  );

  // The values survive: strings (null included), scores (absent -> null), timestamps, embeddings.
  const byKey = new Map(records.map((r) => [`${r.partition}/${r.offset}`, r]));
  for (const row of rows) {
    const r = byKey.get(`${row.partition}/${row.offset}`)!;
    assert.equal(row.uid, r.uid);
    assert.equal(row.text, r.text);
    assert.equal(row.s_clip_loss, r.scores.s_clip_loss);
    assert.equal(row.normsim_2, null);
    assert.equal(row.timestamp, r.timestampMs);
    assert.deepEqual(Array.from(row.image_embedding), Array.from(r.imageEmbedding!));
  }
});

test("no file is larger than the limit allows, and a folder keeps to one topic", async () => {
  const dir = mkdtempSync(join(tmpdir(), "clipsieve-export-writer-"));
  const records = makeRecords(100);
  const sizes: number[] = [];
  const writer = new ExportWriter({
    dir,
    topic: "acc",
    maxFileBytes: 2500,
    embeddings: false,
    commit: async () => {},
    onFile: (f) => sizes.push(f.records),
  });
  await writer.init();
  for (const r of records) await writer.add(r);
  await writer.flushAll();
  // uid (32), url (56) and policy version (12) alone are 100 bytes a record: at most 25 a file
  assert.ok(Math.max(...sizes) <= 25, `records per file: ${sizes.join(", ")}`);
  assert.ok(sizes.length >= 8, `200 records in ${sizes.length} files`);
  assert.equal(
    sizes.reduce((a, b) => a + b, 0),
    records.length,
  );
  const other = new ExportWriter({
    dir,
    topic: "other",
    maxFileBytes: 1000,
    embeddings: false,
    commit: async () => {},
  });
  await assert.rejects(other.init(), /holds an export of topic acc/);
});
