/**
 * Writes the golden cases' inputs as the files a DataComp user has: one .npz shard (l14_img, l14_txt),
 * a target .npy, and a --partitions JSON. Parsed once per test file (case2.json is 13 MB).
 */
import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { writeNpy, writeNpz } from "../../src/io/index.ts";

export interface GoldenCase {
  name: string;
  n: number;
  d: number;
  tau: number;
  batch_size: number;
  k: number;
  batches: number[][][];
  inputs: { img: number[][]; txt: number[][]; target?: number[][] };
  expected: Record<string, number[]> & {
    two_stage_select?: {
      score1: string;
      fraction1: number;
      score2: string;
      fraction2: number;
      indices: number[];
    };
  };
}

const golden = new URL("../../../shared/golden/", import.meta.url);

export function loadCase(name: "case1" | "case2" | "case3"): GoldenCase {
  return JSON.parse(readFileSync(new URL(`${name}.json`, golden), "utf8")) as GoldenCase;
}

export function goldenPath(name: string): string {
  return new URL(`${name}.json`, golden).pathname;
}

export function flat(rows: number[][]): Float32Array {
  const dim = rows[0].length;
  const out = new Float32Array(rows.length * dim);
  rows.forEach((row, i) => {
    out.set(row, i * dim);
  });
  return out;
}

export function f32(rows: number[][]) {
  return { dtype: "<f4", shape: [rows.length, rows[0].length], data: flat(rows) };
}

/** The case's pairs as a DataComp-style shard `<dir>/<case>.npz`; returns its path. */
export async function writeShard(dir: string, c: GoldenCase): Promise<string> {
  const path = join(dir, `${c.name}.npz`);
  await writeNpz(path, { l14_img: f32(c.inputs.img), l14_txt: f32(c.inputs.txt) });
  return path;
}

export async function writeTargetNpy(dir: string, c: GoldenCase): Promise<string> {
  if (!c.inputs.target) throw new Error(`${c.name} has no target`);
  const path = join(dir, `${c.name}-target.npy`);
  await writeFile(path, writeNpy(f32(c.inputs.target)));
  return path;
}

/** The draws alone, in the list-of-draws form of --partitions. */
export async function writePartitions(dir: string, c: GoldenCase): Promise<string> {
  const path = join(dir, `${c.name}-draws.json`);
  await writeFile(path, JSON.stringify(c.batches));
  return path;
}

/** Asserts |got[i] - want[i]| <= tol for every row, naming the first row that is off; returns the max diff. */
export function assertClose(got: ArrayLike<number>, want: number[], tol: number, label: string): number {
  if (got.length !== want.length) throw new Error(`${label}: ${got.length} values, expected ${want.length}`);
  let worst = 0;
  for (let i = 0; i < want.length; i++) {
    const diff = Math.abs(Number(got[i]) - want[i]);
    if (!(diff <= tol))
      throw new Error(`${label} row ${i}: got ${got[i]}, expected ${want[i]} (|diff| ${diff})`);
    worst = Math.max(worst, diff);
  }
  return worst;
}
