/**
 * The embed stage on a window of records with tiny encoders (fixtures.ts) and a local image server:
 * good records get the embeddings computed here by hand; every failure kind is marked on its record
 * with its code and reason while the rest of the window is embedded; the model folder is validated.
 */
import assert from "node:assert/strict";
import { renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import sharp from "sharp";
import type { DecodedRecord } from "../../src/common/record.ts";
import { createEmbedStage } from "../../src/embed/stage.ts";
import { transformerTextEncoder, vitImageEncoder } from "../../src/embed/synthetic.ts";
import {
  DIM,
  EOT,
  expectedImageEmbedding,
  expectedTextEmbedding,
  MODEL,
  record,
  SOT,
  solidTensor,
  tinyModelDir,
} from "./fixtures.ts";
import { type ImageServer, serve, stall, startImageServer } from "./image-server.ts";

const solidPng = (rgb: [number, number, number], w = 24, h = 16) =>
  sharp({ create: { width: w, height: h, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } })
    .png()
    .toBuffer();

let server: ImageServer;
let dir: string;
const RED: [number, number, number] = [220, 30, 40];
const TEAL: [number, number, number] = [20, 160, 150];

before(async () => {
  const teal = await solidPng(TEAL, 30, 40);
  server = await startImageServer({
    "/teal.png": serve(teal),
    "/teal.jpg-as-octets": serve(teal, { "content-type": "application/octet-stream" }),
    "/slow.png": stall(10_000, teal),
    "/page.html": serve(Buffer.from("<html>hi</html>"), { "content-type": "text/html" }),
    "/huge.jpg": serve(Buffer.alloc(50_000), { "content-type": "image/jpeg" }),
    "/noai.png": serve(teal, { "content-type": "image/png", "x-robots-tag": "noai" }),
    "/noimageai.png": serve(teal, { "content-type": "image/png", "x-robots-tag": "noimageai, nofollow" }),
    "/broken.png": serve(Buffer.from("\x89PNG\r\n\x1a\n garbage"), { "content-type": "image/png" }),
    "/never-fetched.png": serve(teal),
  });
  dir = tinyModelDir();
});
after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

const options = () => ({
  modelDir: dir,
  fetchTimeoutMs: 400,
  fetchDeadlineMs: 1500,
  fetchRetries: 1,
  fetchRetryWaitMs: 20,
  maxImageBytes: 20_000,
  fetchAllowPrivateAddresses: true,
  teacherCheckRate: 0,
  imageBatchSize: 2,
  textBatchSize: 3,
});

function assertVector(actual: Float32Array | undefined, expected: number[], what: string): void {
  assert.ok(actual, `${what}: no embedding`);
  assert.equal(actual.length, DIM, what);
  actual.forEach((v, i) => {
    assert.ok(Math.abs(v - expected[i]) < 1e-5, `${what}[${i}] = ${v}, expected ${expected[i]}`);
  });
}

// "a cat" -> [SOT, a</w> 320, cat</w> 513, EOT] (tokenizer.test.ts works these ids out).
const CAPTION = "A cat";
const CAPTION_IDS = [SOT, 320, 513, EOT];

test("a window mixing good records and every failure kind: each bad one is marked, the rest embedded", async () => {
  const stage = await createEmbedStage(options());
  try {
    assert.equal(stage.model, MODEL);
    assert.equal(stage.dim, DIM);
    const given = Float32Array.from(expectedTextEmbedding([SOT, 512, EOT]));
    const givenImage = Float32Array.from(expectedImageEmbedding(solidTensor([1, 2, 3])));
    const decodeFailure = { code: "RECORD_UNDECODABLE" as const, stage: "decode" as const, message: "bad" };
    const records: Record<string, DecodedRecord> = {
      bytes: record({ uid: "bytes", text: CAPTION, imageBytes: await solidPng(RED) }),
      url: record({ uid: "url", text: "the cat", url: server.url("/teal.png") }),
      octets: record({ uid: "octets", text: "", url: server.url("/teal.jpg-as-octets") }),
      notFound: record({ uid: "404", text: CAPTION, url: server.url("/nope.png") }),
      slow: record({ uid: "slow", text: CAPTION, url: server.url("/slow.png") }),
      html: record({ uid: "html", text: CAPTION, url: server.url("/page.html") }),
      huge: record({ uid: "huge", text: CAPTION, url: server.url("/huge.jpg") }),
      noai: record({ uid: "noai", text: CAPTION, url: server.url("/noai.png") }),
      noimageai: record({ uid: "noimageai", text: CAPTION, url: server.url("/noimageai.png") }),
      corruptUrl: record({ uid: "corrupt-url", text: CAPTION, url: server.url("/broken.png") }),
      corruptBytes: record({ uid: "corrupt-bytes", text: CAPTION, imageBytes: Buffer.from("GIF89a...") }),
      badScheme: record({ uid: "scheme", text: CAPTION, url: "file:///etc/passwd" }),
      noText: record({ uid: "no-text", imageBytes: await solidPng(RED) }),
      noImage: record({ uid: "no-image", text: CAPTION }),
      complete: record({
        uid: "complete",
        text: CAPTION,
        imageEmbedding: givenImage.slice(),
        textEmbedding: given.slice(),
      }),
      textOnly: record({
        uid: "text-only",
        text: CAPTION,
        imageEmbedding: givenImage.slice(),
        url: server.url("/never-fetched.png"),
      }),
      decodeFailed: record({
        uid: "decode-failed",
        text: CAPTION,
        url: server.url("/never-fetched.png"),
        failure: decodeFailure,
      }),
    };
    const started = Date.now();
    const timings = await stage.embed(Object.values(records));
    assert.ok(Date.now() - started < 5000, "the slow host did not stall the window past its deadline");

    const redImage = expectedImageEmbedding(solidTensor(RED));
    const tealImage = expectedImageEmbedding(solidTensor(TEAL));
    assertVector(records.bytes.imageEmbedding, redImage, "bytes image");
    assertVector(records.bytes.textEmbedding, expectedTextEmbedding(CAPTION_IDS), "bytes text");
    assertVector(records.url.imageEmbedding, tealImage, "url image");
    assertVector(records.url.textEmbedding, expectedTextEmbedding([SOT, 517, 513, EOT]), "url text");
    assertVector(records.octets.imageEmbedding, tealImage, "octet-stream image");
    assertVector(records.octets.textEmbedding, expectedTextEmbedding([SOT, EOT]), "empty caption");
    // Given embeddings are kept as they are; only the missing one is computed, with no fetch.
    assert.deepEqual(records.complete.textEmbedding, given);
    assert.deepEqual(records.complete.imageEmbedding, givenImage);
    assert.deepEqual(records.textOnly.imageEmbedding, givenImage);
    assertVector(records.textOnly.textEmbedding, expectedTextEmbedding(CAPTION_IDS), "text-only text");
    assert.equal(server.hits("/never-fetched.png"), 0);
    assert.deepEqual(records.decodeFailed.failure, decodeFailure);
    for (const key of ["bytes", "url", "octets", "complete", "textOnly"]) {
      assert.equal(records[key].failure, undefined, `${key}: ${records[key].failure?.message}`);
      assert.equal(records[key].imageBytes, undefined, `${key}: image bytes are released after embedding`);
    }

    const expectFailure: [string, string, RegExp][] = [
      ["notFound", "IMAGE_FETCH_FAILED", /HTTP 404/],
      ["slow", "IMAGE_FETCH_TIMEOUT", /within 400 ms|deadline/],
      ["html", "IMAGE_CONTENT_TYPE", /text\/html/],
      ["huge", "IMAGE_TOO_LARGE", /maxImageBytes 20000/],
      ["noai", "IMAGE_OPTED_OUT", /X-Robots-Tag: noai/],
      ["noimageai", "IMAGE_OPTED_OUT", /X-Robots-Tag: noimageai/],
      ["corruptUrl", "IMAGE_CORRUPT", /does not decode/],
      ["corruptBytes", "IMAGE_CORRUPT", /does not decode|not JPEG/],
      ["badScheme", "IMAGE_FETCH_FAILED", /scheme file:/],
      ["noText", "TEXT_MISSING", /no text/],
      ["noImage", "IMAGE_MISSING", /no image_embedding, no image_bytes and no url/],
    ];
    for (const [key, code, reason] of expectFailure) {
      const f = records[key].failure;
      assert.ok(f, `${key} should have failed`);
      assert.equal(f.code, code, `${key}: ${f.message}`);
      assert.equal(f.stage, "embed");
      assert.match(f.message, reason, key);
      assert.match(f.message, new RegExp(`^record t/0@\\d+ \\(uid ${records[key].uid}\\)`), key);
      assert.equal(records[key].imageEmbedding, undefined, `${key}: no half-made image embedding`);
    }
    assert.equal(timings.failed, expectFailure.length);
    assert.equal(timings.images, 3);
  } finally {
    await stage.close();
  }
});

test("a fetch that starts after the window's deadline still gets one whole try", async () => {
  // Deadline 1 ms: every fetch starts after it, as when slow encoders hold the fetches back.
  const stage = await createEmbedStage({ ...options(), fetchDeadlineMs: 1, fetchTimeoutMs: 5000 });
  try {
    const r = record({ uid: "late", text: CAPTION, url: server.url("/teal.png") });
    await new Promise((resolve) => setTimeout(resolve, 5));
    await stage.embed([r]);
    assert.equal(r.failure, undefined, r.failure?.message);
    assertVector(r.imageEmbedding, expectedImageEmbedding(solidTensor(TEAL)), "late image");
  } finally {
    await stage.close();
  }
});

test("the teacher check dead-letters a record whose given text embedding is not this teacher's", async () => {
  const stage = await createEmbedStage({ ...options(), teacherCheckRate: 1 });
  try {
    const ours = Float32Array.from(expectedTextEmbedding(CAPTION_IDS));
    const image = Float32Array.from(expectedImageEmbedding(solidTensor(RED)));
    const other = Float32Array.from(expectedTextEmbedding([SOT, 513, 513, 513, EOT]));
    const same = record({
      uid: "same",
      text: CAPTION,
      imageEmbedding: image.slice(),
      textEmbedding: ours.slice(),
    });
    const foreign = record({
      uid: "foreign",
      text: CAPTION,
      imageEmbedding: image.slice(),
      textEmbedding: other,
    });
    const noCaption = record({
      uid: "no-caption",
      imageEmbedding: image.slice(),
      textEmbedding: other.slice(),
    });
    await stage.embed([same, foreign, noCaption]);
    assert.equal(same.failure, undefined);
    assert.equal(noCaption.failure, undefined, "nothing to check without a caption");
    assert.equal(foreign.failure?.code, "EMBEDDING_TEACHER_MISMATCH");
    let cosine = 0;
    for (let i = 0; i < DIM; i++) cosine += ours[i] * other[i];
    assert.match(foreign.failure?.message ?? "", new RegExp(`cosine ${cosine.toFixed(4)} with ${MODEL}`));
  } finally {
    await stage.close();
  }
});

test("other layouts: visual.onnx/textual.onnx, no attention_mask input, extra outputs, padding by tokenizer_config", async () => {
  const alt = tinyModelDir({
    imageFile: "visual.onnx",
    textFile: "textual.onnx",
    mask: false,
    extraOutput: true,
    padToken: "<|endoftext|>",
  });
  try {
    const stage = await createEmbedStage({ modelDir: alt, teacherCheckRate: 0 });
    const r = record({ uid: "x", text: CAPTION, imageBytes: await solidPng(TEAL) });
    await stage.embed([r]);
    await stage.close();
    assertVector(r.imageEmbedding, expectedImageEmbedding(solidTensor(TEAL)), "image");
    // Without a mask the bag of tokens sums all 77 positions: the 4 tokens and 73 pads of <|endoftext|>.
    assertVector(
      r.textEmbedding,
      expectedTextEmbedding([...CAPTION_IDS, ...new Array(73).fill(EOT)]),
      "text",
    );
  } finally {
    rmSync(alt, { recursive: true, force: true });
  }
});

async function refused(modelDir: string, pattern: RegExp): Promise<void> {
  await assert.rejects(createEmbedStage({ modelDir }), (err: Error & { code?: string }) => {
    assert.equal(err.code, "EMBED_MODEL_INVALID", err.message);
    assert.match(err.message, pattern);
    return true;
  });
}

test("a model folder that does not fit together is refused at start, naming the file", async () => {
  const broken = tinyModelDir();
  try {
    renameSync(join(broken, "text_model.onnx"), join(broken, "text.onnx"));
    await refused(broken, /no text encoder: expected one of text_model.onnx, textual.onnx/);
    renameSync(join(broken, "text.onnx"), join(broken, "text_model.onnx"));
    writeFileSync(join(broken, "clipsieve.json"), JSON.stringify({ model: MODEL, dim: DIM + 1 }));
    await refused(broken, /text_embeds is float32 \[1, 6\], expected float32 \[1, 7\]/);
    writeFileSync(
      join(broken, "clipsieve.json"),
      JSON.stringify({ model: MODEL, dim: DIM, contextLength: 64 }),
    );
    await refused(broken, /input_ids has shape \[batch, 77\], not \[N, 64\]/);
    writeFileSync(join(broken, "clipsieve.json"), JSON.stringify({ dim: DIM }));
    await refused(broken, /clipsieve.json: "model" must name the teacher/);
    writeFileSync(join(broken, "clipsieve.json"), JSON.stringify({ model: MODEL, dim: DIM }));
    writeFileSync(
      join(broken, "preprocessor_config.json"),
      JSON.stringify({ size: { shortest_edge: 8 }, crop_size: 6 }),
    );
    await refused(broken, /pixel_values has shape \[batch, 3, 8, 8\], not \[N, 3, 6, 6\]/);
    writeFileSync(join(broken, "preprocessor_config.json"), JSON.stringify({ size: 8, resample: 1 }));
    await refused(broken, /"resample" 1 is not supported/);
  } finally {
    rmSync(broken, { recursive: true, force: true });
  }
});

test("clipsieve.json's check: the export's recorded ids and embeddings must be reproduced", async () => {
  const fill: [number, number, number] = [128, 128, 128];
  const check = {
    caption: CAPTION,
    inputIds: CAPTION_IDS,
    textEmbedding: expectedTextEmbedding(CAPTION_IDS),
    imageFill: fill,
    imageEmbedding: expectedImageEmbedding(solidTensor(fill)),
  };
  const good = tinyModelDir({ extra: { check } });
  const wrongIds = tinyModelDir({ extra: { check: { ...check, inputIds: [SOT, 320, EOT] } } });
  const wrongImage = tinyModelDir({
    extra: { check: { ...check, imageEmbedding: expectedImageEmbedding(solidTensor([0, 0, 0])) } },
  });
  try {
    await (await createEmbedStage({ modelDir: good })).close();
    await refused(wrongIds, /"A cat" tokenizes to \[518, 320, 513, 519\], expected \[518, 320, 519\]/);
    await refused(wrongImage, /image embedding of the solid colour 128,128,128 starts/);
  } finally {
    for (const d of [good, wrongIds, wrongImage]) rmSync(d, { recursive: true, force: true });
  }
});

test("the ViT- and transformer-shaped encoders of the benchmark run in the stage and give unit vectors", async () => {
  const vitDir = tinyModelDir();
  try {
    writeFileSync(
      join(vitDir, "vision_model.onnx"),
      vitImageEncoder({ imageSize: 8, patch: 4, width: 16, layers: 2, heads: 2, mlp: 32, dim: DIM }),
    );
    writeFileSync(
      join(vitDir, "text_model.onnx"),
      transformerTextEncoder({
        vocab: 520,
        contextLength: 77,
        width: 16,
        layers: 2,
        heads: 4,
        mlp: 32,
        dim: DIM,
      }),
    );
    const stage = await createEmbedStage({ modelDir: vitDir, teacherCheckRate: 0 });
    const a = record({ uid: "a", text: CAPTION, imageBytes: await solidPng(RED) });
    const b = record({ uid: "b", text: "the cat", imageBytes: await solidPng(TEAL) });
    const a2 = record({ uid: "a2", text: CAPTION, imageBytes: await solidPng(RED) });
    await stage.embed([a, b, a2]);
    await stage.close();
    for (const r of [a, b, a2]) {
      assert.equal(r.failure, undefined, r.failure?.message);
      for (const v of [r.imageEmbedding, r.textEmbedding]) {
        assert.ok(v);
        assert.ok(Math.abs(Math.hypot(...v) - 1) < 1e-5);
      }
    }
    assert.deepEqual(
      a.imageEmbedding,
      a2.imageEmbedding,
      "same image, same embedding, in any batch position",
    );
    assert.deepEqual(a.textEmbedding, a2.textEmbedding);
    assert.notDeepEqual(a.imageEmbedding, b.imageEmbedding);
    assert.notDeepEqual(a.textEmbedding, b.textEmbedding);
  } finally {
    rmSync(vitDir, { recursive: true, force: true });
  }
});
