/**
 * An accepted record whose `clipsieve-scores` header holds a null (a score the filter did not compute
 * for it, e.g. NormSim_inf of a record accepted in warm-up mode `accept` below the stage-1 cut-off)
 * exports with a null cell in that column, never a 0; its other scores are kept. The file is read back
 * with parquet-wasm and apache-arrow directly.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import * as arrow from "apache-arrow";
import * as pq from "parquet-wasm/node";
import { isClipsieveError } from "../../src/common/errors.ts";
import type { DecodedRecord } from "../../src/common/record.ts";
import { toExportRecord } from "../../src/lake/export.ts";
import { ExportWriter } from "../../src/lake/export-writer.ts";

function accepted(offset: number, scores: string): DecodedRecord {
  return {
    source: { topic: "acc", partition: 0, offset: String(offset) },
    key: null,
    value: null,
    headers: { "clipsieve-scores": scores, "clipsieve-policy-version": "abcdefabcdef" },
    timestamp: String(Date.UTC(2026, 10, 27, 22, 0, 0)),
    uid: String(offset).padStart(32, "0"),
  };
}

test("a null score in the header is a null cell, the other scores stay", async () => {
  const records = [
    accepted(0, '{"clip_score":0.3,"s_clip_loss":0.02,"normsim_2":3.25,"normsim_inf":0.625}'),
    accepted(1, '{"clip_score":0.25,"s_clip_loss":-0.01,"normsim_2":3.5,"normsim_inf":null}'),
  ].map((r) => toExportRecord(r, false));
  assert.deepEqual(records[1]!.scores, { clip_score: 0.25, s_clip_loss: -0.01, normsim_2: 3.5 });

  const dir = mkdtempSync(join(tmpdir(), "clipsieve-export-record-"));
  const writer = new ExportWriter({
    dir,
    topic: "acc",
    maxFileBytes: 1 << 20,
    embeddings: false,
    commit: async () => {},
  });
  await writer.init();
  for (const r of records) await writer.add(r);
  await writer.flushAll();
  const hour = readdirSync(dir).find((n) => n.startsWith("hour="))!;
  const [file] = readdirSync(join(dir, hour)).filter((n) => n.endsWith(".parquet"));
  const table = arrow.tableFromIPC(pq.readParquet(readFileSync(join(dir, hour, file!))).intoIPCStream());
  const column = (name: string) => [...table.getChild(name)!].map((v) => (v === null ? null : Number(v)));
  assert.deepEqual(column("normsim_inf"), [0.625, null]);
  assert.deepEqual(column("normsim_2"), [3.25, 3.5]);
  assert.deepEqual(column("s_clip_loss"), [0.02, -0.01]);
});

test("a header score that is neither a number nor null is refused", () => {
  assert.throws(
    () => toExportRecord(accepted(2, '{"clip_score":"0.3"}'), false),
    (err) => isClipsieveError(err, "LAKE_RECORD_INVALID"),
  );
});
