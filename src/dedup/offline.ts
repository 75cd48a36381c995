/**
 * The dedup step over an offline pool (`clipsieve select --dedup`): the rows a selection kept, taken
 * in pool order as the filter takes a partition's records in offset order, through the same step
 * (./dedup.ts: same thresholds, same search, the earliest of copies kept) with the whole pool as one
 * scope and its whole selection as the horizon. So an offline selection and a streamed one of the same
 * records stay comparable.
 */
import type { DecodedRecord, RecordOutcome } from "../common/record.ts";
import type { ScoringEngine } from "../score/engine.ts";
import { type DedupConfig, openDeduplicator } from "./dedup.ts";

/** Rows handed to the step at a time (the filter's default window). */
const STEP_ROWS = 4096;

export interface OfflineDedupResult {
  /** The rows kept, ascending. */
  kept: Int32Array;
  nearDuplicates: number;
  nearReferences: number;
}

/**
 * Dedup `rows` (pool rows, ascending) of a pool whose row r has the unit image embedding `image(r)`
 * and the uid `uid(r)`.
 */
export async function dedupPoolRows(
  engine: ScoringEngine,
  rows: Int32Array,
  dim: number,
  image: (row: number) => Float32Array,
  uid: (row: number) => string | undefined,
  config: Omit<DedupConfig, "dedupHorizon">,
): Promise<OfflineDedupResult> {
  const dedup = await openDeduplicator({ ...config, dedupHorizon: Math.max(1, rows.length) }, engine, dim);
  if (!dedup) return { kept: rows, nearDuplicates: 0, nearReferences: 0 };
  const kept: number[] = [];
  let nearDuplicates = 0;
  let nearReferences = 0;
  for (let start = 0; start < rows.length; start += STEP_ROWS) {
    const part = rows.subarray(start, start + STEP_ROWS);
    const outcomes: RecordOutcome[] = Array.from(part, (row, i) => {
      const u = uid(row);
      const record: DecodedRecord = {
        source: { topic: "pool", partition: 0, offset: String(start + i) },
        key: null,
        value: null,
        headers: {},
        timestamp: "0",
        ...(u !== undefined ? { uid: u } : {}),
        imageEmbedding: image(row),
      };
      return { record, decision: "accepted", reason: "passed" };
    });
    const r = await dedup.apply(outcomes);
    nearDuplicates += r.nearDuplicates;
    nearReferences += r.nearReferences;
    outcomes.forEach((o, i) => {
      if (o.decision === "accepted") kept.push(part[i]);
    });
  }
  return { kept: Int32Array.from(kept), nearDuplicates, nearReferences };
}
