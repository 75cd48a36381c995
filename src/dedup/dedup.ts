/**
 * The dedup step, after the policy: a record the policy accepted is rejected
 *   - `near_reference` when its image is within `referenceThreshold` (cosine) of a row of the
 *     reference set (e.g. evaluation images: decontamination), else
 *   - `near_duplicate` when it is within `threshold` of a record accepted before it in its scope (an
 *     input partition), among at least the scope's last `horizon` accepted records (./history.ts).
 * The outcome names what it copies (`copyOf`: the most similar earlier record's uid and coordinates,
 * or the reference row) and the similarity.
 *
 * Within a window, records are taken in their scope's offset order and each is compared with the
 * history and with the records of the window kept before it (rounded to float16, as the history holds
 * them): of copies among themselves the earliest is kept. Why the earliest: it is what a record-at-a-time filter would keep, so the choice
 * does not depend on where windows were cut (a restarted filter may cut them elsewhere), and the
 * offline `select` can make the same choice from the records' order alone.
 *
 * The history is only ever appended with records the step kept, and is read back from the committed
 * history topic (./history-topic.ts) after a restart and after every rebalance (`generation`).
 */
import { ClipsieveError } from "../common/errors.ts";
import type { Logger } from "../common/logger.ts";
import type { CopyOf, RecordOutcome } from "../common/record.ts";
import { float16BitsToFloat32, float32ToFloat16Bits } from "../io/float16.ts";
import { loadTarget } from "../score/target-set.ts";
import type { OutMessage } from "../sink/outputs.ts";
import { type HistoryEntry, ScopeHistory, segmentRows } from "./history.ts";
import { chunkBits, type HistoryTopic, type LoadedScope, scopeOf } from "./history-topic.ts";
import { type SearchEngine, Segment } from "./segment.ts";

/** The reasons the step gives (beside the policy's, ../policy/types.ts). */
export const DEDUP_REASONS = ["near_duplicate", "near_reference"] as const;
export type DedupReason = (typeof DEDUP_REASONS)[number];

export const DEFAULT_DEDUP_THRESHOLD = 0.95;
export const DEFAULT_REFERENCE_THRESHOLD = 0.95;
export const DEFAULT_DEDUP_HORIZON = 100_000;
export const DEFAULT_DEDUP_PROBES = 2;

export interface DedupSettings {
  /** Cosine at or above which a record copies an earlier accepted one; undefined: no near_duplicate. */
  threshold?: number;
  /** Accepted records per scope that later ones are compared with. */
  horizon: number;
  /** Clusters of each indexed segment a query visits. */
  probes: number;
  /** Cosine at or above which a record copies a reference row. */
  referenceThreshold: number;
}

/** A reference set of up to this many rows is searched exactly; a larger one through an inverted file. */
const REFERENCE_EXACT_ROWS = 16_384;

/** Queries compared with each other per block (a block x window matrix of inner products). */
const PAIR_BLOCK = 512;

/**
 * A reference set, searchable: its rows as one segment, searched exactly up to REFERENCE_EXACT_ROWS
 * rows, else through an inverted file over all of them (the artifact's own index when it has one).
 */
export async function buildReference(
  engine: SearchEngine,
  embeddings: Float32Array | Uint16Array,
  rows: number,
  dim: number,
  index?: { centroids: Float32Array; offsets: Int32Array },
): Promise<Segment> {
  const bits =
    embeddings instanceof Uint16Array
      ? embeddings.subarray(0, rows * dim)
      : float32ToFloat16Bits(embeddings.subarray(0, rows * dim));
  if (index) return Segment.indexed(engine, bits, rows, dim, index);
  if (rows > REFERENCE_EXACT_ROWS) return Segment.indexed(engine, bits, rows, dim);
  const segment = new Segment(engine, { from: 0, size: rows, trainRows: 0, dim });
  await segment.append(bits, rows);
  return segment;
}

export interface DedupContext {
  engine: SearchEngine;
  dim: number;
  settings: DedupSettings;
  reference?: Segment;
  /** Where the history is committed and read back; none: in memory only (emulator, select). */
  store?: HistoryTopic;
  logger?: Logger;
}

export interface DedupResult {
  /** The history topic's messages for this window (empty without a store). */
  messages: OutMessage[];
  nearDuplicates: number;
  nearReferences: number;
}

const round = (x: number) => Math.round(x * 1e6) / 1e6;

export class Deduplicator {
  private readonly ctx: DedupContext;
  private readonly scopes = new Map<string, ScopeHistory>();
  private generation: number | undefined;

  constructor(ctx: DedupContext) {
    this.ctx = ctx;
  }

  /** Rows held over every scope, and their float16 bytes. */
  stats(): { scopes: number; rows: number; embeddingBytes: number } {
    let rows = 0;
    let embeddingBytes = 0;
    for (const h of this.scopes.values()) {
      rows += h.rows;
      embeddingBytes += h.embeddingBytes;
    }
    return { scopes: this.scopes.size, rows, embeddingBytes };
  }

  /**
   * Dedup a decided window's outcomes in place. `generation`: the consumer group generation the window
   * belongs to; a new one means partitions may have moved, so every history is read back from the store.
   */
  async apply(outcomes: RecordOutcome[], generation = 0): Promise<DedupResult> {
    const { settings, dim, engine, reference, store } = this.ctx;
    if (generation !== this.generation) {
      this.scopes.clear();
      store?.reset();
      this.generation = generation;
    }
    const result: DedupResult = { messages: [], nearDuplicates: 0, nearReferences: 0 };
    const candidates = outcomes.flatMap((o, i) =>
      o.decision === "accepted" && o.record.imageEmbedding ? [i] : [],
    );
    if (candidates.length === 0) return result;

    let left = candidates;
    if (reference) {
      const queries = gather(outcomes, candidates, dim);
      const best = new Float32Array(candidates.length).fill(Number.NEGATIVE_INFINITY);
      const row = new Float64Array(candidates.length).fill(-1);
      await reference.search(queries, candidates.length, settings.probes, best, row);
      left = [];
      candidates.forEach((i, q) => {
        if (best[q] >= settings.referenceThreshold) {
          reject(outcomes, i, "near_reference", {
            kind: "reference",
            row: row[q],
            similarity: round(best[q]),
          });
          result.nearReferences++;
        } else left.push(i);
      });
    }

    const threshold = settings.threshold;
    if (threshold === undefined) return result;
    // By scope, in offset order.
    const byScope = new Map<string, number[]>();
    for (const i of left) {
      const scope = scopeOf(outcomes[i].record.source);
      const list = byScope.get(scope) ?? [];
      list.push(i);
      byScope.set(scope, list);
    }
    await this.ensureScopes(byScope.keys());
    for (const [scope, list] of byScope) {
      list.sort((a, b) => compareOffsets(outcomes[a].record.source.offset, outcomes[b].record.source.offset));
      const history = this.scopes.get(scope) as ScopeHistory;
      const m = list.length;
      const queries = gather(outcomes, list, dim);
      const found = await history.search(queries, m);
      // The window's own rows as the history would hold them (float16), so that a record is compared
      // with an earlier one alike whether or not a window boundary fell between them.
      const asHeld = float16BitsToFloat32(float32ToFloat16Bits(queries));
      const kept: number[] = [];
      const isKept = new Uint8Array(m);
      for (let block = 0; block < m; block += PAIR_BLOCK) {
        const rows = Math.min(PAIR_BLOCK, m - block);
        // Each query of the block against every query up to the block's end.
        const span = block + rows;
        const pairs = await engine.dots(queries.subarray(block * dim), rows, asHeld, span, dim);
        for (let r = 0; r < rows; r++) {
          const q = block + r;
          const i = list[q];
          // The most similar earlier accepted record: the history's best, or a record kept before
          // this one in the window (ties: the history's, the older).
          let bestJ = -1;
          let bestSim = found.seq[q] >= 0 ? found.best[q] : Number.NEGATIVE_INFINITY;
          for (let j = 0; j < q; j++) {
            const sim = pairs[r * span + j];
            if (isKept[j] && sim > bestSim) {
              bestSim = sim;
              bestJ = j;
            }
          }
          if (bestSim >= threshold) {
            let copyOf: CopyOf;
            if (bestJ >= 0) {
              const copied = outcomes[list[bestJ]].record;
              copyOf = {
                kind: "record",
                uid: copied.uid ?? null,
                source: copied.source,
                similarity: round(bestSim),
              };
            } else {
              const e = history.entry(found.seq[q]);
              const source = { ...outcomes[i].record.source, offset: e.offset };
              copyOf = { kind: "record", uid: e.uid, source, similarity: round(bestSim) };
            }
            reject(outcomes, i, "near_duplicate", copyOf);
            result.nearDuplicates++;
            continue;
          }
          isKept[q] = 1;
          kept.push(q);
        }
      }
      if (kept.length === 0) continue;
      const keptRows = new Float32Array(kept.length * dim);
      for (const [k, q] of kept.entries()) keptRows.set(queries.subarray(q * dim, (q + 1) * dim), k * dim);
      const bits = float32ToFloat16Bits(keptRows);
      const entries: HistoryEntry[] = kept.map((q) => {
        const r = outcomes[list[q]].record;
        return { uid: r.uid ?? null, offset: r.source.offset };
      });
      if (store) result.messages.push(...store.messages(scope, history.count, bits, entries));
      await history.append(bits, entries);
    }
    return result;
  }

  /** Every scope of `scopes` has a history: read back from the store, or empty. */
  private async ensureScopes(scopes: Iterable<string>): Promise<void> {
    const missing = new Set([...scopes].filter((s) => !this.scopes.has(s)));
    if (missing.size === 0) return;
    const { engine, dim, settings, store } = this.ctx;
    const make = (start = 0) =>
      new ScopeHistory(engine, { dim, horizon: settings.horizon, probes: settings.probes, start });
    const loaded: Map<string, LoadedScope> = store ? await store.load(missing) : new Map();
    for (const scope of missing) {
      const l = loaded.get(scope);
      if (!l) {
        this.scopes.set(scope, make());
        continue;
      }
      const history = make(l.start);
      // In batches of up to a segment, each chunk's message let go once read, so the read-back
      // holds about the messages left plus the history built, not both whole.
      store?.adopt(scope, l);
      const batchRows = segmentRows(settings.horizon);
      let bits: Uint16Array[] = [];
      let entries: HistoryEntry[] = [];
      const flush = async () => {
        const all = new Uint16Array(entries.length * dim);
        let at = 0;
        for (const b of bits) {
          all.set(b, at);
          at += b.length;
        }
        await history.append(all, entries);
        bits = [];
        entries = [];
      };
      for (let c = 0; c < l.chunks.length; c++) {
        const { header, value } = l.chunks[c];
        const first = header.chunk * header.chunkRows;
        const skip = Math.max(0, l.start - first);
        bits.push(chunkBits(value).subarray(skip * dim));
        for (let k = skip; k < header.rows; k++)
          entries.push({ uid: header.uids[k], offset: header.offsets[k] });
        (l.chunks as Partial<(typeof l.chunks)[number]>[])[c] = {};
        if (entries.length >= batchRows) await flush();
      }
      if (entries.length > 0) await flush();
      this.scopes.set(scope, history);
    }
  }
}

function reject(outcomes: RecordOutcome[], i: number, reason: DedupReason, copyOf: CopyOf): void {
  const o = outcomes[i];
  outcomes[i] = { ...o, decision: "rejected", reason, rule: undefined, copyOf };
}

function gather(outcomes: readonly RecordOutcome[], indices: readonly number[], dim: number): Float32Array {
  const out = new Float32Array(indices.length * dim);
  for (const [q, i] of indices.entries())
    out.set((outcomes[i].record.imageEmbedding as Float32Array).subarray(0, dim), q * dim);
  return out;
}

function compareOffsets(a: string, b: string): number {
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
}

/** The run configuration's dedup keys. */
export interface DedupConfig {
  dedup: boolean;
  dedupThreshold: number;
  dedupHorizon: number;
  dedupProbes: number;
  reference?: string | undefined;
  referenceThreshold: number;
  /** The filter's delivery guarantee (`--dedup` with a history store needs exactly-once). */
  delivery?: string;
}

export function dedupSettingsOf(config: DedupConfig): DedupSettings {
  return {
    ...(config.dedup ? { threshold: config.dedupThreshold } : {}),
    horizon: config.dedupHorizon,
    probes: config.dedupProbes,
    referenceThreshold: config.referenceThreshold,
  };
}

/**
 * The dedup step a configuration asks for (--dedup, --reference), or undefined; `store` keeps its
 * history in Kafka (the filter), none keeps it in memory (the emulator, `select`).
 */
export async function openDeduplicator(
  config: DedupConfig,
  engine: SearchEngine,
  dim: number,
  o: { store?: HistoryTopic; logger?: Logger } = {},
): Promise<Deduplicator | undefined> {
  if (!config.dedup && !config.reference) return undefined;
  let reference: Segment | undefined;
  if (config.reference) {
    const set = await loadTarget(config.reference);
    if (set.dim !== dim) {
      throw new ClipsieveError(
        "EMBEDDING_DIMENSION_MISMATCH",
        `reference set ${config.reference} has D = ${set.dim}, the filter's records D = ${dim}`,
      );
    }
    reference = await buildReference(engine, set.embeddings, set.rows, dim, set.index);
    o.logger?.info({ reference: config.reference, rows: set.rows }, "reference set loaded");
  }
  // Only near_duplicate keeps a history; a --reference-only step writes none.
  const store = config.dedup ? o.store : undefined;
  if (store && config.delivery !== undefined && config.delivery !== "exactly-once") {
    throw new ClipsieveError(
      "CONFIG_INVALID",
      "--dedup needs --delivery exactly-once: its history is committed with the window's records, and a window delivered at least once could be re-read as a copy of itself",
    );
  }
  await store?.ensure();
  return new Deduplicator({
    engine,
    dim,
    settings: dedupSettingsOf(config),
    ...(reference ? { reference } : {}),
    ...(store ? { store } : {}),
    ...(o.logger ? { logger: o.logger } : {}),
  });
}
