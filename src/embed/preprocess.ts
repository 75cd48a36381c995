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
import sharp, { type OutputInfo, type SharpOptions } from "sharp";
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
  const left = roundHalfEven((resized.width - cropWidth) / 2);
  const top = roundHalfEven((resized.height - cropHeight) / 2);
  // The short side is below S: both sides grow (the long one by int(S * long / short) / long >= 1).
  const upscale = resized.height > height || resized.width > width;
  try {
    if (upscale) {
      if (resized.width * resized.height > maxPixels) {
        throw new EmbedRecordError(
          "IMAGE_TOO_LARGE",
          `image is ${width} x ${height}, and resized to ${resized.width} x ${resized.height} it has more than maxImagePixels ${maxPixels}`,
        );
      }
      const { data, width: outWidth } = await upscaled(bytes, options, resized, spec.kernel);
      writeNormalised(data, spec, out, offset, { width: outWidth, left, top });
      return;
    }
    let pipeline = sharp(bytes, options);
    if (resized.width !== width || resized.height !== height) {
      // fastShrinkOnLoad off: JPEG/WebP shrink-on-load would box-filter before the cubic kernel.
      pipeline = pipeline.resize(resized.width, resized.height, {
        kernel: spec.kernel,
        fit: "fill",
        fastShrinkOnLoad: false,
      });
    }
    const { data, info } = await pipeline
      .extract({ left, top, width: cropWidth, height: cropHeight })
      .toColourspace("srgb")
      .removeAlpha()
      .raw({ depth: "uchar" })
      .toBuffer({ resolveWithObject: true });
    checkShape(info, cropWidth, cropHeight);
    writeNormalised(data, spec, out, offset);
  } catch (err) {
    throw asImageError(err, bytes.byteLength);
  }
}

/** Edge pixels copied around an image before an upscale, so the interpolator never reads the black background. */
const PAD = 2;

/**
 * Upscaling: not resize(), since libvips upsizes on its own sampling grid (2-3 levels in 255 from PIL
 * on average, measured). An affine transform with pixel-centre offsets samples where PIL does, with
 * the same Catmull-Rom interpolation (0.05 levels on average, 6 at most, measured on a 120 x 90
 * image). sharp runs extend() after affine(), hence two passes: pad the decoded image, then transform.
 * The result is at least `resized` large, with the resized image at its top-left corner.
 */
async function upscaled(
  bytes: Uint8Array,
  options: SharpOptions,
  resized: { width: number; height: number },
  kernel: ResizeKernel,
): Promise<{ data: Buffer; width: number }> {
  const padded = await sharp(bytes, options)
    .toColourspace("srgb")
    .removeAlpha()
    .extend({ top: PAD, bottom: PAD, left: PAD, right: PAD, extendWith: "copy" })
    .raw({ depth: "uchar" })
    .toBuffer({ resolveWithObject: true });
  checkShape(padded.info, padded.info.width, padded.info.height);
  const width = padded.info.width - 2 * PAD;
  const height = padded.info.height - 2 * PAD;
  const { data, info } = await sharp(padded.data, {
    raw: { width: padded.info.width, height: padded.info.height, channels: 3 },
  })
    .affine([resized.width / width, 0, 0, resized.height / height], {
      interpolator: INTERPOLATORS[kernel],
      idx: 0.5 - PAD,
      idy: 0.5 - PAD,
      odx: -0.5,
      ody: -0.5,
    })
    .raw({ depth: "uchar" })
    .toBuffer({ resolveWithObject: true });
  if (info.width < resized.width || info.height < resized.height)
    checkShape(info, resized.width, resized.height);
  return { data, width: info.width };
}

function checkShape(info: OutputInfo, width: number, height: number): void {
  if (info.width !== width || info.height !== height || info.channels !== 3) {
    throw new EmbedRecordError(
      "IMAGE_CORRUPT",
      `image decoded to ${info.width} x ${info.height} x ${info.channels}, not ${width} x ${height} x 3`,
    );
  }
}

const INTERPOLATORS = {
  cubic: sharp.interpolators.bicubic,
  linear: sharp.interpolators.bilinear,
  nearest: sharp.interpolators.nearest,
} as const;

/**
 * HWC uint8 to CHW float32: (v * rescale - mean[c]) / std[c], of the crop at (left, top) of an image
 * `width` pixels wide (default: `rgb` is exactly the crop).
 */
export function writeNormalised(
  rgb: Uint8Array,
  spec: PreprocessSpec,
  out: Float32Array,
  offset = 0,
  window = { width: spec.cropWidth, left: 0, top: 0 },
): void {
  const { cropWidth, cropHeight } = spec;
  const plane = cropWidth * cropHeight;
  for (let c = 0; c < 3; c++) {
    // A lookup table per channel: 256 values instead of a multiply-subtract-divide per pixel.
    const table = new Float32Array(256);
    for (let v = 0; v < 256; v++) table[v] = (v * spec.rescale - spec.mean[c]) / spec.std[c];
    const base = offset + c * plane;
    for (let y = 0; y < cropHeight; y++) {
      const row = 3 * ((window.top + y) * window.width + window.left) + c;
      for (let x = 0; x < cropWidth; x++) out[base + y * cropWidth + x] = table[rgb[row + 3 * x]];
    }
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
