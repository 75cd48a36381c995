import type { SourceRef } from "../common/record.ts";

/**
 * A compact, order-preserving encoding of a list of record coordinates: consecutive offsets of one
 * topic-partition collapse into one run `[topic, partition, firstOffset, count]`. A window's members
 * and its bank rows are recorded this way, so a 28,672-row bank costs a few runs, not a megabyte.
 */
export type SourceRun = [topic: string, partition: number, firstOffset: string, count: number];

export function encodeRuns(refs: readonly SourceRef[]): SourceRun[] {
  const runs: SourceRun[] = [];
  let last: SourceRun | undefined;
  let lastOffset = -1n;
  for (const r of refs) {
    const off = BigInt(r.offset);
    if (last && last[0] === r.topic && last[1] === r.partition && off === lastOffset + 1n) {
      last[3]++;
    } else {
      last = [r.topic, r.partition, r.offset, 1];
      runs.push(last);
    }
    lastOffset = off;
  }
  return runs;
}

export function decodeRuns(runs: readonly SourceRun[]): SourceRef[] {
  const out: SourceRef[] = [];
  for (const [topic, partition, first, count] of runs) {
    const base = BigInt(first);
    for (let i = 0n; i < BigInt(count); i++) out.push({ topic, partition, offset: (base + i).toString() });
  }
  return out;
}
