/**
 * `export` against the real broker, as a child process: an accepted topic written in transactions (one
 * aborted) becomes Parquet files by hour; a SIGKILL in the middle and a restart with another file size
 * leave no partial file and no duplicate, and every committed record is exported once. Files are read
 * with parquet-wasm and apache-arrow directly; the uid .npy with a reader written here.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import * as arrow from "apache-arrow";
import * as pq from "parquet-wasm/node";
import { HEADER } from "../../src/sink/outputs.ts";
import { exited, spawnClipsieve } from "../helpers/filter.ts";
import { createTopics, testBrokers, testKafka, uniqueName } from "../helpers/kafka.ts";
import { jsonRecord, mulberry32, syntheticPairs } from "../helpers/records.ts";

const DIM = 16;
const N = 3000;
const HOUR = 3_600_000;
/** Three whole hours ending with the current one: brokers refuse timestamps far in the future. */
const BASE = (Math.floor(Date.now() / HOUR) - 2) * HOUR;

interface Exported {
  uid: string;
  text: string | null;
  url: string | null;
  s_clip_loss: number;
  source: string;
  partition: number;
  offset: bigint;
  timestamp: number;
  image_embedding: number[];
}

function readExport(dir: string): { rows: Exported[]; files: number; hidden: string[] } {
  const rows: Exported[] = [];
  const hidden: string[] = [];
  let files = 0;
  for (const hour of readdirSync(dir).filter((n) => n.startsWith("hour="))) {
    for (const name of readdirSync(join(dir, hour))) {
      if (name.startsWith(".")) {
        hidden.push(`${hour}/${name}`);
        continue;
      }
      files++;
      const table = arrow.tableFromIPC(pq.readParquet(readFileSync(join(dir, hour, name))).intoIPCStream());
      for (const row of table) {
        const r = row.toJSON() as Record<string, unknown>;
        assert.equal(`hour=${new Date(Number(r.timestamp)).toISOString().slice(0, 13)}`, hour);
        rows.push({
          uid: r.uid as string,
          text: r.text as string | null,
          url: r.url as string | null,
          s_clip_loss: r.s_clip_loss as number,
          source: r.source as string,
          partition: r.partition as number,
          offset: r.offset as bigint,
          timestamp: Number(r.timestamp),
          image_embedding:
            r.image_embedding === undefined
              ? []
              : Array.from((r.image_embedding as arrow.Vector).toArray() as Float32Array),
        });
      }
    }
  }
  return { rows, files, hidden };
}

/** DataComp's uid .npy, read here: header, then (u8, u8) little-endian pairs. */
function readUids(path: string): string[] {
  const bytes = readFileSync(path);
  const headerLen = bytes.readUInt16LE(8);
  const header = bytes.subarray(10, 10 + headerLen).toString("latin1");
  const count = Number(/'shape': \((\d+),\)/.exec(header)![1]);
  const data = bytes.subarray(10 + headerLen);
  return Array.from(
    { length: count },
    (_, i) =>
      data
        .readBigUInt64LE(i * 16)
        .toString(16)
        .padStart(16, "0") +
      data
        .readBigUInt64LE(i * 16 + 8)
        .toString(16)
        .padStart(16, "0"),
  );
}

test("export survives a SIGKILL: no partial file, no duplicate, every accepted record once", async (t) => {
  const kafka = testKafka();
  const topic = uniqueName("acc");
  await createTopics([topic], 2);
  const pairs = syntheticPairs(N, DIM, 44);
  const rand = mulberry32(3);
  const produced = new Map<string, { uid: string; score: number; timestamp: number; image: number[] }>();
  const message = (p: (typeof pairs)[number], i: number, aborted = false) => {
    const score = Math.round(rand() * 1e6) / 1e6;
    const timestamp = BASE + Math.floor((3 * i) / N) * HOUR + Math.floor(rand() * HOUR);
    if (!aborted) produced.set(p.uid, { uid: p.uid, score, timestamp, image: p.image });
    return {
      key: p.uid,
      value: jsonRecord(p, { base64: true }),
      partition: i % 2,
      timestamp: String(timestamp),
      headers: {
        [HEADER.decision]: "accepted",
        [HEADER.scores]: JSON.stringify({ clip_score: 0.3, s_clip_loss: score }),
        [HEADER.policyVersion]: "0123456789ab",
        [HEADER.windowId]: `w-${Math.floor(i / 100)}`,
        [HEADER.source]: `in/${i % 2}/${i}`,
      },
    };
  };
  // Written as the filter writes: in transactions; one is aborted and must not be exported.
  const producer = kafka.producer({
    transactionalId: uniqueName("tx"),
    maxInFlightRequests: 1,
    idempotent: true,
  });
  await producer.connect();
  try {
    for (let start = 0; start < N; start += 500) {
      if (start === 1500) {
        const junk = await producer.transaction();
        await junk.send({
          topic,
          messages: syntheticPairs(40, DIM, 99).map((p, i) =>
            message({ ...p, uid: `f${p.uid.slice(1)}` }, i, true),
          ),
        });
        await junk.abort();
      }
      const tx = await producer.transaction();
      await tx.send({
        topic,
        messages: pairs.slice(start, start + 500).map((p, j) => message(p, start + j)),
      });
      await tx.commit();
    }
  } finally {
    await producer.disconnect();
  }

  const dir = mkdtempSync(join(tmpdir(), "clipsieve-export-"));
  const out = join(dir, "lake");
  const uidsNpy = join(dir, "uids.npy");
  const group = uniqueName("export");
  const args = (maxFileBytes: number) => [
    "export",
    "--brokers",
    testBrokers().join(","),
    "--input",
    topic,
    "--out",
    out,
    "--group",
    group,
    "--embeddings",
    "--max-file-bytes",
    String(maxFileBytes),
    "--uids-npy",
    uidsNpy,
    // the restart joins the group the killed export was in: its place is freed after this long
    "--session-timeout-ms",
    "6000",
  ];

  const first = spawnClipsieve(args(6000));
  const countFiles = () =>
    existsSync(out)
      ? readdirSync(out)
          .filter((n) => n.startsWith("hour="))
          .reduce((n, h) => n + readdirSync(join(out, h)).filter((f) => f.endsWith(".parquet")).length, 0)
      : 0;
  const deadline = Date.now() + 60_000;
  while (countFiles() < 30 && first.exitCode === null && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
  }
  first.kill("SIGKILL");
  await exited(first);
  assert.equal(first.signalCode, "SIGKILL", `export ended before the kill:\n${first.output()}`);
  const killed = readExport(out);
  assert.ok(killed.rows.length > 0 && killed.rows.length < N, `killed after ${killed.rows.length} records`);
  assert.ok(!existsSync(uidsNpy));
  t.diagnostic(`killed after ${killed.files} files holding ${killed.rows.length} records`);

  // A write killed half-way leaves a temporary file; this one belongs to a process long gone.
  const hour = readdirSync(out).find((n) => n.startsWith("hour="))!;
  writeFileSync(join(out, hour, ".part-1-4242.parquet.2147483646.deadbeef.tmp"), "half a file");

  const second = spawnClipsieve(args(9000));
  assert.equal(await exited(second), 0, second.output());
  assert.match(second.output(), /export .*: \d+ records in \d+ files/, "progress lines");

  const { rows, hidden } = readExport(out);
  assert.deepEqual(hidden, [], "no temporary or partial file is left");
  const counts = new Map<string, number>();
  for (const r of rows) counts.set(r.uid, (counts.get(r.uid) ?? 0) + 1);
  assert.deepEqual(
    [...counts].filter(([, n]) => n > 1),
    [],
    "no record is exported twice",
  );
  assert.equal(rows.length, N, "every committed record, and none of the aborted transaction");
  for (const r of rows) {
    const p = produced.get(r.uid);
    assert.ok(p, `${r.uid} was not produced in a committed transaction`);
    assert.equal(r.s_clip_loss, p.score);
    assert.equal(r.timestamp, p.timestamp);
    assert.equal(r.text, `caption ${r.uid}`);
    assert.equal(r.url, `https://example.com/${r.uid}.jpg`);
    // The decoder hands out unit vectors; the synthetic ones are unit vectors already.
    for (const [k, v] of r.image_embedding.entries()) assert.ok(Math.abs(v - p.image[k]!) < 1e-6);
  }
  assert.deepEqual(readUids(uidsNpy), [...produced.keys()].sort());

  // Everything is committed: a third run finds nothing to do and changes nothing.
  const third = spawnClipsieve(args(9000));
  assert.equal(await exited(third), 0, third.output());
  assert.match(third.output(), /exported 0 records into 0 files/);
  assert.equal(readExport(out).rows.length, N);
});

test("export --follow writes new records within --flush-ms and stops cleanly on SIGTERM", async () => {
  const kafka = testKafka();
  const topic = uniqueName("acc");
  await createTopics([topic], 1);
  const pairs = syntheticPairs(120, DIM, 45);
  const send = async (from: number, to: number) => {
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    try {
      await producer.send({
        topic,
        messages: pairs.slice(from, to).map((p, i) => ({
          key: p.uid,
          value: jsonRecord(p),
          headers: { [HEADER.scores]: JSON.stringify({ clip_score: 0.3, s_clip_loss: (from + i) / 1000 }) },
        })),
      });
    } finally {
      await producer.disconnect();
    }
  };
  await send(0, 60);
  const out = join(mkdtempSync(join(tmpdir(), "clipsieve-export-follow-")), "lake");
  const child = spawnClipsieve([
    "export",
    "--brokers",
    testBrokers().join(","),
    "--input",
    topic,
    "--out",
    out,
    "--follow",
    "--flush-ms",
    "500",
  ]);
  const exportedCount = () => (existsSync(out) ? readExport(out).rows.length : 0);
  const waitFor = async (n: number, ms: number) => {
    const deadline = Date.now() + ms;
    while (exportedCount() < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  };
  try {
    // The first file waits for the process to start and join its group: slow on a busy machine.
    await waitFor(60, 180_000);
    assert.equal(exportedCount(), 60, child.output());
    await send(60, 120);
    await waitFor(120, 60_000);
  } finally {
    child.kill("SIGTERM");
    assert.equal(await exited(child), 0, child.output());
  }
  const { rows, hidden } = readExport(out);
  assert.deepEqual(hidden, []);
  assert.deepEqual(rows.map((r) => r.uid).sort(), pairs.map((p) => p.uid).sort());
  assert.deepEqual(
    rows.map((r) => r.s_clip_loss).sort((a, b) => a - b),
    pairs.map((_, i) => i / 1000),
  );
});
