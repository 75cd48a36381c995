/**
 * The three steps every window passes in the filter, each in a `concatMap` of its own so that they
 * overlap across windows (window n + 1 is embedded and scored while window n's transaction commits):
 *
 *   embed    records without embeddings get them (only with --model-dir)
 *   score    drop records of an older generation, score (../window/scorer.ts; the costly stage-2
 *            score for the policy's stage-1 passers only, ../window/stage-two.ts, unless scoreAll),
 *            decide (../window/decide.ts), reject near-copies (../dedup/, with --dedup or
 *            --reference), build the outputs and the policy state, remember the bank rows
 *   deliver  one transaction (delivery-retry.ts), unless a rebalance made the window stale
 *
 * A window a rebalance makes stale is never delivered: its records are re-read by their partition's
 * owner (generation-guard.ts).
 */
import type { Clock } from "../common/clock.ts";
import type { Logger } from "../common/logger.ts";
import type { DecodedRecord, RecordOutcome } from "../common/record.ts";
import type { Deduplicator } from "../dedup/index.ts";
import type { EmbedStage } from "../embed/index.ts";
import { createPolicy, type Policy } from "../policy/index.ts";
import type { KafkaSink } from "../sink/kafka-sink.ts";
import { buildWindowOutputs, nextOffsets, type OutMessage } from "../sink/outputs.ts";
import type { KafkaSource } from "../source/kafka-source.ts";
import type { FormedWindow } from "../window/cut.ts";
import { decideWindow } from "../window/decide.ts";
import type { ScoredWindow, WindowScorer } from "../window/scorer.ts";
import { stageTwoSelector } from "../window/stage-two.ts";
import type { Backpressure } from "./backpressure.ts";
import type { RangeTracker } from "./bounds.ts";
import { deliverWithRetry } from "./delivery-retry.ts";
import type { GenerationGuard } from "./generation-guard.ts";
import type { PipelineHooks } from "./pipeline.ts";
import { stateKey, stateMessage } from "./policy-state.ts";
import type { PipelineSettings } from "./settings.ts";
import type { Telemetry } from "./telemetry.ts";

/** A fetched record and the consumer group generation it was fetched in. */
export interface Tagged {
  record: DecodedRecord;
  generation: number;
}

/** A window after scoring and deciding, waiting for its transaction. */
export interface DecidedWindow {
  /** Records the window was cut with (live or not): what it releases from the backpressure. */
  size: number;
  live: DecodedRecord[];
  generation: number;
  /** Monotonic ms when scoring began. */
  started: number;
  scored?: ScoredWindow;
  outcomes?: RecordOutcome[];
  messages?: Map<string, OutMessage[]>;
}

export interface WindowStepsContext {
  settings: PipelineSettings;
  /** Where the policy state is written, and under which key. */
  state: { topic: string; group: string; instanceId: string };
  /** The policy in force; replaced when a window is aborted after it was decided. */
  policy: { current: Policy };
  scorer: WindowScorer;
  /** The dedup step after the policy (--dedup, --reference), and the topic its history goes to. */
  dedup?: { step: Deduplicator; historyTopic: string };
  embedStage?: EmbedStage;
  guard: GenerationGuard;
  backpressure: Backpressure;
  telemetry: Telemetry;
  sink: KafkaSink;
  source: KafkaSource;
  range?: RangeTracker;
  hooks: PipelineHooks;
  logger: Logger;
  clock: Clock;
  stopping(): boolean;
  /** Called after every window, delivered or not (a bounded run may be done). */
  afterWindow(): void;
}

export function createWindowSteps(ctx: WindowStepsContext) {
  const { guard, telemetry, logger, clock, range, policy } = ctx;

  const embed = async (w: FormedWindow<Tagged>): Promise<FormedWindow<Tagged>> => {
    const stage = ctx.embedStage;
    if (stage) await telemetry.time("embed", () => stage.embed(w.items.map((t) => t.record)));
    return w;
  };

  const score = async ({ items, recorded }: FormedWindow<Tagged>): Promise<DecidedWindow> => {
    const generation = guard.generation;
    // Records fetched before the latest rebalance are re-read by whoever owns their partition now.
    const live = items.filter((t) => t.generation === generation).map((t) => t.record);
    const decided: DecidedWindow = { size: items.length, live, generation, started: clock.monotonic() };
    const dropped = items.length - live.length;
    if (dropped > 0) {
      range?.dropped(items.filter((t) => t.generation !== generation).map((t) => t.record.source));
      telemetry.windowAborted("rebalance");
      logger.info({ dropped }, "dropped records fetched before a rebalance; they will be re-read");
    }
    if (live.length === 0) return decided;
    // The selector reads the policy as it stands now; this window is decided by it before any other.
    const selector = ctx.settings.scoreAll ? undefined : stageTwoSelector(policy.current);
    const scored = await telemetry.time("score", () => ctx.scorer.score(live, { recorded, selector }));
    const before = policy.current.snapshot();
    const outcomes = await telemetry.time("policy", () => decideWindow(scored, policy.current));
    // Rejects the copies the policy accepted; its history is read back after a rebalance (generation).
    const deduped = ctx.dedup
      ? await telemetry.time("dedup", () => ctx.dedup?.step.apply(outcomes, generation))
      : undefined;
    if (!guard.isCurrent(generation)) {
      // A rebalance arrived while scoring: this window's partitions may belong to another member now.
      policy.current = createPolicy(ctx.settings.policy, { state: before });
      logger.info(
        { windowId: scored.plan.id },
        "window aborted: rebalance during scoring; its records will be re-read",
      );
      return decided;
    }
    const { plan } = scored;
    const messages = buildWindowOutputs(
      outcomes,
      ctx.settings.topics,
      { windowId: plan.id, seed: plan.seed, policyVersion: policy.current.version },
      plan.manifest,
    );
    if (ctx.dedup && deduped && deduped.messages.length > 0)
      messages.set(ctx.dedup.historyTopic, deduped.messages);
    messages.set(ctx.state.topic, [
      stateMessage(stateKey(ctx.state.group, ctx.state.instanceId), policy.current.snapshot()),
    ]);
    ctx.scorer.remember(scored);
    return Object.assign(decided, { scored, outcomes, messages });
  };

  /**
   * The window's transaction. A window whose generation is stale (a rebalance came after it was
   * scored) is not delivered: its records are re-read by their partition's owner. Its scores stay in
   * the policy's sketch, where they will count a second time: a small statistical effect, never a
   * record delivered twice.
   */
  const deliver = async (d: DecidedWindow): Promise<void> => {
    let delivered = false;
    try {
      const { scored, outcomes, messages } = d;
      if (!scored || !outcomes || !messages) return;
      const { plan } = scored;
      const aborted = (when: string) => {
        telemetry.windowAborted("rebalance");
        logger.info({ windowId: plan.id }, `window aborted: rebalance ${when}; its records will be re-read`);
      };
      const rebalanced = () => !guard.isCurrent(d.generation);
      if (rebalanced()) return aborted("before delivery");
      const tDeliver = clock.monotonic();
      const committed = await guard.track(
        deliverWithRetry(
          () =>
            ctx.sink.deliver(
              { messages, offsets: nextOffsets(plan.records), generation: d.generation },
              ctx.source,
            ),
          { logger, clock, rebalanced, stopping: ctx.stopping },
        ),
      );
      if (!committed) return aborted("during delivery");
      telemetry.stageSince("deliver", tDeliver);
      telemetry.windowDelivered(outcomes, policy.current.thresholds());
      delivered = true;
      range?.deliveredRecords(d.live.map((r) => r.source));
      ctx.hooks.onWindowDelivered?.({ id: plan.id, seed: plan.seed, outcomes, deliveredAt: clock.now() });
      telemetry.stageSince("total", d.started);
      logger.debug({ windowId: plan.id, records: d.live.length }, "window delivered");
    } finally {
      // Not delivered (aborted by a rebalance): those records will be taken again.
      if (!delivered && range && d.live.length > 0) range.dropped(d.live.map((r) => r.source));
      ctx.backpressure.released(d.size);
      ctx.afterWindow();
    }
  };

  return { embed, score, deliver };
}
