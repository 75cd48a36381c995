/**
 * Score records (the scores topic's JSON, `ScoreRecord` in src/sink/outputs.ts) from a topic or from a
 * JSON Lines dump of one, for `diff`, `dump` and `calibrate`.
 *
 * A source is a file when a file of that name exists or the name ends in `.jsonl`; otherwise it is a
 * topic. `kafka:<topic>` forces a topic and `file:<path>` a file, for names that would be misread.
 */
import { createReadStream, existsSync } from "node:fs";
import { createInterface } from "node:readline";
import { ClipsieveError } from "../common/errors.ts";
import type { Logger } from "../common/logger.ts";
import { writeAll, writeFileAtomic } from "../io/files.ts";
import type { KafkaClient } from "../kafka/index.ts";
import type { ScoreRecord } from "../sink/outputs.ts";
import { consumeRange } from "./topic-range.ts";

export type ScoreSource = { kind: "topic"; topic: string } | { kind: "file"; path: string };

export function parseScoreSource(text: string): ScoreSource {
  if (text.startsWith("kafka:")) return { kind: "topic", topic: text.slice("kafka:".length) };
  if (text.startsWith("file:")) return { kind: "file", path: text.slice("file:".length) };
  if (existsSync(text) || text.toLowerCase().endsWith(".jsonl")) return { kind: "file", path: text };
  return { kind: "topic", topic: text };
}

export function describeSource(source: ScoreSource): string {
  return source.kind === "topic" ? `topic ${source.topic}` : `file ${source.path}`;
}

/** The thresholds of a score record: JSON writes Infinity (a top fraction keeping nobody yet) as null. */
export type RecordedThresholds = Record<string, number>;

/**
 * A score record as read: a score that was not computed (null on the wire, named in `not_computed`) is
 * left out of `scores`, so every value there is a number.
 */
export type ReadScoreRecord = Omit<ScoreRecord, "scores"> & { scores: Record<string, number> };

function invalid(where: string, why: string): ClipsieveError {
  return new ClipsieveError("LAKE_RECORD_INVALID", `${where}: not a clipsieve score record (${why})`);
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** Parses and checks one score record; `where` names it in errors (file and line, or topic coordinates). */
export function parseScoreRecord(text: string, where: string): ReadScoreRecord {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw invalid(where, `not JSON: ${(err as Error).message}`);
  }
  if (!isObject(value)) throw invalid(where, "not a JSON object");
  const source = value.source;
  if (
    !isObject(source) ||
    typeof source.topic !== "string" ||
    typeof source.partition !== "number" ||
    typeof source.offset !== "string" ||
    !/^\d+$/.test(source.offset)
  ) {
    throw invalid(where, "no source {topic, partition, offset}");
  }
  const decision = value.decision;
  if (decision !== "accepted" && decision !== "rejected" && decision !== "dead_letter") {
    throw invalid(where, `decision is ${JSON.stringify(decision)}`);
  }
  if (typeof value.reason !== "string") throw invalid(where, "no reason");
  if (!isObject(value.scores)) throw invalid(where, "no scores object");
  let notComputed: Record<string, string> | undefined;
  if (value.not_computed !== undefined) {
    if (
      !isObject(value.not_computed) ||
      !Object.values(value.not_computed).every((v) => typeof v === "string")
    )
      throw invalid(where, "not_computed is not an object of reasons");
    notComputed = value.not_computed as Record<string, string>;
  }
  const scores: Record<string, number> = {};
  for (const [k, v] of Object.entries(value.scores)) {
    // null only for a score the record was not given on purpose, with the reason beside it.
    if (v === null && notComputed?.[k] !== undefined) continue;
    if (typeof v !== "number") throw invalid(where, `score ${k} is ${JSON.stringify(v)}`);
    scores[k] = v;
  }
  const thresholds: RecordedThresholds = {};
  if (value.thresholds !== undefined) {
    if (!isObject(value.thresholds)) throw invalid(where, "thresholds is not an object");
    for (const [k, v] of Object.entries(value.thresholds)) {
      if (v === null) thresholds[k] = Number.POSITIVE_INFINITY;
      else if (typeof v === "number") thresholds[k] = v;
      else throw invalid(where, `threshold ${k} is ${JSON.stringify(v)}`);
    }
  }
  return {
    source: { topic: source.topic, partition: source.partition, offset: source.offset },
    uid: typeof value.uid === "string" ? value.uid : null,
    scores,
    ...(notComputed ? { not_computed: notComputed } : {}),
    thresholds,
    decision,
    reason: value.reason,
    rule: typeof value.rule === "string" ? value.rule : null,
    window_id: typeof value.window_id === "string" ? value.window_id : "",
    seed: typeof value.seed === "number" ? value.seed : 0,
    policy_version: typeof value.policy_version === "string" ? value.policy_version : "",
    ...(isObject(value.error) ? { error: value.error as unknown as NonNullable<ScoreRecord["error"]> } : {}),
  };
}

export interface ReadSourceContext {
  /** Needed for a topic source. */
  kafka?: KafkaClient;
  logger: Logger;
}

/** The JSON text of every line or record of a source, in order, with where it came from. */
export async function forEachSourceValue(
  source: ScoreSource,
  ctx: ReadSourceContext,
  onValue: (text: string, where: string) => void | Promise<void>,
): Promise<number> {
  let count = 0;
  if (source.kind === "file") {
    if (!existsSync(source.path)) {
      throw new ClipsieveError(
        "INPUT_FILE_INVALID",
        `${source.path}: file not found (to read a topic of that name, write kafka:${source.path})`,
      );
    }
    const lines = createInterface({ input: createReadStream(source.path), crlfDelay: Infinity });
    let n = 0;
    for await (const line of lines) {
      n++;
      if (line.trim() === "") continue;
      await onValue(line, `${source.path} line ${n}`);
      count++;
    }
    return count;
  }
  if (!ctx.kafka)
    throw new ClipsieveError("CONFIG_INVALID", `--brokers is needed to read topic ${source.topic}`);
  const range = await consumeRange({
    kafka: ctx.kafka,
    topic: source.topic,
    logger: ctx.logger,
    onBatch: async ({ records }) => {
      for (const r of records) {
        const where = `topic ${r.source.topic} partition ${r.source.partition} offset ${r.source.offset}`;
        if (r.value === null) throw invalid(where, "the value is null (a tombstone)");
        await onValue(r.value.toString("utf8"), where);
        count++;
      }
    },
  });
  try {
    await range.finished;
  } finally {
    await range.stop();
  }
  return count;
}

/** Every score record of a source, in order. */
export async function forEachScoreRecord(
  source: ScoreSource,
  ctx: ReadSourceContext,
  onRecord: (record: ReadScoreRecord) => void | Promise<void>,
): Promise<number> {
  return forEachSourceValue(source, ctx, (text, where) => onRecord(parseScoreRecord(text, where)));
}

/**
 * `dump`: a topic of JSON values (scores, window manifests) to a JSON Lines file, one value per line,
 * written whole (a temporary file renamed at the end). Values are checked to be JSON and rewritten on
 * one line each.
 */
export async function dumpTopic(
  kafka: KafkaClient,
  topic: string,
  out: string,
  logger: Logger,
): Promise<number> {
  let count = 0;
  await writeFileAtomic(out, async (file) => {
    let pending: string[] = [];
    const flush = async () => {
      if (pending.length === 0) return;
      const chunk = pending.join("");
      pending = [];
      await writeAll(file, Buffer.from(chunk, "utf8"));
    };
    count = await forEachSourceValue({ kind: "topic", topic }, { kafka, logger }, async (text, where) => {
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch (err) {
        throw new ClipsieveError(
          "LAKE_RECORD_INVALID",
          `${where}: the value is not JSON (${(err as Error).message}); dump writes JSON values only`,
        );
      }
      pending.push(`${JSON.stringify(value)}\n`);
      if (pending.length >= 4096) await flush();
    });
    await flush();
  });
  return count;
}
