/**
 * The model folder (`--model-dir`): which files the embed stage reads and what it takes from each.
 * docs/embed.md, "The model folder", lists the same names; keep the two in step.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ClipsieveError } from "../common/errors.ts";
import type { PreprocessSpec, ResizeKernel } from "./preprocess.ts";

/** Tried in this order; the first that exists is used (clipsieve.json's `imageEncoder` overrides). */
export const IMAGE_ENCODER_FILES = [
  "vision_model.onnx",
  "visual.onnx",
  "onnx/vision_model.onnx",
  "visual/model.onnx",
] as const;
export const TEXT_ENCODER_FILES = [
  "text_model.onnx",
  "textual.onnx",
  "onnx/text_model.onnx",
  "textual/model.onnx",
] as const;

/** Known input for the load-time self-check (docs/embed.md, "Checking an export"). */
export interface ModelCheck {
  /** A caption, its expected token ids (without padding) and the first values of its normalised embedding. */
  caption?: string;
  inputIds?: number[];
  textEmbedding?: number[];
  /** A solid image of this RGB colour (crop size, so preprocessing is exact) and its normalised embedding's first values. */
  imageFill?: [number, number, number];
  imageEmbedding?: number[];
  /** Largest accepted absolute difference per value. Default 1e-3. */
  tolerance?: number;
}

export interface ModelFolder {
  dir: string;
  /** The teacher's name, as records name it (`model` field) and as target sets record it. */
  model: string;
  /** D, the embedding dimension both encoders must output. */
  dim: number;
  imageEncoderPath: string;
  textEncoderPath: string;
  tokenizerJson: Record<string, unknown>;
  tokenizerConfig: Record<string, unknown>;
  contextLength: number;
  preprocess: PreprocessSpec;
  check?: ModelCheck;
}

const RESAMPLE_KERNELS: Record<number, ResizeKernel> = { 0: "nearest", 2: "linear", 3: "cubic" };

/** OpenAI CLIP's normalisation, used when preprocessor_config.json leaves a value out. */
export const CLIP_MEAN: readonly [number, number, number] = [0.48145466, 0.4578275, 0.40821073];
export const CLIP_STD: readonly [number, number, number] = [0.26862954, 0.26130258, 0.27577711];

export function readModelFolder(dir: string): ModelFolder {
  const manifest = readJson(dir, "clipsieve.json", true) as Record<string, unknown>;
  const model = manifest.model;
  if (typeof model !== "string" || model === "") {
    throw invalid(
      dir,
      "clipsieve.json",
      '"model" must name the teacher, e.g. "openai/clip-vit-large-patch14"',
    );
  }
  const dim = manifest.dim;
  if (!(typeof dim === "number" && Number.isInteger(dim) && dim > 0)) {
    throw invalid(dir, "clipsieve.json", `"dim" must be a positive integer (D), got ${JSON.stringify(dim)}`);
  }
  const contextLength = manifest.contextLength ?? 77;
  if (!(typeof contextLength === "number" && Number.isInteger(contextLength) && contextLength >= 2)) {
    throw invalid(
      dir,
      "clipsieve.json",
      `"contextLength" must be an integer >= 2, got ${JSON.stringify(contextLength)}`,
    );
  }
  const tokenizerJson = readJson(dir, "tokenizer.json", true) as Record<string, unknown>;
  const tokenizerConfig = (readJson(dir, "tokenizer_config.json", false) ?? {}) as Record<string, unknown>;
  return {
    dir,
    model,
    dim,
    imageEncoderPath: findEncoder(dir, manifest.imageEncoder, IMAGE_ENCODER_FILES, "image"),
    textEncoderPath: findEncoder(dir, manifest.textEncoder, TEXT_ENCODER_FILES, "text"),
    tokenizerJson,
    tokenizerConfig,
    contextLength,
    preprocess: readPreprocess(dir),
    check: manifest.check === undefined ? undefined : readCheck(dir, manifest.check),
  };
}

function findEncoder(dir: string, override: unknown, names: readonly string[], which: string): string {
  if (override !== undefined) {
    if (typeof override !== "string" || override === "") {
      throw invalid(dir, "clipsieve.json", `"${which}Encoder" must be a file name inside the folder`);
    }
    const path = join(dir, override);
    if (!existsSync(path))
      throw invalid(dir, override, `named by clipsieve.json "${which}Encoder" but missing`);
    return path;
  }
  for (const name of names) {
    const path = join(dir, name);
    if (existsSync(path)) return path;
  }
  throw new ClipsieveError(
    "EMBED_MODEL_INVALID",
    `Model folder ${dir} has no ${which} encoder: expected one of ${names.join(", ")} (or "${which}Encoder" in clipsieve.json)`,
  );
}

/**
 * Hugging Face's CLIPImageProcessor settings. `size` and `crop_size` may be a number or an object
 * ({shortest_edge} and {height, width}), as different transformers versions write them.
 */
function readPreprocess(dir: string): PreprocessSpec {
  const file = "preprocessor_config.json";
  const c = readJson(dir, file, true) as Record<string, unknown>;
  for (const flag of ["do_resize", "do_center_crop"] as const) {
    if (c[flag] === false)
      throw invalid(dir, file, `${flag} false is not supported: the encoder needs a fixed size`);
  }
  const size = c.size;
  const shortestEdge =
    typeof size === "number" ? size : (size as { shortest_edge?: unknown } | undefined)?.shortest_edge;
  if (!(typeof shortestEdge === "number" && Number.isInteger(shortestEdge) && shortestEdge > 0)) {
    throw invalid(
      dir,
      file,
      `"size" must be an integer or {"shortest_edge": n}, got ${JSON.stringify(size)}`,
    );
  }
  const crop = c.crop_size ?? shortestEdge;
  const cropHeight = typeof crop === "number" ? crop : (crop as { height?: unknown }).height;
  const cropWidth = typeof crop === "number" ? crop : (crop as { width?: unknown }).width;
  for (const [name, v] of [
    ["crop height", cropHeight],
    ["crop width", cropWidth],
  ] as const) {
    if (!(typeof v === "number" && Number.isInteger(v) && v > 0 && v <= shortestEdge)) {
      throw invalid(
        dir,
        file,
        `"crop_size" ${name} must be a positive integer no larger than size ${shortestEdge}, got ${JSON.stringify(v)}`,
      );
    }
  }
  const resample = c.resample ?? 3;
  const kernel = typeof resample === "number" ? RESAMPLE_KERNELS[resample] : undefined;
  if (!kernel) {
    throw invalid(
      dir,
      file,
      `"resample" ${JSON.stringify(resample)} is not supported (0 nearest, 2 bilinear, 3 bicubic)`,
    );
  }
  const normalize = c.do_normalize !== false;
  const mean = normalize ? triple(dir, file, "image_mean", c.image_mean, CLIP_MEAN) : ([0, 0, 0] as const);
  const std = normalize ? triple(dir, file, "image_std", c.image_std, CLIP_STD) : ([1, 1, 1] as const);
  if (std.some((s) => s <= 0))
    throw invalid(dir, file, `"image_std" values must be positive, got ${std.join(", ")}`);
  const rescale = c.do_rescale === false ? 1 : (c.rescale_factor ?? 1 / 255);
  if (!(typeof rescale === "number" && rescale > 0)) {
    throw invalid(dir, file, `"rescale_factor" must be a positive number, got ${JSON.stringify(rescale)}`);
  }
  return {
    shortestEdge,
    cropHeight: cropHeight as number,
    cropWidth: cropWidth as number,
    kernel,
    mean: [mean[0], mean[1], mean[2]],
    std: [std[0], std[1], std[2]],
    rescale,
  };
}

function triple(
  dir: string,
  file: string,
  key: string,
  value: unknown,
  fallback: readonly [number, number, number],
): readonly [number, number, number] {
  if (value === undefined) return fallback;
  if (typeof value === "number") return [value, value, value];
  if (
    Array.isArray(value) &&
    value.length === 3 &&
    value.every((v) => typeof v === "number" && Number.isFinite(v))
  ) {
    return value as [number, number, number];
  }
  throw invalid(dir, file, `"${key}" must be 3 numbers (R, G, B), got ${JSON.stringify(value)}`);
}

function readCheck(dir: string, value: unknown): ModelCheck {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw invalid(dir, "clipsieve.json", '"check" must be an object');
  }
  const c = value as Record<string, unknown>;
  const numbers = (key: string) => {
    const v = c[key];
    if (v === undefined) return undefined;
    if (!Array.isArray(v) || v.some((x) => typeof x !== "number")) {
      throw invalid(dir, "clipsieve.json", `"check.${key}" must be a list of numbers`);
    }
    return v as number[];
  };
  const fill = numbers("imageFill");
  if (fill && (fill.length !== 3 || fill.some((x) => !Number.isInteger(x) || x < 0 || x > 255))) {
    throw invalid(dir, "clipsieve.json", '"check.imageFill" must be 3 integers 0..255 (R, G, B)');
  }
  if (c.caption !== undefined && typeof c.caption !== "string") {
    throw invalid(dir, "clipsieve.json", '"check.caption" must be a string');
  }
  const tolerance = c.tolerance ?? 1e-3;
  if (!(typeof tolerance === "number" && tolerance > 0)) {
    throw invalid(dir, "clipsieve.json", '"check.tolerance" must be a positive number');
  }
  return {
    caption: c.caption as string | undefined,
    inputIds: numbers("inputIds"),
    textEmbedding: numbers("textEmbedding"),
    imageFill: fill as [number, number, number] | undefined,
    imageEmbedding: numbers("imageEmbedding"),
    tolerance,
  };
}

function readJson(dir: string, name: string, required: boolean): unknown {
  const path = join(dir, name);
  if (!existsSync(path)) {
    if (!required) return undefined;
    throw new ClipsieveError("EMBED_MODEL_INVALID", `Model folder ${dir} has no ${name} (see docs/embed.md)`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw invalid(dir, name, `not JSON: ${(err as Error).message}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw invalid(dir, name, "not a JSON object");
  }
  return parsed;
}

function invalid(dir: string, file: string, what: string): ClipsieveError {
  return new ClipsieveError("EMBED_MODEL_INVALID", `Model folder ${dir}, ${file}: ${what}`);
}
