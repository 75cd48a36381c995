/**
 * `clipsieve embed-bench`: the embed stage's throughput on this machine, for a tiny encoder pair (where
 * everything but the encoders shows) and a ViT-B/32-shaped pair (random weights, OpenAI ViT-B/32's
 * architecture and sizes, so the same work per image and caption), and where the time goes.
 *
 * Inputs are made here: 640 x 480 JPEGs (a typical crawl image) and captions of 8-20 words. The
 * end-to-end runs go through `createEmbedStage` with the images as record bytes and as URLs served
 * on 127.0.0.1, so fetching over loopback is in, the network is not.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { availableParallelism, cpus, tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import { silentLogger } from "../common/logger.ts";
import type { DecodedRecord } from "../common/record.ts";
import { openEncoders } from "./encoders.ts";
import { readModelFolder } from "./model-dir.ts";
import { EMBED_DEFAULTS } from "./options.ts";
import { preprocessImage, tensorSize } from "./preprocess.ts";
import { createEmbedStage } from "./stage.ts";
import {
  clipStyleTokenizerJson,
  TEXT_B32,
  type TextTransformerShape,
  textMacs,
  transformerTextEncoder,
  VIT_B32,
  type VitShape,
  vitImageEncoder,
  vitMacs,
  writeModelFolder,
} from "./synthetic.ts";
import { createClipTokenizer } from "./tokenizer.ts";

export interface EmbedBenchOptions {
  /** Only the tiny pair (seconds, for a quick look). */
  quick?: boolean;
  threads?: number;
}

export interface EncoderBench {
  name: string;
  imageMacs: number;
  textMacs: number;
  /** Encoder alone, batches of imageBatchSize preprocessed images / textBatchSize tokenized captions. */
  imageEncoderPerSecond: number;
  textEncoderPerSecond: number;
  imageEncoderGflops: number;
  textEncoderGflops: number;
  /** The whole stage on records carrying image bytes and a caption (both embeddings computed). */
  bytes: StageRun;
  /** The same with images fetched from a local HTTP server. */
  urls: StageRun;
}

export interface StageRun {
  records: number;
  seconds: number;
  /** Records per second: each gets an image and a text embedding. */
  perSecond: number;
  /** Seconds summed per phase over the run (phases overlap, so they add up to more than `seconds`). */
  phases: { fetch: number; preprocess: number; tokenize: number; imageEncoder: number; textEncoder: number };
}

export interface EmbedBenchReport {
  cpu: string;
  cores: number;
  threads: number;
  /** Decoding a 640 x 480 JPEG and CLIP preprocessing to 224 x 224, alone, all cores. */
  preprocessPerSecond: number;
  /** CLIP tokenization alone, one thread. */
  tokenizePerSecond: number;
  encoders: EncoderBench[];
}

const TINY_VIT: VitShape = { imageSize: 224, patch: 32, width: 64, layers: 2, heads: 2, mlp: 256, dim: 64 };
const TINY_TEXT: TextTransformerShape = {
  vocab: 49408,
  contextLength: 77,
  width: 64,
  layers: 2,
  heads: 2,
  mlp: 256,
  dim: 64,
};

const WORDS =
  "a photo of the red cat dog sitting on wooden table near window in morning light with small blue car street city old man woman child holding umbrella".split(
    " ",
  );

function captions(n: number): string[] {
  let seed = 7;
  const next = () => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed / 2 ** 32;
  };
  return Array.from({ length: n }, () =>
    Array.from({ length: 8 + Math.floor(next() * 13) }, () => WORDS[Math.floor(next() * WORDS.length)]).join(
      " ",
    ),
  );
}

/** Distinct 640 x 480 JPEGs: a colour gradient with noise, so the decoder has real work to do. */
async function jpegs(n: number): Promise<Buffer[]> {
  const w = 640;
  const h = 480;
  const out: Buffer[] = [];
  for (let k = 0; k < n; k++) {
    const rgb = Buffer.alloc(w * h * 3);
    let s = k + 1;
    for (let p = 0; p < w * h; p++) {
      s = (s * 1664525 + 1013904223) >>> 0;
      const x = p % w;
      const y = Math.floor(p / w);
      rgb[3 * p] = (x * 255) / w + (s & 31);
      rgb[3 * p + 1] = (y * 255) / h + ((s >> 5) & 31);
      rgb[3 * p + 2] = (k * 37 + ((s >> 10) & 63)) & 255;
    }
    out.push(
      await sharp(rgb, { raw: { width: w, height: h, channels: 3 } })
        .jpeg({ quality: 85 })
        .toBuffer(),
    );
  }
  return out;
}

function tokenizerJson() {
  // Real CLIP merges are not shipped; these few make words merge as they would (cost per caption ~same).
  const merges: [string, string][] = [];
  for (const word of new Set(WORDS)) {
    let prefix = word[0];
    for (let i = 1; i < word.length; i++) {
      const last = i === word.length - 1;
      merges.push([prefix, last ? `${word[i]}</w>` : word[i]]);
      prefix += word[i];
    }
  }
  return clipStyleTokenizerJson(merges);
}

export async function runEmbedBench(options: EmbedBenchOptions = {}): Promise<EmbedBenchReport> {
  const threads = options.threads ?? availableParallelism();
  const images = await jpegs(48);
  const texts = captions(256);
  const report: EmbedBenchReport = {
    cpu: cpus()[0]?.model ?? "unknown",
    cores: availableParallelism(),
    threads,
    preprocessPerSecond: 0,
    tokenizePerSecond: 0,
    encoders: [],
  };
  const server = createServer((req, res) => {
    const i = Number((req.url ?? "/0").slice(1));
    const body = images[i % images.length];
    res.writeHead(200, { "content-type": "image/jpeg", "content-length": String(body.byteLength) }).end(body);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  try {
    const pairs: [string, VitShape, TextTransformerShape][] = [["tiny", TINY_VIT, TINY_TEXT]];
    if (!options.quick) pairs.push(["ViT-B/32-shaped", VIT_B32, TEXT_B32]);
    for (const [name, vit, text] of pairs) {
      const dir = mkdtempSync(join(tmpdir(), "clipsieve-embed-bench-"));
      try {
        writeModelFolder(dir, {
          imageEncoder: vitImageEncoder(vit),
          textEncoder: transformerTextEncoder(text),
          tokenizerJson: tokenizerJson(),
          tokenizerConfig: { pad_token: "<|endoftext|>" },
          model: `synthetic/${name}`,
          dim: vit.dim,
          size: vit.imageSize,
        });
        if (report.preprocessPerSecond === 0) {
          report.preprocessPerSecond = await benchPreprocess(dir, images);
          report.tokenizePerSecond = benchTokenize(dir, texts);
        }
        report.encoders.push(await benchPair(name, dir, vit, text, { threads, images, texts, port }));
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  } finally {
    server.close();
  }
  return report;
}

async function benchPreprocess(dir: string, images: Buffer[]): Promise<number> {
  const spec = readModelFolder(dir).preprocess;
  const out = new Float32Array(tensorSize(spec));
  const run = () =>
    Promise.all(images.map((b) => preprocessImage(b, spec, 1e8, new Float32Array(out.length))));
  await run();
  const t = performance.now();
  await run();
  await run();
  return (2 * images.length) / ((performance.now() - t) / 1000);
}

function benchTokenize(dir: string, texts: string[]): number {
  const folder = readModelFolder(dir);
  const tokenizer = createClipTokenizer(folder.tokenizerJson, folder.tokenizerConfig, 77);
  tokenizer.batch(texts);
  const t = performance.now();
  for (let i = 0; i < 4; i++) tokenizer.batch(texts);
  return (4 * texts.length) / ((performance.now() - t) / 1000);
}

async function benchPair(
  name: string,
  dir: string,
  vit: VitShape,
  text: TextTransformerShape,
  ctx: { threads: number; images: Buffer[]; texts: string[]; port: number },
): Promise<EncoderBench> {
  const heavy = vit.width >= 512;
  const folder = readModelFolder(dir);
  const encoders = await openEncoders(
    { image: folder.imageEncoderPath, text: folder.textEncoderPath },
    { dim: vit.dim, height: vit.imageSize, width: vit.imageSize, contextLength: 77 },
    { device: "cpu", threads: ctx.threads, logger: silentLogger },
  );
  const size = tensorSize(folder.preprocess);
  const imageBatch = EMBED_DEFAULTS.imageBatchSize;
  const textBatch = EMBED_DEFAULTS.textBatchSize;
  const pixels = new Float32Array(imageBatch * size);
  for (let i = 0; i < imageBatch; i++) {
    await preprocessImage(ctx.images[i % ctx.images.length], folder.preprocess, 1e8, pixels, i * size);
  }
  const tokenizer = createClipTokenizer(folder.tokenizerJson, folder.tokenizerConfig, 77);
  const { ids, mask } = tokenizer.batch(ctx.texts.slice(0, textBatch));
  const rounds = heavy ? 2 : 10;
  let imageSeconds: number;
  let textSeconds: number;
  try {
    await encoders.encodeImages(pixels, imageBatch);
    let t = performance.now();
    for (let r = 0; r < rounds; r++) await encoders.encodeImages(pixels, imageBatch);
    imageSeconds = (performance.now() - t) / 1000;
    await encoders.encodeTexts(ids, mask, textBatch);
    t = performance.now();
    for (let r = 0; r < rounds; r++) await encoders.encodeTexts(ids, mask, textBatch);
    textSeconds = (performance.now() - t) / 1000;
  } finally {
    await encoders.close();
  }
  const imageRate = (rounds * imageBatch) / imageSeconds;
  const textRate = (rounds * textBatch) / textSeconds;

  const stage = await createEmbedStage({
    modelDir: dir,
    threads: ctx.threads,
    teacherCheckRate: 0,
    fetchAllowPrivateAddresses: true,
  });
  const records = heavy ? 64 : 256;
  const makeRecords = (useUrl: boolean): DecodedRecord[] =>
    Array.from({ length: records }, (_, i) => ({
      source: { topic: "bench", partition: 0, offset: String(i) },
      key: null,
      value: null,
      headers: {},
      timestamp: "0",
      uid: `r${i}`,
      text: ctx.texts[i % ctx.texts.length],
      ...(useUrl
        ? { url: `http://127.0.0.1:${ctx.port}/${i}` }
        : { imageBytes: ctx.images[i % ctx.images.length] }),
    }));
  let bytes: StageRun;
  let urls: StageRun;
  try {
    await stage.embed(makeRecords(false).slice(0, 8)); // warm-up
    bytes = await stageRun(() => stage.embed(makeRecords(false)), records);
    urls = await stageRun(() => stage.embed(makeRecords(true)), records);
  } finally {
    await stage.close();
  }
  return {
    name,
    imageMacs: vitMacs(vit),
    textMacs: textMacs(text),
    imageEncoderPerSecond: imageRate,
    textEncoderPerSecond: textRate,
    imageEncoderGflops: (2 * vitMacs(vit) * imageRate) / 1e9,
    textEncoderGflops: (2 * textMacs(text) * textRate) / 1e9,
    bytes,
    urls,
  };
}

async function stageRun(
  run: () => Promise<{
    fetchSeconds: number;
    preprocessSeconds: number;
    tokenizeSeconds: number;
    imageEncoderSeconds: number;
    textEncoderSeconds: number;
    totalSeconds: number;
    failed: number;
  }>,
  records: number,
): Promise<StageRun> {
  const t = await run();
  if (t.failed > 0) throw new Error(`embed-bench: ${t.failed} records failed to embed`);
  return {
    records,
    seconds: t.totalSeconds,
    perSecond: records / t.totalSeconds,
    phases: {
      fetch: t.fetchSeconds,
      preprocess: t.preprocessSeconds,
      tokenize: t.tokenizeSeconds,
      imageEncoder: t.imageEncoderSeconds,
      textEncoder: t.textEncoderSeconds,
    },
  };
}

export function formatEmbedBench(r: EmbedBenchReport): string {
  const f = (v: number, digits = 1) => v.toFixed(digits);
  const ms = (perSecond: number) => f(1000 / perSecond, 2);
  const lines = [
    `CPU: ${r.cpu} (${r.cores} cores; onnxruntime ${r.threads} threads)`,
    `JPEG 640x480 decode + CLIP preprocessing to 224x224, alone: ${f(r.preprocessPerSecond)} images/s (${ms(r.preprocessPerSecond)} ms, all cores)`,
    `CLIP tokenization (8-20 word captions), alone: ${f(r.tokenizePerSecond, 0)} texts/s (${ms(r.tokenizePerSecond)} ms, one thread)`,
    "",
  ];
  for (const e of r.encoders) {
    lines.push(
      `${e.name}: ${f(e.imageMacs / 1e9, 2)} GMAC per image, ${f(e.textMacs / 1e9, 2)} GMAC per caption`,
      `  image encoder alone: ${f(e.imageEncoderPerSecond)} images/s (${ms(e.imageEncoderPerSecond)} ms, ${f(e.imageEncoderGflops)} GFLOP/s)`,
      `  text encoder alone:  ${f(e.textEncoderPerSecond)} texts/s (${ms(e.textEncoderPerSecond)} ms, ${f(e.textEncoderGflops)} GFLOP/s)`,
    );
    for (const [label, run] of [
      ["records with image bytes", e.bytes],
      ["records with image URLs (127.0.0.1)", e.urls],
    ] as const) {
      const busy = run.phases.imageEncoder + run.phases.textEncoder;
      lines.push(
        `  stage, ${label}: ${f(run.perSecond)} images/s and texts/s (${run.records} records in ${f(run.seconds, 2)} s); ` +
          `encoders busy ${f(busy, 2)} s (${f((100 * busy) / run.seconds, 0)}%)`,
      );
    }
    lines.push("");
  }
  return lines.join("\n");
}
