/**
 * The streaming filter, wired: source -> decode -> window (cut, embed, score) -> policy -> sink.
 *
 * `buildPipeline(config)` returns `{ start, close, done }`; only the command's entry point touches
 * signals and exit codes. This file only connects named parts, each in its own file:
 *
 *   settings.ts          the configuration, resolved once
 *   backpressure.ts      how many records may be fetched but undelivered
 *   generation-guard.ts  which windows may still be delivered across a rebalance
 *   telemetry.ts         every metric the filter records, and /healthz
 *   delivery-retry.ts    a window's transaction, retried through broker outages
 *   window-steps.ts      the three steps of a window: embed, score and decide, deliver
 *   ../window/           the window cut (cut.ts, reproduce.ts), scorer (scorer.ts), decisions (decide.ts)
 *   ../dedup/            near-copies of earlier accepted records and of a reference set (--dedup, --reference)
 *   ../sink/outputs.ts   what a decided window becomes on Kafka
 *
 * Flow: fetched batches are decoded at once (cheap, and bad records are marked, not thrown) and pushed
 * into an rxjs stream that cuts windows (`cutWindows`, or `reformWindows` for `replay --reproduce`).
 * Each window then passes three serial steps (`concatMap`), each working on its own window at the same
 * time: embed (records without embeddings), score + decide (onnxruntime, on its own threads), and
 * deliver (one Kafka transaction). So window n + 1 is scored while window n's transaction commits.
 * Shutdown order: stop intake, cut the open window and deliver (drain) what is queued, or abort it
 * when draining takes too long, then close the producer, consumer and engine.
 */
import { concatMap, from, lastValueFrom, Subject } from "rxjs";
import { type Clock, systemClock } from "../common/clock.ts";
import type { Logger } from "../common/logger.ts";
import { createPipelineMetrics, type PipelineMetrics, serveMetrics } from "../common/metrics.ts";
import type { DecodedRecord, RecordOutcome } from "../common/record.ts";
import { createDecoder } from "../decode/decoder.ts";
import { HistoryTopic, openDeduplicator } from "../dedup/index.ts";
import { checkEmbedTeacher, createEmbedStage, type EmbedStage, embedOptionsFromRun } from "../embed/index.ts";
import { createKafkaClient, resolveKafkaAccess } from "../kafka/index.ts";
import { createPolicy, type Policy, type PolicyState } from "../policy/index.ts";
import { createScoringEngine, type ScoringEngine } from "../score/engine.ts";
import { loadTarget, targetLoadOptions } from "../score/target-set.ts";
import { createKafkaSink } from "../sink/kafka-sink.ts";
import { createKafkaSource } from "../source/kafka-source.ts";
import { cutWindows } from "../window/cut.ts";
import { reformWindows } from "../window/reproduce.ts";
import { WindowScorer } from "../window/scorer.ts";
import type { WindowManifest } from "../window/window.ts";
import { Backpressure } from "./backpressure.ts";
import type { RangeTracker } from "./bounds.ts";
import type { RunConfig } from "./config.ts";
import { GenerationGuard } from "./generation-guard.ts";
import { readPolicyFile, readPolicyState } from "./policy-state.ts";
import { resolveSettings } from "./settings.ts";
import { Telemetry } from "./telemetry.ts";
import { createWindowSteps, type Tagged } from "./window-steps.ts";

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
  /** Where the parts read time (tests drive their own). */
  clock?: Clock;
}

export async function buildPipeline(
  config: RunConfig,
  logger: Logger,
  metrics = createPipelineMetrics(),
  options: PipelineRunOptions = {},
): Promise<Pipeline> {
  const { hooks = {}, range, clock = systemClock } = options;
  const access = resolveKafkaAccess(config);
  const kafka = createKafkaClient({
    brokers: config.brokers,
    clientId: `clipsieve-${config.instanceId}`,
    logger,
    adapter: access.adapter,
    security: access.security,
  });

  const target = config.target ? await loadTarget(config.target, targetLoadOptions(config)) : undefined;
  // With --model-dir the embed stage computes the embeddings records lack; its teacher sets the default D.
  const embedStage: EmbedStage | undefined = config.modelDir
    ? await createEmbedStage(embedOptionsFromRun({ ...config, modelDir: config.modelDir }), { logger })
    : undefined;
  const settings = resolveSettings(config, { target, embed: embedStage });
  const { dim, model } = settings;
  if (embedStage) checkEmbedTeacher(embedStage, { dim, model, modelDir: config.modelDir as string });

  const engine: ScoringEngine = await createScoringEngine({
    device: config.device,
    logger,
    threads: config.threads,
  });
  const telemetry = new Telemetry(metrics, clock);
  telemetry.provider(engine.provider);
  const decoder = await createDecoder(
    {
      format: config.format,
      schemaRegistryUrl: config.schemaRegistry,
      schemaRegistryAuth: access.registry,
      expectedDim: dim,
      expectedModel: model,
      embeddingsOptional: embedStage !== undefined,
    },
    { logger },
  );
  const scorer = new WindowScorer(engine, settings.scorer, clock);
  const dedupStep = await openDeduplicator(config, engine, dim, {
    store: new HistoryTopic(
      kafka,
      { topic: config.dedupHistoryTopic, dim, horizon: config.dedupHorizon },
      logger,
    ),
    logger,
  });
  // Made in start(), after the producer has fenced any earlier incarnation of this instance, so the
  // state read is the one committed with the last delivered window.
  const policy = {} as { current: Policy };

  const sink = createKafkaSink({
    kafka,
    delivery: config.delivery,
    groupId: config.group,
    transactionalId: settings.transactionalId,
    transactionTimeoutMs: config.transactionTimeoutMs,
    logger,
  });
  const backpressure = new Backpressure(settings.maxUndelivered, clock, (n) => telemetry.undelivered(n));
  const guard = new GenerationGuard();
  const records$ = new Subject<Tagged>();
  let stopping = false;

  const source = createKafkaSource({
    kafka,
    groupId: config.group,
    topic: config.input,
    logger,
    metrics,
    sessionTimeoutMs: config.sessionTimeoutMs,
    onRebalance: (generation) => guard.onRebalance(generation),
    beforeRejoin: async () => {
      // From here on, no window of this generation starts a transaction: its partitions may move.
      const t0 = clock.monotonic();
      const pending = guard.beforeRejoin();
      backpressure.wake();
      const { waited } = await pending;
      await sink.settle();
      if (waited)
        logger.info(
          { ms: Math.round(clock.monotonic() - t0) },
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
      await backpressure.waitForRoom(() => !stopping && generation === guard.generation, heartbeat);
      let decoded: DecodedRecord[];
      try {
        decoded = await decoder.decodeBatch(raws);
        telemetry.intakeOk();
      } catch (err) {
        // The schema registry is down (bad records never throw): the client hands the batch again;
        // after a minute of this, /healthz says so, so an orchestrator can act.
        telemetry.intakeFailed();
        throw err;
      }
      range?.taken(raws[0].source.partition, raws.length);
      backpressure.taken(decoded.length);
      for (const record of decoded) records$.next({ record, generation });
    },
  });

  // ---- one window: three steps, each overlapping the next window's (window-steps.ts) ----
  const steps = createWindowSteps({
    settings,
    state: { topic: config.stateTopic, group: config.group, instanceId: config.instanceId },
    policy,
    scorer,
    ...(dedupStep ? { dedup: { step: dedupStep, historyTopic: config.dedupHistoryTopic } } : {}),
    embedStage,
    guard,
    backpressure,
    telemetry,
    sink,
    source,
    range,
    hooks,
    logger,
    clock,
    stopping: () => stopping,
    afterWindow: () => checkFinished(),
  });

  const windows$ = records$.pipe(
    options.reproduce
      ? reformWindows(options.reproduce, (t: Tagged) => t.record, {
          logger,
          held: backpressure.held,
          strayCut: settings.cut,
          clock,
        })
      : cutWindows<Tagged>(settings.cut, clock),
    // Separate steps, so that embedding and scoring the next window overlap with this one's delivery.
    concatMap((w) => from(steps.embed(w))),
    concatMap((w) => from(steps.score(w))),
    concatMap((d) => from(steps.deliver(d))),
  );

  // A bounded run ends by itself once its whole range is delivered.
  let finishing = false;
  const checkFinished = () => {
    if (!range || finishing || closed || !range.isDone()) return;
    finishing = true;
    logger.info({ delivered: range.delivered }, "the range is delivered; stopping");
    void close();
  };

  const { promise: done, resolve: resolveDone, reject: rejectDone } = Promise.withResolvers<void>();
  // A rejection nobody awaits yet must not crash the process before `close` handles it.
  done.catch(() => {});
  let processing: Promise<unknown> | undefined;
  let server: Awaited<ReturnType<typeof serveMetrics>> | undefined;
  let closed = false;
  let lastError: unknown;
  let reachabilityTimer: NodeJS.Timeout | undefined;

  const fail = async (err: unknown) => {
    if (!lastError) {
      lastError = err;
      telemetry.stopped(err);
      logger.error({ err }, "the pipeline stopped on an error");
    }
    await close(0);
  };

  const close = async (drainTimeoutMs = 30_000) => {
    if (closed) return done;
    closed = true;
    stopping = true;
    backpressure.wake();
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
      new Promise<boolean>((r) => clock.setTimeout(() => r(false), drainTimeoutMs)),
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
        server = await serveMetrics(metrics, config.metricsPort, () => telemetry.health(kafka.reachability));
      }
      telemetry.brokerReachable(true);
      reachabilityTimer = setInterval(() => telemetry.brokerReachable(kafka.reachability.reachable), 1000);
      reachabilityTimer.unref();
      try {
        await sink.connect();
        const restored: PolicyState | undefined =
          (await readPolicyState(kafka, config, logger)) ??
          (config.policyFile ? readPolicyFile(config.policyFile) : undefined);
        policy.current = createPolicy(settings.policy, { state: restored });
        logger.info(
          {
            policyVersion: policy.current.version,
            restored: restored !== undefined,
            thresholds: policy.current.thresholds(),
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
