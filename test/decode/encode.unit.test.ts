/**
 * The JSON writer used by the simulator and the loader: the fields it writes (read back with
 * JSON.parse and hand-decoded bytes, not with the decoder), and that the decoder reads what it writes.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { isClipsieveError } from "../../src/common/errors.ts";
import { createDecoder } from "../../src/decode/decoder.ts";
import { encodeJsonRecord } from "../../src/decode/encode.ts";

const rec = {
  uid: "abc",
  text: "a red bus",
  url: null,
  model: "ViT-L-14",
  imageEmbedding: new Float32Array([0.1, -2, 3.5]),
  textEmbedding: [1, 0, 0],
};

test("array encoding writes the float32 values as JSON numbers and leaves null fields out", () => {
  const obj = JSON.parse(encodeJsonRecord(rec, { embeddingEncoding: "array" }).toString("utf8"));
  assert.deepEqual(Object.keys(obj).sort(), ["image_embedding", "model", "text", "text_embedding", "uid"]);
  assert.deepEqual(obj.image_embedding, [Math.fround(0.1), -2, 3.5]);
  assert.deepEqual(obj.text_embedding, [1, 0, 0]);
  assert.equal(obj.embedding_dtype, undefined);
});

test("base64 encoding writes little-endian bytes and names the dtype", () => {
  const f32 = JSON.parse(encodeJsonRecord(rec, { embeddingEncoding: "base64" }).toString("utf8"));
  assert.equal(f32.embedding_dtype, "FLOAT32");
  const bytes = Buffer.from(f32.image_embedding, "base64");
  assert.equal(bytes.length, 12);
  assert.deepEqual(
    [bytes.readFloatLE(0), bytes.readFloatLE(4), bytes.readFloatLE(8)],
    [Math.fround(0.1), -2, 3.5],
  );

  const f16 = JSON.parse(
    encodeJsonRecord(rec, { embeddingEncoding: "base64", embeddingDtype: "FLOAT16" }).toString("utf8"),
  );
  assert.equal(f16.embedding_dtype, "FLOAT16");
  // 1 = 0x3C00, 0 = 0x0000, little-endian
  assert.deepEqual([...Buffer.from(f16.text_embedding, "base64")], [0x00, 0x3c, 0, 0, 0, 0]);
});

test("a non-finite value cannot be written as a JSON number: EMBEDDING_NOT_FINITE, naming the index", () => {
  assert.throws(
    () => encodeJsonRecord({ uid: "x", imageEmbedding: [1, Number.NaN] }, { embeddingEncoding: "array" }),
    (err: unknown) =>
      isClipsieveError(err, "EMBEDDING_NOT_FINITE") && err.message.includes("image_embedding[1]"),
  );
  // base64 can carry it (the simulator uses that to make bad records on purpose)
  const b64 = encodeJsonRecord(
    { uid: "x", imageEmbedding: [1, Number.NaN] },
    { embeddingEncoding: "base64" },
  );
  assert.ok(b64.length > 0);
});

test("the decoder reads back what the writer wrote, in every encoding", async () => {
  const decoder = await createDecoder({ format: "json", expectedDim: 3, expectedModel: "ViT-L-14" });
  const image = [3, 0, -4];
  const text = [0, 0.5, 0];
  for (const opts of [
    { embeddingEncoding: "array" },
    { embeddingEncoding: "base64" },
    { embeddingEncoding: "base64", embeddingDtype: "FLOAT16" },
  ] as const) {
    const value = encodeJsonRecord({ ...rec, imageEmbedding: image, textEmbedding: text }, opts);
    const out = await decoder.decode({
      source: { topic: "t", partition: 0, offset: "0" },
      key: null,
      value,
      headers: {},
      timestamp: "0",
    });
    assert.equal(out.failure, undefined, JSON.stringify(opts));
    assert.deepEqual(Array.from(out.imageEmbedding ?? []), [Math.fround(0.6), 0, Math.fround(-0.8)]);
    assert.deepEqual(Array.from(out.textEmbedding ?? []), [0, 1, 0]);
    assert.equal(out.url, undefined);
  }
});
