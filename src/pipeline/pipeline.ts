/**
 * The streaming filter, assembled: source -> decode -> window -> score -> policy -> sink.
 *
 * `buildPipeline(config)` returns `{ start, close, done }`; only the command's entry point touches
 * signals and exit codes. Shutdown order: stop intake, cut the open window and deliver (drain) what is
 * queued, or abort it when draining takes too long, then close the producer, consumer and engine.
 *
 * Flow: fetched batches are decoded at once (cheap, and bad records are marked, not thrown) and pushed
 * into an rxjs stream that cuts windows by size or linger time (`cutWindows`). Each window then passes
 * three serial steps (`concatMap`), each working on its own window at the same time: embed (records
 * without embeddings), score + decide (onnxruntime, on its own threads), and deliver (one Kafka
 * transaction). So window n + 1 is scored while window n's transaction commits. The source waits while
 * more than `maxQueuedWindows` windows of records are fetched but not delivered: explicit backpressure
 * that bounds memory at any input rate.
 */
import { concatMap, from, lastValueFrom, Observable, type OperatorFunction, Subject } from "rxjs";
import { ClipsieveError } from "../common/errors.ts";
import type { Logger } from "../common/logger.ts";
import { createPipelineMetrics, type PipelineMetrics, serveMetrics } from "../common/metrics.ts";
import { createDecoder } from "../decode/decoder.ts";
import type { DecodedRecord } from "../decode/types.ts";
import { checkEmbedTeacher, createEmbedStage, type EmbedStage, embedOptionsFromRun } from "../embed/index.ts";
import { createKafkaClient, kafkaErrorKind } from "../kafka/index.ts";
import {
  createPolicy,
  type Policy,
  type PolicyState,
  parsePolicyFlags,
  type ScoreRow,
} from "../policy/index.ts";
import { createScoringEngine, type ScoringEngine } from "../score/engine.ts";
import { loadTarget } from "../score/target-set.ts";
import type { TargetSet } from "../score/types.ts";
import { scorePoolRows } from "../score/window-scores.ts";
import { createKafkaSink } from "../sink/kafka-sink.ts";
import {
  buildWindowOutputs,
  nextOffsets,
  type OutMessage,
  type OutputTopics,
  type RecordOutcome,
} from "../sink/outputs.ts";
import { createKafkaSource } from "../source/kafka-source.ts";
import { NegativeBank } from "../window/bank.ts";
import { ReproduceWindower } from "../window/reproduce.ts";
import { planWindow, type RecordedWindow, type WindowManifest, type WindowPlan } from "../window/window.ts";
import type { RangeTracker } from "./bounds.ts";
import type { RunConfig } from "./config.ts";
import { readPolicyFile, readPolicyState, stateKey, stateMessage } from "./policy-state.ts";

export interface Pipeline {
  start(): Promise<void>;
  /** Stop intake, drain (or abort after `drainTimeoutMs`) and release everything. */
  close(drainTimeoutMs?: number): Promise<void>;
  /** Resolves when the pipeline stopped; rejects with the error that stopped it. */
  done: Promise<void>;
  metrics: PipelineMetrics;
}

/** Observers of a running pipeline (the demo's progress line, benchmarks, tests). */
export interface PipelineHooks {
  /** Called after a window's transaction committed, with every record's outcome. */
  onWindowDelivered?(window: {
    id: string;
    seed: number;
    outcomes: readonly RecordOutcome[];
    deliveredAt: number;
  }): void;
}

/** A bounded run (`replay`): the input range and, optionally, the windows to re-form. */
export interface PipelineRunOptions {
  hooks?: PipelineHooks;
  /** Stop by itself once this range is delivered (`done` then resolves). */
  range?: RangeTracker;
  /** Re-form these recorded windows instead of cutting new ones (`replay --reproduce`). */
  reproduce?: readonly WindowManifest[];
}

interface Tagged {
  record: DecodedRecord;
  generation: number;
}

/** A window after scoring and deciding, waiting for its transaction. */
interface DecidedWindow {
  /** Records the window was cut with (live or not): what it releases from the backpressure. */
  size: number;
  live: DecodedRecord[];
  generation: number;
  started: number;
  plan?: WindowPlan;
  outcomes?: RecordOutcome[];
  messages?: Map<string, OutMessage[]>;
}

/** A cut window: its records, and (when re-formed) the recorded id, seed and bank rows. */
interface CutWindow {
  batch: Tagged[];
  recorded?: RecordedWindow;
}

export async function buildPipeline(
  config: RunConfig,
  logger: Logger,
  metrics = createPipelineMetrics(),
  options: PipelineRunOptions = {},
): Promise<Pipeline> {
  const { hooks = {}, range } = options;
  const kafka = createKafkaClient({
    brokers: config.brokers,
    clientId: `clipsieve-${config.instanceId}`,
    logger,
    adapter: config.kafkaClient,
  });

  const target: TargetSet | undefined = config.target ? await loadTarget(config.target) : undefined;
  // With --model-dir the embed stage computes the embeddings records lack; its teacher sets the default D.
  const embedStage: EmbedStage | undefined = config.modelDir
    ? await createEmbedStage(embedOptionsFromRun({ ...config, modelDir: config.modelDir }), { logger })
    : undefined;
  const dim = config.dim ?? target?.dim ?? embedStage?.dim ?? 768;
  if (target && target.dim !== dim) {
    throw new ClipsieveError(
      "TARGET_MISMATCH",
      `Target set ${config.target} has D=${target.dim}, but --dim is ${dim}.`,
    );
  }
  const model =
    config.model ?? (target && target.model !== "unknown" ? target.model : undefined) ?? embedStage?.model;
  if (embedStage) checkEmbedTeacher(embedStage, { dim, model, modelDir: config.modelDir as string });
  const policySpec = parsePolicyFlags({
    keep: config.keep,
    // biome-ignore lint/suspicious/noThenProperty: the value of the --then flag, as the policy's parser names it
    then: config.thenKeep,
    threshold: config.threshold,
    warmup: config.warmup,
    warmupMode: config.warmupMode,
  });
  const policyScores = [
    policySpec.keep?.score,
    policySpec.thenKeep?.score,
    ...policySpec.thresholds.map((t) => t.score),
  ];
  const needsNormSim = policyScores.some((s) => s?.startsWith("normsim"));
  if (needsNormSim && !target) {
    throw new ClipsieveError(
      "CONFIG_INVALID",
      "The policy uses a NormSim score, which needs --target <file>.",
    );
  }

  const engine: ScoringEngine = await createScoringEngine({
    device: config.device,
    logger,
    threads: config.threads,
  });
  metrics.provider.set({ provider: engine.provider }, 1);
  const decoder = await createDecoder(
    {
      format: config.format,
      schemaRegistryUrl: config.schemaRegistry,
      expectedDim: dim,
      expectedModel: model,
      embeddingsOptional: embedStage !== undefined,
    },
    { logger },
  );

  // Made in start(), after the producer has fenced any earlier incarnation of this instance, so the
  // state read is the one committed with the last delivered window.
  let policy!: Policy;

  const bank = config.bankSize > 0 ? new NegativeBank(config.bankSize, dim) : undefined;
  const topics: OutputTopics = {
    accepted: config.accepted,
    rejected: config.rejected,
    deadLetter: config.deadLetter,
    scores: config.scores,
    windows: config.windowsTopic,
  };
  const sink = createKafkaSink({
    kafka,
    delivery: config.delivery,
    groupId: config.group,
    transactionalId: `clipsieve-${config.group}-${config.instanceId}`,
    transactionTimeoutMs: config.transactionTimeoutMs,
    logger,
  });

  // ---- intake and backpressure ----
  const reforming = { waiting: 0 };
  const records$ = new Subject<Tagged>();
  let undelivered = 0;
  // A primed first window (below) holds windowSize + bankSize records: intake must not pause before.
  const maxUndelivered = Math.max(
    config.maxQueuedWindows * config.windowSize,
    config.windowSize + config.bankSize,
  );
  // Records in windows cut but not yet pushed to the bank: the bank's rows to come.
  let cutNotBanked = 0;
  /**
   * While the bank is not full, a window takes windowSize records plus the bank's free rows, so that
   * every pool has windowSize + bankSize rows from the first window on. A smaller pool gives every
   * score a smaller normaliser, and the policy's sketch, which keeps all it has seen, would judge the
   * rest of the stream against those inflated scores.
   */
  const windowLimit = () =>
    config.windowSize + (bank ? Math.max(0, bank.capacity - bank.size - cutNotBanked) : 0);
  let roomWaiters: (() => void)[] = [];
  const releaseRoom = () => {
    const w = roomWaiters;
    roomWaiters = [];
    for (const f of w) f();
  };
  let currentGeneration = 0;
  // Set before a (re)join until the join completes: no new window transaction may start meanwhile.
  let revoking = false;
  // The transaction of the window being delivered, which a rejoin must wait for.
  let inFlightDelivery: Promise<boolean> | undefined;
  let stopping = false;
  let lastWindowAt = Date.now();
  let lastError: unknown;
  let intakeFailingSince: number | undefined;

  const source = createKafkaSource({
    kafka,
    groupId: config.group,
    topic: config.input,
    logger,
    metrics,
    sessionTimeoutMs: config.sessionTimeoutMs,
    onRebalance: (gen) => {
      currentGeneration = gen;
      revoking = false;
    },
    beforeRejoin: async () => {
      // From here on, no window of this generation starts a transaction: its partitions may move.
      revoking = true;
      releaseRoom();
      const t0 = performance.now();
      const waited = inFlightDelivery !== undefined;
      await inFlightDelivery?.catch(() => undefined);
      await sink.settle();
      if (waited)
        logger.info(
          { ms: Math.round(performance.now() - t0) },
          "rebalance: the window transaction in flight finished before rejoining",
        );
    },
    onCrash: (err) => void fail(err),
    onFetched: (partition, lastOffset) => {
      range?.fetched(partition, lastOffset);
      checkFinished();
    },
    // At most a window's worth at a time, with a wait for room before each, so that at most
    // maxQueuedWindows + 1 windows of records are in memory however large a fetched batch is.
    maxRecordsPerCall: config.windowSize,
    onRecords: async (allRaws, generation, heartbeat) => {
      const raws = range
        ? allRaws.filter((r) => range.inRange(r.source.partition, r.source.offset))
        : allRaws;
      if (raws.length === 0) return;
      // Records a re-formed window still waits for do not count: holding back the fetch would
      // starve the very window they wait on (its other members are in partitions not yet read).
      while (
        undelivered - reforming.waiting >= maxUndelivered &&
        !stopping &&
        generation === currentGeneration
      ) {
        await new Promise<void>((resolve) => {
          roomWaiters.push(resolve);
          setTimeout(resolve, 1000);
        });
        await heartbeat();
      }
      let decoded: DecodedRecord[];
      try {
        decoded = await decoder.decodeBatch(raws);
        intakeFailingSince = undefined;
      } catch (err) {
        // The schema registry is down (bad records never throw): kafkajs hands the batch again; after
        // a minute of this, /healthz says so, so an orchestrator can act.
        intakeFailingSince ??= Date.now();
        throw err;
      }
      range?.taken(raws[0].source.partition, raws.length);
      undelivered += decoded.length;
      metrics.undelivered.set(undelivered);
      for (const record of decoded) records$.next({ record, generation });
    },
  });

  // ---- one window ----
  const embedWindow = async (w: CutWindow): Promise<CutWindow> => {
    if (!embedStage) return w;
    const tEmbed = performance.now();
    await embedStage.embed(w.batch.map((t) => t.record));
    metrics.windowSeconds.observe({ stage: "embed" }, (performance.now() - tEmbed) / 1000);
    return w;
  };

  /**
   * Stage one of a window: plan, score, decide, build its outputs, and add its rows to the bank.
   * Stage two (deliverWindow) runs one window behind, so that scoring window n + 1 overlaps with the
   * Kafka transaction of window n.
   */
  const scoreWindow = async ({ batch, recorded }: CutWindow): Promise<DecidedWindow> => {
    const started = performance.now();
    // Records fetched before the latest rebalance are re-read by whoever owns their partition now.
    const live = batch.filter((t) => t.generation === currentGeneration).map((t) => t.record);
    const dropped = batch.length - live.length;
    const decided: DecidedWindow = { size: batch.length, live, generation: currentGeneration, started };
    if (dropped > 0) {
      range?.dropped(batch.filter((t) => t.generation !== currentGeneration).map((t) => t.record.source));
      metrics.windows.inc({ outcome: "aborted_rebalance" });
      logger.info({ dropped }, "dropped records fetched before a rebalance; they will be re-read");
    }
    try {
      if (live.length === 0) return decided;
      const plan = planWindow(
        live,
        bank,
        { dim, baseSeed: config.seed, draws: config.draws, batchSize: config.batchSize, tau: config.tau },
        recorded,
      );
      const tScore = performance.now();
      const scores = await scorePoolRows(engine, plan.pool, plan.draws, config.tau, target);
      metrics.windowSeconds.observe({ stage: "score" }, (performance.now() - tScore) / 1000);

      const before = policy.snapshot();
      const tPolicy = performance.now();
      const outcomes = decideWindow(plan, scores, policy);
      metrics.windowSeconds.observe({ stage: "policy" }, (performance.now() - tPolicy) / 1000);
      if (decided.generation !== currentGeneration || revoking) {
        // A rebalance arrived while scoring: this window's partitions may belong to another member now.
        policy = createPolicy(policySpec, { state: before });
        logger.info(
          { windowId: plan.id },
          "window aborted: rebalance during scoring; its records will be re-read",
        );
        return decided;
      }
      const messages = buildWindowOutputs(
        outcomes,
        topics,
        { windowId: plan.id, seed: plan.seed, policyVersion: policy.version },
        plan.manifest,
      );
      messages.set(config.stateTopic, [
        stateMessage(stateKey(config.group, config.instanceId), policy.snapshot()),
      ]);
      if (bank) {
        const n = plan.pool.scoredRows;
        bank.push(
          plan.pool.image.subarray(0, n * dim),
          plan.pool.text.subarray(0, n * dim),
          plan.scoredIndex.map((i) => plan.records[i].source),
        );
      }
      Object.assign(decided, { plan, outcomes, messages });
      return decided;
    } finally {
      if (bank && !recorded) cutNotBanked -= batch.length;
    }
  };

  /**
   * Stage two: the window's transaction. A window whose generation is stale (a rebalance came after
   * it was scored) is not delivered: its records are re-read by their partition's owner. Its scores
   * stay in the policy's sketch, where they will count a second time: a small statistical effect,
   * never a record delivered twice.
   */
  const deliverWindow = async (d: DecidedWindow): Promise<void> => {
    let delivered = false;
    try {
      const { plan, outcomes, messages } = d;
      if (!plan || !outcomes || !messages) return;
      const rebalanced = () => d.generation !== currentGeneration || revoking;
      if (rebalanced()) {
        metrics.windows.inc({ outcome: "aborted_rebalance" });
        logger.info(
          { windowId: plan.id },
          "window aborted: rebalance before delivery; its records will be re-read",
        );
        return;
      }
      const tDeliver = performance.now();
      inFlightDelivery = deliverWithRetry(
        () =>
          sink.deliver({ messages, offsets: nextOffsets(plan.records), generation: d.generation }, source),
        logger,
        rebalanced,
        () => stopping,
      );
      const committed = await inFlightDelivery.finally(() => {
        inFlightDelivery = undefined;
      });
      if (!committed) {
        metrics.windows.inc({ outcome: "aborted_rebalance" });
        logger.info(
          { windowId: plan.id },
          "window aborted: rebalance during delivery; its records will be re-read",
        );
        return;
      }
      metrics.windowSeconds.observe({ stage: "deliver" }, (performance.now() - tDeliver) / 1000);
      recordWindowMetrics(metrics, outcomes, policy, plan);
      delivered = true;
      range?.deliveredRecords(d.live.map((r) => r.source));
      hooks.onWindowDelivered?.({ id: plan.id, seed: plan.seed, outcomes, deliveredAt: Date.now() });
      metrics.windowSeconds.observe({ stage: "total" }, (performance.now() - d.started) / 1000);
      lastWindowAt = Date.now();
      logger.debug({ windowId: plan.id, records: d.live.length }, "window delivered");
    } finally {
      // Not delivered (aborted by a rebalance): those records will be taken again.
      if (!delivered && range && d.live.length > 0) range.dropped(d.live.map((r) => r.source));
      undelivered -= d.size;
      metrics.undelivered.set(undelivered);
      releaseRoom();
      checkFinished();
    }
  };

  const windows$ = records$.pipe(
    options.reproduce
      ? reformWindows(options.reproduce, logger, reforming)
      : cutWindows(config.lingerMs, windowLimit, (n) => {
          if (bank) cutNotBanked += n;
        }),
    // A separate step, so that embedding the next window overlaps with scoring this one.
    concatMap((w) => from(embedWindow(w))),
    concatMap((w) => from(scoreWindow(w))),
    concatMap((d) => from(deliverWindow(d))),
  );

  // A bounded run ends by itself once its whole range is delivered.
  let finishing = false;
  const checkFinished = () => {
    if (!range || finishing || closed || !range.isDone()) return;
    finishing = true;
    logger.info({ delivered: range.delivered }, "the range is delivered; stopping");
    void close();
  };

  let resolveDone!: () => void;
  let rejectDone!: (err: unknown) => void;
  const done = new Promise<void>((resolve, reject) => {
    resolveDone = resolve;
    rejectDone = reject;
  });
  // A rejection nobody awaits yet must not crash the process before `close` handles it.
  done.catch(() => {});
  let processing: Promise<unknown> | undefined;
  let server: Awaited<ReturnType<typeof serveMetrics>> | undefined;
  let closed = false;
  let reachabilityTimer: NodeJS.Timeout | undefined;

  const fail = async (err: unknown) => {
    if (!lastError) {
      lastError = err;
      logger.error({ err }, "the pipeline stopped on an error");
    }
    await close(0);
  };

  const close = async (drainTimeoutMs = 30_000) => {
    if (closed) return done;
    closed = true;
    stopping = true;
    releaseRoom();
    // Stop intake first: no more fetches. Then flush the open window through the stream.
    try {
      source.pause();
    } catch {
      // not running yet: nothing to pause
    }
    records$.complete();
    const drained = await Promise.race([
      (processing ?? Promise.resolve()).then(
        () => true,
        () => true,
      ),
      new Promise<boolean>((r) => setTimeout(() => r(false), drainTimeoutMs).unref()),
    ]);
    if (!drained)
      logger.warn("drain timed out; the window in flight is abandoned (its transaction never commits)");
    await source.stop().catch((err: unknown) => logger.warn({ err }, "consumer disconnect failed"));
    await sink.close().catch((err: unknown) => logger.warn({ err }, "producer disconnect failed"));
    await decoder.close();
    await embedStage?.close();
    await engine.close();
    clearInterval(reachabilityTimer);
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    if (lastError) rejectDone(lastError);
    else resolveDone();
    return done;
  };

  return {
    metrics,
    done,
    close,
    async start() {
      if (config.metricsPort !== undefined) {
        server = await serveMetrics(metrics, config.metricsPort, () => {
          const quietMs = Date.now() - lastWindowAt;
          if (lastError) return { ok: false, detail: `stopped: ${String(lastError)}` };
          const broker = kafka.reachability;
          if (!broker.reachable) {
            return {
              ok: false,
              detail: `Kafka unreachable for ${Math.round((Date.now() - broker.since) / 1000)} s (${broker.detail}); reconnecting`,
            };
          }
          if (intakeFailingSince !== undefined && Date.now() - intakeFailingSince > 60_000) {
            return {
              ok: false,
              detail: `decoding has failed for ${Math.round((Date.now() - intakeFailingSince) / 1000)} s (schema registry?)`,
            };
          }
          return { ok: true, detail: `last window ${quietMs} ms ago` };
        });
      }
      metrics.brokerReachable.set(1);
      reachabilityTimer = setInterval(
        () => metrics.brokerReachable.set(kafka.reachability.reachable ? 1 : 0),
        1000,
      ).unref();
      try {
        await sink.connect();
        const restored: PolicyState | undefined =
          (await readPolicyState(kafka, config, logger)) ??
          (config.policyFile ? readPolicyFile(config.policyFile) : undefined);
        policy = createPolicy(policySpec, { state: restored });
        logger.info(
          {
            policyVersion: policy.version,
            restored: restored !== undefined,
            thresholds: policy.thresholds(),
          },
          restored ? "policy starts from a saved state" : "policy starts cold",
        );
        processing = lastValueFrom(windows$, { defaultValue: undefined }).catch((err: unknown) => fail(err));
        await source.start();
      } catch (err) {
        // A filter that cannot start must exit (and look unhealthy meanwhile), not linger half-started.
        await fail(err);
        throw err;
      }
      logger.info(
        { input: config.input, group: config.group, provider: engine.provider, dim },
        "filter running",
      );
    },
  };
}

function decideWindow(plan: WindowPlan, rows: ScoreRow[], policy: Policy): RecordOutcome[] {
  const outcomes: RecordOutcome[] = plan.records.map((record) => ({
    record,
    decision: "dead_letter",
    reason: record.failure?.code ?? "unknown",
  }));
  if (rows.length === 0) return outcomes;
  const decisions = policy.decide(rows);
  plan.scoredIndex.forEach((ri, row) => {
    const d = decisions[row];
    outcomes[ri] = {
      record: plan.records[ri],
      decision: d.decision,
      reason: d.reason,
      rule: d.rule ?? undefined,
      scores: rows[row] as unknown as Record<string, number>,
      thresholds: d.thresholds,
    };
  });
  return outcomes;
}

function recordWindowMetrics(
  metrics: PipelineMetrics,
  outcomes: RecordOutcome[],
  policy: Policy,
  plan: WindowPlan,
): void {
  metrics.windows.inc({ outcome: "committed" });
  metrics.windowRecords.observe(plan.records.length);
  for (const o of outcomes) {
    metrics.recordsOut.inc({ decision: o.decision, reason: o.reason });
    if (o.decision === "dead_letter") metrics.deadLetters.inc({ code: o.reason });
    for (const [score, v] of Object.entries(o.scores ?? {})) metrics.scores.observe({ score }, v);
  }
  for (const [key, v] of Object.entries(policy.thresholds())) {
    const [stage, score] = key.includes(":") ? key.split(":") : ["threshold", key];
    metrics.thresholds.set({ score, stage }, v);
  }
}

/**
 * Retry a window's delivery (a fresh transaction each time) on errors Kafka (or clipsieve) calls
 * retriable, for as long as they last: a broker restart or a leader failover of any length is ridden
 * out (the back-off grows to 10 s; /healthz reports the outage meanwhile). Resolves true once
 * committed, false when a rebalance began before a retry or the group membership was lost (the
 * records will be re-read). Throws a fatal error, or a retriable one once the filter is stopping.
 */
async function deliverWithRetry(
  deliver: () => Promise<void>,
  logger: Logger,
  rebalanced: () => boolean,
  stopping: () => boolean,
): Promise<boolean> {
  for (let i = 1; ; i++) {
    try {
      await deliver();
      return true;
    } catch (err) {
      // The group is rebalancing or dropped this member: the rejoin that follows re-reads the window.
      const kind = kafkaErrorKind(err);
      if (kind === "membership") return false;
      // Each try is a fresh transaction, so an abortable error is as good as a retryable one here.
      const retriable = kind === "retryable" || kind === "abortable";
      if (retriable && rebalanced()) return false;
      if (!retriable || stopping()) throw err;
      logger.warn({ err, attempt: i }, "window delivery failed; retrying");
      await new Promise((r) => setTimeout(r, Math.min(10_000, 200 * 2 ** i)));
      // A rebalance that began during the back-off waits for this loop: do not start another try.
      if (rebalanced()) return false;
    }
  }
}

/**
 * Cut windows by size (`limit()`, asked at every record) or `lingerMs` after a window's first record.
 * `onCut` hears each window's size as it is cut.
 */
function cutWindows(
  lingerMs: number,
  limit: () => number,
  onCut: (records: number) => void,
): OperatorFunction<Tagged, CutWindow> {
  return (records$) =>
    new Observable<CutWindow>((subscriber) => {
      let batch: Tagged[] = [];
      let timer: NodeJS.Timeout | undefined;
      const cut = () => {
        clearTimeout(timer);
        timer = undefined;
        if (batch.length === 0) return;
        const out = batch;
        batch = [];
        onCut(out.length);
        subscriber.next({ batch: out });
      };
      const subscription = records$.subscribe({
        next: (t) => {
          if (batch.length === 0) timer = setTimeout(cut, lingerMs);
          batch.push(t);
          if (batch.length >= limit()) cut();
        },
        error: (err) => subscriber.error(err),
        complete: () => {
          cut();
          subscriber.complete();
        },
      });
      return () => {
        clearTimeout(timer);
        subscription.unsubscribe();
      };
    });
}

/**
 * Re-form recorded windows. Records no recorded window holds (the range went past the recorded run)
 * are cut into ordinary windows once every recorded window is formed, or when the stream ends.
 * `held.waiting` reports how many records wait here, so that the backpressure does not count them.
 */
function reformWindows(
  manifests: readonly WindowManifest[],
  logger: Logger,
  held: { waiting: number },
): OperatorFunction<Tagged, CutWindow> {
  return (records$) =>
    new Observable<CutWindow>((subscriber) => {
      const windower = new ReproduceWindower(manifests);
      const generations = new Map<DecodedRecord, number>();
      const strays: Tagged[] = [];

      const take = (t: Tagged): void => {
        if (!windower.holds(t.record.source)) {
          strays.push(t);
          if (windower.remaining === 0) subscriber.next({ batch: strays.splice(0) });
          return;
        }
        generations.set(t.record, t.generation);
        for (const w of windower.add([t.record])) {
          const batch = w.records.map((record) => ({ record, generation: generations.get(record) ?? 0 }));
          for (const r of w.records) generations.delete(r);
          subscriber.next({ batch, recorded: w.recorded });
        }
      };

      return records$.subscribe({
        next: (t) => {
          try {
            take(t);
          } catch (err) {
            subscriber.error(err);
          }
          held.waiting = generations.size + strays.length;
        },
        error: (err) => subscriber.error(err),
        complete: () => {
          held.waiting = 0;
          if (windower.remaining > 0) {
            logger.warn(
              { windows: windower.remaining },
              "recorded windows left incomplete: their records were not all read",
            );
          }
          if (strays.length > 0) {
            logger.warn(
              { records: strays.length },
              "records outside the recorded windows were cut into new windows",
            );
            subscriber.next({ batch: strays.splice(0) });
          }
          subscriber.complete();
        },
      });
    });
}
