/**
 * The filter on Avro records through a schema registry, against the real broker: float32 and float16
 * embeddings are scored, and a record framed with a schema id the registry does not know reaches the
 * dead-letter topic as SCHEMA_UNKNOWN while the records around it flow on.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { createAvroEncoder } from "../../src/decode/encode.ts";
import { HEADER } from "../../src/sink/outputs.ts";
import { exited, filterArgs, filterTopics, spawnClipsieve } from "../helpers/filter.ts";
import { readAll, testKafka } from "../helpers/kafka.ts";
import { syntheticPairs } from "../helpers/records.ts";
import { startSchemaRegistry } from "../helpers/schema-registry.ts";

test("Avro records are scored; an unknown schema id is dead-lettered", async () => {
  const registry = await startSchemaRegistry();
  const kafka = testKafka();
  const t = await filterTopics(1);
  try {
    const encoder = await createAvroEncoder({ schemaRegistryUrl: registry.url, topic: t.input });
    const pairs = syntheticPairs(120, 16, 41);
    const values: Buffer[] = [];
    for (const [i, p] of pairs.entries()) {
      values.push(
        await encoder.encode(
          {
            uid: p.uid,
            text: "a caption",
            url: null,
            model: null,
            imageEmbedding: p.image,
            textEmbedding: p.text,
          },
          { embeddingDtype: i % 2 === 0 ? "FLOAT32" : "FLOAT16" },
        ),
      );
    }
    await encoder.close();
    // A well-formed Avro body behind a schema id nobody registered.
    const unknown = Buffer.from(values[0]);
    unknown.writeUInt32BE(encoder.schemaId + 1000, 1);
    values.splice(60, 0, unknown);
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    await producer.send({ topic: t.input, messages: values.map((value, i) => ({ key: `k${i}`, value })) });
    await producer.disconnect();

    const filter = spawnClipsieve(
      filterArgs(t, [
        "--format",
        "avro",
        "--schema-registry",
        registry.url,
        "--dim",
        "16",
        "--window-size",
        "50",
        "--linger-ms",
        "200",
        "--bank-size",
        "0",
        "--draws",
        "1",
        "--batch-size",
        "32",
        "--keep",
        "s_clip_loss=0.5",
        "--warmup",
        "0",
        "--instance-id",
        "avro",
      ]),
    );
    try {
      const scores = await readAll(kafka, t.scores, { expected: values.length, timeoutMs: 60_000 });
      assert.equal(scores.length, values.length, filter.output());
    } finally {
      filter.kill("SIGTERM");
      assert.equal(await exited(filter), 0, filter.output());
    }
    const dead = await readAll(kafka, t.deadLetter, { expected: 1, timeoutMs: 20_000 });
    assert.equal(dead.length, 1);
    assert.equal(dead[0].key, "k60");
    assert.equal(dead[0].headers[HEADER.errorCode], "SCHEMA_UNKNOWN");
    assert.ok(dead[0].value?.equals(unknown), "the dead letter keeps the original bytes");
    const [acc, rej] = await Promise.all(
      [t.accepted, t.rejected].map((topic) => readAll(kafka, topic, { idleMs: 1500 })),
    );
    assert.equal(acc.length + rej.length, pairs.length);
  } finally {
    await registry.close();
  }
});
