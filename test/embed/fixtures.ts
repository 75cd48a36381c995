/**
 * Model folders for the embed tests: tiny encoders whose weights are given here, so every expected
 * embedding can be computed in the test with plain arithmetic, and a CLIP-style tokenizer with a few
 * merges whose ids are worked out by hand in tokenizer.unit.test.ts.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DecodedRecord } from "../../src/common/record.ts";
import {
  bagOfTokensTextEncoder,
  clipStyleTokenizerJson,
  linearImageEncoder,
  writeModelFolder,
} from "../../src/embed/synthetic.ts";

/** Merge ranks 0..5 give ids 512..517; then <|startoftext|> 518 and <|endoftext|> 519. */
export const MERGES: [string, string][] = [
  ["c", "a"],
  ["ca", "t</w>"],
  ["d", "o"],
  ["do", "n</w>"],
  ["t", "h"],
  ["th", "e</w>"],
];
export const SOT = 518;
export const EOT = 519;
export const VOCAB = 520;

export const SIZE = 8;
export const DIM = 6;
export const MODEL = "test/tiny-clip";
export const MEAN = [0.48145466, 0.4578275, 0.40821073];
export const STD = [0.26862954, 0.26130258, 0.27577711];

/** Image weights W [3·S·S, D]: small integers / 8, none of the columns zero. */
export function imageWeights(): Float32Array {
  const w = new Float32Array(3 * SIZE * SIZE * DIM);
  for (let i = 0; i < 3 * SIZE * SIZE; i++) {
    for (let d = 0; d < DIM; d++) w[i * DIM + d] = (((i * 7 + d * 13) % 17) - 8) / 8;
  }
  return w;
}

/** Token table E [VOCAB, D]. */
export function tokenTable(): Float32Array {
  const t = new Float32Array(VOCAB * DIM);
  for (let v = 0; v < VOCAB; v++) {
    for (let d = 0; d < DIM; d++) t[v * DIM + d] = (((v * 5 + d * 3) % 11) - 5) / 5 + (d === v % DIM ? 1 : 0);
  }
  return t;
}

export interface FolderOptions {
  mask?: boolean;
  extraOutput?: boolean;
  padToken?: string;
  imageFile?: string;
  textFile?: string;
  extra?: Record<string, unknown>;
}

export function tinyModelDir(opts: FolderOptions = {}): string {
  const dir = mkdtempSync(join(tmpdir(), "clipsieve-embed-"));
  writeModelFolder(dir, {
    imageEncoder: linearImageEncoder(SIZE, DIM, imageWeights()),
    textEncoder: bagOfTokensTextEncoder(tokenTable(), VOCAB, DIM, 77, {
      mask: opts.mask ?? true,
      extraOutput: opts.extraOutput,
    }),
    tokenizerJson: clipStyleTokenizerJson(MERGES),
    tokenizerConfig: opts.padToken ? { pad_token: opts.padToken } : undefined,
    model: MODEL,
    dim: DIM,
    size: SIZE,
    imageFile: opts.imageFile,
    textFile: opts.textFile,
    extra: opts.extra,
  });
  return dir;
}

export function normalised(v: ArrayLike<number>): number[] {
  const n = Math.hypot(...Array.from(v));
  return Array.from(v, (x) => x / n);
}

/** The CHW tensor of a solid-colour image, computed from CLIP's formula. */
export function solidTensor(rgb: [number, number, number]): Float64Array {
  const out = new Float64Array(3 * SIZE * SIZE);
  for (let c = 0; c < 3; c++)
    out.fill((rgb[c] / 255 - MEAN[c]) / STD[c], c * SIZE * SIZE, (c + 1) * SIZE * SIZE);
  return out;
}

/** The tiny image encoder, by hand: normalise(x · W). */
export function expectedImageEmbedding(tensor: ArrayLike<number>): number[] {
  const w = imageWeights();
  const out = new Array(DIM).fill(0);
  for (let i = 0; i < tensor.length; i++) for (let d = 0; d < DIM; d++) out[d] += tensor[i] * w[i * DIM + d];
  return normalised(out);
}

/** The tiny text encoder, by hand: normalise(sum of table rows of the unpadded ids). */
export function expectedTextEmbedding(ids: number[]): number[] {
  const t = tokenTable();
  const out = new Array(DIM).fill(0);
  for (const id of ids) for (let d = 0; d < DIM; d++) out[d] += t[id * DIM + d];
  return normalised(out);
}

let offset = 0;
export function record(fields: Partial<DecodedRecord>): DecodedRecord {
  return {
    source: { topic: "t", partition: 0, offset: String(offset++) },
    key: null,
    value: Buffer.from("{}"),
    headers: {},
    timestamp: "0",
    ...fields,
  };
}
