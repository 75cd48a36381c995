/**
 * One segment of a dedup history: a run of consecutive history rows (float16 image embeddings), and
 * how they are searched. A small segment is searched exactly (one blocked matrix product per window);
 * a large one is an inverted-file index built from its own rows alone: spherical k-means centres
 * (../score/target-index.ts, the same code as the NormSim_inf target index), the rows grouped by their
 * nearest centre, and a query visits the rows of its `probes` nearest centres.
 *
 * A segment is a pure function of its rows (a seeded k-means over them, in their order), never of the
 * order in which they arrived or of what was evicted before: so a history rebuilt after a restart from
 * the committed rows answers every query exactly as the one that was never interrupted.
 */
import type { ScoringEngine } from "../score/engine.ts";
import { buildTargetIndex, probedClusters, reorderRows } from "../score/target-index.ts";

/** Segments of at most this many rows are searched exactly. */
export const EXACT_SEGMENT_ROWS = 1024;

/**
 * Clusters of an indexed segment: about sqrt(rows) / 2, fewer and larger than the FLOP optimum
 * sqrt(rows), because at the window sizes the filter runs, each onnxruntime call costs more than the
 * few hundred rows it compares (BENCHMARKS.md, "Dedup").
 */
export function segmentClusters(rows: number): number {
  return Math.max(1, Math.round(Math.sqrt(rows) / 2));
}

type SearchEngine = Pick<ScoringEngine, "nearest" | "bestRows" | "dots">;

export interface Segment {
  /** History sequence number of its first row. */
  readonly from: number;
  readonly rows: number;
  /** rows x dim float16 bit patterns: in sequence order, or grouped by cluster when indexed. */
  readonly data: Uint16Array;
  /** Indexed segments: position -> row (sequence number - from), cluster bounds and centres. */
  readonly index?: { order: Int32Array; offsets: Int32Array; centroids: Float32Array; clusters: number };
}

/** A segment over `data` (rows in sequence order; it is kept, and reordered in place when indexed). */
export async function buildSegment(
  engine: SearchEngine,
  data: Uint16Array,
  rows: number,
  dim: number,
  from: number,
): Promise<Segment> {
  if (rows <= EXACT_SEGMENT_ROWS) return { from, rows, data };
  const clusters = segmentClusters(rows);
  const built = await buildTargetIndex(engine, data, rows, dim, { clusters, seed: from });
  reorderRows(data, dim, built.order);
  return {
    from,
    rows,
    data,
    index: {
      order: built.order,
      offsets: built.offsets,
      centroids: built.centroids,
      clusters: built.offsets.length - 1,
    },
  };
}

/** The segment's rows back in sequence order (a copy), for merging segments into a larger one. */
export function rowsInOrder(segment: Segment, dim: number): Uint16Array {
  if (!segment.index) return segment.data.slice(0, segment.rows * dim);
  const out = new Uint16Array(segment.rows * dim);
  const { order } = segment.index;
  for (let p = 0; p < segment.rows; p++) {
    out.set(segment.data.subarray(p * dim, (p + 1) * dim), order[p] * dim);
  }
  return out;
}

/**
 * For each query, the most similar row of the segment if it beats `best[q]` (strictly): `best` and
 * `seq` (history sequence numbers) are updated in place.
 */
export async function searchSegment(
  engine: SearchEngine,
  segment: Segment,
  queries: Float32Array,
  count: number,
  dim: number,
  probes: number,
  best: Float32Array,
  seq: Float64Array,
): Promise<void> {
  if (count === 0 || segment.rows === 0) return;
  const take = (q: number, value: number, position: number) => {
    if (value > best[q]) {
      best[q] = value;
      seq[q] = segment.from + (segment.index ? segment.index.order[position] : position);
    }
  };
  if (!segment.index) {
    const found = await engine.bestRows(queries, count, dim, segment.data, 0, segment.rows);
    for (let q = 0; q < count; q++) if (found.index[q] >= 0) take(q, found.best[q], found.index[q]);
    return;
  }
  const { offsets, centroids, clusters } = segment.index;
  const visits = Math.min(probes, clusters);
  const centreDots = await engine.dots(queries, count, centroids, clusters, dim);
  const scratch = new Float32Array(clusters);
  // The queries of each cluster, by a counting sort of the visits.
  const visit = new Int32Array(count * visits);
  for (let q = 0; q < count; q++) {
    visit.set(
      probedClusters(centreDots.subarray(q * clusters, (q + 1) * clusters), visits, scratch),
      q * visits,
    );
  }
  const first = new Int32Array(clusters + 1);
  for (let v = 0; v < visit.length; v++) first[visit[v] + 1]++;
  for (let k = 0; k < clusters; k++) first[k + 1] += first[k];
  const visitors = new Int32Array(visit.length);
  const fill = first.slice(0, clusters);
  for (let v = 0; v < visit.length; v++) visitors[fill[visit[v]]++] = Math.floor(v / visits);
  const gathered = new Float32Array(count * dim);
  for (let k = 0; k < clusters; k++) {
    const n = first[k + 1] - first[k];
    if (n === 0 || offsets[k + 1] === offsets[k]) continue;
    for (let j = 0; j < n; j++) {
      const q = visitors[first[k] + j];
      gathered.set(queries.subarray(q * dim, (q + 1) * dim), j * dim);
    }
    const found = await engine.bestRows(gathered, n, dim, segment.data, offsets[k], offsets[k + 1]);
    for (let j = 0; j < n; j++) {
      if (found.index[j] >= 0) take(visitors[first[k] + j], found.best[j], found.index[j]);
    }
  }
}
