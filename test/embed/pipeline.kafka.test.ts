/**
 * `clipsieve run --model-dir` against the real broker: a stream mixing records with precomputed
 * embeddings, records with image bytes, records with image URLs (served on 127.0.0.1) and records
 * whose image or caption cannot be had. Every record ends exactly once in accepted, rejected or
 * dead-letter; each bad one carries its embed error code; embedded records are scored with the
 * embeddings computed here by hand.
 */
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { after, before, test } from "node:test";
import sharp from "sharp";
import { HEADER, type ScoreRecord } from "../../src/sink/outputs.ts";
import { exited, filterArgs, filterTopics, spawnClipsieve } from "../helpers/filter.ts";
import { readAll, testKafka } from "../helpers/kafka.ts";
import { syntheticPairs } from "../helpers/records.ts";
import {
  DIM,
  EOT,
  expectedImageEmbedding,
  expectedTextEmbedding,
  MODEL,
  SOT,
  solidTensor,
  tinyModelDir,
} from "./fixtures.ts";
import { type ImageServer, serve, stall, startImageServer } from "./image-server.ts";

const solid = (rgb: [number, number, number]) =>
  sharp({ create: { width: 20, height: 14, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } })
    .png()
    .toBuffer();

let server: ImageServer;
let modelDir: string;
before(async () => {
  const png = await solid([40, 200, 90]);
  server = await startImageServer({
    "/ok.png": serve(png),
    "/slow.png": stall(20_000, png),
    "/page.html": serve(Buffer.from("<html></html>"), { "content-type": "text/html" }),
    "/huge.png": serve(Buffer.alloc(60_000), { "content-type": "image/png" }),
    "/noai.png": serve(png, { "content-type": "image/png", "x-robots-tag": "noai" }),
    "/corrupt.png": serve(Buffer.from("not really a png"), { "content-type": "image/png" }),
  });
  modelDir = tinyModelDir();
});
after(async () => {
  await server.close();
  rmSync(modelDir, { recursive: true, force: true });
});

const dot = (a: number[], b: number[]) => a.reduce((s, v, i) => s + v * b[i], 0);

test("a stream mixing records with and without embeddings is filtered end to end", async () => {
  const kafka = testKafka();
  const t = await filterTopics(2);
  const inputs: { key: string; value: string; bad?: string; clipScore?: number }[] = [];
  // Precomputed embeddings (DIM 6, the model folder's D), naming the same teacher.
  for (const p of syntheticPairs(60, DIM, 11)) {
    inputs.push({
      key: p.uid,
      value: JSON.stringify({
        uid: p.uid,
        text: `caption ${p.uid}`,
        model: MODEL,
        image_embedding: p.image,
        text_embedding: p.text,
      }),
    });
  }
  // Image bytes and a caption: "A cat" is [SOT, a</w> 320, cat</w> 513, EOT], "the cat" [SOT, 517, 513, EOT].
  const colours: [number, number, number][] = [
    [220, 30, 40],
    [10, 10, 200],
    [128, 128, 128],
    [250, 240, 10],
  ];
  for (const [i, rgb] of colours.entries()) {
    const caption = i % 2 === 0 ? "A cat" : "the cat";
    const ids = i % 2 === 0 ? [SOT, 320, 513, EOT] : [SOT, 517, 513, EOT];
    inputs.push({
      key: `bytes-${i}`,
      value: JSON.stringify({
        uid: `bytes-${i}`,
        text: caption,
        image_bytes: (await solid(rgb)).toString("base64"),
      }),
      clipScore: dot(expectedImageEmbedding(solidTensor(rgb)), expectedTextEmbedding(ids)),
    });
  }
  inputs.push({
    key: "url-ok",
    value: JSON.stringify({ uid: "url-ok", text: "A cat", url: server.url("/ok.png") }),
    clipScore: dot(
      expectedImageEmbedding(solidTensor([40, 200, 90])),
      expectedTextEmbedding([SOT, 320, 513, EOT]),
    ),
  });
  const bad: [string, string, string?][] = [
    ["/missing.png", "IMAGE_FETCH_FAILED"],
    ["/slow.png", "IMAGE_FETCH_TIMEOUT"],
    ["/page.html", "IMAGE_CONTENT_TYPE"],
    ["/huge.png", "IMAGE_TOO_LARGE"],
    ["/noai.png", "IMAGE_OPTED_OUT"],
    ["/corrupt.png", "IMAGE_CORRUPT"],
    ["/ok.png", "TEXT_MISSING", "no caption"],
  ];
  for (const [path, code, noCaption] of bad) {
    const uid = `bad-${code}`;
    inputs.splice(10 + inputs.length / 3, 0, {
      key: uid,
      value: JSON.stringify({ uid, ...(noCaption ? {} : { text: "A cat" }), url: server.url(path) }),
      bad: code,
    });
  }
  inputs.push({
    key: "no-image",
    value: JSON.stringify({ uid: "no-image", text: "A cat" }),
    bad: "IMAGE_MISSING",
  });

  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  await producer.send({
    topic: t.input,
    messages: inputs.map((m, i) => ({ key: m.key, value: m.value, partition: i % 2 })),
  });
  await producer.disconnect();

  const filter = spawnClipsieve(
    filterArgs(t, [
      "--model-dir",
      modelDir,
      "--fetch-allow-private-addresses",
      "--fetch-timeout-ms",
      "500",
      "--fetch-deadline-ms",
      "2000",
      "--fetch-retries",
      "0",
      "--max-image-bytes",
      "20000",
      "--teacher-check-rate",
      "0",
      "--window-size",
      "32",
      "--linger-ms",
      "300",
      "--bank-size",
      "16",
      "--draws",
      "2",
      "--batch-size",
      "16",
      "--keep",
      "s_clip_loss=0.5",
      "--warmup",
      "0",
      "--instance-id",
      "embed",
    ]),
  );
  try {
    const scores = await readAll(kafka, t.scores, { expected: inputs.length, timeoutMs: 60_000 });
    assert.equal(
      scores.length,
      inputs.length,
      `scores topic: ${scores.length} of ${inputs.length}\n${filter.output()}`,
    );
  } finally {
    filter.kill("SIGTERM");
    assert.equal(await exited(filter), 0, filter.output());
  }
  const [accepted, rejected, dead, scoreMsgs] = await Promise.all(
    [t.accepted, t.rejected, t.deadLetter, t.scores].map((topic) =>
      readAll(kafka, topic, { idleMs: 1500, timeoutMs: 20_000 }),
    ),
  );
  const seen = new Map<string, string>();
  for (const [name, msgs] of [
    ["accepted", accepted],
    ["rejected", rejected],
    ["dead_letter", dead],
  ] as const) {
    for (const m of msgs) {
      assert.ok(m.key && !seen.has(m.key), `${m.key} delivered twice`);
      seen.set(m.key, name);
    }
  }
  assert.equal(seen.size, inputs.length, "every input delivered once");

  const expectedDead = inputs.filter((i) => i.bad);
  assert.equal(
    dead.length,
    expectedDead.length,
    dead.map((d) => `${d.key}: ${d.headers[HEADER.errorMessage]}`).join("\n"),
  );
  for (const m of dead) {
    const input = inputs.find((i) => i.key === m.key);
    assert.equal(m.headers[HEADER.errorCode], input?.bad, `${m.key}: ${m.headers[HEADER.errorMessage]}`);
    assert.equal(m.headers[HEADER.errorStage], "embed");
    assert.match(m.headers[HEADER.errorMessage], new RegExp(`uid ${m.key}`));
  }

  // Embedded records are scored with the embeddings computed by hand: CLIPScore = <f, g>.
  const records = scoreMsgs.map((m) => JSON.parse(m.value?.toString() ?? "{}") as ScoreRecord);
  for (const input of inputs.filter((i) => i.clipScore !== undefined)) {
    const r = records.find((x) => x.uid === input.key);
    assert.ok(r?.scores, `${input.key} was not scored: ${JSON.stringify(r)}`);
    const clip = r.scores.clip_score as number;
    assert.ok(
      Math.abs(clip - (input.clipScore as number)) < 1e-5,
      `${input.key}: clip_score ${clip}, expected ${input.clipScore}`,
    );
  }
  // Precomputed and embedded records are scored side by side in the same windows.
  const scored = records.filter((r) => r.uid && !inputs.find((i) => i.key === r.uid)?.bad && r.scores);
  assert.equal(scored.length, 60 + colours.length + 1);
});
