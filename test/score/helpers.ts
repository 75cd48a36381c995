/**
 * Test helpers for the scoring engine: golden files, a log-capturing logger and float64 reference
 * computations written independently of the engine (plain loops, max-shifted logsumexp).
 */
import { readFileSync } from "node:fs";
import { pino } from "pino";
import type { Logger } from "../../src/common/logger.ts";

export interface GoldenCase {
  n: number;
  d: number;
  tau: number;
  batch_size: number;
  k: number;
  batches: number[][][];
  inputs: { img: number[][]; txt: number[][]; target?: number[][] };
  expected: {
    clip_score: number[];
    s_clip_loss: number[];
    s_clip_loss_R: number[];
    normsim_2?: number[];
    normsim_inf?: number[];
  };
}

export function loadGolden(name: string): GoldenCase {
  return JSON.parse(readFileSync(new URL(`../../../shared/golden/${name}.json`, import.meta.url), "utf8"));
}

export const flat = (rows: number[][]): Float32Array => Float32Array.from(rows.flat());

/** A logger whose JSON lines land in `lines`, so a test can read what was logged at which level. */
export function capturingLogger(level = "debug"): { logger: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level }, { write: (line: string) => lines.push(JSON.parse(line)) });
  return { logger, lines };
}

export const PINO_WARN = 40;
export const PINO_DEBUG = 20;

export function dot64(a: Float32Array, i: number, b: Float32Array, j: number, dim: number): number {
  let s = 0;
  for (let k = 0; k < dim; k++) s += a[i * dim + k] * b[j * dim + k];
  return s;
}

function logSumExp64(values: number[]): number {
  const max = Math.max(...values);
  let sum = 0;
  for (const v of values) sum += Math.exp(v - max);
  return max + Math.log(sum);
}

/**
 * Float64 symmetric CLIP loss of every row of one batch (given as pool row indices):
 * loss_i = -1/2 [log softmax_j(S_ij / tau) at j = i + log softmax_j(S_ji / tau) at j = i].
 */
export function clipLossOfBatch(
  image: Float32Array,
  text: Float32Array,
  dim: number,
  batch: ArrayLike<number>,
  tau: number,
): Map<number, number> {
  const rows = Array.from(batch);
  const z = rows.map((i) => rows.map((j) => dot64(image, i, text, j, dim) / tau));
  const losses = new Map<number, number>();
  rows.forEach((row, p) => {
    const imageToText = z[p][p] - logSumExp64(z[p]);
    const textToImage = z[p][p] - logSumExp64(rows.map((_, q) => z[q][p]));
    losses.set(row, -(imageToText + textToImage) / 2);
  });
  return losses;
}

/** Unit rows from arbitrary values; a (near-)zero row becomes e_0 so every row is usable. */
export function unitRows(values: ArrayLike<number>, rows: number, dim: number): Float32Array {
  const out = new Float32Array(rows * dim);
  for (let i = 0; i < rows; i++) {
    let norm = 0;
    for (let k = 0; k < dim; k++) norm += values[i * dim + k] ** 2;
    norm = Math.sqrt(norm);
    for (let k = 0; k < dim; k++)
      out[i * dim + k] = norm < 1e-3 ? (k === 0 ? 1 : 0) : values[i * dim + k] / norm;
  }
  return out;
}

export function maxAbsDiff(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i] - expected[i]);
    worst = Number.isNaN(d) ? Number.POSITIVE_INFINITY : Math.max(worst, d);
  }
  return worst;
}
