/** `clipsieve fidelity --input`'s report, as text. */
import { AGREEMENT_HEADER, agreementLine } from "./fidelity.ts";
import type { TopicFidelityReport } from "./fidelity-topic.ts";

export function formatTopicFidelity(r: TopicFidelityReport): string {
  const pct = (n: number) => `${((100 * n) / Math.max(1, r.scored)).toFixed(1)}%`;
  const a = r.agreement;
  const lines = [
    `${r.topic}: ${r.read.toLocaleString("en-US")} records read, ${r.scored.toLocaleString("en-US")} scored.`,
    `Offline (the whole sample as one pool, b = ${r.offline.batchSize}, K = ${r.offline.draws}): ${pct(r.offline.accepted)} accepted (${r.offline.seconds.toFixed(1)} s).`,
    r.noiseFloor === undefined
      ? "Noise floor: not run (--no-noise-floor)."
      : `Noise floor (offline against offline, another draw seed): Jaccard ${r.noiseFloor.toFixed(3)}.`,
    `Streaming (the filter's cut: ${r.streaming.windows} windows of ${r.streaming.windowSize} records, the first also taking the bank's ${r.streaming.bankSize}; ` +
      `${r.streaming.normaliser === "pool" ? `pool normaliser scaled to b = ${r.streaming.batchSize}` : `K = ${r.streaming.draws}, b = ${r.streaming.batchSize}`}): ` +
      `${pct(r.streaming.accepted)} accepted (${r.streaming.seconds.toFixed(1)} s).`,
    "",
    `Jaccard streaming against offline: ${a.jaccard.toFixed(3)}` +
      (r.noiseFloor === undefined ? "." : ` (gap to the floor ${(r.noiseFloor - a.jaccard).toFixed(3)}).`),
    "",
    `| ${AGREEMENT_HEADER[0]}`,
    `| ${AGREEMENT_HEADER[1]}`,
    `| ${agreementLine(a)}`,
  ];
  return lines.join("\n");
}
