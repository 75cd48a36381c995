/**
 * CLIP's image preprocessing with sharp (libvips): decode, resize the short side to `shortestEdge`,
 * centre-crop, drop alpha, scale to [0, 1] and normalise per channel into a CHW float32 tensor.
 *
 * It follows open_clip / torchvision (which made the DataComp embeddings) step for step: the new long
 * side is int(S * long / short); the crop's top-left corner is round((h - crop) / 2) with Python's
 * round-half-to-even; the image is not rotated by its EXIF orientation and its ICC profile is ignored
 * (PIL does neither). The one known difference is the resampler: sharp's `cubic` is Catmull-Rom
 * (a = -0.5, PIL's BICUBIC kernel) in libvips' own anti-aliased implementation, so resized pixels can
 * differ from PIL's by a few levels in 255 (docs/embed.md, "Preprocessing").
 */
import sharp, { type OutputInfo } from "sharp";
import { EmbedRecordError } from "./record-error.ts";

export type ResizeKernel = "cubic" | "linear" | "nearest";

export interface PreprocessSpec {
  /** The short side is resized to this many pixels. */
  shortestEdge: number;
  cropHeight: number;
  cropWidth: number;
  kernel: ResizeKernel;
  /** Per channel (R, G, B), applied after `rescale`. */
  mean: [number, number, number];
  std: [number, number, number];
  /** 8-bit values are multiplied by this (1/255). */
  rescale: number;
}

/** The formats a crawl image may come in; anything else sharp could read (SVG, TIFF, PDF) is refused. */
const ACCEPTED_FORMATS = new Set(["jpeg", "png", "webp", "gif", "heif"]);

/** Values of one preprocessed image: 3 x cropHeight x cropWidth. */
export function tensorSize(spec: PreprocessSpec): number {
  return 3 * spec.cropHeight * spec.cropWidth;
}

/** The resized size before the crop: the short side becomes S, the long side int(S * long / short). */
export function resizedSize(width: number, height: number, s: number): { width: number; height: number } {
  if (width <= height) return { width: s, height: Math.floor((s * height) / width) };
  return { width: Math.floor((s * width) / height), height: s };
}

/** Python's round(): halves go to the even neighbour (torchvision's CenterCrop uses it). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Decode `bytes` and write its tensor to `out` at `offset`. Throws EmbedRecordError: IMAGE_CORRUPT
 * (not one of the accepted formats, or does not decode), IMAGE_TOO_LARGE (more than `maxPixels`).
 */
export async function preprocessImage(
  bytes: Uint8Array,
  spec: PreprocessSpec,
  maxPixels: number,
  out: Float32Array,
  offset = 0,
): Promise<void> {
  const options = { limitInputPixels: maxPixels, failOn: "error", ignoreIcc: true, pages: 1 } as const;
  let width: number;
  let height: number;
  try {
    // The header alone: the pixel check below gives the clearer message.
    const meta = await sharp(bytes, { ...options, limitInputPixels: false }).metadata();
    if (!ACCEPTED_FORMATS.has(meta.format) || (meta.format === "heif" && meta.compression !== "av1")) {
      const what =
        meta.format === "heif" ? `HEIF (${meta.compression ?? "unknown"} compression)` : meta.format;
      throw new EmbedRecordError("IMAGE_CORRUPT", `image is ${what}, not JPEG, PNG, WebP, GIF or AVIF`);
    }
    width = meta.width;
    height = meta.height;
  } catch (err) {
    throw asImageError(err, bytes.byteLength);
  }
  if (width * height > maxPixels) {
    throw new EmbedRecordError(
      "IMAGE_TOO_LARGE",
      `image is ${width} x ${height} pixels, more than maxImagePixels ${maxPixels}`,
    );
  }
  const { cropWidth, cropHeight } = spec;
  const resized = resizedSize(width, height, spec.shortestEdge);
  let pipeline = sharp(bytes, options);
  if (resized.width !== width || resized.height !== height) {
    // fastShrinkOnLoad off: JPEG/WebP shrink-on-load would box-filter before the cubic kernel.
    pipeline = pipeline.resize(resized.width, resized.height, {
      kernel: spec.kernel,
      fit: "fill",
      fastShrinkOnLoad: false,
    });
  }
  pipeline = pipeline.extract({
    left: roundHalfEven((resized.width - cropWidth) / 2),
    top: roundHalfEven((resized.height - cropHeight) / 2),
    width: cropWidth,
    height: cropHeight,
  });
  let data: Buffer;
  let info: OutputInfo;
  try {
    ({ data, info } = await pipeline
      .toColourspace("srgb")
      .removeAlpha()
      .raw({ depth: "uchar" })
      .toBuffer({ resolveWithObject: true }));
  } catch (err) {
    throw asImageError(err, bytes.byteLength);
  }
  if (info.width !== cropWidth || info.height !== cropHeight || info.channels !== 3) {
    throw new EmbedRecordError(
      "IMAGE_CORRUPT",
      `image decoded to ${info.width} x ${info.height} x ${info.channels}, not ${cropWidth} x ${cropHeight} x 3`,
    );
  }
  writeNormalised(data, spec, out, offset);
}

/** HWC uint8 to CHW float32: (v * rescale - mean[c]) / std[c]. */
export function writeNormalised(rgb: Uint8Array, spec: PreprocessSpec, out: Float32Array, offset = 0): void {
  const plane = spec.cropWidth * spec.cropHeight;
  for (let c = 0; c < 3; c++) {
    // A lookup table per channel: 256 values instead of a multiply-subtract-divide per pixel.
    const table = new Float32Array(256);
    for (let v = 0; v < 256; v++) table[v] = (v * spec.rescale - spec.mean[c]) / spec.std[c];
    const base = offset + c * plane;
    for (let p = 0; p < plane; p++) out[base + p] = table[rgb[3 * p + c]];
  }
}

function asImageError(err: unknown, byteLength: number): EmbedRecordError {
  if (err instanceof EmbedRecordError) return err;
  const message = (err instanceof Error ? err.message : String(err)).split("\n")[0].trim();
  if (/pixel limit/i.test(message)) {
    return new EmbedRecordError("IMAGE_TOO_LARGE", `image has more pixels than maxImagePixels (${message})`);
  }
  return new EmbedRecordError("IMAGE_CORRUPT", `image (${byteLength} bytes) does not decode: ${message}`);
}
