/**
 * `calibrate`: run a policy over a sample of a stream and keep its state, so that a new stream starts
 * warm (`run --policy-file`). The sample is decided window by window as the filter would decide it, so
 * the saved sketches hold what a filter that had seen the sample would hold; the thresholds it prints
 * are the cut-offs that keep the requested fractions of the sample.
 *
 * Inputs: a topic of clipsieve input records (cut and scored by run's own window cut and scorer,
 * src/window/, so the windows are run's: the same ids and members from the same topic), a scores
 * topic or its JSON Lines dump (already scored: grouped back into their windows), or score tables from
 * `clipsieve score` (.parquet, .arrow, .jsonl rows; fed in chunks of the window size).
 *
 * Input records are scored as `run` scores them: the stage-2 score (NormSim_inf) only for each window's
 * stage-1 passers unless `scoreAll`. The policy's stage-2 sketch only ever reads those rows, so the
 * saved state and the thresholds are the same either way; only the sample's "accepted at the final
 * cut-offs" may have rows it cannot judge (`undeterminedFraction`).
 */
import { createReadStream } from "node:fs";
import { createInterface } from "node:readline";
import { ClipsieveError } from "../common/errors.ts";
import type { Logger } from "../common/logger.ts";
import type { DecodedRecord, RawRecord } from "../common/record.ts";
import { extensionOf } from "../io/files.ts";
import { readTable } from "../io/table.ts";
import type { KafkaClient } from "../kafka/index.ts";
import { createPolicy, type Policy, type PolicySpec, type PolicyState } from "../policy/index.ts";
import { SCORE_NAMES, type ScoreRow } from "../score/registry.ts";
import type { RowSelector } from "../score/window-scores.ts";
import { WindowCut } from "../window/cut.ts";
import type { ScoredWindow, WindowScorer } from "../window/scorer.ts";
import { stageTwoSelector } from "../window/stage-two.ts";
import { parseScoreRecord, type ReadScoreRecord } from "./score-records.ts";
import { consumeRange } from "./topic-range.ts";

export interface CalibrationResult {
  state: PolicyState;
  /** The cut-offs in force after the sample: `keep:<score>`, `then:<score>`, `threshold:<score>`. */
  thresholds: Record<string, number>;
  /** Records taken from the input (with --limit, at most that many). */
  read: number;
  /** Records whose scores fed the policy. */
  scored: number;
  /** Records without scores: dead-lettered score records, input records that failed to decode. */
  skipped: number;
  windows: number;
  /** Fraction of the scored sample at or above every final cut-off. */
  acceptedFraction: number;
  /**
   * Fraction of the scored sample at or above every final cut-off it has a score for, but without a
   * score another needs: a stage-2 score not computed because the row was below its own window's
   * stage-1 cut-off, which the final one has since passed. Not in `acceptedFraction`. 0 with scoreAll.
   */
  undeterminedFraction: number;
  /** Fraction accepted as decided window by window (warm-up included), as the filter would have. */
  decidedAcceptedFraction: number;
}

/** Feeds windows of scores to a policy and remembers the sample to measure the final cut-offs on. */
export class Calibration {
  private readonly policy: Policy;
  private readonly sample: ScoreRow[] = [];
  private decidedAccepted = 0;
  private windows = 0;
  read = 0;
  skipped = 0;

  constructor(spec: PolicySpec) {
    this.policy = createPolicy(spec);
  }

  addWindow(rows: ScoreRow[]): void {
    if (rows.length === 0) return;
    const decisions = this.policy.decide(rows);
    for (const d of decisions) if (d.decision === "accepted") this.decidedAccepted++;
    for (const r of rows) this.sample.push(r);
    this.windows++;
  }

  /** The selector for the next window's scores: the stage-2 score for its stage-1 passers only. */
  rowSelector(): RowSelector | undefined {
    return stageTwoSelector(this.policy);
  }

  result(): CalibrationResult {
    const thresholds = this.policy.thresholds();
    const rules = Object.entries(thresholds).map(([key, min]) => ({
      score: key.slice(key.indexOf(":") + 1) as keyof ScoreRow,
      min,
    }));
    let passing = 0;
    let undetermined = 0;
    for (const row of this.sample) {
      const values = rules.map((r) => row[r.score]);
      if (!rules.every((r, i) => values[i] === undefined || values[i] >= r.min)) continue;
      if (values.every((v) => v !== undefined)) passing++;
      else undetermined++;
    }
    const n = this.sample.length;
    return {
      state: this.policy.snapshot(),
      thresholds,
      read: this.read,
      scored: n,
      skipped: this.skipped,
      windows: this.windows,
      acceptedFraction: n > 0 ? passing / n : 0,
      undeterminedFraction: n > 0 ? undetermined / n : 0,
      decidedAcceptedFraction: n > 0 ? this.decidedAccepted / n : 0,
    };
  }
}

/** A score record's scores as a policy row, or undefined when it was dead-lettered. */
function rowOf(r: ReadScoreRecord): ScoreRow | undefined {
  if (r.decision === "dead_letter") return undefined;
  return r.scores as unknown as ScoreRow;
}

/** Groups score records back into their windows (a window's records are consecutive on the topic). */
class WindowGrouper {
  private current: string | undefined;
  private rows: ScoreRow[] = [];
  private readonly calibration: Calibration;

  constructor(calibration: Calibration) {
    this.calibration = calibration;
  }

  add(r: ReadScoreRecord): void {
    this.calibration.read++;
    if (r.window_id !== this.current) this.flush();
    this.current = r.window_id;
    const row = rowOf(r);
    if (row) this.rows.push(row);
    else this.calibration.skipped++;
  }

  flush(): void {
    this.calibration.addWindow(this.rows);
    this.rows = [];
  }
}

/** A score table's row (from `clipsieve score`): its numeric score columns. */
function tableRow(values: Record<string, unknown>, where: string): ScoreRow {
  const row: Record<string, number> = {};
  for (const name of SCORE_NAMES) {
    const v = values[name];
    if (typeof v === "number") row[name] = v;
    else if (v !== undefined && v !== null) {
      throw new ClipsieveError(
        "INPUT_FILE_INVALID",
        `${where}: ${name} is ${JSON.stringify(v)}, not a number`,
      );
    }
  }
  return row as unknown as ScoreRow;
}

function isScoreRecordLike(value: unknown): boolean {
  return (
    typeof value === "object" &&
    value !== null &&
    typeof (value as { scores?: unknown }).scores === "object" &&
    typeof (value as { source?: unknown }).source === "object"
  );
}

/**
 * Score files: JSON Lines of score records (a `dump`) or of score-table rows, or .parquet / .arrow
 * score tables. Table rows are fed in chunks of `windowSize`, the window they would have formed.
 */
export async function calibrateFromFiles(
  paths: string[],
  calibration: Calibration,
  opts: { windowSize: number; limit?: number },
): Promise<void> {
  const limit = opts.limit ?? Number.POSITIVE_INFINITY;
  const grouper = new WindowGrouper(calibration);
  let chunk: ScoreRow[] = [];
  const flushChunk = () => {
    calibration.addWindow(chunk);
    chunk = [];
  };
  const addTableRow = (row: ScoreRow) => {
    calibration.read++;
    chunk.push(row);
    if (chunk.length >= opts.windowSize) flushChunk();
  };
  for (const path of paths) {
    if (calibration.read >= limit) break;
    if (extensionOf(path) === ".jsonl") {
      const lines = createInterface({ input: createReadStream(path), crlfDelay: Infinity });
      let n = 0;
      for await (const line of lines) {
        n++;
        if (line.trim() === "") continue;
        if (calibration.read >= limit) break;
        const where = `${path} line ${n}`;
        let value: unknown;
        try {
          value = JSON.parse(line);
        } catch (err) {
          throw new ClipsieveError("INPUT_FILE_INVALID", `${where}: not JSON (${(err as Error).message})`);
        }
        if (isScoreRecordLike(value)) grouper.add(parseScoreRecord(line, where));
        else addTableRow(tableRow(value as Record<string, unknown>, where));
      }
      lines.close();
    } else {
      const table = await readTable(path);
      const rows = Math.max(0, ...Object.values(table).map((c) => c.length));
      for (let i = 0; i < rows && calibration.read < limit; i++) {
        const values: Record<string, unknown> = {};
        for (const name of SCORE_NAMES) {
          const column = table[name];
          if (column) values[name] = column[i];
        }
        addTableRow(tableRow(values, `${path} row ${i}`));
      }
    }
    grouper.flush();
    flushChunk();
  }
}

/** Decodes and scores input records; made only when the topic turns out to hold input records. */
export interface InputScoring {
  decode(raws: RawRecord[]): Promise<DecodedRecord[]>;
  scorer: WindowScorer;
  /** Compute every score for every record (`scoreAll`), not the stage-2 score for stage-1 passers only. */
  scoreAll?: boolean;
  close(): Promise<void>;
}

/**
 * A topic: score records (a scores topic) or clipsieve input records, told apart by the first record.
 * Input records are cut into windows as `run` cuts them (size and bank priming; a bounded read never
 * lingers) in the order they arrive, and scored as `run` scores them.
 */
export async function calibrateFromTopic(opts: {
  kafka: KafkaClient;
  topic: string;
  logger: Logger;
  calibration: Calibration;
  windowSize: number;
  limit?: number;
  makeInputScoring(): Promise<InputScoring>;
  /** Hears every scored window of input records (tests compare them with run's). */
  onWindow?(window: ScoredWindow): void;
}): Promise<"scores" | "inputs"> {
  const { calibration, windowSize } = opts;
  const limit = opts.limit ?? Number.POSITIVE_INFINITY;
  let kind: "scores" | "inputs" | undefined;
  const grouper = new WindowGrouper(calibration);
  let scoring: InputScoring | undefined;
  let cut: WindowCut<DecodedRecord> | undefined;
  const scoreWindow = async (records: DecodedRecord[] | undefined) => {
    if (!records || !scoring) return;
    const selector = scoring.scoreAll ? undefined : calibration.rowSelector();
    const scored = await scoring.scorer.scoreAndRemember(records, selector);
    calibration.skipped += records.length - scored.rows.length;
    calibration.addWindow(scored.rows);
    opts.onWindow?.(scored);
  };

  let stopRequested: (() => void) | undefined;
  const limitReached = new Promise<void>((resolve) => {
    stopRequested = resolve;
  });
  const range = await consumeRange({
    kafka: opts.kafka,
    topic: opts.topic,
    logger: opts.logger,
    onBatch: async ({ records, heartbeat }) => {
      const take = records.slice(0, Math.max(0, limit - calibration.read));
      if (take.length === 0) return;
      if (kind === undefined) {
        kind = looksLikeScoreRecord(take[0]!.value) ? "scores" : "inputs";
        opts.logger.info({ topic: opts.topic, kind }, "calibrating from the topic's records");
        if (kind === "inputs") {
          scoring = await opts.makeInputScoring();
          cut = new WindowCut<DecodedRecord>({ windowSize, bankSize: scoring.scorer.settings.bankSize });
        }
      }
      if (kind === "scores") {
        for (const r of take) {
          const where = `topic ${r.source.topic} partition ${r.source.partition} offset ${r.source.offset}`;
          grouper.add(parseScoreRecord(r.value?.toString("utf8") ?? "null", where));
        }
      } else {
        calibration.read += take.length;
        for (const record of await scoring!.decode(take)) {
          const window = cut!.add(record);
          if (window) {
            await scoreWindow(window);
            await heartbeat();
          }
        }
      }
      if (calibration.read >= limit) stopRequested?.();
    },
  });
  try {
    try {
      await Promise.race([range.finished, limitReached]);
    } finally {
      await range.stop();
    }
    await range.finished;
    grouper.flush();
    await scoreWindow(cut?.cut());
  } finally {
    await scoring?.close();
  }
  return kind ?? "scores";
}

function looksLikeScoreRecord(value: Buffer | null): boolean {
  if (value === null || value[0] !== 0x7b /* { */) return false;
  try {
    return isScoreRecordLike(JSON.parse(value.toString("utf8")));
  } catch {
    return false;
  }
}
