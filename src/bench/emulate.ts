/**
 * The filter's window -> score -> policy -> bank loop without Kafka, for studies that need many runs
 * and for trying window designs. It calls the modules the pipeline calls, in the pipeline's order
 * (decoder, planWindow, engine.sClipLoss + engine.normSim, policy.decide, bank.push), on records with
 * the coordinates they have on the study's input topic (one partition, offsets 0..N-1), so window ids,
 * seeds and draws are the filter's. The fidelity study runs the filter itself through Kafka beside it
 * and stops unless the two decide every record alike. If the pipeline's window loop changes, this
 * file must follow it.
 */
import { createDecoder } from "../decode/decoder.ts";
import { encodeJsonRecord } from "../decode/encode.ts";
import type { DecodedRecord } from "../decode/types.ts";
import { createPolicy, parsePolicyFlags, type ScoreRow } from "../policy/index.ts";
import type { ScoringEngine } from "../score/engine.ts";
import type { TargetSet } from "../score/types.ts";
import type { Simulation } from "../simulate/generator.ts";
import type { RecordOutcome } from "../sink/outputs.ts";
import { NegativeBank } from "../window/bank.ts";
import { planWindow } from "../window/window.ts";
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
  thenKeep: string;
  warmup: number;
  /**
   * As the filter does: while the bank is not yet full, cut the window at windowSize plus the bank's
   * free rows, so every pool, the first included, has windowSize + bankSize rows. False: every
   * window has windowSize records (how the filter cut windows before).
   */
  primeBank: boolean;
}

export async function emulateFilter(
  sim: Simulation,
  engine: ScoringEngine,
  target: TargetSet,
  o: EmulateOptions,
): Promise<DeliveredWindow[]> {
  const { dim, count } = sim.options;
  const decoder = await createDecoder({ format: "json", expectedDim: dim, expectedModel: target.model });
  const bank = o.bankSize > 0 ? new NegativeBank(o.bankSize, dim) : undefined;
  // biome-ignore lint/suspicious/noThenProperty: the --then flag, as the policy's parser names it
  const policy = createPolicy(parsePolicyFlags({ keep: o.keep, then: o.thenKeep, warmup: o.warmup }));
  const windows: DeliveredWindow[] = [];
  try {
    for (let start = 0; start < count; ) {
      const free = bank ? o.bankSize - bank.size : 0;
      const size = Math.min(count - start, o.windowSize + (o.primeBank ? free : 0));
      const records: DecodedRecord[] = [];
      for (let p = start; p < start + size; p++) {
        const r = sim.record(p);
        const value = encodeJsonRecord(
          {
            uid: r.uid,
            text: r.text,
            url: r.url,
            model: r.model,
            imageEmbedding: r.imageEmbedding,
            textEmbedding: r.textEmbedding,
          },
          { embeddingEncoding: "base64" },
        );
        records.push(
          await decoder.decode({
            source: { topic: o.topic, partition: 0, offset: String(p) },
            key: Buffer.from(r.uid),
            value,
            headers: {},
            timestamp: "0",
          }),
        );
      }
      start += size;
      const plan = planWindow(records, bank, {
        dim,
        baseSeed: o.seed,
        draws: o.draws,
        batchSize: o.batchSize,
        tau: o.tau,
      });
      const n = plan.pool.scoredRows;
      const loss = await engine.sClipLoss(plan.pool, plan.draws, o.tau);
      const ns = await engine.normSim(plan.pool.image.subarray(0, n * dim), n, target);
      const rows = plan.scoredIndex.map((_, row) => ({
        clip_score: loss.clipScore[row],
        s_clip_loss: loss.sClipLoss[row],
        normsim_2: ns.normsim2[row],
        normsim_inf: ns.normsimInf[row],
      }));
      const decisions = policy.decide(rows as ScoreRow[]);
      const outcomes: RecordOutcome[] = plan.scoredIndex.map((ri, row) => ({
        record: plan.records[ri],
        decision: decisions[row].decision,
        reason: decisions[row].reason,
        scores: rows[row],
      }));
      bank?.push(
        plan.pool.image.subarray(0, n * dim),
        plan.pool.text.subarray(0, n * dim),
        plan.scoredIndex.map((i) => plan.records[i].source),
      );
      windows.push({ id: plan.id, outcomes, deliveredAt: 0 });
    }
  } finally {
    await decoder.close();
  }
  return windows;
}
