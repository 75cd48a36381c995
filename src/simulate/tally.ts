/**
 * What the demo counts as windows are delivered (pure: no I/O), and the summary it prints: records per
 * decision and reason, throughput, produce-to-decision latency, and per labelled kind how many were
 * accepted next to what CLIPScore alone would have kept.
 */
import type { RecordOutcome } from "../common/record.ts";
import { SIM_KINDS, type SimKind } from "./generator.ts";
import { SIM_HEADERS } from "./producer.ts";

interface KindRow {
  records: number;
  accepted: number;
  /** Accepted by the policy, before the dedup step rejected copies (near_duplicate, near_reference). */
  policyAccepted: number;
  clipScoreSum: number;
  sClipLossSum: number;
  scored: number;
}

export interface TallySnapshot {
  decided: number;
  accepted: number;
  rejected: number;
  deadLetter: number;
}

export class DemoTally {
  decided = 0;
  /** "decision/reason" -> records. */
  readonly byReason = new Map<string, number>();
  readonly byKind = new Map<string, KindRow>();
  readonly latenciesMs: number[] = [];
  firstProducedAt = Number.POSITIVE_INFINITY;
  lastDeliveredAt = 0;
  /**
   * Records accepted although a record of their near-copy cluster was accepted before them (the
   * `sim-cluster` header): by the policy alone (what the filter keeps without --dedup), and in the end.
   */
  readonly copiesAccepted = { policy: 0, final: 0 };
  private readonly clustersAccepted = { policy: new Set<string>(), final: new Set<string>() };
  /** CLIPScore and kind of every scored record, for the CLIPScore-only comparison. */
  private readonly clipScores: number[] = [];
  private readonly clipKinds: string[] = [];

  add(outcomes: readonly RecordOutcome[], deliveredAt: number): void {
    for (const o of outcomes) {
      this.decided++;
      const key = `${o.decision}/${o.reason}`;
      this.byReason.set(key, (this.byReason.get(key) ?? 0) + 1);
      const kind = headerText(o.record.headers[SIM_HEADERS.kind]) ?? "unlabelled";
      let row = this.byKind.get(kind);
      if (!row)
        this.byKind.set(
          kind,
          (row = { records: 0, accepted: 0, policyAccepted: 0, clipScoreSum: 0, sClipLossSum: 0, scored: 0 }),
        );
      row.records++;
      if (o.decision === "accepted") row.accepted++;
      if (o.decision === "accepted" || o.copyOf) row.policyAccepted++;
      const cluster = headerText(o.record.headers[SIM_HEADERS.cluster]);
      if (cluster !== undefined) {
        if (o.decision === "accepted" || o.copyOf) this.countCopy("policy", cluster);
        if (o.decision === "accepted") this.countCopy("final", cluster);
      }
      const s = o.scores;
      if (s?.clip_score !== undefined && s.s_clip_loss !== undefined) {
        row.scored++;
        row.clipScoreSum += s.clip_score;
        row.sClipLossSum += s.s_clip_loss;
        this.clipScores.push(s.clip_score);
        this.clipKinds.push(kind);
      }
      const produced = Number(o.record.timestamp);
      if (Number.isFinite(produced)) {
        this.firstProducedAt = Math.min(this.firstProducedAt, produced);
        this.latenciesMs.push(deliveredAt - produced);
      }
    }
    this.lastDeliveredAt = Math.max(this.lastDeliveredAt, deliveredAt);
  }

  private countCopy(stage: "policy" | "final", cluster: string): void {
    const seen = this.clustersAccepted[stage];
    if (seen.has(cluster)) this.copiesAccepted[stage]++;
    else seen.add(cluster);
  }

  snapshot(): TallySnapshot {
    let accepted = 0;
    let rejected = 0;
    let deadLetter = 0;
    for (const [key, n] of this.byReason) {
      if (key.startsWith("accepted/")) accepted += n;
      else if (key.startsWith("rejected/")) rejected += n;
      else deadLetter += n;
    }
    return { decided: this.decided, accepted, rejected, deadLetter };
  }

  /** Records per second from the first record produced to the last decision delivered. */
  throughput(): number {
    const seconds = (this.lastDeliveredAt - this.firstProducedAt) / 1000;
    return seconds > 0 ? this.decided / seconds : 0;
  }

  /** For each kind, the share of its records among the top `fraction` of the stream by CLIPScore. */
  clipScoreOnly(fraction: number): Map<string, number> {
    const order = this.clipScores.map((_, i) => i).sort((a, b) => this.clipScores[b] - this.clipScores[a]);
    const kept = order.slice(0, Math.floor(order.length * fraction));
    const out = new Map<string, number>();
    for (const i of kept) out.set(this.clipKinds[i], (out.get(this.clipKinds[i]) ?? 0) + 1);
    return out;
  }
}

function headerText(v: Buffer | string | undefined): string | undefined {
  return v === undefined ? undefined : v.toString();
}

/** The q-quantile (0..1) of `values` by the nearest-rank method; NaN when empty. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)));
  return sorted[rank - 1];
}

const int = (n: number) => n.toLocaleString("en-US");
const pct = (n: number, d: number) => (d > 0 ? `${((100 * n) / d).toFixed(1)}%` : "-");

function table(header: string[], rows: string[][], rightAlign: boolean[]): string {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, c) => (rightAlign[c] ? cell.padStart(widths[c]) : cell.padEnd(widths[c])))
      .join("  ")
      .trimEnd();
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

const DECISION_ORDER = ["accepted", "rejected", "dead_letter"];

export function formatSummary(tally: DemoTally): string {
  const total = tally.decided;
  const reasons = [...tally.byReason].sort(([a], [b]) => {
    const [da, ra] = a.split("/");
    const [db, rb] = b.split("/");
    return DECISION_ORDER.indexOf(da) - DECISION_ORDER.indexOf(db) || ra.localeCompare(rb);
  });
  const decisions = table(
    ["decision", "reason", "records", "share"],
    reasons.map(([key, n]) => {
      const [decision, reason] = key.split("/");
      return [decision, reason, int(n), pct(n, total)];
    }),
    [false, false, true, true],
  );
  const { accepted } = tally.snapshot();
  const acceptedFraction = total > 0 ? accepted / total : 0;
  const byClip = tally.clipScoreOnly(acceptedFraction);
  const kinds = [...SIM_KINDS, ...[...tally.byKind.keys()].filter((k) => !SIM_KINDS.includes(k as SimKind))];
  const perKind = table(
    [
      "kind",
      "records",
      "policy accepted",
      "accepted after dedup",
      "rate",
      "mean CLIPScore",
      "mean s-CLIPLoss",
      `CLIPScore top ${pct(accepted, total)} would keep`,
    ],
    kinds
      .filter((k) => tally.byKind.has(k))
      .map((k) => {
        const r = tally.byKind.get(k) as KindRow;
        const kept = byClip.get(k) ?? 0;
        return [
          k,
          int(r.records),
          int(r.policyAccepted),
          int(r.accepted),
          pct(r.accepted, r.records),
          r.scored > 0 ? (r.clipScoreSum / r.scored).toFixed(3) : "-",
          r.scored > 0 ? (r.sClipLossSum / r.scored).toFixed(3) : "-",
          pct(kept, r.records),
        ];
      }),
    [false, true, true, true, true, true, true, true],
  );
  const seconds = (tally.lastDeliveredAt - tally.firstProducedAt) / 1000;
  const lat = (q: number) => `${(quantile(tally.latenciesMs, q) / 1000).toFixed(2)} s`;
  return [
    "Decisions",
    decisions,
    "",
    `Throughput: ${int(Math.round(tally.throughput()))} records/s (${int(total)} records in ${seconds.toFixed(1)} s, first produced to last decided)`,
    `Latency, produced -> decision delivered: p50 ${lat(0.5)}, p99 ${lat(0.99)}`,
    "",
    "Per labelled kind",
    perKind,
    "",
    `Near-copies accepted (records of a near-copy cluster with an earlier accepted record): ` +
      `${int(tally.copiesAccepted.policy)} by the policy alone, ${int(tally.copiesAccepted.final)} after dedup`,
  ].join("\n");
}
