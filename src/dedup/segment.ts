/**
 * One segment of a dedup history: up to `size` consecutive history rows (float16 image embeddings),
 * and how they are searched. Its first `trainRows` rows are searched exactly (a blocked matrix product
 * in onnxruntime) until they are all there; then spherical k-means centres are trained on them
 * (../score/target-index.ts, the code of the NormSim_inf target index) and the segment becomes an
 * inverted file: every row sits in the list of its nearest centre, and a query visits the lists of
 * its `probes` nearest centres. Rows that come later are assigned in groups of GROUP_ROWS, aligned to
 * their sequence numbers; until its group is complete a row is searched exactly.
 *
 * So a segment is a function of its rows alone: the centres of its first rows (a seeded k-means), the
 * assignment of each later row computed in the same group of GROUP_ROWS rows whatever the windows
 * that brought them. A history rebuilt after a restart from the committed rows answers every query
 * exactly as the one that ran on.
 *
 * Why few large segments and not a log-structured merge of many small ones: each onnxruntime call
 * costs about 0.1 ms however small, and a window's few hundred queries visit a list per segment each;
 * calls, not FLOPs, set the cost (BENCHMARKS.md, "Dedup").
 */
import type { ScoringEngine } from "../score/engine.ts";
import { buildTargetIndex, probedClusters, visitorsByCluster } from "../score/target-index.ts";

/** Rows assigned to the centres together: a fixed batch, so an assignment never depends on the window cut. */
export const GROUP_ROWS = 256;

/** What a segment asks of the scoring engine. */
export type SearchEngine = Pick<ScoringEngine, "nearest" | "bestRows" | "dots">;

/** Centres of a segment of `rows` rows: about sqrt(rows) / 2 (fewer, larger lists: fewer calls). */
export function segmentClusters(rows: number): number {
  return Math.max(1, Math.round(Math.sqrt(rows) / 2));
}

/** A cluster's rows, growing. */
interface List {
  data: Uint16Array;
  seq: Int32Array;
  n: number;
}

export class Segment {
  /** Sequence number of its first row. */
  readonly from: number;
  /** Rows it holds when full. */
  readonly size: number;
  readonly trainRows: number;
  private readonly dim: number;
  private readonly engine: SearchEngine;
  private readonly exactOnly: boolean;
  private count = 0;
  /** Rows before the centres exist, in order (released once trained). */
  private young: Uint16Array | undefined;
  /** Rows since the last complete group, in order. */
  private pending: Uint16Array;
  private pendingRows = 0;
  private centroids: Float32Array | undefined;
  private lists: List[] = [];

  /** `trainRows` 0: never trained, every row searched exactly (a small reference set). */
  constructor(engine: SearchEngine, o: { from: number; size: number; trainRows: number; dim: number }) {
    this.engine = engine;
    this.from = o.from;
    this.size = o.size;
    this.trainRows = o.trainRows === 0 ? o.size : Math.min(o.trainRows, o.size);
    this.exactOnly = o.trainRows === 0;
    this.dim = o.dim;
    // Grown as rows come (a partition that accepts few records holds little).
    this.young = new Uint16Array(Math.min(this.trainRows, GROUP_ROWS) * o.dim);
    this.pending = new Uint16Array(GROUP_ROWS * o.dim);
  }

  /**
   * A whole, fixed set of rows indexed at once (a reference set): k-means over all of them (a seeded
   * sample, as `target build` trains), or the index an artifact already has (`clusters` given: its
   * rows are stored grouped by cluster, `offsets` the groups' bounds). A row's number is its place in
   * `bits` as given.
   */
  static async indexed(
    engine: SearchEngine,
    bits: Uint16Array,
    rows: number,
    dim: number,
    clusters?: { centroids: Float32Array; offsets: Int32Array },
  ): Promise<Segment> {
    const segment = new Segment(engine, { from: 0, size: rows, trainRows: rows, dim });
    let centroids: Float32Array;
    let offsets: Int32Array;
    let order: Int32Array | undefined;
    if (clusters) {
      ({ centroids, offsets } = clusters);
    } else {
      const built = await buildTargetIndex(engine, bits, rows, dim, {
        clusters: segmentClusters(rows) * 2,
        seed: 0,
      });
      ({ centroids, offsets, order } = built);
    }
    segment.centroids = centroids;
    segment.lists = Array.from({ length: offsets.length - 1 }, (_, k) => {
      const n = offsets[k + 1] - offsets[k];
      const seq = new Int32Array(n);
      const data = new Uint16Array(n * dim);
      for (let j = 0; j < n; j++) {
        const row = order ? order[offsets[k] + j] : offsets[k] + j;
        seq[j] = row;
        data.set(bits.subarray(row * dim, (row + 1) * dim), j * dim);
      }
      return { data, seq, n };
    });
    segment.young = undefined;
    segment.count = rows;
    return segment;
  }

  /** Rows held. */
  get rows(): number {
    return this.count;
  }

  get full(): boolean {
    return this.count === this.size;
  }

  /** Bytes of float16 held (lists at their capacity). */
  get bytes(): number {
    let b = (this.young?.byteLength ?? 0) + this.pending.byteLength;
    for (const l of this.lists) b += l.data.byteLength + l.seq.byteLength;
    return b;
  }

  /** Append rows (float16 bits, `rows` of them; at most `size - rows` held already). */
  async append(bits: Uint16Array, rows: number): Promise<void> {
    const dim = this.dim;
    for (let i = 0; i < rows; ) {
      if (this.young) {
        const take = Math.min(this.trainRows - this.count, rows - i);
        if ((this.count + take) * dim > this.young.length) {
          const grown = new Uint16Array(Math.min(this.trainRows, 2 * (this.count + take)) * dim);
          grown.set(this.young);
          this.young = grown;
        }
        this.young.set(bits.subarray(i * dim, (i + take) * dim), this.count * dim);
        this.count += take;
        i += take;
        if (this.count === this.trainRows && !this.exactOnly) await this.train();
        continue;
      }
      const take = Math.min(GROUP_ROWS - this.pendingRows, rows - i);
      this.pending.set(bits.subarray(i * dim, (i + take) * dim), this.pendingRows * dim);
      this.pendingRows += take;
      this.count += take;
      i += take;
      if (this.pendingRows === GROUP_ROWS) await this.assignPending();
    }
    if (this.full) this.trim();
  }

  /** A full segment's lists hold no slack. */
  private trim(): void {
    const dim = this.dim;
    this.lists = this.lists.map((l) =>
      l.n === l.seq.length ? l : { data: l.data.slice(0, l.n * dim), seq: l.seq.slice(0, l.n), n: l.n },
    );
  }

  /** The centres, from the first rows, which join their lists. */
  private async train(): Promise<void> {
    const dim = this.dim;
    const young = this.young as Uint16Array;
    const built = await buildTargetIndex(this.engine, young, this.trainRows, dim, {
      clusters: segmentClusters(this.size),
      seed: this.from,
    });
    this.centroids = built.centroids;
    const clusters = built.offsets.length - 1;
    this.lists = Array.from({ length: clusters }, (_, k) => {
      const n = built.offsets[k + 1] - built.offsets[k];
      const capacity = Math.max(16, Math.ceil(n * 1.5));
      return { data: new Uint16Array(capacity * dim), seq: new Int32Array(capacity), n: 0 };
    });
    for (let p = 0; p < this.trainRows; p++) {
      // built.order[p] is the row at position p; positions run cluster by cluster.
      const row = built.order[p];
      this.push(this.clusterAt(built.offsets, p), young.subarray(row * dim, (row + 1) * dim), row);
    }
    this.young = undefined;
  }

  private clusterAt(offsets: Int32Array, position: number): number {
    let lo = 0;
    let hi = offsets.length - 2;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (offsets[mid] <= position) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  private async assignPending(): Promise<void> {
    const dim = this.dim;
    const centroids = this.centroids as Float32Array;
    const { index } = await this.engine.nearest(this.pending, GROUP_ROWS, dim, centroids, this.lists.length);
    const first = this.count - GROUP_ROWS;
    for (let r = 0; r < GROUP_ROWS; r++) {
      this.push(index[r], this.pending.subarray(r * dim, (r + 1) * dim), first + r);
    }
    this.pending = new Uint16Array(GROUP_ROWS * dim);
    this.pendingRows = 0;
  }

  private push(k: number, row: Uint16Array, local: number): void {
    const dim = this.dim;
    let list = this.lists[k];
    if (list.n === list.seq.length) {
      // Lists grow by half (not double): their slack is bounded by a third of what they hold.
      const capacity = Math.ceil(list.seq.length * 1.5) + 16;
      const data = new Uint16Array(capacity * dim);
      data.set(list.data);
      const seq = new Int32Array(capacity);
      seq.set(list.seq);
      list = this.lists[k] = { data, seq, n: list.n };
    }
    list.data.set(row, list.n * dim);
    list.seq[list.n] = local;
    list.n++;
  }

  /**
   * For each query, the most similar row of the segment if it beats `best[q]` (strictly): `best` and
   * `seq` (history sequence numbers) are updated in place. Ties within a call go to the earlier row.
   */
  async search(
    queries: Float32Array,
    count: number,
    probes: number,
    best: Float32Array,
    seq: Float64Array,
  ): Promise<void> {
    if (count === 0 || this.count === 0) return;
    const dim = this.dim;
    const exact = async (store: Uint16Array, rows: number, local: (i: number) => number) => {
      const found = await this.engine.bestRows(queries, count, dim, store, 0, rows);
      for (let q = 0; q < count; q++) {
        if (found.index[q] >= 0 && found.best[q] > best[q]) {
          best[q] = found.best[q];
          seq[q] = this.from + local(found.index[q]);
        }
      }
    };
    if (this.young) {
      await exact(this.young, this.count, (i) => i);
      return;
    }
    const clusters = this.lists.length;
    const visits = Math.min(probes, clusters);
    const centreDots = await this.engine.dots(queries, count, this.centroids as Float32Array, clusters, dim);
    const scratch = new Float32Array(clusters);
    const visit = new Int32Array(count * visits);
    for (let q = 0; q < count; q++) {
      visit.set(
        probedClusters(centreDots.subarray(q * clusters, (q + 1) * clusters), visits, scratch),
        q * visits,
      );
    }
    const { first, visitors } = visitorsByCluster(visit, visits, clusters);
    const gathered = new Float32Array(count * dim);
    for (let k = 0; k < clusters; k++) {
      const n = first[k + 1] - first[k];
      const list = this.lists[k];
      if (n === 0 || list.n === 0) continue;
      for (let j = 0; j < n; j++) {
        const q = visitors[first[k] + j];
        gathered.set(queries.subarray(q * dim, (q + 1) * dim), j * dim);
      }
      const found = await this.engine.bestRows(gathered, n, dim, list.data, 0, list.n);
      for (let j = 0; j < n; j++) {
        const q = visitors[first[k] + j];
        const at = found.index[j];
        if (at < 0) continue;
        const local = list.seq[at];
        // Strictly better, or as good and earlier: the answer must not depend on the order of the lists.
        if (found.best[j] > best[q] || (found.best[j] === best[q] && this.from + local < seq[q])) {
          best[q] = found.best[j];
          seq[q] = this.from + local;
        }
      }
    }
    if (this.pendingRows > 0) {
      const firstPending = this.count - this.pendingRows;
      await exact(this.pending, this.pendingRows, (i) => firstPending + i);
    }
  }
}
