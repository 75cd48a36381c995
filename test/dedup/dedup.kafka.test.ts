/**
 * The dedup step through Kafka: `simulate` writes a stream partitioned by LSH and a reference set with
 * planted copies of its images; the filter with --dedup and --reference rejects copies with the
 * record or row they copy, within the copy's own partition, and commits the history it kept. Truth
 * comes from the generator's labels (its near-copy clusters, the reference set's planted rows), not
 * from the code under test.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { decodeChunk } from "../../src/dedup/history-topic.ts";
import { createSimulation } from "../../src/simulate/generator.ts";
import { exited, filterArgs, filterTopics, spawnClipsieve } from "../helpers/filter.ts";
import { readAll, testBrokers, testKafka } from "../helpers/kafka.ts";

const COUNT = 3000;
const DIM = 128;
const SEED = 4;
const CONTAMINATED = 40;

test("simulate --partition-by lsh and --reference-out, then run --dedup --reference: copies rejected with their origin", async () => {
  const kafka = testKafka();
  const t = await filterTopics(4);
  const dir = mkdtempSync(join(tmpdir(), "clipsieve-dedup-test-"));
  try {
    const target = join(dir, "target.npz");
    const reference = join(dir, "reference.npz");
    const sim = spawnClipsieve([
      "simulate",
      "--brokers",
      testBrokers().join(","),
      "--topic",
      t.input,
      "--count",
      String(COUNT),
      "--dim",
      String(DIM),
      "--seed",
      String(SEED),
      "--partitions",
      "4",
      "--partition-by",
      "lsh",
      "--target-out",
      target,
      "--reference-out",
      reference,
      "--reference-rows",
      "300",
      "--contaminated",
      String(CONTAMINATED),
    ]);
    assert.equal(await exited(sim), 0, sim.output());

    // The generator's labels: each record's near-copy cluster and whether a reference row copies it.
    const records = [
      ...createSimulation({ count: COUNT, dim: DIM, seed: SEED, order: "shuffled" }).records(),
    ];
    const cluster = new Map(records.map((r) => [r.uid, r.cluster]));
    const input = await readAll(kafka, t.input, { expected: COUNT, readUncommitted: true });
    const partitionOf = new Map(input.map((m) => [m.key as string, m.partition]));
    const contaminated = new Set(
      input.filter((m) => m.headers["sim-contaminated"] === "1").map((m) => m.key),
    );
    assert.equal(contaminated.size, CONTAMINATED);
    // LSH puts most near-copies in their cluster's first record's partition (by uid: about 1 in 4).
    const firstOf = new Map<number, number>();
    let copies = 0;
    let together = 0;
    for (const r of records.filter((x) => x.kind === "duplicate")) {
      const p = partitionOf.get(r.uid) as number;
      const first = firstOf.get(r.cluster);
      if (first === undefined) firstOf.set(r.cluster, p);
      else {
        copies++;
        if (first === p) together++;
      }
    }
    assert.ok(together / copies > 0.7, `${together} of ${copies} copies with their cluster's first record`);

    const filter = spawnClipsieve(
      filterArgs(t, [
        "--dim",
        String(DIM),
        "--target",
        target,
        "--window-size",
        "500",
        "--bank-size",
        "500",
        "--batch-size",
        "512",
        "--draws",
        "1",
        "--keep",
        "s_clip_loss=0.4",
        "--warmup",
        "0",
        "--dedup",
        "--reference",
        reference,
        "--instance-id",
        "dedup",
      ]),
    );
    try {
      const scores = await readAll(kafka, t.scores, { expected: COUNT, timeoutMs: 120_000 });
      assert.equal(scores.length, COUNT, filter.output().slice(-2000));
      const decided = scores.map((m) => JSON.parse(m.value?.toString() ?? "{}"));
      const duplicates = decided.filter((s) => s.reason === "near_duplicate");
      const references = decided.filter((s) => s.reason === "near_reference");
      assert.ok(duplicates.length > 20, `${duplicates.length} near_duplicate`);
      for (const s of duplicates) {
        assert.equal(s.decision, "rejected");
        assert.equal(s.copy_of.kind, "record");
        assert.equal(cluster.get(s.copy_of.uid), cluster.get(s.uid), `${s.uid} copies its own cluster`);
        assert.equal(s.copy_of.source.partition, s.source.partition);
        assert.ok(BigInt(s.copy_of.source.offset) < BigInt(s.source.offset));
        assert.ok(s.copy_of.similarity >= 0.95);
      }
      assert.ok(references.length > 0, "some planted copies were accepted by the policy and then rejected");
      for (const s of references) {
        assert.ok(contaminated.has(s.uid), `${s.uid} is a planted copy`);
        assert.equal(s.copy_of.kind, "reference");
        assert.ok(s.copy_of.row < CONTAMINATED);
      }
      const rejected = await readAll(kafka, t.rejected, {
        expected: COUNT - decided.filter((s) => s.decision === "accepted").length,
      });
      const copyHeaders = rejected.filter((m) => m.headers["clipsieve-copy-of"] !== undefined);
      assert.equal(copyHeaders.length, duplicates.length + references.length);

      // The committed history holds exactly the records kept, per partition, in offset order.
      const history = await readAll(kafka, `${t.scores}-dedup-history`, { idleMs: 2000 });
      const rows = new Map<string, string[]>();
      for (const m of history) {
        const chunk = decodeChunk(m.value as Buffer);
        const list = rows.get(chunk.header.scope) ?? [];
        list[chunk.header.chunk] = chunk.header.uids.join(",");
        rows.set(chunk.header.scope, list);
      }
      for (let p = 0; p < 4; p++) {
        const kept = decided
          .filter((s) => s.decision === "accepted" && s.source.partition === p)
          .sort((a, b) => Number(a.source.offset) - Number(b.source.offset))
          .map((s) => s.uid);
        const held = (rows.get(`${t.input}/${p}`) ?? [])
          .filter((x) => x !== "")
          .join(",")
          .split(",")
          .filter(Boolean);
        assert.deepEqual(held, kept, `partition ${p}`);
      }
    } finally {
      filter.kill("SIGTERM");
      await exited(filter);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
