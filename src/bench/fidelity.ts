/**
 * Fidelity to the paper: on one simulated pool, does the streaming filter accept what the paper's
 * offline selection would?
 *
 * - Offline (the reference): the whole pool scored as one shard with b = 32768, K = 10, tau = 0.01
 *   (the engine calls of `clipsieve score`), then `selectRows` with --keep s_clip_loss=0.3
 *   --then normsim_inf=0.2 (the code of `clipsieve select`).
 * - Streaming: the filter's decisions for each order, window size and bank size. Through Kafka a run
 *   costs the broker round trips of every window's transaction on top of the scoring, so the grid is
 *   decided by the emulator (./emulate.ts: the pipeline's decoder, window, engine, policy and bank
 *   calls, in the pipeline's order, on the records' Kafka coordinates), and the configurations in
 *   `verify` are also run through the real filter (`buildPipeline` reading the records from Kafka,
 *   decisions from its delivery hook after each window's transaction committed): the study fails
 *   unless the emulator's decisions are the filter's, record for record.
 * - Warm-up: the policy is pure and feeds its sketches alike in every warm-up mode, so the other modes
 *   are the same policy replayed over the same windows' scores, in order (the replay of the mode the
 *   filter ran with is checked to give its decisions back).
 * - The design choice that matters most, priming the bank (docs/streaming.md, "Cut"), is shown by
 *   the emulator without it: how the filter cut windows before.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ClipsieveError } from "../common/errors.ts";
import type { Logger } from "../common/logger.ts";
import { createKafkaClient, type KafkaClient } from "../kafka/index.ts";
import { createPolicy, parsePolicyFlags, type ScoreRow } from "../policy/index.ts";
import { selectRows } from "../policy/offline-select.ts";
import { makeDraws } from "../score/draws.ts";
import { createScoringEngine, type ScoringEngine } from "../score/engine.ts";
import { loadTarget } from "../score/target-set.ts";
import type { TargetSet } from "../score/types.ts";
import { type BrokerHandle, brokersOrLocal } from "../simulate/broker.ts";
import { createSimulation, type SimOrder, type Simulation } from "../simulate/generator.ts";
import { ensureTopic, produceSimulation } from "../simulate/producer.ts";
import { writeSimulationTarget } from "../simulate/target.ts";
import { type EmulateOptions, emulateFilter } from "./emulate.ts";
import { type DeliveredWindow, deleteTopics, runFilter } from "./filter-run.ts";

export const PAPER = {
  batchSize: 32768,
  draws: 10,
  tau: 0.01,
  keep: "s_clip_loss=0.3",
  thenKeep: "normsim_inf=0.2",
};

export interface FidelityOptions {
  brokers?: string;
  count: number;
  dim: number;
  seed: number;
  orders: SimOrder[];
  windows: number[];
  banks: number[];
  /** `window:bank` pairs also run through the real filter on Kafka (every order). */
  verify: string[];
  /** Also score the pool offline with another seed: how far two offline selections differ. */
  noiseFloor: boolean;
  /** Warm-up length the filter runs with (its default). */
  warmup: number;
  logger: Logger;
  progress(line: string): void;
}

export const FIDELITY_DEFAULTS = {
  count: 65_536,
  dim: 64,
  seed: 0,
  orders: ["shuffled", "bursty"] as SimOrder[],
  windows: [1024, 4096, 16384],
  banks: [0, 28672],
  verify: ["4096:28672"],
  noiseFloor: true,
  warmup: 10_000,
};

export interface FidelityRow {
  order: SimOrder;
  window: number;
  bank: number;
  draws: number;
  jaccard: number;
  /** Jaccard over the records decided once the bank was full (all records when there is no bank). */
  jaccardSteady: number;
  accepted: number;
  seconds: number;
  /** Run through Kafka as well, and identical to the emulator's decisions (undefined: not run). */
  kafkaIdentical?: boolean;
  kafkaSeconds?: number;
}

export interface WarmupRow {
  order: SimOrder;
  window: number;
  bank: number;
  mode: string;
  jaccard: number;
  accepted: number;
  /** Accepted share among the first `warmup` records. */
  acceptedInWarmup: number;
}

/** Another window design than the filter's, measured with the emulator. */
export interface DesignRow {
  order: SimOrder;
  window: number;
  bank: number;
  design: string;
  jaccard: number;
  jaccardSteady: number;
  accepted: number;
}

export interface FidelityReport {
  count: number;
  dim: number;
  seed: number;
  warmup: number;
  offlineAccepted: number;
  offlineSeconds: number;
  /** Jaccard of the offline selection with seed s and with seed s + 1; undefined when not run. */
  noiseFloor?: number;
  rows: FidelityRow[];
  warmupRows: WarmupRow[];
  /** The replay of the filter's own warm-up mode reproduced every decision. */
  replayExact: boolean;
  designRows: DesignRow[];
  totalSeconds: number;
}

export function jaccard(
  a: ReadonlySet<string>,
  b: ReadonlySet<string>,
  within?: ReadonlySet<string>,
): number {
  let inter = 0;
  let union = 0;
  for (const x of a) {
    if (within && !within.has(x)) continue;
    union++;
    if (b.has(x)) inter++;
  }
  for (const x of b) {
    if (within && !within.has(x)) continue;
    if (!a.has(x)) union++;
  }
  return union === 0 ? 1 : inter / union;
}

/** Streaming draws: when window + bank fit one batch every draw is that same batch, so K = 1. */
export function streamingDraws(window: number, bank: number): number {
  return window + bank <= PAPER.batchSize ? 1 : PAPER.draws;
}

async function offlineSelection(
  engine: ScoringEngine,
  sim: Simulation,
  target: TargetSet,
  seed: number,
): Promise<Set<string>> {
  const { count: n, dim } = sim.options;
  const image = new Float32Array(n * dim);
  const text = new Float32Array(n * dim);
  const uids: string[] = [];
  for (const r of sim.records()) {
    image.set(r.imageEmbedding, r.position * dim);
    text.set(r.textEmbedding, r.position * dim);
    uids.push(r.uid);
  }
  const draws = makeDraws(n, { seed, draws: PAPER.draws, batchSize: PAPER.batchSize });
  const loss = await engine.sClipLoss({ dim, scoredRows: n, bankRows: 0, image, text }, draws, PAPER.tau);
  const ns = await engine.normSim(image, n, target, { two: false, inf: true });
  const kept = selectRows({ s_clip_loss: loss.sClipLoss, normsim_inf: ns.normsimInf }, n, {
    thresholds: [],
    keep: { score: "s_clip_loss", fraction: 0.3 },
    thenKeep: { score: "normsim_inf", fraction: 0.2 },
  });
  return new Set(Array.from(kept, (i) => uids[i]));
}

function acceptedUids(windows: readonly DeliveredWindow[]): Set<string> {
  const out = new Set<string>();
  for (const w of windows)
    for (const o of w.outcomes) if (o.decision === "accepted") out.add(o.record.uid as string);
  return out;
}

/** Records decided once the bank held `bank` rows, i.e. after the first `bank` records. */
function steadyUids(windows: readonly DeliveredWindow[], bank: number): Set<string> {
  const out = new Set<string>();
  let before = 0;
  for (const w of windows) {
    if (before >= bank) for (const o of w.outcomes) out.add(o.record.uid as string);
    before += w.outcomes.length;
  }
  return out;
}

/** The decisions of two runs, record by record. */
function sameDecisions(a: readonly DeliveredWindow[], b: readonly DeliveredWindow[]): boolean {
  const decided = new Map<string, string>();
  for (const w of a) for (const o of w.outcomes) decided.set(o.record.uid as string, o.decision);
  let n = 0;
  for (const w of b) {
    for (const o of w.outcomes) {
      n++;
      if (decided.get(o.record.uid as string) !== o.decision) return false;
    }
  }
  return n === decided.size;
}

/** Decide the windows again, in order, with another warm-up mode. */
function replayWarmup(
  windows: readonly DeliveredWindow[],
  warmup: number,
  mode: string,
): Map<string, boolean> {
  const policy = createPolicy(
    // biome-ignore lint/suspicious/noThenProperty: the --then flag, as the policy's parser names it
    parsePolicyFlags({ keep: PAPER.keep, then: PAPER.thenKeep, warmup, warmupMode: mode }),
  );
  const out = new Map<string, boolean>();
  for (const w of windows) {
    const scored = w.outcomes.filter((o) => o.scores !== undefined);
    const decisions = policy.decide(scored.map((o) => o.scores as unknown as ScoreRow));
    scored.forEach((o, i) => {
      out.set(o.record.uid as string, decisions[i].decision === "accepted");
    });
  }
  return out;
}

function parseVerify(pairs: string[]): Set<string> {
  for (const p of pairs) {
    if (!/^\d+:\d+$/.test(p)) {
      throw new ClipsieveError("CONFIG_INVALID", `--verify ${p}: expected <window>:<bank>, e.g. 4096:28672`);
    }
  }
  return new Set(pairs);
}

export async function runFidelity(o: FidelityOptions): Promise<FidelityReport> {
  const started = performance.now();
  const verify = parseVerify(o.verify);
  for (const w of o.windows) {
    if (o.count % w !== 0) {
      throw new ClipsieveError(
        "CONFIG_INVALID",
        `--count ${o.count} must be a multiple of every window size (${w} is not a divisor), so that windows are cut by size alone`,
      );
    }
  }
  const needsKafka = o.windows.some((w) => o.banks.some((b) => verify.has(`${w}:${b}`)));
  let broker: BrokerHandle | undefined;
  const workDir = mkdtempSync(join(tmpdir(), "clipsieve-fidelity-"));
  const inputs: string[] = [];
  const engine = await createScoringEngine({ logger: o.logger });
  try {
    const sims = new Map(
      o.orders.map((order) => [order, createSimulation({ count: o.count, dim: o.dim, seed: o.seed, order })]),
    );
    const first = sims.values().next().value as Simulation;
    const targetPath = join(workDir, "target.npz");
    await writeSimulationTarget(first, targetPath, engine);
    const target = await loadTarget(targetPath);

    // The orders hold the same records (a record depends on its slot, not its position), so one
    // offline selection serves every order.
    const tOffline = performance.now();
    const offline = await offlineSelection(engine, first, target, o.seed);
    const offlineSeconds = (performance.now() - tOffline) / 1000;
    o.progress(`offline selection: ${offline.size} of ${o.count} in ${offlineSeconds.toFixed(0)} s`);
    let noiseFloor: number | undefined;
    if (o.noiseFloor) {
      noiseFloor = jaccard(offline, await offlineSelection(engine, first, target, o.seed + 1));
      o.progress(`offline with seed ${o.seed + 1}: Jaccard ${noiseFloor.toFixed(3)}`);
    }

    let kafka: KafkaClient | undefined;
    if (needsKafka) {
      broker = await brokersOrLocal(o.brokers, o.logger, "clipsieve-fidelity-kafka-");
      kafka = createKafkaClient({ clientId: "clipsieve-fidelity", brokers: broker.brokers });
      o.progress(`broker ${broker.brokers.join(",")}${broker.local ? " (local)" : ""}`);
    }

    const rows: FidelityRow[] = [];
    const warmupRows: WarmupRow[] = [];
    const designRows: DesignRow[] = [];
    let replayExact = true;
    for (const [order, sim] of sims) {
      // The topic the records are on (or would be): the emulator gives them its coordinates.
      const input = `clipsieve-fidelity-${order}-${Math.random().toString(16).slice(2, 8)}`;
      if (kafka && broker) {
        inputs.push(input);
        await ensureTopic(kafka, input, 1);
        const produced = await produceSimulation(sim, {
          kafka,
          topic: input,
          format: "json",
          logger: o.logger,
        });
        o.progress(`${order}: produced ${produced.sent} records in ${produced.seconds.toFixed(1)} s`);
      }
      for (const window of o.windows) {
        for (const bank of o.banks) {
          const draws = streamingDraws(window, bank);
          const settings: Omit<EmulateOptions, "primeBank"> = {
            topic: input,
            windowSize: window,
            bankSize: bank,
            draws,
            batchSize: PAPER.batchSize,
            tau: PAPER.tau,
            seed: o.seed,
            keep: PAPER.keep,
            thenKeep: PAPER.thenKeep,
            warmup: o.warmup,
          };
          const t = performance.now();
          const windows = await emulateFilter(sim, engine, target, { ...settings, primeBank: true });
          const accepted = acceptedUids(windows);
          const row: FidelityRow = {
            order,
            window,
            bank,
            draws,
            jaccard: jaccard(accepted, offline),
            jaccardSteady: jaccard(accepted, offline, bank > 0 ? steadyUids(windows, bank) : undefined),
            accepted: accepted.size / o.count,
            seconds: (performance.now() - t) / 1000,
          };
          if (broker && verify.has(`${window}:${bank}`)) {
            const tKafka = performance.now();
            const run = await runFilter({
              brokers: broker.brokers,
              input,
              expected: o.count,
              logger: o.logger,
              prefix: "clipsieve-fidelity",
              flags: {
                windowSize: window,
                bankSize: bank,
                draws,
                batchSize: PAPER.batchSize,
                tau: PAPER.tau,
                seed: o.seed,
                keep: PAPER.keep,
                warmup: o.warmup,
                target: targetPath,
                thenKeep: PAPER.thenKeep,
                // Windows are cut by size: a backlog fills them at once, and a linger cut would
                // make their sizes depend on how fast this machine scores.
                lingerMs: 3_600_000,
              },
            });
            row.kafkaSeconds = (performance.now() - tKafka) / 1000;
            row.kafkaIdentical = sameDecisions(run.windows, windows);
            if (!row.kafkaIdentical) {
              throw new ClipsieveError(
                "CONFIG_INVALID",
                `fidelity: the emulator's decisions differ from the filter's (${order}, window ${window}, bank ${bank}); its figures cannot stand for the filter's`,
              );
            }
          }
          rows.push(row);
          o.progress(
            `${order} window ${window} bank ${bank} K=${draws}: Jaccard ${row.jaccard.toFixed(3)} ` +
              `(once the bank is full ${row.jaccardSteady.toFixed(3)}), accepted ${(100 * row.accepted).toFixed(1)}%, ` +
              `${row.seconds.toFixed(0)} s` +
              (row.kafkaIdentical ? `; through Kafka identical (${row.kafkaSeconds?.toFixed(0)} s)` : ""),
          );
          if (window === 4096 && bank === Math.max(...o.banks)) {
            const firstRecords = new Set<string>();
            for (const w of windows) {
              for (const out of w.outcomes)
                if (firstRecords.size < o.warmup) firstRecords.add(out.record.uid as string);
            }
            for (const mode of ["provisional", "accept", "reject"]) {
              const decisions = replayWarmup(windows, o.warmup, mode);
              const acc = new Set([...decisions].filter(([, a]) => a).map(([u]) => u));
              if (mode === "provisional") {
                // The filter runs in provisional mode: the replay must give its decisions back.
                replayExact &&= acc.size === accepted.size && [...acc].every((u) => accepted.has(u));
              }
              warmupRows.push({
                order,
                window,
                bank,
                mode,
                jaccard: jaccard(acc, offline),
                accepted: acc.size / o.count,
                acceptedInWarmup:
                  [...firstRecords].filter((u) => acc.has(u)).length / Math.max(1, firstRecords.size),
              });
            }
            if (bank > 0) {
              const unprimedWindows = await emulateFilter(sim, engine, target, {
                ...settings,
                primeBank: false,
              });
              const unprimed = acceptedUids(unprimedWindows);
              const design: DesignRow = {
                order,
                window,
                bank,
                design: "bank not primed: every window windowSize records from the start",
                jaccard: jaccard(unprimed, offline),
                jaccardSteady: jaccard(unprimed, offline, steadyUids(unprimedWindows, bank)),
                accepted: unprimed.size / o.count,
              };
              designRows.push(design);
              o.progress(
                `${order} window ${window} bank ${bank}, bank not primed: Jaccard ${design.jaccard.toFixed(3)}`,
              );
            }
          }
        }
      }
    }
    return {
      count: o.count,
      dim: o.dim,
      seed: o.seed,
      warmup: o.warmup,
      offlineAccepted: offline.size / o.count,
      offlineSeconds,
      noiseFloor,
      rows,
      warmupRows,
      replayExact,
      designRows,
      totalSeconds: (performance.now() - started) / 1000,
    };
  } finally {
    await engine.close();
    if (broker && !broker.local) await deleteTopics(broker.brokers, inputs).catch(() => {});
    await broker?.stop();
    rmSync(workDir, { recursive: true, force: true });
  }
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

export function formatFidelityReport(r: FidelityReport): string {
  const lines: string[] = [];
  lines.push(
    `N = ${r.count.toLocaleString("en-US")} simulated records (seed ${r.seed}, D = ${r.dim}). Offline: one pool, ` +
      `b = ${PAPER.batchSize}, K = ${PAPER.draws}, tau = ${PAPER.tau}, --keep ${PAPER.keep} --then ${PAPER.thenKeep} ` +
      `-> ${pct(r.offlineAccepted)} accepted (${r.offlineSeconds.toFixed(0)} s).`,
  );
  if (r.noiseFloor !== undefined) {
    lines.push(`Offline against offline with another draw seed: Jaccard ${r.noiseFloor.toFixed(3)}.`);
  }
  lines.push(
    `Streaming: b = ${PAPER.batchSize}, warm-up ${r.warmup.toLocaleString("en-US")} records (provisional), K as shown. ` +
      `"Kafka" marks the configurations also run through the real filter on Kafka, with decisions identical to the emulator's.`,
    "",
    "| order | window | bank | K | Jaccard | Jaccard once the bank is full | accepted | Kafka |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
  );
  for (const row of r.rows) {
    lines.push(
      `| ${row.order} | ${row.window} | ${row.bank} | ${row.draws} | ${row.jaccard.toFixed(3)} | ` +
        `${row.bank > 0 ? row.jaccardSteady.toFixed(3) : "-"} | ${pct(row.accepted)} | ` +
        `${row.kafkaIdentical === undefined ? "" : row.kafkaIdentical ? "identical" : "DIFFERENT"} |`,
    );
  }
  if (r.warmupRows.length > 0) {
    lines.push(
      "",
      `Warm-up modes, window 4096, bank ${r.warmupRows[0].bank} (the policy replayed over the same windows' scores; ` +
        `the replay of the filter's own mode, provisional, ${r.replayExact ? "gives its decisions back exactly" : "DIFFERS from its decisions"}):`,
      "",
      `| order | warm-up mode | Jaccard | accepted | accepted among the first ${r.warmup.toLocaleString("en-US")} records |`,
      "| --- | --- | ---: | ---: | ---: |",
    );
    for (const w of r.warmupRows) {
      lines.push(
        `| ${w.order} | ${w.mode} | ${w.jaccard.toFixed(3)} | ${pct(w.accepted)} | ${pct(w.acceptedInWarmup)} |`,
      );
    }
  }
  if (r.designRows.length > 0) {
    lines.push(
      "",
      "Without priming the bank (how the filter cut windows before; emulator only):",
      "",
      "| order | window | bank | design | Jaccard | Jaccard once the bank is full | accepted |",
      "| --- | ---: | ---: | --- | ---: | ---: | ---: |",
    );
    for (const d of r.designRows) {
      lines.push(
        `| ${d.order} | ${d.window} | ${d.bank} | ${d.design} | ${d.jaccard.toFixed(3)} | ${d.jaccardSteady.toFixed(3)} | ${pct(d.accepted)} |`,
      );
    }
  }
  lines.push("", `Study time: ${(r.totalSeconds / 60).toFixed(1)} min.`);
  return lines.join("\n");
}
