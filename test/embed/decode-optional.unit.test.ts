/**
 * The decoder's side of the embed stage: with `embeddingsOptional` a record may lack its embeddings
 * and carry `image_bytes` (base64 in JSON) for the embed stage; without it nothing changes.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { RawRecord } from "../../src/common/record.ts";
import { createDecoder } from "../../src/decode/decoder.ts";
import { encodeJsonRecord } from "../../src/decode/encode.ts";

const raw = (value: unknown): RawRecord => ({
  source: { topic: "t", partition: 0, offset: "7" },
  key: null,
  value: Buffer.from(typeof value === "string" ? value : JSON.stringify(value)),
  headers: {},
  timestamp: "0",
});

const IMAGE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 1, 2, 3, 250]);

test("embeddingsOptional: no embeddings is fine, image_bytes is read, a given embedding is still checked", async () => {
  const decoder = await createDecoder({ format: "json", expectedDim: 3, embeddingsOptional: true });
  const bare = await decoder.decode(raw({ uid: "u1", text: "a cat", image_bytes: IMAGE.toString("base64") }));
  assert.equal(bare.failure, undefined, bare.failure?.message);
  assert.equal(bare.imageEmbedding, undefined);
  assert.equal(bare.textEmbedding, undefined);
  assert.deepEqual(bare.imageBytes, IMAGE);
  assert.equal(bare.text, "a cat");

  const half = await decoder.decode(raw({ uid: "u2", text_embedding: [3, 0, 4] }));
  assert.equal(half.failure, undefined);
  assert.deepEqual(Array.from(half.textEmbedding ?? []), [0.6, 0, 0.8].map(Math.fround));

  const wrongDim = await decoder.decode(raw({ uid: "u3", image_embedding: [1, 2] }));
  assert.equal(wrongDim.failure?.code, "EMBEDDING_DIMENSION_MISMATCH");
  const badBytes = await decoder.decode(raw({ uid: "u4", image_bytes: "not base64!" }));
  assert.equal(badBytes.failure?.code, "RECORD_UNDECODABLE");
  assert.match(badBytes.failure?.message ?? "", /image_bytes/);
  assert.equal(badBytes.imageBytes, undefined, "a failed record keeps no image bytes");
  const wrongType = await decoder.decode(raw({ uid: "u5", image_bytes: 42 }));
  assert.match(wrongType.failure?.message ?? "", /image_bytes is number 42/);

  // The writer writes what the reader reads.
  const written = encodeJsonRecord(
    { uid: "u6", text: "x", imageBytes: IMAGE },
    { embeddingEncoding: "array" },
  );
  assert.deepEqual((await decoder.decode(raw(written.toString()))).imageBytes, IMAGE);
});

test("without embeddingsOptional a record without embeddings is still RECORD_MISSING_FIELD", async () => {
  const decoder = await createDecoder({ format: "json" });
  const out = await decoder.decode(raw({ uid: "u1", text: "a cat", image_bytes: IMAGE.toString("base64") }));
  assert.equal(out.failure?.code, "RECORD_MISSING_FIELD");
});
