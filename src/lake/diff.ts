/**
 * `diff`: what changed between two runs of the filter over the same input, from their score records.
 * Records are matched by their source (topic, partition, offset). A record's decision changed when it
 * went between accepted, rejected and dead-lettered; a reason change with the same decision (say from
 * below_threshold to below_keep_quantile) is counted apart. Score shifts are after - before on the
 * matched records that have the score on both sides; threshold shifts likewise, per threshold key.
 * A score one side has and the other lacks (not computed there: NormSim_inf below the stage-1 cut-off
 * of a filter that computed it for its stage-1 passers only, or no target set) is no shift: it is
 * counted per side instead, so a diff of a lazily scored run against an eagerly scored one shows how
 * many values one side skipped rather than mixing them into the shifts.
 */
import type { SourceRef } from "../common/record.ts";
import type { ReadScoreRecord } from "./score-records.ts";

const QUANTILES = [0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1] as const;

/** What a side keeps of each record: enough to compare, without the record's full JSON. */
interface Kept {
  source: SourceRef;
  uid: string | null;
  decision: string;
  reason: string;
  rule: string | null;
  scores: Record<string, number>;
  thresholds: Record<string, number>;
  policyVersion: string;
}

export interface DiffSideSummary {
  label: string;
  records: number;
  /** Records whose source appeared again (the last one counts). */
  duplicates: number;
  accepted: number;
  rejected: number;
  dead_letter: number;
  policy_versions: string[];
  /** `decision/reason` -> records. */
  by_reason: Record<string, number>;
}

export interface DecisionSide {
  decision: string;
  reason: string;
  rule: string | null;
}

export interface ChangedRecord {
  source: SourceRef;
  uid: string | null;
  before: DecisionSide;
  after: DecisionSide;
}

export interface Distribution {
  n: number;
  mean: number | null;
  mean_abs: number | null;
  /** Quantile (as a string key, "0" .. "1") -> value, linear interpolation between order statistics. */
  quantiles: Record<string, number | null>;
}

export interface ScoreShift extends Distribution {
  /** Matched records whose score differs at all. */
  changed: number;
  /** Matched records with the score before but not after (not computed after), and the reverse. */
  only_before: number;
  only_after: number;
}

export interface ThresholdSide {
  /** Records carrying this threshold. */
  records: number;
  min: number | null;
  max: number | null;
  /** The value on the last record read (the cut-off in force at the end of that run). */
  last: number | null;
}

export interface ThresholdChange {
  before: ThresholdSide | null;
  after: ThresholdSide | null;
  /** after - before on matched records that carry the key on both sides (finite values only). */
  shift: Distribution;
}

export interface ScoreDiff {
  before: DiffSideSummary;
  after: DiffSideSummary;
  matched: number;
  only_before: number;
  only_after: number;
  /** Matched records whose decision (accepted / rejected / dead_letter) differs. */
  decision_changed: number;
  /** Matched records with the same decision but another reason. */
  reason_changed: number;
  /** Matched records by (before, after) `decision/reason`, largest first. */
  transitions: { from: string; to: string; records: number }[];
  /** Every matched record whose decision changed, in source order. */
  changed: ChangedRecord[];
  scores: Record<string, ScoreShift>;
  thresholds: Record<string, ThresholdChange>;
}

/** Collects one side's score records as they are read. */
export class DiffSide {
  readonly label: string;
  readonly records = new Map<string, Kept>();
  private duplicates = 0;
  private read = 0;
  private readonly thresholdStats = new Map<string, ThresholdSide>();
  /** Windows share one thresholds object; keeping one copy per distinct JSON saves memory. */
  private readonly interned = new Map<string, Record<string, number>>();

  constructor(label: string) {
    this.label = label;
  }

  add(r: ReadScoreRecord): void {
    this.read++;
    const key = sourceKey(r.source);
    if (this.records.has(key)) this.duplicates++;
    const tKey = JSON.stringify(r.thresholds);
    let thresholds = this.interned.get(tKey);
    if (!thresholds) this.interned.set(tKey, (thresholds = r.thresholds));
    this.records.set(key, {
      source: r.source,
      uid: r.uid,
      decision: r.decision,
      reason: r.reason,
      rule: r.rule,
      scores: r.scores,
      thresholds,
      policyVersion: r.policy_version,
    });
    for (const [k, v] of Object.entries(r.thresholds)) {
      let s = this.thresholdStats.get(k);
      if (!s) this.thresholdStats.set(k, (s = { records: 0, min: null, max: null, last: null }));
      s.records++;
      s.last = Number.isFinite(v) ? v : null;
      if (Number.isFinite(v)) {
        s.min = s.min === null ? v : Math.min(s.min, v);
        s.max = s.max === null ? v : Math.max(s.max, v);
      }
    }
  }

  threshold(key: string): ThresholdSide | null {
    return this.thresholdStats.get(key) ?? null;
  }

  thresholdKeys(): string[] {
    return [...this.thresholdStats.keys()];
  }

  summary(): DiffSideSummary {
    const byReason: Record<string, number> = {};
    const counts = { accepted: 0, rejected: 0, dead_letter: 0 } as Record<string, number>;
    const versions = new Set<string>();
    for (const r of this.records.values()) {
      const k = `${r.decision}/${r.reason}`;
      byReason[k] = (byReason[k] ?? 0) + 1;
      counts[r.decision] = (counts[r.decision] ?? 0) + 1;
      if (r.policyVersion) versions.add(r.policyVersion);
    }
    return {
      label: this.label,
      records: this.read,
      duplicates: this.duplicates,
      accepted: counts.accepted ?? 0,
      rejected: counts.rejected ?? 0,
      dead_letter: counts.dead_letter ?? 0,
      policy_versions: [...versions].sort(),
      by_reason: sortedRecord(byReason),
    };
  }
}

export function sourceKey(s: SourceRef): string {
  return `${s.topic}\u0000${s.partition}\u0000${s.offset}`;
}

function compareSources(a: SourceRef, b: SourceRef): number {
  if (a.topic !== b.topic) return a.topic < b.topic ? -1 : 1;
  if (a.partition !== b.partition) return a.partition - b.partition;
  const x = BigInt(a.offset);
  const y = BigInt(b.offset);
  return x < y ? -1 : x > y ? 1 : 0;
}

function sortedRecord(o: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** numpy's default ("linear") quantile of sorted values. */
export function quantile(sorted: Float64Array, q: number): number | null {
  if (sorted.length === 0) return null;
  const h = (sorted.length - 1) * q;
  const lo = Math.floor(h);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo]! + (h - lo) * (sorted[hi]! - sorted[lo]!);
}

export function distribution(values: number[]): Distribution {
  const sorted = Float64Array.from(values).sort();
  let sum = 0;
  let sumAbs = 0;
  for (const v of sorted) {
    sum += v;
    sumAbs += Math.abs(v);
  }
  const n = sorted.length;
  return {
    n,
    mean: n ? sum / n : null,
    mean_abs: n ? sumAbs / n : null,
    quantiles: Object.fromEntries(QUANTILES.map((q) => [String(q), quantile(sorted, q)])),
  };
}

export function diffSides(before: DiffSide, after: DiffSide): ScoreDiff {
  let matched = 0;
  let decisionChanged = 0;
  let reasonChanged = 0;
  const transitions = new Map<string, { from: string; to: string; records: number }>();
  const changed: ChangedRecord[] = [];
  const scoreDeltas = new Map<string, number[]>();
  const scoreChanged = new Map<string, number>();
  const onlyBefore = new Map<string, number>();
  const onlyAfter = new Map<string, number>();
  const bump = (counts: Map<string, number>, score: string) =>
    counts.set(score, (counts.get(score) ?? 0) + 1);
  const thresholdDeltas = new Map<string, number[]>();

  for (const [key, b] of before.records) {
    const a = after.records.get(key);
    if (!a) continue;
    matched++;
    const from = `${b.decision}/${b.reason}`;
    const to = `${a.decision}/${a.reason}`;
    const t = transitions.get(`${from}\u0000${to}`);
    if (t) t.records++;
    else transitions.set(`${from}\u0000${to}`, { from, to, records: 1 });
    if (a.decision !== b.decision) {
      decisionChanged++;
      changed.push({
        source: b.source,
        uid: b.uid ?? a.uid,
        before: { decision: b.decision, reason: b.reason, rule: b.rule },
        after: { decision: a.decision, reason: a.reason, rule: a.rule },
      });
    } else if (a.reason !== b.reason) {
      reasonChanged++;
    }
    for (const score of Object.keys(a.scores)) if (!(score in b.scores)) bump(onlyAfter, score);
    for (const [score, bv] of Object.entries(b.scores)) {
      const av = a.scores[score];
      if (av === undefined) bump(onlyBefore, score);
      if (av === undefined || !Number.isFinite(av) || !Number.isFinite(bv)) continue;
      let list = scoreDeltas.get(score);
      if (!list) scoreDeltas.set(score, (list = []));
      list.push(av - bv);
      if (av !== bv) scoreChanged.set(score, (scoreChanged.get(score) ?? 0) + 1);
    }
    for (const [k, bv] of Object.entries(b.thresholds)) {
      const av = a.thresholds[k];
      if (av === undefined || !Number.isFinite(av) || !Number.isFinite(bv)) continue;
      let list = thresholdDeltas.get(k);
      if (!list) thresholdDeltas.set(k, (list = []));
      list.push(av - bv);
    }
  }
  changed.sort((x, y) => compareSources(x.source, y.source));

  const scores: Record<string, ScoreShift> = {};
  for (const score of [
    ...new Set([...scoreDeltas.keys(), ...onlyBefore.keys(), ...onlyAfter.keys()]),
  ].sort()) {
    scores[score] = {
      ...distribution(scoreDeltas.get(score) ?? []),
      changed: scoreChanged.get(score) ?? 0,
      only_before: onlyBefore.get(score) ?? 0,
      only_after: onlyAfter.get(score) ?? 0,
    };
  }
  const thresholds: Record<string, ThresholdChange> = {};
  for (const k of [...new Set([...before.thresholdKeys(), ...after.thresholdKeys()])].sort()) {
    thresholds[k] = {
      before: before.threshold(k),
      after: after.threshold(k),
      shift: distribution(thresholdDeltas.get(k) ?? []),
    };
  }
  return {
    before: before.summary(),
    after: after.summary(),
    matched,
    only_before: before.records.size - matched,
    only_after: after.records.size - matched,
    decision_changed: decisionChanged,
    reason_changed: reasonChanged,
    transitions: [...transitions.values()].sort(
      (x, y) => y.records - x.records || (x.from + x.to < y.from + y.to ? -1 : 1),
    ),
    changed,
    scores,
    thresholds,
  };
}

// ---- the terminal table ----

const fmt = (v: number | null | undefined, digits = 6): string =>
  v === null || v === undefined ? "-" : Number.isFinite(v) ? v.toFixed(digits) : String(v);
const pct = (n: number, of: number): string => (of > 0 ? `${((100 * n) / of).toFixed(2)}%` : "-");

/** `align`: one letter per column, "l" or "r" (numbers). */
function table(header: string[], rows: string[][], align: string): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (align[i] === "r" ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)];
}

/** The diff for a terminal: counts, transitions, score and threshold shifts, the first changed records. */
export function formatDiff(d: ScoreDiff, listChanged = 10): string {
  const out: string[] = [];
  const side = (name: string, s: DiffSideSummary) =>
    `${name}: ${s.label}: ${s.records} records (${s.accepted} accepted, ${s.rejected} rejected, ` +
    `${s.dead_letter} dead-lettered)${s.duplicates ? `, ${s.duplicates} duplicates` : ""}; policy ${s.policy_versions.join(", ") || "-"}`;
  out.push(side("before", d.before), side("after ", d.after));
  out.push(
    `matched ${d.matched} by source; only before ${d.only_before}; only after ${d.only_after}`,
    `decision changed: ${d.decision_changed} (${pct(d.decision_changed, d.matched)}); ` +
      `reason changed, same decision: ${d.reason_changed}`,
    "",
  );
  const moved = d.transitions.filter((t) => t.from !== t.to);
  if (moved.length > 0) {
    out.push(
      ...table(
        ["before -> after", "records"],
        moved.map((t) => [`${t.from} -> ${t.to}`, String(t.records)]),
        "lr",
      ),
      "",
    );
  }
  const scoreNames = Object.keys(d.scores);
  if (scoreNames.length > 0) {
    out.push(
      "score shifts (after - before, matched records with the score on both sides; only before/after: not computed on the other side):",
      ...table(
        ["score", "n", "changed", "only before", "only after", "mean", "p1", "p50", "p99", "min", "max"],
        scoreNames.map((s) => {
          const x = d.scores[s]!;
          return [
            s,
            String(x.n),
            String(x.changed),
            String(x.only_before),
            String(x.only_after),
            fmt(x.mean),
            fmt(x.quantiles["0.01"]),
            fmt(x.quantiles["0.5"]),
            fmt(x.quantiles["0.99"]),
            fmt(x.quantiles["0"]),
            fmt(x.quantiles["1"]),
          ];
        }),
        "lrrrrrrrrrr",
      ),
      "",
    );
  }
  const keys = Object.keys(d.thresholds);
  if (keys.length > 0) {
    out.push(
      "thresholds (last value in force; range over the run):",
      ...table(
        ["threshold", "before", "before range", "after", "after range", "mean shift"],
        keys.map((k) => {
          const t = d.thresholds[k]!;
          const range = (s: ThresholdSide | null) => (s ? `${fmt(s.min)}..${fmt(s.max)}` : "-");
          return [
            k,
            fmt(t.before?.last),
            range(t.before),
            fmt(t.after?.last),
            range(t.after),
            fmt(t.shift.mean),
          ];
        }),
        "lrrrrr",
      ),
      "",
    );
  }
  if (d.changed.length > 0) {
    const shown = d.changed.slice(0, listChanged);
    out.push(
      `changed records${d.changed.length > shown.length ? ` (first ${shown.length} of ${d.changed.length}; --json lists all)` : ""}:`,
      ...table(
        ["source", "uid", "before", "after"],
        shown.map((c) => [
          `${c.source.topic}/${c.source.partition}/${c.source.offset}`,
          c.uid ?? "-",
          `${c.before.decision}/${c.before.reason}`,
          `${c.after.decision}/${c.after.reason}`,
        ]),
        "llll",
      ),
    );
  }
  return out.join("\n");
}
