import { createHash } from "node:crypto";
import type { DecodedRecord, SourceRef } from "../decode/types.ts";
import { makeDraws } from "../score/draws.ts";
import type { Draw, Pool } from "../score/types.ts";
import type { NegativeBank } from "./bank.ts";
import { encodeRuns, type SourceRun } from "./ranges.ts";

/**
 * A window ready to score: its records (good and bad, in arrival order), the pool built from the good
 * ones plus the bank, and the draws made from the window's seed. Everything a replay needs to rebuild
 * the same pool and the same draws is in `manifest`.
 */
export interface WindowPlan {
  id: string;
  seed: number;
  records: DecodedRecord[];
  /** For each scored pool row, the index of its record in `records`. */
  scoredIndex: number[];
  pool: Pool;
  draws: Draw[];
  manifest: WindowManifest;
}

/** What the windows topic records about each window (JSON). */
export interface WindowManifest {
  window_id: string;
  seed: number;
  draws: number;
  batch_size: number;
  dim: number;
  /** Scored rows, in pool order. */
  members: SourceRun[];
  /** Bank rows, in pool order (after the members). */
  bank: SourceRun[];
  /** Records of the window that were not scored (dead-lettered), for completeness. */
  failed: SourceRun[];
}

/** A window's id: a hash of its members' coordinates, so the same records always make the same id. */
export function windowId(refs: readonly SourceRef[]): string {
  const h = createHash("sha256");
  for (const r of refs) h.update(`${r.topic}\u0000${r.partition}\u0000${r.offset}\n`);
  return `w-${h.digest("hex").slice(0, 20)}`;
}

/** A window's seed: derived from the base seed and the window id (uint32). */
export function windowSeed(baseSeed: number, id: string): number {
  return createHash("sha256").update(`${baseSeed}:${id}`).digest().readUInt32BE(0);
}

export function planWindow(
  records: DecodedRecord[],
  bank: NegativeBank | undefined,
  opts: { dim: number; baseSeed: number; draws: number; batchSize: number },
): WindowPlan {
  const { dim } = opts;
  const scoredIndex: number[] = [];
  for (let i = 0; i < records.length; i++) if (!records[i].failure) scoredIndex.push(i);
  const bankRows = scoredIndex.length > 0 && bank ? bank.size : 0;
  const n = scoredIndex.length + bankRows;
  const image = new Float32Array(n * dim);
  const text = new Float32Array(n * dim);
  scoredIndex.forEach((ri, row) => {
    const r = records[ri];
    image.set(r.imageEmbedding as Float32Array, row * dim);
    text.set(r.textEmbedding as Float32Array, row * dim);
  });
  const bankRefs = bankRows > 0 && bank ? bank.copyInto(image, text, scoredIndex.length) : [];
  const memberRefs = scoredIndex.map((i) => records[i].source);
  const id = windowId(records.map((r) => r.source));
  const seed = windowSeed(opts.baseSeed, id);
  const draws = n > 0 ? makeDraws(n, { seed, draws: opts.draws, batchSize: opts.batchSize }) : [];
  return {
    id,
    seed,
    records,
    scoredIndex,
    pool: { dim, scoredRows: scoredIndex.length, bankRows, image, text },
    draws,
    manifest: {
      window_id: id,
      seed,
      draws: opts.draws,
      batch_size: opts.batchSize,
      dim,
      members: encodeRuns(memberRefs),
      bank: encodeRuns(bankRefs),
      failed: encodeRuns(records.filter((r) => r.failure).map((r) => r.source)),
    },
  };
}
