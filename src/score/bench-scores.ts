/**
 * The scores `clipsieve bench` computes, kept so that two runs can be compared value by value:
 * `bench --scores FILE` writes them, `bench --compare-scores FILE` reads a reference (a cpu run, as a
 * rule) and prints the largest difference. The bench's input is seeded, so every machine and every
 * provider scores the same rows. scripts/gpu-check uses this to check a GPU provider against the CPU.
 *
 * The file is an .npz (np.load reads it): one float32 array per name of BENCH_SCORE_NAMES and
 * `meta_json`, a uint8 array holding JSON that says where the scores came from.
 */
import { ClipsieveError } from "../common/errors.ts";
import type { NdArray } from "../io/npy.ts";
import { listNpzKeys, readNpz, writeNpz } from "../io/npz.ts";
import { BENCH_SCORE_NAMES } from "./bench.ts";

/** Where a score file came from. */
export interface BenchScoresMeta {
  provider: string;
  onnxruntime: string;
  cpuModel: string;
  createdAt: string;
}

export interface BenchScores {
  meta: BenchScoresMeta;
  arrays: Map<string, Float32Array>;
}

/**
 * The bound on |score - reference score| for float32: 1e-4 for scores of unit scale (s-CLIPLoss,
 * NormSim_inf: |value| <= 1), 1e-4 of the largest |reference value| for larger ones (NormSim_2 of a
 * 100,000-row target is about 11).
 */
export const SCORE_TOLERANCE = 1e-4;

export interface ScoreDifference {
  name: string;
  rows: number;
  maxAbsDifference: number;
  /** Rows where either side is NaN or infinite, or where the two differ in that respect. */
  nonFinite: number;
  maxAbsReference: number;
  tolerance: number;
  within: boolean;
}

export interface ScoreComparison {
  reference: string;
  referenceProvider: string;
  arrays: ScoreDifference[];
  /** The largest of the arrays' differences (Infinity when any is not finite). */
  maxAbsDifference: number;
  within: boolean;
}

const META_KEY = "meta_json";

export async function writeBenchScores(path: string, scores: BenchScores): Promise<void> {
  const arrays: Record<string, NdArray> = {};
  for (const name of BENCH_SCORE_NAMES) {
    const data = scores.arrays.get(name);
    if (data) arrays[name] = { dtype: "<f4", shape: [data.length], data };
  }
  const meta = new TextEncoder().encode(JSON.stringify(scores.meta));
  arrays[META_KEY] = { dtype: "|u1", shape: [meta.length], data: meta };
  await writeNpz(path, arrays);
}

export async function readBenchScores(path: string): Promise<BenchScores> {
  const keys = await listNpzKeys(path);
  const missing = [META_KEY, ...BENCH_SCORE_NAMES].filter((k) => !keys.includes(k));
  if (missing.length > 0) {
    throw new ClipsieveError(
      "INPUT_FILE_INVALID",
      `${path}: not a \`clipsieve bench --scores\` file (no ${missing.join(", ")})`,
    );
  }
  const read = await readNpz(path, [META_KEY, ...BENCH_SCORE_NAMES]);
  const arrays = new Map<string, Float32Array>();
  for (const name of BENCH_SCORE_NAMES) {
    const { data, dtype } = read[name];
    if (!(data instanceof Float32Array)) {
      throw new ClipsieveError("INPUT_FILE_INVALID", `${path}: ${name} is ${dtype}, expected <f4`);
    }
    arrays.set(name, data);
  }
  const meta = JSON.parse(new TextDecoder().decode(read[META_KEY].data as Uint8Array)) as BenchScoresMeta;
  return { meta, arrays };
}

function compareArray(name: string, actual: Float32Array, reference: Float32Array): ScoreDifference {
  let maxAbsDifference = 0;
  let maxAbsReference = 0;
  let nonFinite = 0;
  for (let i = 0; i < reference.length; i++) {
    const a = actual[i];
    const r = reference[i];
    if (!(Number.isFinite(a) && Number.isFinite(r))) {
      if (!Object.is(a, r)) nonFinite++;
      continue;
    }
    maxAbsDifference = Math.max(maxAbsDifference, Math.abs(a - r));
    maxAbsReference = Math.max(maxAbsReference, Math.abs(r));
  }
  const tolerance = SCORE_TOLERANCE * Math.max(1, maxAbsReference);
  return {
    name,
    rows: reference.length,
    maxAbsDifference: nonFinite > 0 ? Number.POSITIVE_INFINITY : maxAbsDifference,
    nonFinite,
    maxAbsReference,
    tolerance,
    within: nonFinite === 0 && maxAbsDifference <= tolerance,
  };
}

/** Every array of `actual` against the same-named one of `reference`; both must hold all of them. */
export function compareBenchScores(
  actual: Map<string, Float32Array>,
  reference: BenchScores,
  referencePath: string,
): ScoreComparison {
  const arrays: ScoreDifference[] = [];
  for (const name of BENCH_SCORE_NAMES) {
    const a = actual.get(name);
    const r = reference.arrays.get(name);
    if (!a || !r || a.length !== r.length) {
      throw new ClipsieveError(
        "INPUT_FILE_INVALID",
        `${referencePath}: ${name} has ${r?.length ?? "no"} values, this run ${a?.length ?? "none"}; ` +
          "the reference must come from `clipsieve bench --scores` with the same settings",
      );
    }
    arrays.push(compareArray(name, a, r));
  }
  return {
    reference: referencePath,
    referenceProvider: reference.meta.provider,
    arrays,
    maxAbsDifference: Math.max(...arrays.map((d) => d.maxAbsDifference)),
    within: arrays.every((d) => d.within),
  };
}

export function formatScoreComparison(c: ScoreComparison): string {
  const e = (x: number) => (Number.isFinite(x) ? x.toExponential(2) : String(x));
  const lines = [
    `scores vs ${c.reference} (${c.referenceProvider}): largest |difference| ${e(c.maxAbsDifference)} ` +
      `-> ${c.within ? "within" : "OUTSIDE"} tolerance`,
  ];
  for (const d of c.arrays) {
    lines.push(
      `  ${d.name.padEnd(19)} ${String(d.rows).padStart(6)} rows: max |diff| ${e(d.maxAbsDifference)}, ` +
        `tolerance ${e(d.tolerance)} (max |value| ${d.maxAbsReference.toFixed(3)})` +
        (d.nonFinite > 0 ? `, ${d.nonFinite} non-finite` : "") +
        (d.within ? "" : "  OUTSIDE"),
    );
  }
  return lines.join("\n");
}
