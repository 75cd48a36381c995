import { createHash } from "node:crypto";
import type { DecodedRecord, SourceRef } from "../common/record.ts";
import { makeDraws, wholePoolDraw } from "../score/draws.ts";
import type { Draw, Normaliser, Pool } from "../score/types.ts";
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
  /**
   * When the window was planned (ms since the epoch). A bank row's window was delivered before any
   * window that draws on it was planned, so manifests sorted by (planned_at, window_id) list every
   * window after the windows its bank rows came from, whatever topic partition they were read from.
   */
  planned_at: number;
  seed: number;
  draws: number;
  batch_size: number;
  /** Present when not the paper's draws: "pool" (one batch of the whole pool, scaled to batch_size). */
  normaliser?: Normaliser;
  tau: number;
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

/** Rows given explicitly instead of the live bank, with the window's recorded id and seed (replay). */
export interface RecordedWindow {
  id: string;
  seed: number;
  bank: { image: Float32Array; text: Float32Array; refs: SourceRef[] };
}

export function planWindow(
  records: DecodedRecord[],
  bank: NegativeBank | undefined,
  opts: {
    dim: number;
    baseSeed: number;
    draws: number;
    batchSize: number;
    /** Default "draws". */
    normaliser?: Normaliser;
    tau: number;
    /** When the window is planned (ms since the epoch), for its manifest. */
    plannedAt: number;
  },
  recorded?: RecordedWindow,
): WindowPlan {
  const { dim } = opts;
  const scoredIndex: number[] = [];
  for (let i = 0; i < records.length; i++) if (!records[i].failure) scoredIndex.push(i);
  const liveBankRows = recorded ? recorded.bank.refs.length : (bank?.size ?? 0);
  const bankRows = scoredIndex.length > 0 ? liveBankRows : 0;
  const n = scoredIndex.length + bankRows;
  const image = new Float32Array(n * dim);
  const text = new Float32Array(n * dim);
  scoredIndex.forEach((ri, row) => {
    const r = records[ri];
    image.set(r.imageEmbedding as Float32Array, row * dim);
    text.set(r.textEmbedding as Float32Array, row * dim);
  });
  let bankRefs: SourceRef[] = [];
  if (bankRows > 0 && recorded) {
    image.set(recorded.bank.image, scoredIndex.length * dim);
    text.set(recorded.bank.text, scoredIndex.length * dim);
    bankRefs = recorded.bank.refs;
  } else if (bankRows > 0 && bank) {
    bankRefs = bank.copyInto(image, text, scoredIndex.length);
  }
  const memberRefs = scoredIndex.map((i) => records[i].source);
  const id = recorded?.id ?? windowId(records.map((r) => r.source));
  const seed = recorded?.seed ?? windowSeed(opts.baseSeed, id);
  const poolNormaliser = opts.normaliser === "pool";
  // The pool normaliser: one batch of every row, in pool order (a logsumexp needs no shuffle).
  const draws =
    n === 0
      ? []
      : poolNormaliser
        ? [wholePoolDraw(n)]
        : makeDraws(n, { seed, draws: opts.draws, batchSize: opts.batchSize });
  return {
    id,
    seed,
    records,
    scoredIndex,
    pool: {
      dim,
      scoredRows: scoredIndex.length,
      bankRows,
      image,
      text,
      ...(poolNormaliser ? { scaleToBatch: opts.batchSize } : {}),
    },
    draws,
    manifest: {
      window_id: id,
      planned_at: opts.plannedAt,
      seed,
      draws: poolNormaliser ? 1 : opts.draws,
      batch_size: opts.batchSize,
      ...(poolNormaliser ? { normaliser: "pool" as const } : {}),
      tau: opts.tau,
      dim,
      members: encodeRuns(memberRefs),
      bank: encodeRuns(bankRefs),
      failed: encodeRuns(records.filter((r) => r.failure).map((r) => r.source)),
    },
  };
}
