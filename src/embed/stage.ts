/**
 * The embed stage: CLIP image and text embeddings, in onnxruntime, for the records of a window that
 * arrive without them.
 *
 * Within a call the work overlaps: images are fetched and decoded (sockets, libvips threads) while the
 * text encoder runs and while earlier images are encoded; at most `maxPreparedImages` images are
 * fetched-or-decoded-but-not-encoded at once, which bounds memory. The two encoders take turns on
 * onnxruntime's threads, never both at once. A record whose image or caption fails gets its `failure`
 * and the rest of the window goes on; only an encoder that fails to run throws.
 */
import { availableParallelism } from "node:os";
import { ClipsieveError, type ErrorCode } from "../common/errors.ts";
import { silentLogger } from "../common/logger.ts";
import type { DecodedRecord } from "../common/record.ts";
import { checkRow } from "../score/normalise.ts";
import { type ClipEncoders, openEncoders } from "./encoders.ts";
import { createImageFetcher, type ImageFetcher } from "./fetch.ts";
import { type ModelFolder, readModelFolder } from "./model-dir.ts";
import { type EmbedOptions, type ResolvedEmbedOptions, resolveEmbedOptions } from "./options.ts";
import { preprocessImage, tensorSize, writeNormalised } from "./preprocess.ts";
import { EmbedRecordError } from "./record-error.ts";
import { type ClipTokenizer, createClipTokenizer } from "./tokenizer.ts";
import type { EmbedContext, EmbedStage, EmbedTimings } from "./types.ts";

interface ImageJob {
  record: DecodedRecord;
}

interface PreparedImage {
  record: DecodedRecord;
  pixels: Float32Array;
}

interface TextJob {
  record: DecodedRecord;
  text: string;
  /** Teacher check: compare with the record's own text embedding instead of filling it. */
  check: boolean;
}

export async function createEmbedStage(options: EmbedOptions, ctx: EmbedContext = {}): Promise<EmbedStage> {
  const opts = resolveEmbedOptions(options);
  const logger = ctx.logger ?? silentLogger;
  const folder = readModelFolder(opts.modelDir);
  const tokenizer = createClipTokenizer(
    folder.tokenizerJson,
    folder.tokenizerConfig,
    folder.contextLength,
    `${folder.dir}/tokenizer.json`,
  );
  const { preprocess, dim } = folder;
  const encoders = await openEncoders(
    { image: folder.imageEncoderPath, text: folder.textEncoderPath },
    { dim, height: preprocess.cropHeight, width: preprocess.cropWidth, contextLength: folder.contextLength },
    { device: opts.device, threads: opts.threads ?? availableParallelism(), logger },
  );
  try {
    await selfCheck(folder, tokenizer, encoders);
  } catch (err) {
    await encoders.close();
    throw err;
  }
  const fetcher = createImageFetcher(opts);
  logger.info(
    { model: folder.model, dim, provider: encoders.provider, modelDir: folder.dir },
    "embed stage ready",
  );

  // The encoders take turns: each run already uses every onnxruntime thread.
  let encoderTurn: Promise<unknown> = Promise.resolve();
  const exclusive = <T>(f: () => Promise<T>): Promise<T> => {
    const run = encoderTurn.then(f, f);
    encoderTurn = run.catch(() => {});
    return run;
  };

  let closed = false;
  return {
    model: folder.model,
    dim,
    provider: encoders.provider,
    async embed(records) {
      if (closed) throw new ClipsieveError("EMBED_FAILED", "the embed stage is closed");
      return embedRecords(records, { opts, folder, tokenizer, encoders, fetcher, exclusive });
    },
    async close() {
      if (closed) return;
      closed = true;
      fetcher.close();
      await encoderTurn;
      await encoders.close();
    },
  };
}

interface Parts {
  opts: ResolvedEmbedOptions;
  folder: ModelFolder;
  tokenizer: ClipTokenizer;
  encoders: ClipEncoders;
  fetcher: ImageFetcher;
  exclusive: <T>(f: () => Promise<T>) => Promise<T>;
}

async function embedRecords(records: DecodedRecord[], parts: Parts): Promise<EmbedTimings> {
  const { opts } = parts;
  const started = performance.now();
  const deadline = Date.now() + opts.fetchDeadlineMs;
  const timings: EmbedTimings = {
    fetchSeconds: 0,
    preprocessSeconds: 0,
    tokenizeSeconds: 0,
    imageEncoderSeconds: 0,
    textEncoderSeconds: 0,
    totalSeconds: 0,
    images: 0,
    texts: 0,
    failed: 0,
  };
  const imageJobs: ImageJob[] = [];
  const textJobs: TextJob[] = [];
  for (const record of records) {
    if (record.failure) continue;
    const needsText = record.textEmbedding === undefined;
    const needsImage = record.imageEmbedding === undefined;
    if (needsText && record.text === undefined) {
      fail(record, "TEXT_MISSING", "no text_embedding and no text (caption) to compute it from", timings);
      continue;
    }
    if (needsImage && record.imageBytes === undefined && record.url === undefined) {
      fail(
        record,
        "IMAGE_MISSING",
        "no image_embedding, no image_bytes and no url to compute it from",
        timings,
      );
      continue;
    }
    if (needsText) textJobs.push({ record, text: record.text as string, check: false });
    else if (record.text !== undefined && checked(record, opts.teacherCheckRate)) {
      textJobs.push({ record, text: record.text, check: true });
    }
    if (needsImage) imageJobs.push({ record });
  }
  // Images first: their fetches start now and run while the captions are encoded.
  const images = embedImages(imageJobs, deadline, parts, timings);
  const texts = embedTexts(textJobs, parts, timings);
  const [imageResult, textResult] = await Promise.allSettled([images, texts]);
  for (const record of records) record.imageBytes = undefined; // encoded or failed: no longer needed
  if (imageResult.status === "rejected") throw imageResult.reason;
  if (textResult.status === "rejected") throw textResult.reason;
  timings.totalSeconds = (performance.now() - started) / 1000;
  return timings;
}

async function embedImages(
  jobs: ImageJob[],
  deadline: number,
  parts: Parts,
  timings: EmbedTimings,
): Promise<void> {
  const { opts, folder, encoders, fetcher, exclusive } = parts;
  const size = tensorSize(folder.preprocess);
  const ready: PreparedImage[] = [];
  let next = 0;
  let inFlight = 0;
  let wake: (() => void) | undefined;

  const prepare = async (job: ImageJob): Promise<PreparedImage> => {
    let bytes: Uint8Array;
    if (job.record.imageBytes !== undefined) {
      bytes = job.record.imageBytes;
    } else {
      const t = performance.now();
      try {
        // A fetch that starts late because the encoders are slow still gets one whole try.
        bytes = await fetcher.fetch(
          job.record.url as string,
          Math.max(deadline, Date.now() + opts.fetchTimeoutMs),
        );
      } finally {
        timings.fetchSeconds += (performance.now() - t) / 1000;
      }
    }
    const t = performance.now();
    const pixels = new Float32Array(size);
    try {
      await preprocessImage(bytes, folder.preprocess, opts.maxImagePixels, pixels);
    } finally {
      timings.preprocessSeconds += (performance.now() - t) / 1000;
    }
    return { record: job.record, pixels };
  };

  const launch = () => {
    while (next < jobs.length && inFlight + ready.length < opts.maxPreparedImages) {
      const job = jobs[next++];
      inFlight++;
      prepare(job)
        .then(
          (prepared) => ready.push(prepared),
          (err: unknown) => failFrom(job.record, err, timings),
        )
        .finally(() => {
          inFlight--;
          const w = wake;
          wake = undefined;
          w?.();
        });
    }
  };

  launch();
  for (;;) {
    if (ready.length > 0) {
      // Whatever is ready, up to a batch: the encoder never idles while images are still arriving.
      const batch = ready.splice(0, opts.imageBatchSize);
      launch();
      const pixels = new Float32Array(batch.length * size);
      batch.forEach((p, i) => {
        pixels.set(p.pixels, i * size);
      });
      // Timed inside the turn: waiting for the text encoder to finish is not image-encoder time.
      const out = await exclusive(async () => {
        const t = performance.now();
        const result = await encoders.encodeImages(pixels, batch.length);
        timings.imageEncoderSeconds += (performance.now() - t) / 1000;
        return result;
      });
      batch.forEach((p, i) => {
        const row = out.slice(i * folder.dim, (i + 1) * folder.dim);
        const problem = checkRow(row, 0, folder.dim);
        if (problem) fail(p.record, problem.code, `image encoder output: ${problem.message}`, timings);
        else {
          p.record.imageEmbedding = row;
          timings.images++;
        }
      });
      continue;
    }
    launch();
    if (inFlight === 0 && next >= jobs.length) return;
    await new Promise<void>((resolve) => {
      wake = resolve;
    });
  }
}

async function embedTexts(jobs: TextJob[], parts: Parts, timings: EmbedTimings): Promise<void> {
  const { opts, folder, tokenizer, encoders, exclusive } = parts;
  for (let start = 0; start < jobs.length; start += opts.textBatchSize) {
    const batch = jobs.slice(start, start + opts.textBatchSize);
    const t0 = performance.now();
    const { ids, mask } = tokenizer.batch(batch.map((j) => j.text));
    timings.tokenizeSeconds += (performance.now() - t0) / 1000;
    const out = await exclusive(async () => {
      const t1 = performance.now();
      const result = await encoders.encodeTexts(ids, mask, batch.length);
      timings.textEncoderSeconds += (performance.now() - t1) / 1000;
      return result;
    });
    batch.forEach((job, i) => {
      const row = out.slice(i * folder.dim, (i + 1) * folder.dim);
      const problem = checkRow(row, 0, folder.dim);
      if (problem) {
        if (!job.check) fail(job.record, problem.code, `text encoder output: ${problem.message}`, timings);
        return;
      }
      if (!job.check) {
        job.record.textEmbedding = row;
        timings.texts++;
        return;
      }
      const given = job.record.textEmbedding as Float32Array;
      if (given.length !== folder.dim) return; // the decoder's dimension check reports this one
      let cosine = 0;
      for (let k = 0; k < folder.dim; k++) cosine += given[k] * row[k];
      if (cosine < opts.teacherCheckMinCosine) {
        fail(
          job.record,
          "EMBEDDING_TEACHER_MISMATCH",
          `text_embedding has cosine ${cosine.toFixed(4)} with ${folder.model}'s own encoding of the caption ` +
            `(teacherCheckMinCosine ${opts.teacherCheckMinCosine}): the record's embeddings come from another teacher`,
          timings,
        );
      }
    });
  }
}

/**
 * Run the known input through tokenizer, preprocessing and both encoders at start, so that a folder
 * whose files do not fit together fails here rather than on the first window; with clipsieve.json's
 * `check`, compare against the values recorded at export.
 */
async function selfCheck(
  folder: ModelFolder,
  tokenizer: ClipTokenizer,
  encoders: ClipEncoders,
): Promise<void> {
  const check = folder.check ?? {};
  const tolerance = check.tolerance ?? 1e-3;
  const where = `Model folder ${folder.dir}, clipsieve.json "check"`;
  const caption = check.caption ?? "a photo of a cat";
  const ids = tokenizer.ids(caption);
  if (
    check.inputIds &&
    (check.inputIds.length !== ids.length || check.inputIds.some((v, i) => v !== ids[i]))
  ) {
    throw new ClipsieveError(
      "EMBED_MODEL_INVALID",
      `${where}: ${JSON.stringify(caption)} tokenizes to [${ids.join(", ")}], expected [${check.inputIds.join(", ")}]`,
    );
  }
  const { ids: idRows, mask } = tokenizer.batch([caption]);
  const text = await encoders.encodeTexts(idRows, mask, 1);
  compare(
    text,
    check.textEmbedding,
    tolerance,
    `${where}: text embedding of ${JSON.stringify(caption)}`,
    folder.dim,
  );

  const { cropHeight, cropWidth } = folder.preprocess;
  const fill = check.imageFill ?? [128, 128, 128];
  const rgb = new Uint8Array(cropHeight * cropWidth * 3);
  for (let p = 0; p < cropHeight * cropWidth; p++) rgb.set(fill, 3 * p);
  const pixels = new Float32Array(tensorSize(folder.preprocess));
  writeNormalised(rgb, folder.preprocess, pixels);
  const image = await encoders.encodeImages(pixels, 1);
  compare(
    image,
    check.imageEmbedding,
    tolerance,
    `${where}: image embedding of the solid colour ${fill.join(",")}`,
    folder.dim,
  );
}

function compare(
  actual: Float32Array,
  expected: number[] | undefined,
  tolerance: number,
  what: string,
  dim: number,
): void {
  const row = actual.slice(0, dim);
  const problem = checkRow(row, 0, dim);
  if (problem) throw new ClipsieveError("EMBED_MODEL_INVALID", `${what}: ${problem.message}`);
  if (!expected) return;
  const worst = expected.reduce((w, v, i) => Math.max(w, Math.abs(v - row[i])), 0);
  if (expected.length > dim || !(worst <= tolerance)) {
    throw new ClipsieveError(
      "EMBED_MODEL_INVALID",
      `${what} starts [${Array.from(row.slice(0, Math.min(4, dim)), (v) => v.toFixed(5)).join(", ")}, ...], ` +
        `expected [${expected
          .slice(0, 4)
          .map((v) => v.toFixed(5))
          .join(", ")}, ...] (largest difference ${worst.toExponential(2)}, tolerance ${tolerance})`,
    );
  }
}

/** Deterministic per record (FNV-1a of the uid, or the source coordinates): a replay checks the same ones. */
function checked(record: DecodedRecord, rate: number): boolean {
  if (rate <= 0) return false;
  if (rate >= 1) return true;
  const key = record.uid ?? `${record.source.topic}/${record.source.partition}@${record.source.offset}`;
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  return (h >>> 0) / 2 ** 32 < rate;
}

function fail(record: DecodedRecord, code: ErrorCode, message: string, timings: EmbedTimings): void {
  timings.failed++;
  const { topic, partition, offset } = record.source;
  const uid =
    record.uid === undefined
      ? ""
      : ` (uid ${record.uid.length > 64 ? `${record.uid.slice(0, 64)}...` : record.uid})`;
  const url =
    record.imageBytes === undefined && record.url !== undefined && code.startsWith("IMAGE")
      ? ` url ${shortUrl(record.url)}`
      : "";
  record.failure = {
    code,
    stage: "embed",
    message: `record ${topic}/${partition}@${offset}${uid}${url}: ${message}`,
  };
}

function failFrom(record: DecodedRecord, err: unknown, timings: EmbedTimings): void {
  if (err instanceof EmbedRecordError) fail(record, err.code, err.message, timings);
  // Anything else that escaped preprocessing comes from the decoder library on these bytes.
  else
    fail(
      record,
      "IMAGE_CORRUPT",
      `image does not decode: ${(err as Error)?.message ?? String(err)}`,
      timings,
    );
}

function shortUrl(url: string): string {
  return url.length > 200 ? `${url.slice(0, 200)}...` : url;
}
