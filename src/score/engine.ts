/**
 * The scoring engine: s-CLIPLoss, CLIPScore, NormSim_2, NormSim_inf and Gram matrices. Every matrix
 * product and every reduction over a b x b (or r x M) block runs inside onnxruntime (./graphs.ts);
 * JavaScript only gathers a batch's rows, feeds blocks and adds up per-row results (O(b) per batch).
 *
 * Memory is bounded by `blockElements` (E, default 2^24 float32 values = 64 MiB): no tensor of the
 * engine's graphs holds more than about E values. A batch of b is split into balanced row blocks of
 * r <= min(512, max(1, floor(E / b))) rows, so an S block is r x b <= max(E, b). For s-CLIPLoss over a
 * pool of n rows (scoredRows of them scored), besides the pool itself the engine holds
 *
 *     2 * b * D * 4 bytes          the gathered image and text rows of the batch in hand
 *   + 4 * n + 20 * scoredRows      S_ii of every row, the running sum of R, the three results
 *   + about 4 * r * b * 4 bytes    onnxruntime's arenas for the S blocks (Z, exp(Z - c), the exact
 *                                  graph's shifted copies)
 *   + about 2 * min(n * D, E) * 4  onnxruntime's arena for the S_ii blocks
 *
 * (measured: 545 MiB in all for b = 32768, D = 768, of which 192 MiB are the batch buffers).
 * docs/scoring.md derives this, gives the NormSim equivalents and the measured figures.
 */
import { availableParallelism } from "node:os";
import * as ort from "onnxruntime-node";
import { ClipsieveError } from "../common/errors.ts";
import { createLogger, type Logger } from "../common/logger.ts";
import { validateDraws } from "./draws.ts";
import {
  dotGraph,
  gramAccumulateGraph,
  gramNormGraph,
  maxAbsDotGraph,
  nearestGraph,
  rowDotGraph,
  sClipLossExactBlockGraph,
  sClipLossFastBlockGraph,
} from "./graphs.ts";
import { sessionOptions } from "./onnx-session.ts";
import { checkTargetIndex, probedClusters, visitorsByCluster } from "./target-index.ts";
import type { Device, Draw, NormSimResult, Pool, SClipLossResult, TargetSet } from "./types.ts";

export const DEVICES: readonly Device[] = ["cpu", "cuda", "webgpu"];

/** Default bound on the values of one onnxruntime block (2^24 float32 = 64 MiB). */
export const DEFAULT_BLOCK_ELEMENTS = 2 ** 24;

/**
 * Most rows of a batch in one s-CLIPLoss block. 512 rows keep the Gemm at full speed (the batch's
 * text rows are streamed once per 512 image rows) while a 512 x b block of S stays in cache for the
 * Exp and the two sums when b is a few thousand; larger blocks measured slower, not faster.
 */
const BLOCK_ROWS = 512;

export interface EngineOptions {
  /** Execution provider; one that cannot load falls back to cpu with one warning. Default cpu. */
  device?: Device;
  logger?: Logger;
  /** onnxruntime intra-op threads. Default: os.availableParallelism(). */
  threads?: number;
  /** Most float32 values in one block of S or of image x target products; bounds memory. Default 2^24. */
  blockElements?: number;
  /**
   * "auto" (default): one max-shift per S block, with the exact per-row and per-column shifts only
   * when the shared shift would underflow a sum. "exact": always per-row and per-column shifts.
   */
  logSumExp?: "auto" | "exact";
}

export interface ScoringEngine {
  /** The provider actually in use after fallback. */
  readonly provider: Device;
  sClipLoss(pool: Pool, draws: Draw[], tau: number): Promise<SClipLossResult>;
  /**
   * NormSim_2 and/or NormSim_inf of the first `rows` rows of `image` (rows x target.dim) against
   * `target`. A score not asked for comes back as an empty array. Default: both.
   */
  normSim(
    image: Float32Array,
    rows: number,
    target: TargetSet,
    which?: { two?: boolean; inf?: boolean },
  ): Promise<NormSimResult>;
  /** T^T T, D x D row-major, of a rows x dim matrix. */
  gram(embeddings: Float32Array, rows: number, dim: number): Promise<Float32Array>;
  /** sqrt(f_i^T G f_i) for each of the first `rows` rows of `image` and a dim x dim matrix G. */
  gramNorm(image: Float32Array, rows: number, dim: number, gram: Float32Array): Promise<Float32Array>;
  /**
   * For each of `rows` rows (rows x dim; float32, or float16 bit patterns), its nearest of `centres`
   * (count x dim) by inner product:
   * `index` (as numbers) and the inner product `best`. k-means at `target build` time uses it.
   */
  nearest(
    data: Float32Array | Uint16Array,
    rows: number,
    dim: number,
    centres: Float32Array,
    count: number,
  ): Promise<{ index: Float32Array; best: Float32Array }>;
  /**
   * For each of `count` query rows (count x dim, float32), the most similar row of `store` rows
   * from..to-1 (float32, or float16 bit patterns) by inner product: the value `best` and the row's
   * number `index` (-1 when the range is empty); ties go to the lower row. The dedup step's search.
   */
  bestRows(
    queries: Float32Array,
    count: number,
    dim: number,
    store: Float32Array | Uint16Array,
    from: number,
    to: number,
  ): Promise<{ best: Float32Array; index: Int32Array }>;
  /** The count x rows matrix of inner products of `a` (count x dim) and `b` (rows x dim), row-major. */
  dots(a: Float32Array, count: number, b: Float32Array, rows: number, dim: number): Promise<Float32Array>;
  close(): Promise<void>;
}

/** Every graph the engine runs, by session name; `rowDot` opens first (see createSessions). */
const GRAPHS = {
  rowDot: rowDotGraph,
  sClipLossFast: sClipLossFastBlockGraph,
  sClipLossExact: sClipLossExactBlockGraph,
  gramNorm: gramNormGraph,
  maxAbsDot: () => maxAbsDotGraph(false),
  maxAbsDotHalf: () => maxAbsDotGraph(true),
  dot: dotGraph,
  nearest: () => nearestGraph(false),
  nearestHalf: () => nearestGraph(true),
  nearestInHalf: () => nearestGraph(false, true),
  gramAccumulate: gramAccumulateGraph,
} as const;

type Sessions = { [K in keyof typeof GRAPHS]: ort.InferenceSession };

async function createSessions(device: Device, threads: number): Promise<Sessions> {
  const options = sessionOptions(device, threads);
  const open = (bytes: Uint8Array) => ort.InferenceSession.create(bytes, options);
  // One session first: a provider that cannot load fails here once, not once per graph.
  const rowDot = await open(GRAPHS.rowDot());
  const rest = Object.entries(GRAPHS).filter(([name]) => name !== "rowDot");
  const created = await Promise.allSettled(rest.map(([, graph]) => open(graph())));
  const failed = created.find((c) => c.status === "rejected");
  if (failed) {
    await Promise.all(
      [rowDot, ...created.map((c) => (c.status === "fulfilled" ? c.value : null))].map((s) => s?.release()),
    );
    throw (failed as PromiseRejectedResult).reason;
  }
  const sessions: Record<string, ort.InferenceSession> = { rowDot };
  for (const [i, [name]] of rest.entries()) {
    sessions[name] = (created[i] as PromiseFulfilledResult<ort.InferenceSession>).value;
  }
  return sessions as Sessions;
}

/** The first line of an error's message, at most 300 characters: onnxruntime's can run on. */
function errorText(err: unknown): string {
  const line = (err instanceof Error ? err.message : String(err)).split("\n")[0].trim();
  return line.length > 300 ? `${line.slice(0, 297)}...` : line;
}

const f32 = (data: Float32Array, dims: number[]) => new ort.Tensor("float32", data, dims);

/**
 * A float16 tensor over IEEE half bit patterns. onnxruntime-common wraps a Uint16Array in the engine's
 * Float16Array where one exists (Node 24), which onnxruntime-node 1.30's binding does not recognise as a
 * typed array (it sees 0 bytes: "not enough space"); the tensor keeps the Uint16Array view instead,
 * which the binding reads as the same bytes.
 */
function f16(bits: Uint16Array, dims: number[]): ort.Tensor {
  const tensor = new ort.Tensor("float16", bits, dims);
  if (!(tensor.data instanceof Uint16Array)) (tensor as unknown as { cpuData: Uint16Array }).cpuData = bits;
  return tensor;
}

async function run(
  session: ort.InferenceSession,
  feeds: Record<string, ort.Tensor>,
  graph: string,
): Promise<Record<string, Float32Array<ArrayBuffer>>> {
  let out: ort.InferenceSession.ReturnType;
  try {
    out = await session.run(feeds);
  } catch (err) {
    throw new ClipsieveError(
      "SCORER_FAILED",
      `onnxruntime failed to run the ${graph} graph: ${errorText(err)}`,
      {
        cause: err,
      },
    );
  }
  const result: Record<string, Float32Array<ArrayBuffer>> = {};
  for (const [name, tensor] of Object.entries(out)) result[name] = tensor.data as Float32Array<ArrayBuffer>;
  return result;
}

function checkPositiveInteger(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new ClipsieveError("CONFIG_INVALID", `${what} must be a positive integer, got ${value}`);
  }
}

function checkMatrix(data: ArrayLike<number>, rows: number, dim: number, what: string, exact = true): void {
  if (!Number.isSafeInteger(rows) || rows < 0) {
    throw new ClipsieveError(
      "CONFIG_INVALID",
      `${what}: row count must be a non-negative integer, got ${rows}`,
    );
  }
  const enough = exact ? data.length === rows * dim : data.length >= rows * dim;
  if (!enough) {
    throw new ClipsieveError(
      "EMBEDDING_DIMENSION_MISMATCH",
      `${what} holds ${data.length} values, expected ${exact ? "" : "at least "}${rows} rows x ${dim}`,
    );
  }
}

/**
 * The fast path's shift for a batch: c = max_i Z_ii - SHIFT_BELOW_DIAGONAL. Every exp(Z_ij - c) and
 * every sum stays in float32's range unless some Z_ij exceeds max Z_ii by about 68 - ln b (overflow)
 * or a whole row or column stays about 70 - ln b below c (underflow); docs/scoring.md, "Numerics".
 */
const SHIFT_BELOW_DIAGONAL = 20;

/**
 * The smallest row or column sum of exp(Z - c) the fast path accepts for a batch of b. Values under
 * 2^-126 may be flushed to zero; b of them lose at most b * 2^-126, which is below 2^-24 (float32's
 * relative precision) of any sum >= b * 2^-102.
 */
function fastPathMinimum(b: number): number {
  return b * 2 ** -102;
}

/** Whether every sum is finite and at least `min` (NaN fails). */
function sumsUsable(sums: Float32Array, count: number, min: number): boolean {
  for (let i = 0; i < count; i++) if (!(sums[i] >= min && sums[i] < Number.POSITIVE_INFINITY)) return false;
  return true;
}

export async function createScoringEngine(options: EngineOptions = {}): Promise<ScoringEngine> {
  const requested = options.device ?? "cpu";
  if (!DEVICES.includes(requested)) {
    throw new ClipsieveError(
      "CONFIG_INVALID",
      `device must be one of ${DEVICES.join(", ")}, got ${requested}`,
    );
  }
  const threads = options.threads ?? availableParallelism();
  checkPositiveInteger(threads, "threads");
  const blockElements = options.blockElements ?? DEFAULT_BLOCK_ELEMENTS;
  checkPositiveInteger(blockElements, "blockElements");
  const exactLogSumExp = (options.logSumExp ?? "auto") === "exact";
  const logger = options.logger ?? createLogger("score");

  let provider: Device = requested;
  let sessions: Sessions;
  try {
    sessions = await createSessions(requested, threads);
  } catch (err) {
    if (requested === "cpu") {
      throw new ClipsieveError(
        "SCORER_FAILED",
        `onnxruntime cannot open the scoring graphs on cpu: ${errorText(err)}`,
        {
          cause: err,
        },
      );
    }
    logger.warn(
      { provider: requested, reason: errorText(err) },
      `execution provider ${requested} cannot load (${errorText(err)}); scoring falls back to cpu`,
    );
    provider = "cpu";
    sessions = await createSessions("cpu", threads);
  }

  /** CLIPScore S_ii of the first `rows` rows, in row blocks of at most E values. */
  async function rowDots(a: Float32Array, b: Float32Array, rows: number, dim: number): Promise<Float32Array> {
    const out = new Float32Array(rows);
    const step = Math.max(1, Math.floor(blockElements / dim));
    for (let start = 0; start < rows; start += step) {
      const count = Math.min(step, rows - start);
      const view = (m: Float32Array) => f32(m.subarray(start * dim, (start + count) * dim), [count, dim]);
      const res = await run(sessions.rowDot, { a: view(a), b: view(b) }, "row_dot");
      out.set(res.dot, start);
    }
    return out;
  }

  async function sClipLoss(pool: Pool, draws: Draw[], tau: number): Promise<SClipLossResult> {
    const { dim, scoredRows, bankRows } = pool;
    checkPositiveInteger(dim, "pool dim");
    if (
      !Number.isSafeInteger(scoredRows) ||
      scoredRows < 0 ||
      !Number.isSafeInteger(bankRows) ||
      bankRows < 0
    ) {
      throw new ClipsieveError(
        "CONFIG_INVALID",
        `pool row counts must be non-negative integers, got scoredRows=${scoredRows} bankRows=${bankRows}`,
      );
    }
    const n = scoredRows + bankRows;
    checkMatrix(pool.image, n, dim, "pool image matrix");
    checkMatrix(pool.text, n, dim, "pool text matrix");
    if (!(tau > 0 && Number.isFinite(tau))) {
      throw new ClipsieveError("CONFIG_INVALID", `tau must be a positive finite number, got ${tau}`);
    }
    if (draws.length === 0) throw new ClipsieveError("DRAWS_INVALID", "s-CLIPLoss needs at least one draw");
    validateDraws(draws, n);

    // S_ii of every pool row: CLIPScore for the scored rows, the fast path's shift for all.
    const diagonal = await rowDots(pool.image, pool.text, n, dim);
    const rSum = new Float64Array(scoredRows);
    let maxBatch = 0;
    for (const draw of draws) for (const batch of draw) maxBatch = Math.max(maxBatch, batch.length);
    const image = new Float32Array(maxBatch * dim);
    const text = new Float32Array(maxBatch * dim);
    const rowOut = new Float32Array(maxBatch);
    const invTau = f32(Float32Array.of(1 / tau), []);
    const halfTau = tau / 2;

    /** Rows per block: at most BLOCK_ROWS and E / b, balanced so every block is about the same size. */
    const blocksOf = (b: number): number => {
      const blocks = Math.ceil(b / Math.max(1, Math.min(BLOCK_ROWS, Math.floor(blockElements / b))));
      return Math.ceil(b / blocks);
    };

    /** Fast path: returns the column sums (row sums land in rowOut), all relative to `shift`. */
    async function fastBatch(b: number, shift: number): Promise<Float32Array> {
      const blockRows = blocksOf(b);
      const textTensor = f32(text.subarray(0, b * dim), [b, dim]);
      const negShift = f32(Float32Array.of(-shift), [1]);
      let colSum = new Float32Array(b);
      for (let start = 0; start < b; start += blockRows) {
        const r = Math.min(blockRows, b - start);
        const res = await run(
          sessions.sClipLossFast,
          {
            image: f32(image.subarray(start * dim, (start + r) * dim), [r, dim]),
            text: textTensor,
            inv_tau: invTau,
            neg_shift: negShift,
            col_sum_in: f32(colSum, [b]),
          },
          "s_clip_loss_fast_block",
        );
        rowOut.set(res.row_sum, start);
        colSum = res.col_sum_out;
      }
      return colSum;
    }

    /** Exact path: returns the column logsumexp (row logsumexp lands in rowOut). */
    async function exactBatch(b: number): Promise<Float32Array> {
      const blockRows = blocksOf(b);
      const textTensor = f32(text.subarray(0, b * dim), [b, dim]);
      let colLse = new Float32Array(b).fill(Number.NEGATIVE_INFINITY);
      for (let start = 0; start < b; start += blockRows) {
        const r = Math.min(blockRows, b - start);
        const res = await run(
          sessions.sClipLossExact,
          {
            image: f32(image.subarray(start * dim, (start + r) * dim), [r, dim]),
            text: textTensor,
            inv_tau: invTau,
            col_lse_in: f32(colLse, [b]),
          },
          "s_clip_loss_exact_block",
        );
        rowOut.set(res.row_lse, start);
        colLse = res.col_lse_out;
      }
      return colLse;
    }

    /**
     * Fast path for the scored rows only, when most of the batch is bank rows: with the scored rows
     * first in the buffers, their row sums are S[0:s, :] (s x b) and their column sums are the row sums
     * of S^T[0:s, :] = text[0:s] image^T, the same graph with the roles swapped. 2·s·b·D instead of
     * b·b·D multiply-adds; worth it when s <= b / 2.
     */
    async function fastScoredSums(
      s: number,
      b: number,
      shift: number,
    ): Promise<[Float32Array, Float32Array]> {
      const blockRows = blocksOf(b);
      const negShift = f32(Float32Array.of(-shift), [1]);
      const sums = async (rows: Float32Array, cols: Float32Array): Promise<Float32Array> => {
        const out = new Float32Array(s);
        const colsTensor = f32(cols.subarray(0, b * dim), [b, dim]);
        const ignoredColSum = f32(new Float32Array(b), [b]);
        for (let start = 0; start < s; start += blockRows) {
          const r = Math.min(blockRows, s - start);
          const res = await run(
            sessions.sClipLossFast,
            {
              image: f32(rows.subarray(start * dim, (start + r) * dim), [r, dim]),
              text: colsTensor,
              inv_tau: invTau,
              neg_shift: negShift,
              col_sum_in: ignoredColSum,
            },
            "s_clip_loss_fast_block",
          );
          out.set(res.row_sum, start);
        }
        return out;
      };
      return [await sums(image, text), await sums(text, image)];
    }

    const scaleTo = pool.scaleToBatch;
    if (scaleTo !== undefined) checkPositiveInteger(scaleTo, "pool scaleToBatch");
    /**
     * One direction's logsumexp L (in S / tau units) of row `row` over a batch of `b` rows, scaled to
     * a batch of `scaleTo` rows when the pool asks for it: the diagonal term stays, the b - 1 others
     * weigh (scaleTo - 1) / (b - 1), i.e. L' = L + log(c + (1 - c) e^(S_ii / tau - L)). The argument
     * of the log is at least min(c, 1) > 0, since S_ii / tau <= L.
     */
    const scaled = (lse: number, row: number, b: number): number => {
      if (scaleTo === undefined || b === scaleTo || b < 2) return lse;
      const c = (scaleTo - 1) / (b - 1);
      return lse + Math.log(c + (1 - c) * Math.exp(Math.min(0, diagonal[row] / tau - lse)));
    };

    // A draw with a single batch holds the whole pool, and every such draw gives the same R (a
    // logsumexp does not depend on the order of its terms): compute it once, not K times.
    const distinctDraws = draws.every((d) => d.length === 1) ? draws.slice(0, 1) : draws;
    const order = new Int32Array(maxBatch);
    for (const [k, draw] of distinctDraws.entries()) {
      for (const [j, batch] of draw.entries()) {
        const b = batch.length;
        // Scored rows first: the partial fast path needs them at the top of the buffers.
        let s = 0;
        for (let p = 0; p < b; p++) if (batch[p] < scoredRows) order[s++] = batch[p];
        if (s === 0) continue;
        let tail = s;
        for (let p = 0; p < b; p++) if (batch[p] >= scoredRows) order[tail++] = batch[p];
        let maxDiagonal = Number.NEGATIVE_INFINITY;
        for (let p = 0; p < b; p++) {
          const row = order[p];
          image.set(pool.image.subarray(row * dim, (row + 1) * dim), p * dim);
          text.set(pool.text.subarray(row * dim, (row + 1) * dim), p * dim);
          maxDiagonal = Math.max(maxDiagonal, diagonal[row]);
        }
        if (!exactLogSumExp) {
          const shift = Math.fround(maxDiagonal / tau - SHIFT_BELOW_DIAGONAL);
          // Only the scored rows' sums when they are at most half the batch, else the whole batch's
          // (row sums land in rowOut); either way the first s entries are the scored rows'.
          const partial = 2 * s <= b;
          const [rowSum, colSum] = partial
            ? await fastScoredSums(s, b, shift)
            : [rowOut, await fastBatch(b, shift)];
          const checked = partial ? s : b;
          const min = fastPathMinimum(b);
          if (sumsUsable(rowSum, checked, min) && sumsUsable(colSum, checked, min)) {
            for (let p = 0; p < s; p++) {
              const row = order[p];
              rSum[row] +=
                scaleTo === undefined
                  ? halfTau * (2 * shift + Math.log(rowSum[p]) + Math.log(colSum[p]))
                  : halfTau *
                    (scaled(shift + Math.log(rowSum[p]), row, b) +
                      scaled(shift + Math.log(colSum[p]), row, b));
            }
            continue;
          }
          logger.debug(
            { draw: k, batch: j, size: b },
            "s-CLIPLoss batch out of the shared shift's range; exact shifts",
          );
        }
        const colLse = await exactBatch(b);
        for (let p = 0; p < s; p++) {
          const row = order[p];
          rSum[row] += halfTau * (scaled(rowOut[p], row, b) + scaled(colLse[p], row, b));
        }
      }
    }

    const clipScore = diagonal.slice(0, scoredRows);
    const normaliser = new Float32Array(scoredRows);
    const sClip = new Float32Array(scoredRows);
    for (let i = 0; i < scoredRows; i++) {
      const r = rSum[i] / distinctDraws.length;
      normaliser[i] = r;
      sClip[i] = clipScore[i] - r;
    }
    return { clipScore, sClipLoss: sClip, normaliser };
  }

  async function gramNorm(
    image: Float32Array,
    rows: number,
    dim: number,
    gram: Float32Array,
  ): Promise<Float32Array> {
    checkPositiveInteger(dim, "dim");
    checkMatrix(image, rows, dim, "image matrix", false);
    checkMatrix(gram, dim, dim, "Gram matrix");
    const out = new Float32Array(rows);
    const gramTensor = f32(gram, [dim, dim]);
    const step = Math.max(1, Math.floor(blockElements / dim));
    for (let start = 0; start < rows; start += step) {
      const count = Math.min(step, rows - start);
      const res = await run(
        sessions.gramNorm,
        { image: f32(image.subarray(start * dim, (start + count) * dim), [count, dim]), gram: gramTensor },
        "gram_norm",
      );
      out.set(res.norm, start);
    }
    return out;
  }

  /** Target rows `from`..`from+count-1` as a tensor: float32 as stored, float16 bit patterns as float16. */
  function targetRows(target: TargetSet, from: number, count: number): ort.Tensor {
    const dim = target.dim;
    const data = target.embeddings.subarray(from * dim, (from + count) * dim);
    return data instanceof Uint16Array ? f16(data, [count, dim]) : f32(data, [count, dim]);
  }

  /**
   * max(acc_i, max_m |<q_i, t_m>|) over target rows from..to-1 for `count` query rows: target blocks of
   * E / count rows, the float16 graph for a float16 target.
   */
  async function scanTargetRows(
    queries: Float32Array,
    count: number,
    target: TargetSet,
    from: number,
    to: number,
    acc: Float32Array,
  ): Promise<Float32Array> {
    const dim = target.dim;
    const half = target.embeddings instanceof Uint16Array;
    const session = half ? sessions.maxAbsDotHalf : sessions.maxAbsDot;
    const queryTensor = f32(queries.subarray(0, count * dim), [count, dim]);
    const step = Math.max(1, Math.floor(blockElements / count));
    for (let t = from; t < to; t += step) {
      const m = Math.min(step, to - t);
      const res = await run(
        session,
        { image: queryTensor, target: targetRows(target, t, m), acc_in: f32(acc, [count]) },
        half ? "max_abs_dot_half" : "max_abs_dot",
      );
      acc = res.acc_out;
    }
    return acc;
  }

  /** max_m |<f_i, t_m>| over every target row: image blocks of up to sqrt(E) rows. */
  async function maxAbsDotAll(image: Float32Array, rows: number, target: TargetSet): Promise<Float32Array> {
    const dim = target.dim;
    const out = new Float32Array(rows);
    if (target.rows === 0) return out;
    const imageStep = Math.max(1, Math.min(rows, Math.floor(Math.sqrt(blockElements))));
    for (let start = 0; start < rows; start += imageStep) {
      const count = Math.min(imageStep, rows - start);
      const block = image.subarray(start * dim, (start + count) * dim);
      out.set(await scanTargetRows(block, count, target, 0, target.rows, new Float32Array(count)), start);
    }
    return out;
  }

  /**
   * max over the rows of each record's `probes` nearest clusters (./target-index.ts): the records'
   * inner products with every centre (one Gemm per block of records), each record's nearest clusters,
   * then cluster by cluster the records that visit it against its rows, so every product is still a
   * matrix product and each cluster's rows are read once per window, not once per record.
   */
  async function maxAbsDotIndexed(
    image: Float32Array,
    rows: number,
    target: TargetSet,
  ): Promise<Float32Array> {
    const index = target.index!;
    const dim = target.dim;
    const clusters = index.clusters;
    const probes = Math.min(index.probes, clusters);
    const visits = new Int32Array(rows * probes);
    const centres = f32(index.centroids, [clusters, dim]);
    const queryStep = Math.max(1, Math.floor(blockElements / Math.max(clusters, dim)));
    const scratch = new Float32Array(clusters);
    for (let start = 0; start < rows; start += queryStep) {
      const count = Math.min(queryStep, rows - start);
      const res = await run(
        sessions.dot,
        { a: f32(image.subarray(start * dim, (start + count) * dim), [count, dim]), b: centres },
        "dot",
      );
      for (let q = 0; q < count; q++) {
        const picked = probedClusters(res.dot.subarray(q * clusters, (q + 1) * clusters), probes, scratch);
        visits.set(picked, (start + q) * probes);
      }
    }
    const { first, visitors } = visitorsByCluster(visits, probes, clusters);

    const out = new Float32Array(rows);
    const maxQueries = Math.max(1, Math.min(rows, Math.floor(Math.sqrt(blockElements))));
    const gathered = new Float32Array(maxQueries * dim);
    for (let k = 0; k < clusters; k++) {
      const from = index.offsets[k];
      const to = index.offsets[k + 1];
      if (to === from) continue;
      for (let v = first[k]; v < first[k + 1]; v += maxQueries) {
        const count = Math.min(maxQueries, first[k + 1] - v);
        for (let j = 0; j < count; j++) {
          const q = visitors[v + j];
          gathered.set(image.subarray(q * dim, (q + 1) * dim), j * dim);
        }
        const acc = await scanTargetRows(gathered, count, target, from, to, new Float32Array(count));
        for (let j = 0; j < count; j++) {
          const q = visitors[v + j];
          if (acc[j] > out[q]) out[q] = acc[j];
        }
      }
    }
    return out;
  }

  /** NormSim_inf: through the index when the target has one that does not visit every cluster. */
  async function maxAbsDot(image: Float32Array, rows: number, target: TargetSet): Promise<Float32Array> {
    if (target.index && target.index.probes < target.index.clusters && rows > 0) {
      return maxAbsDotIndexed(image, rows, target);
    }
    return maxAbsDotAll(image, rows, target);
  }

  async function nearest(
    data: Float32Array | Uint16Array,
    rows: number,
    dim: number,
    centres: Float32Array,
    count: number,
  ): Promise<{ index: Float32Array; best: Float32Array }> {
    checkPositiveInteger(dim, "dim");
    checkPositiveInteger(count, "centre count");
    checkMatrix(data, rows, dim, "row matrix", false);
    checkMatrix(centres, count, dim, "centre matrix");
    const index = new Float32Array(rows);
    const best = new Float32Array(rows);
    const centreTensor = f32(centres, [count, dim]);
    const step = Math.max(1, Math.floor(blockElements / Math.max(count, dim)));
    for (let start = 0; start < rows; start += step) {
      const n = Math.min(step, rows - start);
      const block = data.subarray(start * dim, (start + n) * dim);
      const half = block instanceof Uint16Array;
      const res = await run(
        half ? sessions.nearestHalf : sessions.nearest,
        { rows: half ? f16(block, [n, dim]) : f32(block, [n, dim]), centres: centreTensor },
        half ? "nearest_half" : "nearest",
      );
      index.set(res.index, start);
      best.set(res.best, start);
    }
    return { index, best };
  }

  async function bestRows(
    queries: Float32Array,
    count: number,
    dim: number,
    store: Float32Array | Uint16Array,
    from: number,
    to: number,
  ): Promise<{ best: Float32Array; index: Int32Array }> {
    checkPositiveInteger(dim, "dim");
    checkMatrix(queries, count, dim, "query matrix", false);
    checkMatrix(store, to, dim, "row store", false);
    const best = new Float32Array(count).fill(Number.NEGATIVE_INFINITY);
    const index = new Int32Array(count).fill(-1);
    if (count === 0 || to <= from) return { best, index };
    const half = store instanceof Uint16Array;
    const queryTensor = f32(queries.subarray(0, count * dim), [count, dim]);
    const step = Math.max(1, Math.floor(blockElements / Math.max(count, dim)));
    for (let start = from; start < to; start += step) {
      const n = Math.min(step, to - start);
      const block = store.subarray(start * dim, (start + n) * dim);
      const res = await run(
        half ? sessions.nearestInHalf : sessions.nearest,
        {
          rows: queryTensor,
          centres: block instanceof Uint16Array ? f16(block, [n, dim]) : f32(block, [n, dim]),
        },
        half ? "nearest_in_half" : "nearest",
      );
      for (let q = 0; q < count; q++) {
        if (res.best[q] > best[q]) {
          best[q] = res.best[q];
          index[q] = start + res.index[q];
        }
      }
    }
    return { best, index };
  }

  async function dots(
    a: Float32Array,
    count: number,
    b: Float32Array,
    rows: number,
    dim: number,
  ): Promise<Float32Array> {
    checkPositiveInteger(dim, "dim");
    checkMatrix(a, count, dim, "row matrix", false);
    checkMatrix(b, rows, dim, "column matrix", false);
    const out = new Float32Array(count * rows);
    if (count === 0 || rows === 0) return out;
    const bTensor = f32(b.subarray(0, rows * dim), [rows, dim]);
    const step = Math.max(1, Math.floor(blockElements / Math.max(rows, dim)));
    for (let start = 0; start < count; start += step) {
      const n = Math.min(step, count - start);
      const res = await run(
        sessions.dot,
        { a: f32(a.subarray(start * dim, (start + n) * dim), [n, dim]), b: bTensor },
        "dot",
      );
      out.set(res.dot, start * rows);
    }
    return out;
  }

  async function normSim(
    image: Float32Array,
    rows: number,
    target: TargetSet,
    which: { two?: boolean; inf?: boolean } = { two: true, inf: true },
  ): Promise<NormSimResult> {
    const dim = target.dim;
    checkPositiveInteger(dim, "target dim");
    checkMatrix(image, rows, dim, "image matrix", false);
    checkMatrix(target.embeddings, target.rows, dim, `target set (${target.model}) embeddings`);
    checkMatrix(target.gram, dim, dim, `target set (${target.model}) Gram matrix`);
    if (target.index) checkTargetIndex(target.index, target.rows, dim);
    return {
      normsim2: which.two ? await gramNorm(image, rows, dim, target.gram) : new Float32Array(0),
      normsimInf: which.inf ? await maxAbsDot(image, rows, target) : new Float32Array(0),
    };
  }

  async function gram(embeddings: Float32Array, rows: number, dim: number): Promise<Float32Array> {
    checkPositiveInteger(dim, "dim");
    checkMatrix(embeddings, rows, dim, "embedding matrix");
    let acc = new Float32Array(dim * dim);
    const step = Math.max(1, Math.floor(blockElements / dim));
    for (let start = 0; start < rows; start += step) {
      const count = Math.min(step, rows - start);
      const res = await run(
        sessions.gramAccumulate,
        {
          rows: f32(embeddings.subarray(start * dim, (start + count) * dim), [count, dim]),
          acc_in: f32(acc, [dim, dim]),
        },
        "gram_accumulate",
      );
      acc = res.acc_out;
    }
    return acc;
  }

  async function close(): Promise<void> {
    await Promise.all(Object.values(sessions).map((s) => s.release()));
  }

  return { provider, sClipLoss, normSim, gram, gramNorm, nearest, bestRows, dots, close };
}
