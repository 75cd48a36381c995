/**
 * `clipsieve simulate` against the real broker: every record arrives, in the generator's order, in
 * the JSON record format the filter decodes, labelled in its headers, and the matching target set is
 * a valid artifact. Expected values come from the generator library called here, not from the command.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { createDecoder } from "../../src/decode/decoder.ts";
import { readTargetSet } from "../../src/score/target-set.ts";
import { createSimulation, SIM_MODEL } from "../../src/simulate/generator.ts";
import { exited, spawnClipsieve } from "../helpers/filter.ts";
import { readAll, testBrokers, testKafka, uniqueName } from "../helpers/kafka.ts";
import { startSchemaRegistry } from "../helpers/schema-registry.ts";

test("simulate writes the labelled stream and its target set", async () => {
  const kafka = testKafka();
  const topic = uniqueName("sim");
  const dir = mkdtempSync(join(tmpdir(), "clipsieve-sim-test-"));
  const targetOut = join(dir, "target.npz");
  try {
    const started = Date.now();
    const child = spawnClipsieve([
      "simulate",
      "--brokers",
      testBrokers().join(","),
      "--topic",
      topic,
      "--count",
      "400",
      "--dim",
      "16",
      "--seed",
      "9",
      "--order",
      "bursty",
      "--rate",
      "400",
      "--target-out",
      targetOut,
    ]);
    assert.equal(await exited(child), 0, child.output());
    // 400 records at 400 records/s cannot take much less than a second.
    assert.ok(Date.now() - started >= 900, `took ${Date.now() - started} ms`);
    assert.match(child.output(), /produced 400 records/);

    const expected = [...createSimulation({ count: 400, dim: 16, seed: 9, order: "bursty" }).records()];
    const got = await readAll(kafka, topic, { expected: 400, readUncommitted: true });
    assert.equal(got.length, 400);
    got.sort((a, b) => Number(a.offset) - Number(b.offset));
    const decoder = await createDecoder({ format: "json", expectedDim: 16, expectedModel: SIM_MODEL });
    for (let i = 0; i < 400; i++) {
      const m = got[i];
      const want = expected[i];
      assert.equal(m.key, want.uid);
      assert.equal(m.headers["sim-kind"], want.kind);
      assert.equal(m.headers["sim-topic"], String(want.topic));
      assert.equal(m.headers["sim-site"], String(want.site));
      const decoded = await decoder.decode({
        source: { topic, partition: m.partition, offset: m.offset },
        key: null,
        value: m.value,
        headers: {},
        timestamp: "0",
      });
      assert.equal(decoded.failure, undefined);
      assert.equal(decoded.uid, want.uid);
      assert.equal(decoded.text, want.text);
      for (let d = 0; d < 16; d++) {
        assert.ok(Math.abs((decoded.imageEmbedding as Float32Array)[d] - want.imageEmbedding[d]) < 1e-6);
        assert.ok(Math.abs((decoded.textEmbedding as Float32Array)[d] - want.textEmbedding[d]) < 1e-6);
      }
    }
    await decoder.close();

    assert.ok(existsSync(targetOut));
    const target = await readTargetSet(targetOut);
    assert.equal(target.model, SIM_MODEL);
    assert.equal(target.dim, 16);
    const want = createSimulation({ count: 1, dim: 16, seed: 9, order: "bursty" }).targetEmbeddings();
    assert.equal(target.rows, want.rows);
    assert.deepEqual(target.embeddings, want.data);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("simulate --profile longtail writes the longtail world, record for record", async () => {
  const kafka = testKafka();
  const topic = uniqueName("sim-longtail");
  const dir = mkdtempSync(join(tmpdir(), "clipsieve-sim-test-"));
  try {
    const child = spawnClipsieve([
      "simulate",
      "--brokers",
      testBrokers().join(","),
      "--topic",
      topic,
      "--count",
      "300",
      "--dim",
      "16",
      "--seed",
      "4",
      "--profile",
      "longtail",
      "--target-out",
      join(dir, "target.npz"),
    ]);
    assert.equal(await exited(child), 0, child.output());
    assert.match(child.output(), /produced 300 records .* shuffled order, seed 4, longtail profile/);
    const expected = [
      ...createSimulation({ count: 300, dim: 16, seed: 4, order: "shuffled", profile: "longtail" }).records(),
    ];
    const crawl = [...createSimulation({ count: 300, dim: 16, seed: 4, order: "shuffled" }).records()];
    const got = await readAll(kafka, topic, { expected: 300, readUncommitted: true });
    got.sort((a, b) => Number(a.offset) - Number(b.offset));
    assert.deepEqual(
      got.map((m) => [m.key, m.headers["sim-kind"], m.headers["sim-topic"]]),
      expected.map((r) => [r.uid, r.kind, String(r.topic)]),
    );
    // Not the crawl world: its topics are 0-23, the longtail's go up to 239.
    assert.notDeepEqual(
      expected.map((r) => r.topic),
      crawl.map((r) => r.topic),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("simulate --format avro writes Confluent-framed Avro the decoder reads", async () => {
  const registry = await startSchemaRegistry();
  const kafka = testKafka();
  const topic = uniqueName("sim-avro");
  const dir = mkdtempSync(join(tmpdir(), "clipsieve-sim-test-"));
  try {
    const child = spawnClipsieve([
      "simulate",
      "--brokers",
      testBrokers().join(","),
      "--topic",
      topic,
      "--count",
      "50",
      "--dim",
      "8",
      "--format",
      "avro",
      "--schema-registry",
      registry.url,
      "--target-out",
      join(dir, "t.npz"),
    ]);
    assert.equal(await exited(child), 0, child.output());
    const expected = [...createSimulation({ count: 50, dim: 8, seed: 0, order: "shuffled" }).records()];
    const got = await readAll(kafka, topic, { expected: 50, readUncommitted: true });
    got.sort((a, b) => Number(a.offset) - Number(b.offset));
    const decoder = await createDecoder({ format: "avro", schemaRegistryUrl: registry.url, expectedDim: 8 });
    for (let i = 0; i < 50; i++) {
      const value = got[i].value as Buffer;
      assert.equal(value[0], 0, "Confluent magic byte");
      const decoded = await decoder.decode({
        source: { topic, partition: 0, offset: got[i].offset },
        key: null,
        value,
        headers: {},
        timestamp: "0",
      });
      assert.equal(decoded.failure, undefined);
      assert.equal(decoded.uid, expected[i].uid);
      assert.equal(got[i].headers["sim-kind"], expected[i].kind);
    }
    await decoder.close();
  } finally {
    await registry.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
