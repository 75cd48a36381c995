/**
 * Fault injection for tests, shared by both window producers: hold every window transaction
 * `CLIPSIEVE_FAULT_COMMIT_DELAY_MS` before its commit (at most `CLIPSIEVE_FAULT_COMMIT_DELAY_WINDOWS`
 * windows), as a slow broker or a paused process does, so that rebalances reliably find a transaction
 * in flight (and a frozen process wakes up inside one). The log line is what the crash tests wait on.
 */
import type { Logger } from "../common/logger.ts";

const FAULT_COMMIT_DELAY_MS = Number(process.env.CLIPSIEVE_FAULT_COMMIT_DELAY_MS ?? 0);
let faultHoldsLeft = Number(process.env.CLIPSIEVE_FAULT_COMMIT_DELAY_WINDOWS ?? Number.POSITIVE_INFINITY);

export async function holdWindowTransactionForTests(logger: Logger): Promise<void> {
  if (FAULT_COMMIT_DELAY_MS <= 0 || faultHoldsLeft <= 0) return;
  faultHoldsLeft--;
  logger.info({ ms: FAULT_COMMIT_DELAY_MS }, "fault injection: holding the window transaction");
  await new Promise((r) => setTimeout(r, FAULT_COMMIT_DELAY_MS));
}
