/**
 * What a decided window becomes on Kafka (pure: no I/O). Accepted and rejected records keep their key
 * and value bytes unchanged and gain `clipsieve-*` headers; bad records go to the dead-letter topic with
 * the error; every input record also gets one compact JSON record on the scores topic.
 *
 * A score the record was not given on purpose (NormSim_inf below the stage-1 cut-off) is written as
 * null, never left out or written as 0, and named with its reason in `not_computed` (the header
 * `clipsieve-not-computed`): a reader can tell "not needed" from "no target set" (the key is absent)
 * and from a value.
 */
import type { CopyOf, DecodedRecord, RecordDecision, RecordOutcome, SourceRef } from "../common/record.ts";
import { SCORE_NAMES } from "../score/registry.ts";
import type { OutputTopics } from "./topics.ts";

export type { OutputTopics };

export interface OutMessage {
  key: Buffer | string | null;
  value: Buffer | string | null;
  headers: Record<string, Buffer | string>;
}

export interface WindowContext {
  windowId: string;
  seed: number;
  policyVersion: string;
}

export const HEADER = {
  decision: "clipsieve-decision",
  reason: "clipsieve-reason",
  rule: "clipsieve-rule",
  scores: "clipsieve-scores",
  thresholds: "clipsieve-thresholds",
  policyVersion: "clipsieve-policy-version",
  windowId: "clipsieve-window-id",
  source: "clipsieve-source",
  errorCode: "clipsieve-error-code",
  errorStage: "clipsieve-error-stage",
  errorMessage: "clipsieve-error-message",
  notComputed: "clipsieve-not-computed",
  /** JSON: what a near_duplicate / near_reference record copies, and the similarity (CopyOf). */
  copyOf: "clipsieve-copy-of",
} as const;

/** The record of the scores topic (JSON). */
export interface ScoreRecord {
  source: SourceRef;
  uid: string | null;
  /** null: not computed, and `not_computed` says why. */
  scores: Record<string, number | null>;
  /** Scores not computed for this record, with the reason (`below_keep_quantile`); absent when none. */
  not_computed?: Record<string, string>;
  thresholds: Record<string, number>;
  decision: RecordDecision;
  reason: string;
  rule: string | null;
  window_id: string;
  seed: number;
  policy_version: string;
  /** What the record copies (near_duplicate: an earlier accepted record; near_reference: a reference row). */
  copy_of?: CopyOf;
  error?: { code: string; stage: string; message: string };
}

/** The record's scores with a null for each score it was not given, in registry order. */
function scoresWithGaps(o: RecordOutcome): Record<string, number | null> {
  const scores: Record<string, number | null> = { ...o.scores };
  if (!o.notComputed) return scores;
  for (const name of Object.keys(o.notComputed)) scores[name] = null;
  const rank = (name: string) => {
    const at = (SCORE_NAMES as readonly string[]).indexOf(name);
    return at < 0 ? SCORE_NAMES.length : at;
  };
  return Object.fromEntries(Object.entries(scores).sort(([a], [b]) => rank(a) - rank(b)));
}

function sourceHeader(s: SourceRef): string {
  return `${s.topic}/${s.partition}/${s.offset}`;
}

function originalHeaders(r: DecodedRecord): Record<string, Buffer | string> {
  const out: Record<string, Buffer | string> = {};
  for (const [k, v] of Object.entries(r.headers))
    if (v !== undefined && !k.startsWith("clipsieve-")) out[k] = v;
  return out;
}

/** Build every output message of a window, grouped by topic, in record order. */
export function buildWindowOutputs(
  outcomes: RecordOutcome[],
  topics: OutputTopics,
  ctx: WindowContext,
  manifest?: unknown,
): Map<string, OutMessage[]> {
  const byTopic = new Map<string, OutMessage[]>([
    [topics.accepted, []],
    [topics.rejected, []],
    [topics.deadLetter, []],
    [topics.scores, []],
  ]);
  for (const o of outcomes) {
    const r = o.record;
    const scores = scoresWithGaps(o);
    const thresholds = o.thresholds ?? {};
    const scoreRecord: ScoreRecord = {
      source: r.source,
      uid: r.uid ?? null,
      scores,
      ...(o.notComputed ? { not_computed: { ...o.notComputed } } : {}),
      thresholds,
      decision: o.decision,
      reason: o.reason,
      rule: o.rule ?? null,
      window_id: ctx.windowId,
      seed: ctx.seed,
      policy_version: ctx.policyVersion,
      ...(o.copyOf ? { copy_of: o.copyOf } : {}),
    };
    if (o.decision === "dead_letter") {
      const f = r.failure;
      scoreRecord.error = {
        code: f?.code ?? o.reason,
        stage: f?.stage ?? "decode",
        message: f?.message ?? "",
      };
      byTopic.get(topics.deadLetter)?.push({
        key: r.key,
        value: r.value,
        headers: {
          ...originalHeaders(r),
          [HEADER.errorCode]: scoreRecord.error.code,
          [HEADER.errorStage]: scoreRecord.error.stage,
          [HEADER.errorMessage]: scoreRecord.error.message,
          [HEADER.source]: sourceHeader(r.source),
          [HEADER.windowId]: ctx.windowId,
        },
      });
    } else {
      const headers: Record<string, Buffer | string> = {
        ...originalHeaders(r),
        [HEADER.decision]: o.decision,
        [HEADER.reason]: o.reason,
        [HEADER.scores]: JSON.stringify(scores),
        [HEADER.thresholds]: JSON.stringify(thresholds),
        [HEADER.policyVersion]: ctx.policyVersion,
        [HEADER.windowId]: ctx.windowId,
        [HEADER.source]: sourceHeader(r.source),
      };
      if (o.rule) headers[HEADER.rule] = o.rule;
      if (o.notComputed) headers[HEADER.notComputed] = JSON.stringify(o.notComputed);
      if (o.copyOf) headers[HEADER.copyOf] = JSON.stringify(o.copyOf);
      byTopic
        .get(o.decision === "accepted" ? topics.accepted : topics.rejected)
        ?.push({ key: r.key, value: r.value, headers });
    }
    byTopic
      .get(topics.scores)
      ?.push({ key: r.uid ?? sourceHeader(r.source), value: JSON.stringify(scoreRecord), headers: {} });
  }
  if (manifest !== undefined) {
    byTopic.set(topics.windowsTopic, [{ key: ctx.windowId, value: JSON.stringify(manifest), headers: {} }]);
  }
  return byTopic;
}

/** The consumer offsets to commit after a window: for each input partition, the last offset + 1. */
export function nextOffsets(records: readonly { source: SourceRef }[]): Map<string, Map<number, string>> {
  const out = new Map<string, Map<number, string>>();
  for (const { source } of records) {
    let parts = out.get(source.topic);
    if (!parts) out.set(source.topic, (parts = new Map()));
    const next = BigInt(source.offset) + 1n;
    const prev = parts.get(source.partition);
    if (prev === undefined || BigInt(prev) < next) parts.set(source.partition, next.toString());
  }
  return out;
}
