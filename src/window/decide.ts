/**
 * A scored window, decided: the policy decides the scored rows in pool order, and each decision goes
 * back to its record, with the scores it was not given and why; records that were not scored (a stage
 * marked them bad) go to the dead-letter topic with their error code. One outcome per record of the
 * window, in the window's order.
 */
import type { RecordOutcome } from "../common/record.ts";
import type { Policy } from "../policy/index.ts";
import type { ScoredWindow } from "./scorer.ts";

export function decideWindow({ plan, rows, notComputed }: ScoredWindow, policy: Policy): RecordOutcome[] {
  const outcomes: RecordOutcome[] = plan.records.map((record) => ({
    record,
    decision: "dead_letter",
    reason: record.failure?.code ?? "unknown",
  }));
  if (rows.length === 0) return outcomes;
  const decisions = policy.decide(rows);
  plan.scoredIndex.forEach((ri, row) => {
    const d = decisions[row];
    const skipped = notComputed?.[row];
    outcomes[ri] = {
      record: plan.records[ri],
      decision: d.decision,
      reason: d.reason,
      rule: d.rule ?? undefined,
      scores: rows[row] as unknown as Record<string, number>,
      ...(skipped ? { notComputed: skipped as Readonly<Record<string, string>> } : {}),
      thresholds: d.thresholds,
    };
  });
  return outcomes;
}
