/**
 * The filter without Kafka, for studies that need many runs and for trying window designs: the
 * window cut, scorer and decide step of the filter itself (src/window/), and its dedup step
 * (src/dedup/, history in memory) when asked, on records with the coordinates they have on the
 * study's input topic (one partition, offsets 0..N-1, unless `partitionOf` says), so window ids,
 * seeds, draws and decisions are the filter's (NormSim_inf only for stage-1 passers, as the filter
 * computes it unless `scoreAll`). The fidelity study runs the filter through Kafka beside it and stops
 * unless the two decide every record alike.
 */

import type { DecodedRecord } from "../common/record.ts";
import { createDecoder } from "../decode/decoder.ts";
import { encodeJsonRecord } from "../decode/encode.ts";
import { type DedupConfig, openDeduplicator } from "../dedup/index.ts";
import { createPolicy, type PolicySpec, parsePolicyFlags } from "../policy/index.ts";
import type { ScoringEngine } from "../score/engine.ts";
import type { Normaliser, TargetSet } from "../score/types.ts";
import type { SimRecord, Simulation } from "../simulate/generator.ts";
import { simRecordFields } from "../simulate/producer.ts";
import { type CutSettings, WindowCut } from "../window/cut.ts";
import { decideWindow } from "../window/decide.ts";
import { type ScorerSettings, WindowScorer } from "../window/scorer.ts";
import { stageTwoSelector } from "../window/stage-two.ts";
import type { DeliveredWindow } from "./filter-run.ts";

export interface EmulateOptions {
  /** The topic whose offsets the records take (the study's input topic). */
  topic: string;
  windowSize: number;
  bankSize: number;
  draws: number;
  batchSize: number;
  tau: number;
  seed: number;
  keep: string;
  /** Stage 2 (`--then`), if any. */
  thenKeep?: string;
  warmup: number;
  /** How R is estimated (default "draws"). */
  normaliser?: Normaliser;
  /**
   * As the filter does: while the bank is not yet full, cut the window at windowSize plus the bank's
   * free rows, so every pool, the first included, has windowSize + bankSize rows. False: every
   * window has windowSize records (how the filter cut windows before).
   */
  primeBank: boolean;
  /** As the filter's `scoreAll`: NormSim_inf for every record, not only stage-1 passers (default false). */
  scoreAll?: boolean;
  /** The dedup step's settings, as `run` takes them (--dedup, --reference ...); none: no dedup step. */
  dedup?: DedupConfig;
  /** The input partition of a record (its dedup scope); default 0. Offsets count per partition. */
  partitionOf?: (r: SimRecord) => number;
}

export async function emulateFilter(
  sim: Simulation,
  engine: ScoringEngine,
  target: TargetSet | undefined,
  o: EmulateOptions,
): Promise<DeliveredWindow[]> {
  const { dim, count } = sim.options;
  const decoder = await createDecoder({ format: "json", expectedDim: dim, expectedModel: target?.model });
  const offsets = new Map<number, number>();
  async function* decoded(): AsyncGenerator<DecodedRecord> {
    for (let p = 0; p < count; p++) {
      const r = sim.record(p);
      const value = encodeJsonRecord(simRecordFields(r), { embeddingEncoding: "base64" });
      const partition = o.partitionOf?.(r) ?? 0;
      const offset = offsets.get(partition) ?? 0;
      offsets.set(partition, offset + 1);
      yield await decoder.decode({
        source: { topic: o.topic, partition, offset: String(offset) },
        key: Buffer.from(r.uid),
        value,
        headers: {},
        timestamp: "0",
      });
    }
  }
  try {
    const policy = parsePolicyFlags({
      keep: o.keep,
      // biome-ignore lint/suspicious/noThenProperty: the --then flag, as the policy's parser names it
      then: o.thenKeep,
      warmup: o.warmup,
    });
    return await emulateRecords(decoded(), engine, target, { ...o, dim, policy });
  } finally {
    await decoder.close();
  }
}

/**
 * The filter's windows over decoded records, in the order given: cut, scored and decided as the
 * filter does (`clipsieve fidelity --input` runs a user's topic through it).
 */
export async function emulateRecords(
  records: AsyncIterable<DecodedRecord> | Iterable<DecodedRecord>,
  engine: ScoringEngine,
  target: TargetSet | undefined,
  o: CutSettings &
    Omit<ScorerSettings, "target"> & { policy: PolicySpec; scoreAll?: boolean; dedup?: DedupConfig },
): Promise<DeliveredWindow[]> {
  const cut = new WindowCut<DecodedRecord>(o);
  const scorer = new WindowScorer(engine, { ...o, target });
  const policy = createPolicy(o.policy);
  // The filter's dedup step, its history in memory (the filter's is committed to Kafka alongside).
  const dedup = o.dedup ? await openDeduplicator(o.dedup, engine, o.dim) : undefined;
  const windows: DeliveredWindow[] = [];
  const decide = async (window: DecodedRecord[] | undefined) => {
    if (!window) return;
    const selector = o.scoreAll ? undefined : stageTwoSelector(policy);
    const scored = await scorer.scoreAndRemember(window, selector);
    const outcomes = decideWindow(scored, policy);
    await dedup?.apply(outcomes);
    windows.push({ id: scored.plan.id, outcomes, deliveredAt: 0 });
  };
  for await (const record of records) await decide(cut.add(record));
  await decide(cut.cut());
  return windows;
}
