/**
 * `clipsieve fidelity --input <topic>`: the fidelity check on a user's own records. A bounded sample
 * of the topic (its first `limit` records, read as `calibrate` reads them) is selected twice:
 *
 * - offline, the paper's way: the whole sample as one pool, K random partitions into batches of b
 *   (`--offline-draws`, default 10), then the policy's rules over the whole sample (`clipsieve select`'s
 *   code); a second offline selection with another draw seed gives the noise floor;
 * - streaming, the filter's way, with the run settings given (window, bank, normaliser, policy...):
 *   the filter's own window cut, scorer and decide step (./emulate.ts), records in the order read.
 *
 * The report is the Jaccard index of the two accepted sets against the floor, and where they part
 * (./agreement.ts). Nothing is written to Kafka.
 */
import { ClipsieveError } from "../common/errors.ts";
import type { Logger } from "../common/logger.ts";
import type { DecodedRecord, RawRecord } from "../common/record.ts";
import type { DedupConfig } from "../dedup/index.ts";
import { dedupPoolRows } from "../dedup/offline.ts";
import type { KafkaClient } from "../kafka/index.ts";
import { consumeRange } from "../lake/topic-range.ts";
import type { ScoringSettings } from "../pipeline/settings.ts";
import { parseKeepRule, parseThresholdRule, type SelectionPlan } from "../policy/offline-select.ts";
import type { ScoringEngine } from "../score/engine.ts";
import type { TargetSet } from "../score/types.ts";
import { type Agreement, analyseAgreement, jaccard } from "./agreement.ts";
import { emulateRecords } from "./emulate.ts";
import { type OfflineSample, selectOffline } from "./offline-reference.ts";

export interface TopicFidelityOptions {
  kafka: KafkaClient;
  topic: string;
  /** Records to read from the start of the topic. */
  limit: number;
  /** The run's scoring settings (window, bank, normaliser, policy, target). */
  scoring: ScoringSettings;
  /** The policy's rules as given (`--keep`, `--then`, `--threshold`), for the offline selection. */
  rules: { keep?: string; thenKeep?: string; threshold?: string[] };
  target?: TargetSet;
  engine: ScoringEngine;
  decode(raws: RawRecord[]): Promise<DecodedRecord[]>;
  /** K of the offline reference (the paper's 10). */
  offlineDraws: number;
  noiseFloor: boolean;
  /** The dedup step (--dedup, --reference), on both sides: after the filter's policy, and on the offline selection in stream order. */
  dedup?: DedupConfig;
  logger: Logger;
  progress(line: string): void;
}

export interface TopicFidelityReport {
  topic: string;
  read: number;
  /** Records decoded and scored (the others would go to the dead-letter topic). */
  scored: number;
  offline: { batchSize: number; draws: number; accepted: number; seconds: number };
  noiseFloor?: number;
  streaming: {
    accepted: number;
    windows: number;
    seconds: number;
    /** The settings the filter's side ran with. */
    windowSize: number;
    bankSize: number;
    normaliser: string;
    draws: number;
    batchSize: number;
  };
  agreement: Agreement;
}

const keyOfSource = (r: DecodedRecord) => `${r.source.partition}:${r.source.offset}`;

/** The first `limit` records of the topic (bounded by its end offsets at start). */
async function readSample(o: TopicFidelityOptions): Promise<DecodedRecord[]> {
  const records: DecodedRecord[] = [];
  let read = 0;
  let stopRequested: (() => void) | undefined;
  const limitReached = new Promise<void>((resolve) => {
    stopRequested = resolve;
  });
  const range = await consumeRange({
    kafka: o.kafka,
    topic: o.topic,
    logger: o.logger,
    onBatch: async ({ records: batch }) => {
      const take = batch.slice(0, Math.max(0, o.limit - read));
      if (take.length === 0) return;
      read += take.length;
      records.push(...(await o.decode(take)));
      if (read >= o.limit) stopRequested?.();
    },
  });
  try {
    await Promise.race([range.finished, limitReached]);
  } finally {
    await range.stop();
  }
  return records;
}

function selectionPlan(rules: TopicFidelityOptions["rules"]): SelectionPlan {
  return {
    thresholds: (rules.threshold ?? []).map((t) => parseThresholdRule(t)),
    ...(rules.keep ? { keep: parseKeepRule(rules.keep) } : {}),
    ...(rules.thenKeep ? { thenKeep: parseKeepRule(rules.thenKeep, "--then") } : {}),
  };
}

/** The sample's good records, as the offline reference takes them. */
function sampleOf(good: DecodedRecord[], dim: number): OfflineSample {
  const image = new Float32Array(good.length * dim);
  const text = new Float32Array(good.length * dim);
  good.forEach((r, i) => {
    image.set(r.imageEmbedding as Float32Array, i * dim);
    text.set(r.textEmbedding as Float32Array, i * dim);
  });
  return { keys: good.map(keyOfSource), dim, image, text };
}

/** The offline selection through the dedup step, in the sample's (stream) order, as `select --dedup` does. */
async function dedupSelected(
  engine: ScoringEngine,
  good: DecodedRecord[],
  selected: ReadonlySet<string>,
  config: DedupConfig,
): Promise<Set<string>> {
  const rows = Int32Array.from(good.flatMap((r, i) => (selected.has(keyOfSource(r)) ? [i] : [])));
  const dim = (good[0].imageEmbedding as Float32Array).length;
  const { dedupHorizon: _h, ...rest } = config;
  const result = await dedupPoolRows(
    engine,
    rows,
    dim,
    (row) => good[row].imageEmbedding as Float32Array,
    (row) => good[row].uid,
    rest,
  );
  return new Set(Array.from(result.kept, (row) => keyOfSource(good[row])));
}

export async function runTopicFidelity(o: TopicFidelityOptions): Promise<TopicFidelityReport> {
  const records = await readSample(o);
  const good = records.filter((r) => !r.failure);
  o.progress(`read ${records.length} records of ${o.topic} (${good.length} decoded)`);
  if (good.length === 0) {
    throw new ClipsieveError(
      "CONFIG_INVALID",
      `fidelity --input ${o.topic}: none of the ${records.length} records read could be decoded and scored (wrong --format, --dim or --model?)`,
    );
  }
  const plan = selectionPlan(o.rules);
  const { seed, dim, batchSize, tau } = o.scoring.scorer;
  const sample = sampleOf(good, dim);
  const reference = { batchSize, draws: o.offlineDraws, tau, plan, target: o.target };
  const tOffline = performance.now();
  const offline = await selectOffline(o.engine, sample, { ...reference, seed });
  if (o.dedup) offline.selected = await dedupSelected(o.engine, good, offline.selected, o.dedup);
  const offlineSeconds = (performance.now() - tOffline) / 1000;
  o.progress(
    `offline selection: ${offline.selected.size} of ${good.length} in ${offlineSeconds.toFixed(1)} s`,
  );
  let noiseFloor: number | undefined;
  let offlineAgain: Float32Array | undefined;
  if (o.noiseFloor) {
    const again = await selectOffline(o.engine, sample, { ...reference, seed: seed + 1 });
    noiseFloor = jaccard(offline.selected, again.selected);
    offlineAgain = again.columns.s_clip_loss;
    o.progress(`offline with draw seed ${seed + 1}: Jaccard ${noiseFloor.toFixed(3)}`);
  }
  const tStream = performance.now();
  const windows = await emulateRecords(records, o.engine, o.target, {
    ...o.scoring.cut,
    ...o.scoring.scorer,
    policy: o.scoring.policy,
    scoreAll: o.scoring.scoreAll,
    ...(o.dedup ? { dedup: o.dedup } : {}),
  });
  const streamSeconds = (performance.now() - tStream) / 1000;
  const agreement = analyseAgreement({
    offline,
    offlineAgain,
    windows,
    keyOf: (out) => keyOfSource(out.record),
    plan,
    warmup: o.scoring.policy.warmup.records,
  });
  let accepted = 0;
  for (const w of windows) for (const out of w.outcomes) if (out.decision === "accepted") accepted++;
  return {
    topic: o.topic,
    read: records.length,
    scored: good.length,
    offline: {
      batchSize: o.scoring.scorer.batchSize,
      draws: o.offlineDraws,
      accepted: offline.selected.size,
      seconds: offlineSeconds,
    },
    noiseFloor,
    streaming: {
      accepted,
      windows: windows.length,
      seconds: streamSeconds,
      windowSize: o.scoring.cut.windowSize,
      bankSize: o.scoring.cut.bankSize,
      normaliser: o.scoring.scorer.normaliser ?? "draws",
      draws: o.scoring.scorer.draws,
      batchSize: o.scoring.scorer.batchSize,
    },
    agreement,
  };
}
