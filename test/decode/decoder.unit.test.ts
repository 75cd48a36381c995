/**
 * The decode stage on JSON records: good records come out L2-normalised, every kind of bad record
 * comes back marked with its own code and a message that names the record and the field, and never
 * as an exception. Expected vectors are worked by hand ([3, 4, 0, 12] has norm 13).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { DecodedRecord, RawRecord } from "../../src/common/record.ts";
import { createDecoder } from "../../src/decode/decoder.ts";

const TOPIC = "clips";
let nextOffset = 0;

function raw(value: Buffer | string | null): RawRecord {
  return {
    source: { topic: TOPIC, partition: 3, offset: String(nextOffset++) },
    key: Buffer.from("k"),
    value: typeof value === "string" ? Buffer.from(value, "utf8") : value,
    headers: { h: "v" },
    timestamp: "1700000000000",
  };
}

/** Little-endian float32 bytes as base64, written independently of the code under test. */
function f32base64(values: number[]): string {
  const b = Buffer.alloc(values.length * 4);
  for (const [i, v] of values.entries()) b.writeFloatLE(v, i * 4);
  return b.toString("base64");
}

const UID = "0123456789abcdef0123456789abcdef";
const good = { uid: UID, text: "a dog", url: "https://example.com/dog.jpg" };

function json(fields: Record<string, unknown>): string {
  return JSON.stringify(fields);
}

/** Each vector divided by its norm, rounded to float32: the expected output, computed in the test. */
function unitF32(v: number[]): number[] {
  const norm = Math.sqrt(v.reduce((s, x) => s + x * x, 0));
  return v.map((x) => Math.fround(x / norm));
}

function assertClose(actual: Float32Array | undefined, expected: number[], tol = 1e-7): void {
  assert.ok(actual, "embedding missing");
  assert.equal(actual.length, expected.length);
  for (const [i, e] of expected.entries()) {
    assert.ok(Math.abs(actual[i] - e) <= tol, `[${i}] ${actual[i]} vs ${e}`);
  }
}

test("a JSON record with array embeddings decodes to L2-normalised float32 vectors", async () => {
  const decoder = await createDecoder({ format: "json", expectedDim: 4 });
  const input = raw(
    json({ ...good, model: "ViT-L-14", image_embedding: [3, 4, 0, 12], text_embedding: [0, -2, 0, 0] }),
  );
  const out = await decoder.decode(input);
  assert.equal(out.failure, undefined);
  assert.equal(out.uid, UID);
  assert.equal(out.text, "a dog");
  assert.equal(out.url, "https://example.com/dog.jpg");
  assert.equal(out.model, "ViT-L-14");
  assert.ok(out.imageEmbedding instanceof Float32Array);
  assertClose(out.imageEmbedding, [3 / 13, 4 / 13, 0, 12 / 13]);
  assertClose(out.textEmbedding, [0, -1, 0, 0], 0);
  // The raw record travels on unchanged (its value is forwarded byte for byte).
  assert.equal(out.value, input.value);
  assert.deepEqual(out.source, input.source);
  assert.deepEqual(out.key, input.key);
  assert.deepEqual(out.headers, input.headers);
  assert.equal(out.timestamp, input.timestamp);
  await decoder.close();
});

test("base64 embeddings (little-endian float32, and float16 with embedding_dtype) decode the same", async () => {
  const decoder = await createDecoder({ format: "json" });
  const image = [0.25, -1.5, 2, 0.125, 7];
  const text = [1, 1, 1, 1, 1];
  const out = await decoder.decode(
    raw(json({ ...good, image_embedding: f32base64(image), text_embedding: f32base64(text) })),
  );
  assert.equal(out.failure, undefined);
  assertClose(out.imageEmbedding, unitF32(image));
  assertClose(out.textEmbedding, unitF32(text));

  // float16 3 = 0x4200, 4 = 0x4400; little-endian
  const half = Buffer.from([0x00, 0x42, 0x00, 0x44]).toString("base64");
  const out16 = await decoder.decode(
    raw(json({ ...good, embedding_dtype: "FLOAT16", image_embedding: half, text_embedding: [3, 4] })),
  );
  assert.equal(out16.failure, undefined);
  assertClose(out16.imageEmbedding, [0.6, 0.8]);
  assertClose(out16.textEmbedding, [0.6, 0.8]);
});

test("normalisation keeps precision for large and tiny float32 values", async () => {
  const decoder = await createDecoder({ format: "json" });
  // Exact float32 values whose squares overflow float32 (~1.3e76) or underflow it (float32 subnormals).
  const big = [3 * 2 ** 125, 4 * 2 ** 125];
  const tiny = [3 * 2 ** -140, 4 * 2 ** -140];
  const out = await decoder.decode(raw(json({ ...good, image_embedding: big, text_embedding: tiny })));
  assert.equal(out.failure, undefined);
  assertClose(out.imageEmbedding, [0.6, 0.8]);
  assertClose(out.textEmbedding, [0.6, 0.8]);
  const uidOnly = await decoder.decode(
    raw(json({ uid: "x", image_embedding: [1, 0], text_embedding: [0, 1] })),
  );
  assert.equal(uidOnly.failure, undefined, "text, url and model are optional");
  assert.equal(uidOnly.text, undefined);
});

interface BadCase {
  name: string;
  value: Buffer | string | null;
  code: string;
  /** Fragments the message must contain (besides the record's coordinates). */
  says: string[];
  options?: { expectedDim?: number; expectedModel?: string };
}

const e2 = { image_embedding: [1, 2], text_embedding: [2, 1] };

const BAD: BadCase[] = [
  { name: "tombstone", value: null, code: "RECORD_TOMBSTONE", says: ["tombstone"] },
  { name: "not JSON", value: '{"uid": "a", ', code: "RECORD_UNDECODABLE", says: ["not JSON"] },
  { name: "empty value", value: "", code: "RECORD_UNDECODABLE", says: ["not JSON"] },
  {
    name: "not UTF-8",
    value: Buffer.from([0xff, 0xfe, 0x7b]),
    code: "RECORD_UNDECODABLE",
    says: ["not UTF-8"],
  },
  { name: "JSON array", value: "[1,2]", code: "RECORD_UNDECODABLE", says: ["not a JSON object", "array"] },
  { name: "JSON null", value: "null", code: "RECORD_UNDECODABLE", says: ["not a JSON object"] },
  { name: "no uid", value: json({ ...e2 }), code: "RECORD_MISSING_FIELD", says: ["uid is missing"] },
  {
    name: "empty uid",
    value: json({ uid: "", ...e2 }),
    code: "RECORD_MISSING_FIELD",
    says: ["uid is empty"],
  },
  {
    name: "uid a number",
    value: json({ uid: 7, ...e2 }),
    code: "RECORD_UNDECODABLE",
    says: ["uid", "not a string"],
  },
  {
    name: "text an object",
    value: json({ ...good, text: { a: 1 }, ...e2 }),
    code: "RECORD_UNDECODABLE",
    says: ["text is an object"],
  },
  {
    name: "no image embedding",
    value: json({ ...good, text_embedding: [1, 0] }),
    code: "RECORD_MISSING_FIELD",
    says: ["image_embedding is missing"],
  },
  {
    name: "null text embedding",
    value: json({ ...good, image_embedding: [1, 0], text_embedding: null }),
    code: "RECORD_MISSING_FIELD",
    says: ["text_embedding is missing"],
  },
  {
    name: "no embeddings",
    value: json({ ...good }),
    code: "RECORD_MISSING_FIELD",
    says: ["image_embedding and text_embedding are missing"],
  },
  {
    name: "a string in the array",
    value: json({ ...good, image_embedding: [1, "2"], text_embedding: [1, 2] }),
    code: "RECORD_UNDECODABLE",
    says: ["image_embedding[1]", "not a number"],
  },
  {
    name: "embedding an object",
    value: json({ ...good, image_embedding: { x: 1 }, text_embedding: [1, 2] }),
    code: "RECORD_UNDECODABLE",
    says: ["image_embedding is an object"],
  },
  {
    name: "bad base64 characters",
    value: json({ ...good, image_embedding: "AAA*AAAA", text_embedding: [1, 2] }),
    code: "RECORD_UNDECODABLE",
    says: ["image_embedding", "base64"],
  },
  {
    name: "base64 of 6 bytes",
    value: json({ ...good, image_embedding: "AAAAAAAA", text_embedding: [1, 2] }),
    code: "RECORD_UNDECODABLE",
    says: ["image_embedding has 6 bytes", "multiple of 4"],
  },
  {
    name: "unknown embedding_dtype",
    value: json({ ...good, embedding_dtype: "BFLOAT16", ...e2 }),
    code: "RECORD_UNDECODABLE",
    says: ["embedding_dtype", "BFLOAT16"],
  },
  {
    name: "wrong dimension",
    value: json({ ...good, image_embedding: [1, 2, 3], text_embedding: [1, 2, 3, 4] }),
    options: { expectedDim: 4 },
    code: "EMBEDDING_DIMENSION_MISMATCH",
    says: ["image_embedding has 3 values, expected 4"],
  },
  {
    name: "image and text dimensions differ",
    value: json({ ...good, image_embedding: [1, 2, 3, 4], text_embedding: [1, 2, 3] }),
    code: "EMBEDDING_DIMENSION_MISMATCH",
    says: ["image_embedding has 4 values but text_embedding has 3"],
  },
  {
    name: "empty embedding",
    value: json({ ...good, image_embedding: [], text_embedding: [] }),
    code: "EMBEDDING_DIMENSION_MISMATCH",
    says: ["image_embedding is empty"],
  },
  {
    name: "a number too large for float32",
    value: json({ ...good, image_embedding: [1, 2, 1e39], text_embedding: [1, 2, 3] }),
    code: "EMBEDDING_NOT_FINITE",
    says: ["image_embedding", "2 is Infinity", "too large for float32"],
  },
  {
    name: "-1e999 in JSON",
    value: json({ ...good, image_embedding: [1, 2], text_embedding: [1, 2] }).replace(
      "[1,2]}",
      "[1,-1e999]}",
    ),
    code: "EMBEDDING_NOT_FINITE",
    says: ["text_embedding", "1 is -Infinity"],
  },
  {
    name: "NaN in base64",
    value: json({ ...good, image_embedding: f32base64([1, Number.NaN]), text_embedding: [1, 2] }),
    code: "EMBEDDING_NOT_FINITE",
    says: ["image_embedding", "1 is NaN"],
  },
  {
    name: "zero vector",
    value: json({ ...good, image_embedding: [1, 2], text_embedding: [0, 0] }),
    code: "EMBEDDING_ZERO",
    says: ["text_embedding", "zero vector"],
  },
  {
    name: "another teacher",
    value: json({ ...good, model: "ViT-B-32", ...e2 }),
    options: { expectedModel: "ViT-L-14" },
    code: "TARGET_MISMATCH",
    says: ['"ViT-B-32"', '"ViT-L-14"'],
  },
  {
    name: "empty model",
    value: json({ ...good, model: "", ...e2 }),
    code: "RECORD_UNDECODABLE",
    says: ["model is an empty string"],
  },
];

for (const c of BAD) {
  test(`bad record, ${c.name}: ${c.code}, not an exception`, async () => {
    const decoder = await createDecoder({ format: "json", ...c.options });
    const input = raw(c.value);
    const out = await decoder.decode(input);
    assert.ok(out.failure, "expected a failure");
    assert.equal(out.failure.code, c.code, out.failure.message);
    assert.equal(out.failure.stage, "decode");
    assert.ok(
      out.failure.message.startsWith(`record ${TOPIC}/3@${input.source.offset}`),
      `names the record: ${out.failure.message}`,
    );
    for (const s of c.says) assert.ok(out.failure.message.includes(s), `"${s}" in: ${out.failure.message}`);
    assert.equal(out.imageEmbedding, undefined);
    assert.equal(out.textEmbedding, undefined);
    assert.equal(out.value, input.value);
  });
}

test("a record that fails after its uid keeps uid, text, url and model for the dead-letter topic", async () => {
  const decoder = await createDecoder({ format: "json", expectedDim: 2 });
  const out = await decoder.decode(
    raw(json({ ...good, model: "m", image_embedding: [1, 2, 3], text_embedding: [1] })),
  );
  assert.equal(out.failure?.code, "EMBEDDING_DIMENSION_MISMATCH");
  assert.ok(out.failure?.message.includes(`(uid ${UID})`), out.failure?.message);
  assert.deepEqual([out.uid, out.text, out.url, out.model], [UID, good.text, good.url, "m"]);
});

test("the teacher check passes a record naming the expected model or none", async () => {
  const decoder = await createDecoder({ format: "json", expectedModel: "ViT-L-14" });
  const same = await decoder.decode(raw(json({ ...good, model: "ViT-L-14", ...e2 })));
  const unnamed = await decoder.decode(raw(json({ ...good, ...e2 })));
  assert.equal(same.failure, undefined);
  assert.equal(unnamed.failure, undefined);
});

test("decodeBatch: good records around bad ones still decode, in order, one result per input", async () => {
  const decoder = await createDecoder({ format: "json", expectedDim: 2 });
  const inputs = [
    raw(json({ uid: "a", image_embedding: [3, 4], text_embedding: [1, 0] })),
    raw(null),
    raw("garbage"),
    raw(json({ uid: "b", image_embedding: [0, 5], text_embedding: [-6, 8] })),
    raw(json({ uid: "c", image_embedding: [1, 2, 3], text_embedding: [1, 2, 3] })),
    raw(json({ uid: "d", image_embedding: f32base64([-1, 0]), text_embedding: [0, 0.5] })),
  ];
  const out: DecodedRecord[] = await decoder.decodeBatch(inputs);
  assert.equal(out.length, inputs.length);
  assert.deepEqual(
    out.map((r) => r.failure?.code ?? "ok"),
    ["ok", "RECORD_TOMBSTONE", "RECORD_UNDECODABLE", "ok", "EMBEDDING_DIMENSION_MISMATCH", "ok"],
  );
  assert.deepEqual(
    out.map((r) => r.source.offset),
    inputs.map((r) => r.source.offset),
  );
  assertClose(out[0].imageEmbedding, [0.6, 0.8]);
  assertClose(out[3].imageEmbedding, [0, 1]);
  assertClose(out[3].textEmbedding, [-0.6, 0.8]);
  assertClose(out[5].imageEmbedding, [-1, 0]);
  assertClose(out[5].textEmbedding, [0, 1]);
  await decoder.close();
  await decoder.close(); // closing twice is harmless
});
