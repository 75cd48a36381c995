/**
 * Scores records window by window exactly as `run` does (src/pipeline/pipeline.ts): the window's good
 * records then the negative bank form the pool (planWindow), the K draws come from the window's seed,
 * s-CLIPLoss in onnxruntime, NormSim against the target set, and the window's scored rows join the bank
 * afterwards. Without Kafka outputs: `calibrate` feeds the scores to a policy.
 */
import type { DecodedRecord } from "../decode/types.ts";
import type { ScoreRow } from "../policy/index.ts";
import type { ScoringEngine } from "../score/engine.ts";
import type { TargetSet } from "../score/types.ts";
import { scorePoolRows } from "../score/window-scores.ts";
import { NegativeBank } from "../window/bank.ts";
import { planWindow, type WindowPlan } from "../window/window.ts";

export interface WindowScoring {
  dim: number;
  bankSize: number;
  draws: number;
  batchSize: number;
  tau: number;
  seed: number;
  target?: TargetSet;
}

export interface ScoredWindow {
  plan: WindowPlan;
  /** One row per scored record (`plan.scoredIndex` order); bad records are not scored. */
  rows: ScoreRow[];
}

export interface WindowScorer {
  score(records: DecodedRecord[]): Promise<ScoredWindow>;
}

export function createWindowScorer(engine: ScoringEngine, opts: WindowScoring): WindowScorer {
  const bank = opts.bankSize > 0 ? new NegativeBank(opts.bankSize, opts.dim) : undefined;
  return {
    async score(records) {
      const plan = planWindow(records, bank, {
        dim: opts.dim,
        baseSeed: opts.seed,
        draws: opts.draws,
        batchSize: opts.batchSize,
        tau: opts.tau,
      });
      const n = plan.pool.scoredRows;
      const rows = await scorePoolRows(engine, plan.pool, plan.draws, opts.tau, opts.target);
      bank?.push(
        plan.pool.image.subarray(0, n * opts.dim),
        plan.pool.text.subarray(0, n * opts.dim),
        plan.scoredIndex.map((i) => plan.records[i]!.source),
      );
      return { plan, rows };
    },
  };
}
