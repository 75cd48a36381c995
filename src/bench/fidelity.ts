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
 * - Two generators of different structure (`crawl` and `longtail`, src/simulate/generator.ts), each
 *   with its own offline reference and noise floor, and for each configuration where the streaming
 *   selection departs from the offline one (./agreement.ts).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ClipsieveError } from "../common/errors.ts";
import type { Logger } from "../common/logger.ts";
import { createKafkaClient, type KafkaClient } from "../kafka/index.ts";
import { createPolicy, parsePolicyFlags, type ScoreRow } from "../policy/index.ts";
import { parseKeepRule, type SelectionPlan } from "../policy/offline-select.ts";
import { createScoringEngine, type ScoringEngine } from "../score/engine.ts";
import { loadTarget } from "../score/target-set.ts";
import { NORMALISERS, type Normaliser, type TargetSet } from "../score/types.ts";
import { type BrokerHandle, brokersOrLocal } from "../simulate/broker.ts";
import { createSimulation, type SimOrder, type SimProfile, type Simulation } from "../simulate/generator.ts";
import { ensureTopic, produceSimulation } from "../simulate/producer.ts";
import { writeSimulationTarget } from "../simulate/target.ts";
import { type Agreement, analyseAgreement, jaccard, type OfflineSelection } from "./agreement.ts";
import { type EmulateOptions, emulateFilter } from "./emulate.ts";
import { type DeliveredWindow, deleteTopics, runFilter } from "./filter-run.ts";
import { selectOffline } from "./offline-reference.ts";

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
  /** Generators of the study (`createSimulation`'s profiles), each with its own offline reference. */
  profiles: SimProfile[];
  orders: SimOrder[];
  windows: number[];
  banks: number[];
  /** Normalisers to stream with; `pool` only where the pool is larger than one batch of b. */
  normalisers: Normaliser[];
  /** `window:bank[:normaliser]` configurations also run through the real filter on Kafka (every order). */
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
  profiles: ["crawl", "longtail"] as SimProfile[],
  orders: ["shuffled", "bursty"] as SimOrder[],
  windows: [4096],
  banks: [0, 28672, 45056],
  normalisers: ["draws", "pool"] as Normaliser[],
  verify: ["4096:45056:pool"],
  noiseFloor: true,
  warmup: 10_000,
};

export interface FidelityRow {
  profile: SimProfile;
  order: SimOrder;
  window: number;
  bank: number;
  normaliser: Normaliser;
  draws: number;
  jaccard: number;
  /** Jaccard over the records decided once the bank was full (all records when there is no bank). */
  jaccardSteady: number;
  accepted: number;
  seconds: number;
  /** Run through Kafka as well, and identical to the emulator's decisions (undefined: not run). */
  kafkaIdentical?: boolean;
  kafkaSeconds?: number;
  /** Where the streaming selection departs from the offline one. */
  agreement: Agreement;
}

export interface WarmupRow {
  profile: SimProfile;
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
  profile: SimProfile;
  order: SimOrder;
  window: number;
  bank: number;
  design: string;
  jaccard: number;
  jaccardSteady: number;
  accepted: number;
}

/** One generator's offline reference. */
export interface ProfileSummary {
  profile: SimProfile;
  offlineAccepted: number;
  offlineSeconds: number;
  /** Jaccard of the offline selection with seed s and with seed s + 1; undefined when not run. */
  noiseFloor?: number;
}

export interface FidelityReport {
  count: number;
  dim: number;
  seed: number;
  warmup: number;
  profiles: ProfileSummary[];
  rows: FidelityRow[];
  warmupRows: WarmupRow[];
  /** The replay of the filter's own warm-up mode reproduced every decision. */
  replayExact: boolean;
  designRows: DesignRow[];
  totalSeconds: number;
}

export { jaccard };

/** Streaming draws: when window + bank fit one batch every draw is that same batch, so K = 1. */
export function streamingDraws(window: number, bank: number): number {
  return window + bank <= PAPER.batchSize ? 1 : PAPER.draws;
}

/** The paper's two-stage rule, as `clipsieve select` runs it. */
export const PAPER_PLAN: SelectionPlan = {
  thresholds: [],
  keep: parseKeepRule(PAPER.keep),
  thenKeep: parseKeepRule(PAPER.thenKeep, "--then"),
};

async function offlineSelection(
  engine: ScoringEngine,
  sim: Simulation,
  target: TargetSet,
  seed: number,
): Promise<OfflineSelection> {
  const { count: n, dim } = sim.options;
  const image = new Float32Array(n * dim);
  const text = new Float32Array(n * dim);
  const keys: string[] = [];
  for (const r of sim.records()) {
    image.set(r.imageEmbedding, r.position * dim);
    text.set(r.textEmbedding, r.position * dim);
    keys.push(r.uid);
  }
  return selectOffline(
    engine,
    { keys, dim, image, text },
    { batchSize: PAPER.batchSize, draws: PAPER.draws, seed, tau: PAPER.tau, plan: PAPER_PLAN, target },
  );
}

/** The same records' offline s-CLIPLoss in `keys` order, with another draw seed. */
function inKeyOrder(again: OfflineSelection, keys: readonly string[]): Float32Array {
  const at = new Map(again.keys.map((k, i) => [k, i]));
  return Float32Array.from(keys, (k) => again.columns.s_clip_loss[at.get(k) as number]);
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

/** `window:bank[:normaliser]` configurations (normaliser default draws), as `w:b:n` keys. */
function parseVerify(pairs: string[]): Set<string> {
  const out = new Set<string>();
  for (const p of pairs) {
    const m = /^(\d+):(\d+)(?::(\w+))?$/.exec(p);
    if (!m || (m[3] !== undefined && !(NORMALISERS as readonly string[]).includes(m[3]))) {
      throw new ClipsieveError(
        "CONFIG_INVALID",
        `--verify ${p}: expected <window>:<bank>[:draws|pool], e.g. 4096:45056:pool`,
      );
    }
    out.add(`${m[1]}:${m[2]}:${m[3] ?? "draws"}`);
  }
  return out;
}

/** The configurations of the grid: `pool` only where window + bank is more than one batch. */
function configurations(o: FidelityOptions): { window: number; bank: number; normaliser: Normaliser }[] {
  const out: { window: number; bank: number; normaliser: Normaliser }[] = [];
  for (const window of o.windows)
    for (const bank of o.banks)
      for (const normaliser of o.normalisers) {
        if (normaliser === "pool" && window + bank <= PAPER.batchSize) continue;
        out.push({ window, bank, normaliser });
      }
  return out;
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
  const grid = configurations(o);
  const key = (c: { window: number; bank: number; normaliser: Normaliser }) =>
    `${c.window}:${c.bank}:${c.normaliser}`;
  const needsKafka = grid.some((c) => verify.has(key(c)));
  // The configuration whose warm-up modes and unprimed cut are shown: the first verified one.
  const featured = grid.find((c) => verify.has(key(c))) ?? grid[grid.length - 1];
  let broker: BrokerHandle | undefined;
  const workDir = mkdtempSync(join(tmpdir(), "clipsieve-fidelity-"));
  const inputs: string[] = [];
  const engine = await createScoringEngine({ logger: o.logger });
  try {
    let kafka: KafkaClient | undefined;
    if (needsKafka) {
      broker = await brokersOrLocal(o.brokers, o.logger, "clipsieve-fidelity-kafka-");
      kafka = createKafkaClient({ clientId: "clipsieve-fidelity", brokers: broker.brokers });
      o.progress(`broker ${broker.brokers.join(",")}${broker.local ? " (local)" : ""}`);
    }
    const profiles: ProfileSummary[] = [];
    const rows: FidelityRow[] = [];
    const warmupRows: WarmupRow[] = [];
    const designRows: DesignRow[] = [];
    let replayExact = true;
    for (const profile of o.profiles) {
      const sims = new Map(
        o.orders.map((order) => [
          order,
          createSimulation({ count: o.count, dim: o.dim, seed: o.seed, order, profile }),
        ]),
      );
      const first = sims.values().next().value as Simulation;
      const targetPath = join(workDir, `target-${profile}.npz`);
      await writeSimulationTarget(first, targetPath, engine);
      const target = await loadTarget(targetPath);

      // The orders hold the same records (a record depends on its slot, not its position), so one
      // offline selection serves every order.
      const tOffline = performance.now();
      const offline = await offlineSelection(engine, first, target, o.seed);
      const offlineSeconds = (performance.now() - tOffline) / 1000;
      o.progress(
        `${profile}: offline selection ${offline.selected.size} of ${o.count} in ${offlineSeconds.toFixed(0)} s`,
      );
      let noiseFloor: number | undefined;
      let offlineAgain: Float32Array | undefined;
      if (o.noiseFloor) {
        const again = await offlineSelection(engine, first, target, o.seed + 1);
        noiseFloor = jaccard(offline.selected, again.selected);
        offlineAgain = inKeyOrder(again, offline.keys);
        o.progress(`${profile}: offline with seed ${o.seed + 1}: Jaccard ${noiseFloor.toFixed(3)}`);
      }
      profiles.push({
        profile,
        offlineAccepted: offline.selected.size / o.count,
        offlineSeconds,
        noiseFloor,
      });

      for (const [order, sim] of sims) {
        // The topic the records are on (or would be): the emulator gives them its coordinates.
        const input = `clipsieve-fidelity-${profile}-${order}-${Math.random().toString(16).slice(2, 8)}`;
        if (kafka && broker) {
          inputs.push(input);
          await ensureTopic(kafka, input, 1);
          const produced = await produceSimulation(sim, {
            kafka,
            topic: input,
            format: "json",
            logger: o.logger,
          });
          o.progress(
            `${profile} ${order}: produced ${produced.sent} records in ${produced.seconds.toFixed(1)} s`,
          );
        }
        for (const config of grid) {
          const { window, bank, normaliser } = config;
          const draws = normaliser === "pool" ? 1 : streamingDraws(window, bank);
          const settings: Omit<EmulateOptions, "primeBank"> = {
            topic: input,
            windowSize: window,
            bankSize: bank,
            draws,
            batchSize: PAPER.batchSize,
            normaliser,
            tau: PAPER.tau,
            seed: o.seed,
            keep: PAPER.keep,
            thenKeep: PAPER.thenKeep,
            warmup: o.warmup,
          };
          const t = performance.now();
          const windows = await emulateFilter(sim, engine, target, { ...settings, primeBank: true });
          const accepted = acceptedUids(windows);
          const agreement = analyseAgreement({
            offline,
            offlineAgain,
            windows,
            keyOf: (out) => out.record.uid as string,
            plan: PAPER_PLAN,
            warmup: o.warmup,
          });
          const row: FidelityRow = {
            profile,
            order,
            window,
            bank,
            normaliser,
            draws,
            jaccard: agreement.jaccard,
            jaccardSteady: jaccard(
              accepted,
              offline.selected,
              bank > 0 ? steadyUids(windows, bank) : undefined,
            ),
            accepted: accepted.size / o.count,
            seconds: (performance.now() - t) / 1000,
            agreement,
          };
          if (broker && verify.has(key(config))) {
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
                normaliser,
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
                `fidelity: the emulator's decisions differ from the filter's (${profile} ${order}, window ${window}, bank ${bank}, ${normaliser}); its figures cannot stand for the filter's`,
              );
            }
          }
          rows.push(row);
          o.progress(
            `${profile} ${order} window ${window} bank ${bank} ${normaliser} K=${draws}: Jaccard ${row.jaccard.toFixed(3)} ` +
              `(once the bank is full ${row.jaccardSteady.toFixed(3)}), accepted ${(100 * row.accepted).toFixed(1)}%, ` +
              `${row.seconds.toFixed(0)} s` +
              (row.kafkaIdentical ? `; through Kafka identical (${row.kafkaSeconds?.toFixed(0)} s)` : ""),
          );
          if (config !== featured) continue;
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
              profile,
              order,
              window,
              bank,
              mode,
              jaccard: jaccard(acc, offline.selected),
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
              profile,
              order,
              window,
              bank,
              design: `bank not primed: every window ${window} records from the start (${normaliser})`,
              jaccard: jaccard(unprimed, offline.selected),
              jaccardSteady: jaccard(unprimed, offline.selected, steadyUids(unprimedWindows, bank)),
              accepted: unprimed.size / o.count,
            };
            designRows.push(design);
            o.progress(
              `${profile} ${order} window ${window} bank ${bank}, bank not primed: Jaccard ${design.jaccard.toFixed(3)}`,
            );
          }
        }
      }
    }
    return {
      count: o.count,
      dim: o.dim,
      seed: o.seed,
      warmup: o.warmup,
      profiles,
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

const f3 = (x: number) => (Number.isNaN(x) ? "-" : x.toFixed(3));

/** The agreement table's rows (shared with `fidelity --input`). */
export function agreementLine(a: Agreement): string {
  return (
    `${f3(a.stage1Jaccard)} | ${f3(a.stage2Jaccard)} | ${Number.isNaN(a.sketchRankError) ? "-" : `${(100 * a.sketchRankError).toFixed(2)}%`} | ${f3(a.exactCutJaccard)} | ${(a.streamNoise * 1e3).toFixed(2)} / ` +
    `${Number.isNaN(a.floorNoise) ? "-" : (a.floorNoise * 1e3).toFixed(2)} | ${f3(a.warmupJaccard)} | ` +
    `${f3(a.afterWarmupJaccard)} | ${a.disagreements} | ${pct(a.firstWindowRate)} | ${pct(a.laterRate)} |`
  );
}

export const AGREEMENT_HEADER = [
  "stage-1 Jaccard | stage 2 on the common stage-1 passers | sketch rank error at the stage-1 cut-off (largest) | exact cut-offs | s-CLIPLoss spread x1e3 (stream-offline / offline-offline) | Jaccard in warm-up | after warm-up | records decided differently | of the first window's records | of the later windows' |",
  "---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
];

export function formatFidelityReport(r: FidelityReport): string {
  const lines: string[] = [];
  lines.push(
    `N = ${r.count.toLocaleString("en-US")} simulated records per generator (seed ${r.seed}, D = ${r.dim}). Offline: one pool, ` +
      `b = ${PAPER.batchSize}, K = ${PAPER.draws}, tau = ${PAPER.tau}, --keep ${PAPER.keep} --then ${PAPER.thenKeep}.`,
    "",
    "| generator | offline accepted | offline time | noise floor (offline against offline, another draw seed) |",
    "| --- | ---: | ---: | ---: |",
  );
  const floors = new Map<string, number | undefined>();
  for (const p of r.profiles) {
    floors.set(p.profile, p.noiseFloor);
    lines.push(
      `| ${p.profile} | ${pct(p.offlineAccepted)} | ${p.offlineSeconds.toFixed(0)} s | ${p.noiseFloor === undefined ? "-" : p.noiseFloor.toFixed(3)} |`,
    );
  }
  lines.push(
    "",
    `Streaming: b = ${PAPER.batchSize}, warm-up ${r.warmup.toLocaleString("en-US")} records (provisional); normaliser ` +
      `"draws" with K as shown, "pool" over the whole window + bank scaled to b. "gap": the noise floor minus the Jaccard. ` +
      `"Kafka" marks the configurations also run through the real filter on Kafka, with decisions identical to the emulator's.`,
    "",
    "| generator | order | window | bank | normaliser | K | Jaccard | gap | Jaccard once the bank is full | accepted | Kafka |",
    "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |",
  );
  for (const row of r.rows) {
    const floor = floors.get(row.profile);
    lines.push(
      `| ${row.profile} | ${row.order} | ${row.window} | ${row.bank} | ${row.normaliser} | ${row.draws} | ${row.jaccard.toFixed(3)} | ` +
        `${floor === undefined ? "-" : (floor - row.jaccard).toFixed(3)} | ` +
        `${row.bank > 0 ? row.jaccardSteady.toFixed(3) : "-"} | ${pct(row.accepted)} | ` +
        `${row.kafkaIdentical === undefined ? "" : row.kafkaIdentical ? "identical" : "DIFFERENT"} |`,
    );
  }
  lines.push(
    "",
    "Where the streaming selection departs from the offline one (src/bench/agreement.ts):",
    "",
    `| generator | order | window | bank | normaliser | ${AGREEMENT_HEADER[0]}`,
    `| --- | --- | ---: | ---: | --- | ${AGREEMENT_HEADER[1]}`,
  );
  for (const row of r.rows) {
    lines.push(
      `| ${row.profile} | ${row.order} | ${row.window} | ${row.bank} | ${row.normaliser} | ${agreementLine(row.agreement)}`,
    );
  }
  if (r.warmupRows.length > 0) {
    lines.push(
      "",
      `Warm-up modes (the policy replayed over the same windows' scores; ` +
        `the replay of the filter's own mode, provisional, ${r.replayExact ? "gives its decisions back exactly" : "DIFFERS from its decisions"}):`,
      "",
      `| generator | order | window | bank | warm-up mode | Jaccard | accepted | accepted among the first ${r.warmup.toLocaleString("en-US")} records |`,
      "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: |",
    );
    for (const w of r.warmupRows) {
      lines.push(
        `| ${w.profile} | ${w.order} | ${w.window} | ${w.bank} | ${w.mode} | ${w.jaccard.toFixed(3)} | ${pct(w.accepted)} | ${pct(w.acceptedInWarmup)} |`,
      );
    }
  }
  if (r.designRows.length > 0) {
    lines.push(
      "",
      "Without priming the bank (how the filter cut windows before; emulator only):",
      "",
      "| generator | order | window | bank | design | Jaccard | Jaccard once the bank is full | accepted |",
      "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: |",
    );
    for (const d of r.designRows) {
      lines.push(
        `| ${d.profile} | ${d.order} | ${d.window} | ${d.bank} | ${d.design} | ${d.jaccard.toFixed(3)} | ${d.jaccardSteady.toFixed(3)} | ${pct(d.accepted)} |`,
      );
    }
  }
  lines.push("", `Study time: ${(r.totalSeconds / 60).toFixed(1)} min.`);
  return lines.join("\n");
}
