/**
 * What the filter reports about itself: stage timings, per-window counts, score distributions and
 * cut-offs on /metrics (the metrics are defined and named in src/common/metrics.ts), and the answer
 * of /healthz. Every metric the pipeline records is recorded here, so a dashboard and the code that
 * feeds it can be read side by side.
 */

import type { Clock } from "../common/clock.ts";
import type { PipelineMetrics } from "../common/metrics.ts";
import type { RecordOutcome } from "../common/record.ts";
import type { BrokerReachability } from "../kafka/index.ts";

/** The stages `clipsieve_window_seconds` splits a window's time into. */
export type WindowStage = "embed" | "score" | "policy" | "dedup" | "deliver" | "total";

/** Why a window was not delivered. */
export type AbortReason = "rebalance";

/** How long decoding may fail (a schema registry away) before /healthz says so. */
export const INTAKE_FAILING_UNHEALTHY_MS = 60_000;

export class Telemetry {
  readonly metrics: PipelineMetrics;
  private readonly clock: Clock;
  private lastWindowAt: number;
  private intakeFailingSince: number | undefined;
  private stoppedBy: unknown;

  constructor(metrics: PipelineMetrics, clock: Clock) {
    this.metrics = metrics;
    this.clock = clock;
    this.lastWindowAt = clock.now();
  }

  /** Run `step` and record its duration as the window stage `stage`. */
  async time<T>(stage: WindowStage, step: () => Promise<T> | T): Promise<T> {
    const t0 = this.clock.monotonic();
    const result = await step();
    this.stageSince(stage, t0);
    return result;
  }

  /** Record a stage that began at `startedMs` (monotonic) and ends now. */
  stageSince(stage: WindowStage, startedMs: number): void {
    this.metrics.windowSeconds.observe({ stage }, (this.clock.monotonic() - startedMs) / 1000);
  }

  /** A window's transaction committed: its records, decisions, scores and the cut-offs in force. */
  windowDelivered(outcomes: readonly RecordOutcome[], thresholds: Readonly<Record<string, number>>): void {
    const m = this.metrics;
    m.windows.inc({ outcome: "committed" });
    m.windowRecords.observe(outcomes.length);
    for (const o of outcomes) {
      m.recordsOut.inc({ decision: o.decision, reason: o.reason });
      if (o.decision === "dead_letter") m.deadLetters.inc({ code: o.reason });
      for (const [score, v] of Object.entries(o.scores ?? {})) m.scores.observe({ score }, v);
    }
    // The policy keys its cut-offs `<stage>:<score>` (keep:, then:, threshold:).
    for (const [key, v] of Object.entries(thresholds)) {
      const [stage, score] = key.includes(":") ? key.split(":") : ["threshold", key];
      m.thresholds.set({ score, stage }, v);
    }
    this.lastWindowAt = this.clock.now();
  }

  windowAborted(_reason: AbortReason): void {
    this.metrics.windows.inc({ outcome: "aborted_rebalance" });
  }

  undelivered(records: number): void {
    this.metrics.undelivered.set(records);
  }

  provider(name: string): void {
    this.metrics.provider.set({ provider: name }, 1);
  }

  brokerReachable(reachable: boolean): void {
    this.metrics.brokerReachable.set(reachable ? 1 : 0);
  }

  /** Decoding a batch failed (bad records never throw: the schema registry is away). */
  intakeFailed(): void {
    this.intakeFailingSince ??= this.clock.now();
  }

  intakeOk(): void {
    this.intakeFailingSince = undefined;
  }

  /** The pipeline stopped on this error. */
  stopped(err: unknown): void {
    this.stoppedBy ??= err;
  }

  /** /healthz: unhealthy when stopped, when Kafka is unreachable, or when decoding fails for a minute. */
  health(broker: BrokerReachability): { ok: boolean; detail: string } {
    const now = this.clock.now();
    if (this.stoppedBy !== undefined) return { ok: false, detail: `stopped: ${String(this.stoppedBy)}` };
    if (!broker.reachable) {
      return {
        ok: false,
        detail: `Kafka unreachable for ${Math.round((now - broker.since) / 1000)} s (${broker.detail}); reconnecting`,
      };
    }
    const since = this.intakeFailingSince;
    if (since !== undefined && now - since > INTAKE_FAILING_UNHEALTHY_MS) {
      return {
        ok: false,
        detail: `decoding has failed for ${Math.round((now - since) / 1000)} s (schema registry?)`,
      };
    }
    return { ok: true, detail: `last window ${now - this.lastWindowAt} ms ago` };
  }
}
