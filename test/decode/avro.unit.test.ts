/**
 * The decode stage on Confluent-framed Avro, against an in-process stand-in for the Schema Registry
 * (test/helpers/schema-registry.ts). Bad values are marked records; an unreachable registry is a
 * thrown, retryable error, because then no record can be read at all.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import avro from "avsc";
import { isClipsieveError } from "../../src/common/errors.ts";
import type { RawRecord } from "../../src/common/record.ts";
import { createDecoder, type Decoder } from "../../src/decode/decoder.ts";
import { type AvroRecordEncoder, clipRecordSchema, createAvroEncoder } from "../../src/decode/encode.ts";
import type { DecoderOptions } from "../../src/decode/options.ts";
import { type FakeSchemaRegistry, startSchemaRegistry } from "../helpers/schema-registry.ts";

const TOPIC = "clips-avro";
// No retries, so that an outage fails at once; the retry test turns them back on.
const FAST = { schemaRegistryMaxRetries: 0, schemaRegistryRetryWaitMs: 1, schemaRegistryTimeoutMs: 2000 };

let registry: FakeSchemaRegistry;
let encoder: AvroRecordEncoder;
let decoder: Decoder;
let offset = 0;

before(async () => {
  registry = await startSchemaRegistry();
  encoder = await createAvroEncoder({ schemaRegistryUrl: registry.url, topic: TOPIC, ...FAST });
  decoder = await createDecoder({ format: "avro", schemaRegistryUrl: registry.url, ...FAST });
});

after(async () => {
  await decoder.close();
  await encoder.close();
  await registry.close();
});

function raw(value: Buffer | null, topic = TOPIC): RawRecord {
  return {
    source: { topic, partition: 0, offset: String(offset++) },
    key: null,
    value,
    headers: {},
    timestamp: "0",
  };
}

/** Register a schema through the registry's REST API, as any other producer would. */
async function register(url: string, subject: string, schema: object): Promise<number> {
  const res = await fetch(`${url}/subjects/${subject}/versions`, {
    method: "POST",
    headers: { "Content-Type": "application/vnd.schemaregistry.v1+json" },
    body: JSON.stringify({ schema: JSON.stringify(schema) }),
  });
  assert.equal(res.status, 200);
  return ((await res.json()) as { id: number }).id;
}

/** Confluent framing written by hand: magic 0, big-endian id, Avro body. */
function frame(schemaId: number, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.writeInt32BE(schemaId, 1);
  return Buffer.concat([head, body]);
}

function assertClose(actual: Float32Array | undefined, expected: number[], tol = 1e-7): void {
  assert.ok(actual, "embedding missing");
  assert.equal(actual.length, expected.length);
  for (const [i, e] of expected.entries()) {
    assert.ok(Math.abs(actual[i] - e) <= tol, `[${i}] ${actual[i]} vs ${e}`);
  }
}

test("float32 round trip: Confluent framing, clip_record.avsc body, normalised vectors", async () => {
  const value = await encoder.encode({
    uid: "00ff00ff00ff00ff00ff00ff00ff00ff",
    text: "a cat",
    url: "https://example.com/cat.jpg",
    model: "ViT-B-32",
    imageEmbedding: [3, 4, 0, 12],
    textEmbedding: new Float32Array([0.5, 0, 0, 0]),
  });
  // The framing and the body, read back without the code under test.
  assert.equal(value[0], 0);
  assert.equal(value.readInt32BE(1), encoder.schemaId);
  const body = avro.Type.forSchema(JSON.parse(clipRecordSchema())).fromBuffer(value.subarray(5)) as Record<
    string,
    unknown
  >;
  assert.equal(body.embedding_dtype, "FLOAT32");
  assert.equal((body.image_embedding as Buffer).readFloatLE(12), 12);

  const out = await decoder.decode(raw(value));
  assert.equal(out.failure, undefined, out.failure?.message);
  assert.deepEqual(
    [out.uid, out.text, out.url, out.model],
    ["00ff00ff00ff00ff00ff00ff00ff00ff", "a cat", "https://example.com/cat.jpg", "ViT-B-32"],
  );
  assertClose(out.imageEmbedding, [3 / 13, 4 / 13, 0, 12 / 13]);
  assertClose(out.textEmbedding, [1, 0, 0, 0], 0);
});

test("float16 round trip: values are read as float16 (0.1 comes back as 0.0999755859375)", async () => {
  const value = await encoder.encode(
    { uid: "h", imageEmbedding: [0.1, 1], textEmbedding: [-1.25, 0.5] },
    { embeddingDtype: "FLOAT16" },
  );
  // 2 values x 2 bytes per embedding; float32 would need 8 bytes each
  const body = avro.Type.forSchema(JSON.parse(clipRecordSchema())).fromBuffer(value.subarray(5)) as Record<
    string,
    unknown
  >;
  assert.equal((body.image_embedding as Buffer).byteLength, 4);
  const out = await decoder.decode(raw(value));
  assert.equal(out.failure, undefined, out.failure?.message);
  const h = 0.0999755859375; // float16 nearest to 0.1 (hand-worked in float-bytes.test.ts)
  const n = Math.sqrt(h * h + 1);
  assertClose(out.imageEmbedding, [h / n, 1 / n]);
  const m = Math.sqrt(1.25 ** 2 + 0.25);
  assertClose(out.textEmbedding, [-1.25 / m, 0.5 / m]);
  assert.equal(out.text, undefined, "a null text stays absent");
});

test("unknown schema id: SCHEMA_UNKNOWN naming the id", async () => {
  const good = await encoder.encode({ uid: "u", imageEmbedding: [1], textEmbedding: [1] });
  const out = await decoder.decode(raw(frame(4242, good.subarray(5))));
  assert.equal(out.failure?.code, "SCHEMA_UNKNOWN");
  assert.ok(out.failure?.message.includes("schema id 4242"), out.failure?.message);
});

test("wrong magic byte, and JSON sent to an Avro topic: SCHEMA_UNKNOWN", async () => {
  const good = await encoder.encode({ uid: "u", imageEmbedding: [1], textEmbedding: [1] });
  const wrongMagic = Buffer.from(good);
  wrongMagic[0] = 1;
  const out = await decoder.decode(raw(wrongMagic));
  assert.equal(out.failure?.code, "SCHEMA_UNKNOWN");
  assert.ok(out.failure?.message.includes("0x01"), out.failure?.message);
  const json = await decoder.decode(raw(Buffer.from('{"uid":"u"}')));
  assert.equal(json.failure?.code, "SCHEMA_UNKNOWN");
  assert.ok(json.failure?.message.includes("0x7b"), json.failure?.message);
});

test("truncated values, trailing bytes and a short header: RECORD_UNDECODABLE", async () => {
  const good = await encoder.encode({ uid: "u", imageEmbedding: [1, 2, 3], textEmbedding: [1, 2, 3] });
  const cases: [Buffer, string][] = [
    [good.subarray(0, good.length - 5), "truncated"],
    [Buffer.concat([good, Buffer.from([1, 2, 3])]), "trailing"],
    [good.subarray(0, 3), "fewer than the 5-byte Confluent header"],
    [Buffer.alloc(0), "0 bytes"],
  ];
  for (const [value, says] of cases) {
    const out = await decoder.decode(raw(value));
    assert.equal(out.failure?.code, "RECORD_UNDECODABLE", says);
    assert.ok(out.failure?.message.includes(says), out.failure?.message);
  }
});

test("a tombstone and embedding problems are marked as in JSON", async () => {
  const tomb = await decoder.decode(raw(null));
  assert.equal(tomb.failure?.code, "RECORD_TOMBSTONE");
  const nan = await decoder.decode(
    raw(await encoder.encode({ uid: "n", imageEmbedding: [1, Number.NaN], textEmbedding: [1, 1] })),
  );
  assert.equal(nan.failure?.code, "EMBEDDING_NOT_FINITE");
  assert.ok(/image_embedding: .*1 is NaN/.test(nan.failure?.message ?? ""), nan.failure?.message);
  const missing = await decoder.decode(raw(await encoder.encode({ uid: "m", imageEmbedding: [1, 1] })));
  assert.equal(missing.failure?.code, "RECORD_MISSING_FIELD");
  assert.ok(missing.failure?.message.includes("text_embedding is missing"), missing.failure?.message);
});

test("expectedDim and expectedModel apply to Avro records", async (t) => {
  const strict = await createDecoder({
    format: "avro",
    schemaRegistryUrl: registry.url,
    expectedDim: 3,
    expectedModel: "ViT-L-14",
    ...FAST,
  });
  t.after(() => strict.close());
  const wrongDim = await encoder.encode({
    uid: "d",
    model: "ViT-L-14",
    imageEmbedding: [1, 2],
    textEmbedding: [1, 2],
  });
  const wrongModel = await encoder.encode({
    uid: "t",
    model: "ViT-B-32",
    imageEmbedding: [1, 2, 3],
    textEmbedding: [1, 2, 3],
  });
  const fine = await encoder.encode({
    uid: "f",
    model: "ViT-L-14",
    imageEmbedding: [1, 2, 2],
    textEmbedding: [2, 1, 2],
  });
  const out = await strict.decodeBatch([raw(wrongDim), raw(wrongModel), raw(fine)]);
  assert.deepEqual(
    out.map((r) => r.failure?.code ?? "ok"),
    ["EMBEDDING_DIMENSION_MISMATCH", "TARGET_MISMATCH", "ok"],
  );
  assertClose(out[2].imageEmbedding, [1 / 3, 2 / 3, 2 / 3]);
});

test("records written with another registered schema are checked field by field", async () => {
  const uidOnly = {
    type: "record",
    name: "Other",
    namespace: "test",
    fields: [{ name: "uid", type: "string" }],
  };
  const uidIsInt = {
    type: "record",
    name: "IntUid",
    namespace: "test",
    fields: [{ name: "uid", type: "int" }],
  };
  const newerDtype = {
    type: "record",
    name: "Newer",
    namespace: "test",
    fields: [
      { name: "uid", type: "string" },
      {
        name: "embedding_dtype",
        type: { type: "enum", name: "Dt", symbols: ["FLOAT32", "FLOAT16", "BFLOAT16"] },
      },
      { name: "image_embedding", type: "bytes" },
      { name: "text_embedding", type: "bytes" },
    ],
  };
  const primitive = "string";
  const ids = await Promise.all(
    [uidOnly, uidIsInt, newerDtype].map((s) => register(registry.url, "other-value", s)),
  );
  const primitiveId = await register(registry.url, "other-value", primitive as unknown as object);
  const write = (schema: unknown, v: unknown) => avro.Type.forSchema(schema as avro.Type).toBuffer(v);
  const out = await decoder.decodeBatch([
    raw(frame(ids[0], write(uidOnly, { uid: "x" }))),
    raw(frame(ids[1], write(uidIsInt, { uid: 5 }))),
    raw(
      frame(
        ids[2],
        write(newerDtype, {
          uid: "y",
          embedding_dtype: "BFLOAT16",
          image_embedding: Buffer.alloc(4),
          text_embedding: Buffer.alloc(4),
        }),
      ),
    ),
    raw(frame(primitiveId, write(primitive, "just a string"))),
  ]);
  assert.deepEqual(
    out.map((r) => r.failure?.code),
    ["RECORD_MISSING_FIELD", "RECORD_UNDECODABLE", "RECORD_UNDECODABLE", "RECORD_UNDECODABLE"],
  );
  assert.ok(out[0].failure?.message.includes("image_embedding and text_embedding are missing"));
  assert.ok(out[1].failure?.message.includes("uid is number 5"), out[1].failure?.message);
  assert.ok(out[2].failure?.message.includes("BFLOAT16"), out[2].failure?.message);
  assert.ok(out[3].failure?.message.includes("not a record"), out[3].failure?.message);
});

test("good Avro records around bad ones still decode", async () => {
  const a = await encoder.encode({ uid: "a", imageEmbedding: [0, 2], textEmbedding: [2, 0] });
  const b = await encoder.encode({ uid: "b", imageEmbedding: [-3, 4], textEmbedding: [0, 0] });
  const c = await encoder.encode({ uid: "c", imageEmbedding: [5, 0], textEmbedding: [0, -5] });
  const out = await decoder.decodeBatch([
    raw(a),
    raw(frame(999, a.subarray(5))),
    raw(b),
    raw(c.subarray(0, 9)),
    raw(c),
  ]);
  assert.deepEqual(
    out.map((r) => r.failure?.code ?? r.uid),
    ["a", "SCHEMA_UNKNOWN", "EMBEDDING_ZERO", "RECORD_UNDECODABLE", "c"],
  );
  assertClose(out[0].imageEmbedding, [0, 1]);
  assertClose(out[4].textEmbedding, [0, -1]);
});

async function expectThrown(p: Promise<unknown>, code: string, retryable: boolean): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isClipsieveError(err), String(err));
    assert.equal(err.code, code);
    assert.equal(err.retryable, retryable);
    return true;
  });
}

test("registry down: createDecoder and decode of an unseen schema id throw a retryable error", async (t) => {
  const own = await startSchemaRegistry();
  t.after(() => own.close());
  const options: DecoderOptions = { format: "avro", schemaRegistryUrl: own.url, ...FAST };
  const ownEncoder = await createAvroEncoder({ schemaRegistryUrl: own.url, topic: TOPIC, ...FAST });
  t.after(() => ownEncoder.close());
  const live = await createDecoder(options);
  t.after(() => live.close());
  const value = await ownEncoder.encode({ uid: "s", imageEmbedding: [1, 0], textEmbedding: [0, 1] });
  assert.equal((await live.decode(raw(value))).failure, undefined);
  await own.close();

  // Schemas already fetched are cached: records that use them still decode without the registry.
  const again = await live.decode(raw(value));
  assert.equal(again.failure, undefined);
  // A schema id not seen yet cannot be read: the whole batch must wait, not be dead-lettered.
  await expectThrown(live.decode(raw(frame(77, value.subarray(5)))), "SCHEMA_REGISTRY_UNAVAILABLE", true);
  await expectThrown(
    live.decodeBatch([raw(value), raw(frame(78, value.subarray(5)))]),
    "SCHEMA_REGISTRY_UNAVAILABLE",
    true,
  );
  await expectThrown(createDecoder(options), "SCHEMA_REGISTRY_UNAVAILABLE", true);
});

// The timeout makes a registry client without a request timeout fail this test instead of hanging it.
test("registry errors: 503 is retried then thrown as retryable, 401 is not retryable, silence times out", {
  timeout: 10_000,
}, async (t) => {
  const own = await startSchemaRegistry();
  t.after(() => own.close());
  const ownEncoder = await createAvroEncoder({ schemaRegistryUrl: own.url, topic: TOPIC, ...FAST });
  t.after(() => ownEncoder.close());
  const value = await ownEncoder.encode({ uid: "s", imageEmbedding: [1, 0], textEmbedding: [0, 1] });
  const live = await createDecoder({
    format: "avro",
    schemaRegistryUrl: own.url,
    schemaRegistryMaxRetries: 2,
    schemaRegistryRetryWaitMs: 1,
    schemaRegistryTimeoutMs: 300,
  });
  t.after(() => live.close());

  own.setOutage({ status: 503 });
  const before = own.requests.length;
  await expectThrown(live.decode(raw(value)), "SCHEMA_REGISTRY_UNAVAILABLE", true);
  assert.equal(own.requests.length - before, 3, "one request and two retries");

  own.setOutage({ status: 401 });
  await expectThrown(live.decode(raw(value)), "SCHEMA_REGISTRY_REQUEST_FAILED", false);

  own.setOutage("no-answer");
  const started = Date.now();
  await expectThrown(live.decode(raw(value)), "SCHEMA_REGISTRY_UNAVAILABLE", true);
  assert.ok(Date.now() - started < 5000, "gave up after the request timeout and its retries");

  own.setOutage(null);
  assert.equal((await live.decode(raw(value))).failure, undefined, "works again once the registry is back");
});
