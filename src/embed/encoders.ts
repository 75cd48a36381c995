/**
 * The two CLIP encoders in onnxruntime. Inputs and outputs are found by name, in the spellings the
 * common exports use (docs/embed.md, "Encoder inputs and outputs"), and checked once at load.
 */
import * as ort from "onnxruntime-node";
import { ClipsieveError } from "../common/errors.ts";
import type { Logger } from "../common/logger.ts";
import { sessionOptions } from "../score/onnx-session.ts";
import type { Device } from "../score/types.ts";

export const IMAGE_INPUT_NAMES = ["pixel_values", "image", "input"] as const;
export const IMAGE_OUTPUT_NAMES = ["image_embeds", "embeds", "output"] as const;
export const TEXT_INPUT_NAMES = ["input_ids", "text", "input"] as const;
export const TEXT_MASK_NAME = "attention_mask";
export const TEXT_OUTPUT_NAMES = ["text_embeds", "embeds", "output"] as const;

export interface ClipEncoders {
  readonly provider: Device;
  /** [n, 3, H, W] float32 -> [n, D] (not normalised). */
  encodeImages(pixels: Float32Array, n: number): Promise<Float32Array>;
  /** [n, L] token ids and mask -> [n, D] (not normalised). */
  encodeTexts(ids: BigInt64Array, mask: BigInt64Array, n: number): Promise<Float32Array>;
  close(): Promise<void>;
}

export interface EncoderShape {
  dim: number;
  height: number;
  width: number;
  contextLength: number;
}

interface Bound {
  session: ort.InferenceSession;
  input: string;
  output: string;
  mask?: string;
  /** The dtype the token ids input takes (int64 in every common export; int32 in a few). */
  idsType?: "int64" | "int32";
}

export async function openEncoders(
  paths: { image: string; text: string },
  shape: EncoderShape,
  opts: { device: Device; threads: number; logger: Logger },
): Promise<ClipEncoders> {
  const open = async (device: Device) => {
    // No spinning: between runs the encoders' threads would busy-wait on the cores that libvips needs
    // to decode the next images (measured: up to a third more records/s on 2 cores, BENCHMARKS.md).
    const options = {
      ...sessionOptions(device, opts.threads),
      extra: { session: { intra_op: { allow_spinning: "0" } } },
    };
    const image = await ort.InferenceSession.create(paths.image, options).catch((err: unknown) => {
      throw loadError(paths.image, err);
    });
    const text = await ort.InferenceSession.create(paths.text, options).catch(async (err: unknown) => {
      await image.release();
      throw loadError(paths.text, err);
    });
    return { image, text };
  };
  let provider = opts.device;
  let sessions: { image: ort.InferenceSession; text: ort.InferenceSession };
  try {
    sessions = await open(provider);
  } catch (err) {
    if (provider === "cpu") throw err;
    opts.logger.warn(
      { provider, reason: (err as Error).message },
      `execution provider ${provider} cannot load the encoders; the embed stage falls back to cpu`,
    );
    provider = "cpu";
    sessions = await open("cpu");
  }
  let image: Bound;
  let text: Bound;
  try {
    image = bindImage(sessions.image, paths.image, shape);
    text = bindText(sessions.text, paths.text, shape);
  } catch (err) {
    await Promise.all([sessions.image.release(), sessions.text.release()]);
    throw err;
  }

  return {
    provider,
    async encodeImages(pixels, n) {
      const feeds = { [image.input]: new ort.Tensor("float32", pixels, [n, 3, shape.height, shape.width]) };
      return runOne(image, feeds, n, shape.dim, paths.image);
    },
    async encodeTexts(ids, mask, n) {
      const dims = [n, shape.contextLength];
      const asType = (v: BigInt64Array) =>
        text.idsType === "int32"
          ? new ort.Tensor("int32", Int32Array.from(v, Number), dims)
          : new ort.Tensor("int64", v, dims);
      const feeds: Record<string, ort.Tensor> = { [text.input]: asType(ids) };
      if (text.mask) feeds[text.mask] = asType(mask);
      return runOne(text, feeds, n, shape.dim, paths.text);
    },
    async close() {
      await Promise.all([sessions.image.release(), sessions.text.release()]);
    },
  };
}

async function runOne(
  bound: Bound,
  feeds: Record<string, ort.Tensor>,
  n: number,
  dim: number,
  path: string,
): Promise<Float32Array> {
  let out: ort.InferenceSession.ReturnType;
  try {
    out = await bound.session.run(feeds, [bound.output]);
  } catch (err) {
    throw new ClipsieveError(
      "EMBED_FAILED",
      `onnxruntime failed to run ${path} on ${n} rows: ${firstLine(err)}`,
      {
        cause: err,
      },
    );
  }
  const tensor = out[bound.output];
  if (
    tensor.type !== "float32" ||
    tensor.dims.length !== 2 ||
    tensor.dims[0] !== n ||
    tensor.dims[1] !== dim
  ) {
    throw new ClipsieveError(
      "EMBED_MODEL_INVALID",
      `${path}: output ${bound.output} is ${tensor.type} [${tensor.dims.join(", ")}], expected float32 [${n}, ${dim}] (D from clipsieve.json)`,
    );
  }
  return tensor.data as Float32Array;
}

function bindImage(session: ort.InferenceSession, path: string, shape: EncoderShape): Bound {
  const input = pick(session.inputNames, IMAGE_INPUT_NAMES, path, "input");
  const meta = metadataOf(session.inputMetadata, input);
  if (meta) {
    if (meta.type !== "float32") throw mismatch(path, input, `is ${meta.type}, not float32`);
    const [, c, h, w] = meta.shape;
    if (meta.shape.length !== 4 || !fits(c, 3) || !fits(h, shape.height) || !fits(w, shape.width)) {
      throw mismatch(
        path,
        input,
        `has shape [${meta.shape.join(", ")}], not [N, 3, ${shape.height}, ${shape.width}] (the crop size of preprocessor_config.json)`,
      );
    }
  }
  return { session, input, output: pick(session.outputNames, IMAGE_OUTPUT_NAMES, path, "output") };
}

function bindText(session: ort.InferenceSession, path: string, shape: EncoderShape): Bound {
  const input = pick(session.inputNames, TEXT_INPUT_NAMES, path, "input");
  const meta = metadataOf(session.inputMetadata, input);
  let idsType: "int64" | "int32" = "int64";
  if (meta) {
    if (meta.type !== "int64" && meta.type !== "int32")
      throw mismatch(path, input, `is ${meta.type}, not int64`);
    idsType = meta.type;
    if (meta.shape.length !== 2 || !fits(meta.shape[1], shape.contextLength)) {
      throw mismatch(
        path,
        input,
        `has shape [${meta.shape.join(", ")}], not [N, ${shape.contextLength}] (contextLength)`,
      );
    }
  }
  const others = session.inputNames.filter((name) => name !== input);
  if (others.some((name) => name !== TEXT_MASK_NAME)) {
    throw mismatch(
      path,
      others.join(", "),
      `is an input the embed stage cannot feed (it feeds ${input} and ${TEXT_MASK_NAME})`,
    );
  }
  return {
    session,
    input,
    idsType,
    mask: others.length > 0 ? TEXT_MASK_NAME : undefined,
    output: pick(session.outputNames, TEXT_OUTPUT_NAMES, path, "output"),
  };
}

/** The first of `names` the model has; a model with a single input (output) may name it anything. */
function pick(actual: readonly string[], names: readonly string[], path: string, what: string): string {
  const found = names.find((n) => actual.includes(n));
  if (found) return found;
  if (actual.length === 1) return actual[0];
  throw new ClipsieveError(
    "EMBED_MODEL_INVALID",
    `${path}: none of its ${what}s (${actual.join(", ")}) is named ${names.join(" or ")}`,
  );
}

function metadataOf(
  metadata: readonly ort.InferenceSession.ValueMetadata[] | undefined,
  name: string,
): ort.InferenceSession.TensorValueMetadata | undefined {
  const m = metadata?.find((v) => v.name === name);
  return m?.isTensor ? m : undefined;
}

/** A symbolic dimension fits anything. */
function fits(dim: number | string | undefined, want: number): boolean {
  return typeof dim !== "number" || dim === want || dim < 0;
}

function mismatch(path: string, input: string, what: string): ClipsieveError {
  return new ClipsieveError("EMBED_MODEL_INVALID", `${path}: input ${input} ${what}`);
}

function loadError(path: string, err: unknown): ClipsieveError {
  return new ClipsieveError("EMBED_MODEL_INVALID", `onnxruntime cannot load ${path}: ${firstLine(err)}`, {
    cause: err,
  });
}

function firstLine(err: unknown): string {
  const line = (err instanceof Error ? err.message : String(err)).split("\n")[0].trim();
  return line.length > 300 ? `${line.slice(0, 297)}...` : line;
}
