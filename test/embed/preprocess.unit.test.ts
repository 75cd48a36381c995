/**
 * CLIP preprocessing against tensors computed here from the definition: images whose resize is exact
 * (a solid colour, or a size that needs none), so the crop position, channel order, layout and
 * normalisation are checked value by value; then every accepted format, and the refusals.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import sharp from "sharp";
import {
  type PreprocessSpec,
  preprocessImage,
  resizedSize,
  roundHalfEven,
} from "../../src/embed/preprocess.ts";
import { EmbedRecordError } from "../../src/embed/record-error.ts";

const MEAN = [0.48145466, 0.4578275, 0.40821073];
const STD = [0.26862954, 0.26130258, 0.27577711];
const S = 8;
const spec: PreprocessSpec = {
  shortestEdge: S,
  cropHeight: S,
  cropWidth: S,
  kernel: "cubic",
  mean: [MEAN[0], MEAN[1], MEAN[2]],
  std: [STD[0], STD[1], STD[2]],
  rescale: 1 / 255,
};
const PIXELS = 10_000_000;

async function run(bytes: Buffer): Promise<Float32Array> {
  const out = new Float32Array(3 * S * S);
  await preprocessImage(bytes, spec, PIXELS, out);
  return out;
}

const normalise = (v: number, c: number) => (v / 255 - MEAN[c]) / STD[c];

function assertClose(
  actual: Float32Array,
  expected: ArrayLike<number>,
  tolerance: number,
  what: string,
): void {
  assert.equal(actual.length, expected.length, what);
  for (let i = 0; i < expected.length; i++) {
    const diff = Math.abs(actual[i] - expected[i]);
    assert.ok(
      diff <= tolerance,
      `${what}: value ${i} is ${actual[i]}, expected ${expected[i]} (diff ${diff})`,
    );
  }
}

/** A raw RGB image from a pixel function, as PNG. */
function png(
  width: number,
  height: number,
  pixel: (x: number, y: number) => [number, number, number],
): Promise<Buffer> {
  const data = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) data.set(pixel(x, y), 3 * (y * width + x));
  }
  return sharp(data, { raw: { width, height, channels: 3 } })
    .png()
    .toBuffer();
}

function solid(rgb: [number, number, number]): number[] {
  return [0, 1, 2].flatMap((c) => new Array(S * S).fill(normalise(rgb[c], c)));
}

test("sizes and rounding follow torchvision: int(S * long / short), round half to even", () => {
  assert.deepEqual(resizedSize(20, 12, 8), { width: 13, height: 8 }); // 8 * 20 / 12 = 13.33
  assert.deepEqual(resizedSize(12, 20, 8), { width: 8, height: 13 });
  assert.deepEqual(resizedSize(640, 480, 224), { width: 298, height: 224 }); // 298.67
  assert.deepEqual(resizedSize(100, 100, 224), { width: 224, height: 224 });
  assert.deepEqual([0.5, 1.5, 2.5, 3.5, 2.4, 2.6, 0].map(roundHalfEven), [0, 2, 2, 4, 2, 3, 0]);
});

test("a solid colour image: resized down, up and cropped, every value is CLIP's normalised colour", async () => {
  const rgb: [number, number, number] = [200, 100, 50];
  // Kernel weights sum to one, so a constant image stays constant through the bicubic resize.
  for (const [w, h] of [
    [20, 12],
    [3, 2],
    [640, 480],
    [8, 8],
  ]) {
    assertClose(await run(await png(w, h, () => rgb)), solid(rgb), 1e-6, `${w} x ${h}`);
  }
});

/**
 * A horizontal ramp: bicubic resampling reproduces a linear function exactly (Catmull-Rom interpolates
 * it; an anti-aliasing kernel is symmetric and sums to one), so away from the left and right edges the
 * expected value is the ramp at the source position PIL samples, (x + 0.5) * w / W - 0.5, within the
 * rounding to 8 bits. A sampling grid shifted by a quarter pixel would already miss.
 */
async function checkRamp(w: number, h: number, ramp: (u: number) => number, skip: number): Promise<void> {
  const S8 = 224;
  const big: PreprocessSpec = { ...spec, shortestEdge: S8, cropHeight: S8, cropWidth: S8 };
  const image = await png(w, h, (x) => [ramp(x), 100, 255 - ramp(x)]);
  const out = new Float32Array(3 * S8 * S8);
  await preprocessImage(image, big, PIXELS, out);
  const resized = resizedSize(w, h, S8);
  const left = roundHalfEven((resized.width - S8) / 2);
  let worst = 0;
  for (let y = 0; y < S8; y += 37) {
    for (let x = skip; x < S8 - skip; x++) {
      const u = ((x + left + 0.5) * w) / resized.width - 0.5;
      const got = (out[y * S8 + x] * STD[0] + MEAN[0]) * 255;
      worst = Math.max(worst, Math.abs(got - ramp(u)));
      assert.ok(Math.abs(got - ramp(u)) < 0.55, `${w} x ${h}: column ${x} is ${got}, expected ${ramp(u)}`);
      assert.ok(Math.abs(out[S8 * S8 + y * S8 + x] - normalise(100, 1)) < 1e-6);
    }
  }
  assert.ok(worst < 0.55);
}

test("upscaling samples where PIL's BICUBIC does: a ramp stays a ramp", async () => {
  // 120 x 90 -> 298 x 224, crop from column 37.
  await checkRamp(120, 90, (u) => 2 * u, 0);
});

test("downscaling too, away from the edges", async () => {
  // 250 x 400 -> 224 x 358, the crop spans the width: 4 columns at each edge are left out.
  await checkRamp(250, 400, (u) => u, 4);
});

test("no resize needed: the centre crop starts at round((w - S) / 2) and the layout is CHW", async () => {
  const pixel = (x: number, y: number): [number, number, number] => [x * 20, y * 19, (x + y) * 7];
  for (const [w, h, left, top] of [
    [11, 8, 2, 0], // (11 - 8) / 2 = 1.5 rounds to 2 (floor would say 1)
    [8, 13, 0, 2], // 2.5 rounds to 2
    [9, 8, 0, 0], // 0.5 rounds to 0
  ]) {
    const expected: number[] = [];
    for (let c = 0; c < 3; c++) {
      for (let y = 0; y < S; y++)
        for (let x = 0; x < S; x++) expected.push(normalise(pixel(x + left, y + top)[c], c));
    }
    assertClose(await run(await png(w, h, pixel)), expected, 1e-6, `${w} x ${h}`);
  }
});

test("JPEG, PNG, WebP, GIF and AVIF decode to the same tensor (lossy ones within a few levels)", async () => {
  const rgb: [number, number, number] = [120, 160, 40];
  const base = sharp({
    create: { width: 16, height: 12, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } },
  });
  const formats: [string, Buffer, number][] = [
    ["png", await base.clone().png().toBuffer(), 0],
    ["webp lossless", await base.clone().webp({ lossless: true }).toBuffer(), 0],
    ["gif", await base.clone().gif().toBuffer(), 0],
    ["jpeg", await base.clone().jpeg({ quality: 95 }).toBuffer(), 3],
    ["avif", await base.clone().avif({ quality: 90 }).toBuffer(), 4],
  ];
  for (const [name, bytes, levels] of formats) {
    // `levels` grey levels of error in 255, divided by the smallest std.
    assertClose(await run(bytes), solid(rgb), (levels + 1e-4) / 255 / Math.min(...STD), name);
  }
});

test("grey and transparent images become RGB: grey repeated, alpha dropped", async () => {
  const grey = await sharp(Buffer.alloc(10 * 10, 90), { raw: { width: 10, height: 10, channels: 1 } })
    .png()
    .toBuffer();
  assertClose(await run(grey), solid([90, 90, 90]), 1e-6, "grey");
  // S x S needs no resize; a resize would premultiply by alpha and round, as PIL does for RGBA.
  const rgba = Buffer.alloc(S * S * 4);
  for (let p = 0; p < S * S; p++) rgba.set([30, 60, 90, 128], 4 * p);
  const transparent = await sharp(rgba, { raw: { width: S, height: S, channels: 4 } })
    .png()
    .toBuffer();
  assertClose(await run(transparent), solid([30, 60, 90]), 1e-6, "rgba");
});

async function refusal(bytes: Buffer, maxPixels = PIXELS): Promise<EmbedRecordError> {
  try {
    await preprocessImage(bytes, spec, maxPixels, new Float32Array(3 * S * S));
  } catch (err) {
    assert.ok(err instanceof EmbedRecordError, String(err));
    return err;
  }
  assert.fail("expected a refusal");
}

test("corrupt, truncated, unaccepted and oversized images are refused with their code", async () => {
  const good = await png(64, 64, (x, y) => [x * 4, y * 4, 128]);
  const jpeg = await sharp(good).jpeg().toBuffer();
  assert.equal((await refusal(Buffer.from("not an image at all"))).code, "IMAGE_CORRUPT");
  assert.equal((await refusal(good.subarray(0, 60))).code, "IMAGE_CORRUPT");
  assert.equal((await refusal(jpeg.subarray(0, jpeg.byteLength / 2))).code, "IMAGE_CORRUPT");
  const svg = Buffer.from(
    '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>',
  );
  const refused = await refusal(svg);
  assert.equal(refused.code, "IMAGE_CORRUPT");
  assert.match(refused.message, /svg, not JPEG, PNG, WebP, GIF or AVIF/);
  const big = await refusal(good, 64 * 63);
  assert.equal(big.code, "IMAGE_TOO_LARGE");
  assert.match(big.message, /64 x 64 pixels, more than maxImagePixels 4032/);
});
