/**
 * A mergeable streaming quantile sketch: KLL (Karnin, Lang, Liberty, "Optimal Quantile Approximation in
 * Streams", FOCS 2016), in the lazy-compaction form of Ivkin et al.'s reference implementation.
 *
 * Why KLL and not DDSketch (`@datadog/sketches-js`, installed): the policy selects by RANK ("the top f of
 * the scores seen"), and KLL bounds the rank error whatever the values are, while DDSketch bounds the
 * relative VALUE error. Our scores are narrow and sit anywhere on the line (NormSim_inf around 0.3-0.7
 * with a spread of a few hundredths; s-CLIPLoss around 0 of both signs; NormSim_2 up to sqrt(M)), so a
 * 0.5% relative bucket near 0.6 holds several percent of the records, and the cut-off moves by that much
 * (measured: docs/policy.md). DDSketch 2.1.1 also drops the negative store in `merge()` (open upstream
 * issue DataDog/sketches-js#22), and s-CLIPLoss is mostly negative.
 *
 * How it works: level h holds items that each stand for 2^h inputs. New values land on level 0; when the
 * sketch is full, the lowest over-full level is sorted and every other item (odd or even positions, one
 * random bit) moves up one level with double weight. Level capacities shrink geometrically (by 2/3) from
 * the top level (k items) down, never below 8. The total weight is exactly the number of values seen.
 * The random bits come from a seeded generator whose state is part of the serialised sketch, so a
 * restored sketch continues bit for bit as the original would have (replays and restores are exact).
 *
 * The exact minimum and maximum are kept beside the levels: a compaction may drop the extreme items, and
 * "keep everything" (f = 1) must still cut at the true minimum.
 */
import { z } from "zod";
import { ClipsieveError } from "../common/errors.ts";

/**
 * Default top-level capacity. Measured rank error at the cut-off (docs/policy.md): at most about 0.1% of
 * the stream at k = 1000, below the sampling noise of a running quantile itself, for about 2,900 numbers
 * (23 KB) held.
 */
export const DEFAULT_SKETCH_K = 1000;
const MIN_LEVEL_CAPACITY = 8;
const CAPACITY_DECAY = 2 / 3;
const MIN_K = 8;
const MAX_K = 65536;
const DEFAULT_SEED = 0x5eed;

const BYTES_MAGIC = 0x4b4c4c31; // "KLL1"

export const kllStateSchema = z
  .object({
    type: z.literal("kll"),
    version: z.literal(1),
    k: z.number().int().min(MIN_K).max(MAX_K),
    count: z.number().int().nonnegative(),
    min: z.number().nullable(),
    max: z.number().nullable(),
    rng: z.number().int().min(0).max(0xffffffff),
    /** One entry per level (level 0 first): the items as little-endian float64, base64. */
    levels: z.array(z.string()),
  })
  .strict();

/** The JSON form of a sketch. `min`/`max` are null while the sketch is empty. */
export type KllState = z.infer<typeof kllStateSchema>;

export interface KllOptions {
  /** Top-level capacity; rank error shrinks about as 1/k, memory grows as about 3k values. */
  k?: number;
  /** Seed of the compaction coin flips. */
  seed?: number;
}

export class KllSketch {
  readonly k: number;
  #levels: number[][];
  #count = 0;
  #min = Number.POSITIVE_INFINITY;
  #max = Number.NEGATIVE_INFINITY;
  #rng: number;
  #retained = 0;
  #sorted: { values: Float64Array; cumulative: Float64Array } | null = null;

  constructor(options: KllOptions = {}) {
    const k = options.k ?? DEFAULT_SKETCH_K;
    if (!Number.isInteger(k) || k < MIN_K || k > MAX_K) {
      throw new ClipsieveError(
        "CONFIG_INVALID",
        `sketch k must be an integer in [${MIN_K}, ${MAX_K}], got ${k}`,
      );
    }
    this.k = k;
    this.#levels = [[]];
    this.#rng = (options.seed ?? DEFAULT_SEED) >>> 0;
  }

  /** Number of values seen (the total weight of the items). */
  get count(): number {
    return this.#count;
  }

  /** Exact smallest value seen (Infinity while empty). */
  get min(): number {
    return this.#min;
  }

  /** Exact largest value seen (-Infinity while empty). */
  get max(): number {
    return this.#max;
  }

  /** Items held now; bounded by about 3k + 8 * levels whatever the count. */
  get retained(): number {
    return this.#retained;
  }

  add(value: number): void {
    if (!Number.isFinite(value)) {
      throw new ClipsieveError(
        "POLICY_SCORE_INVALID",
        `a quantile sketch takes finite values only, got ${value}`,
      );
    }
    this.#levels[0]!.push(value);
    this.#retained++;
    this.#count++;
    if (value < this.#min) this.#min = value;
    if (value > this.#max) this.#max = value;
    this.#sorted = null;
    if (this.#retained >= this.#maxRetained()) this.#compress();
  }

  /** Folds `other` into this sketch (other is unchanged). Both must have the same k. */
  merge(other: KllSketch): void {
    if (other.k !== this.k) {
      throw new ClipsieveError(
        "POLICY_STATE_MISMATCH",
        `cannot merge quantile sketches with different k (${this.k} and ${other.k})`,
      );
    }
    if (other.#count === 0) return;
    const otherLevels = other.#levels;
    while (this.#levels.length < otherLevels.length) this.#levels.push([]);
    for (let h = 0; h < otherLevels.length; h++) {
      for (const item of otherLevels[h]!) this.#levels[h]!.push(item);
    }
    this.#retained += other.#retained;
    this.#count += other.#count;
    if (other.#min < this.#min) this.#min = other.#min;
    if (other.#max > this.#max) this.#max = other.#max;
    this.#sorted = null;
    while (this.#retained >= this.#maxRetained()) this.#compress();
  }

  /**
   * The cut-off of the top `fraction` of the values seen: the m-th largest value, m = floor(fraction * n)
   * (spec §4: "top f keeps int(N * f)"), so that `value >= cutoff` keeps about m of the n values. Exact
   * while nothing was compacted. Infinity when m = 0 (keep nothing); the exact minimum when m = n.
   */
  topFractionCutoff(fraction: number): number {
    if (!(fraction >= 0 && fraction <= 1)) {
      throw new ClipsieveError("CONFIG_INVALID", `a top fraction must lie in [0, 1], got ${fraction}`);
    }
    const keep = Math.floor(fraction * this.#count);
    if (keep <= 0) return Number.POSITIVE_INFINITY;
    if (keep >= this.#count) return this.#min;
    // The keep-th largest is the value where the weight strictly above it stays below `keep`.
    return this.#valueAtWeightFromTop(keep);
  }

  /** The value at quantile q in [0, 1] (lower weighted quantile; q = 0 gives the min, q = 1 the max). */
  quantile(q: number): number {
    if (!(q >= 0 && q <= 1))
      throw new ClipsieveError("CONFIG_INVALID", `a quantile must lie in [0, 1], got ${q}`);
    if (this.#count === 0) return Number.NaN;
    if (q === 0) return this.#min;
    if (q === 1) return this.#max;
    const { values, cumulative } = this.#view();
    const target = q * this.#count;
    let lo = 0;
    let hi = values.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cumulative[mid]! >= target) hi = mid;
      else lo = mid + 1;
    }
    return values[lo]!;
  }

  /** Estimated number of values seen that are strictly below x. */
  countBelow(x: number): number {
    const { values, cumulative } = this.#view();
    let lo = 0;
    let hi = values.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (values[mid]! < x) lo = mid + 1;
      else hi = mid;
    }
    return lo === 0 ? 0 : cumulative[lo - 1]!;
  }

  /**
   * An independent copy that goes on exactly as this sketch would: the same items, count, extremes
   * and generator state, so the same values added to both compact alike and give the same cut-offs.
   * The policy adds a window to a copy to learn the cut-off before it commits (policy.ts).
   */
  clone(): KllSketch {
    const copy = new KllSketch({ k: this.k, seed: this.#rng });
    copy.#levels = this.#levels.map((level) => level.slice());
    copy.#count = this.#count;
    copy.#min = this.#min;
    copy.#max = this.#max;
    copy.#retained = this.#retained;
    return copy;
  }

  toJSON(): KllState {
    const empty = this.#count === 0;
    return {
      type: "kll",
      version: 1,
      k: this.k,
      count: this.#count,
      min: empty ? null : this.#min,
      max: empty ? null : this.#max,
      rng: this.#rng,
      levels: this.#levels.map((level) => Buffer.from(Float64Array.from(level).buffer).toString("base64")),
    };
  }

  static fromJSON(input: unknown): KllSketch {
    const parsed = kllStateSchema.safeParse(input);
    if (!parsed.success) {
      throw new ClipsieveError(
        "POLICY_STATE_INVALID",
        `quantile sketch state is invalid: ${z.prettifyError(parsed.error).replaceAll("\n", "; ")}`,
      );
    }
    const state = parsed.data;
    const levels = state.levels.map((text, h) => {
      const bytes = Buffer.from(text, "base64");
      if (bytes.length % 8 !== 0) {
        throw new ClipsieveError("POLICY_STATE_INVALID", `quantile sketch level ${h} is not a float64 array`);
      }
      const view = new Float64Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
      return Array.from(view);
    });
    return KllSketch.#assemble(state.k, state.count, state.min, state.max, state.rng, levels);
  }

  /**
   * Binary form: magic "KLL1", k, rng, level count, count (float64), min, max, then per level its item
   * count (uint32) and items (float64), all little-endian.
   */
  toBytes(): Uint8Array {
    const items = this.#retained;
    const size = 4 * 4 + 8 * 3 + 4 * this.#levels.length + 8 * items;
    const out = new Uint8Array(size);
    const view = new DataView(out.buffer);
    let at = 0;
    view.setUint32(at, BYTES_MAGIC, true);
    view.setUint32((at += 4), this.k, true);
    view.setUint32((at += 4), this.#rng, true);
    view.setUint32((at += 4), this.#levels.length, true);
    view.setFloat64((at += 4), this.#count, true);
    view.setFloat64((at += 8), this.#min, true);
    view.setFloat64((at += 8), this.#max, true);
    at += 8;
    for (const level of this.#levels) {
      view.setUint32(at, level.length, true);
      at += 4;
      for (const item of level) {
        view.setFloat64(at, item, true);
        at += 8;
      }
    }
    return out;
  }

  static fromBytes(bytes: Uint8Array): KllSketch {
    const bad = (why: string) => new ClipsieveError("POLICY_STATE_INVALID", `quantile sketch bytes: ${why}`);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (bytes.byteLength < 40 || view.getUint32(0, true) !== BYTES_MAGIC) throw bad("not a KLL1 sketch");
    const k = view.getUint32(4, true);
    const rng = view.getUint32(8, true);
    const levelCount = view.getUint32(12, true);
    const count = view.getFloat64(16, true);
    const min = view.getFloat64(24, true);
    const max = view.getFloat64(32, true);
    let at = 40;
    const levels: number[][] = [];
    for (let h = 0; h < levelCount; h++) {
      if (at + 4 > bytes.byteLength) throw bad(`truncated at level ${h}`);
      const n = view.getUint32(at, true);
      at += 4;
      if (at + 8 * n > bytes.byteLength) throw bad(`truncated in level ${h}`);
      const level = new Array<number>(n);
      for (let i = 0; i < n; i++) level[i] = view.getFloat64(at + 8 * i, true);
      at += 8 * n;
      levels.push(level);
    }
    if (at !== bytes.byteLength) throw bad(`${bytes.byteLength - at} trailing bytes`);
    const empty = count === 0;
    return KllSketch.#assemble(k, count, empty ? null : min, empty ? null : max, rng, levels);
  }

  static #assemble(
    k: number,
    count: number,
    min: number | null,
    max: number | null,
    rng: number,
    levels: number[][],
  ): KllSketch {
    const bad = (why: string) => new ClipsieveError("POLICY_STATE_INVALID", `quantile sketch state: ${why}`);
    const sketch = new KllSketch({ k, seed: rng });
    if (levels.length === 0) throw bad("no levels");
    let weight = 0;
    let retained = 0;
    for (let h = 0; h < levels.length; h++) {
      for (const item of levels[h]!) {
        if (!Number.isFinite(item)) throw bad(`level ${h} holds a non-finite item`);
      }
      weight += levels[h]!.length * 2 ** h;
      retained += levels[h]!.length;
    }
    // The weights of the items add up to the count: a cheap check that the state was not cut or mixed.
    if (weight !== count) throw bad(`items weigh ${weight} but count is ${count}`);
    if (count > 0 && (min === null || max === null || !(min <= max)))
      throw bad("min/max missing or out of order");
    sketch.#levels = levels;
    sketch.#count = count;
    sketch.#retained = retained;
    if (count > 0) {
      sketch.#min = min!;
      sketch.#max = max!;
    }
    return sketch;
  }

  #capacity(h: number): number {
    const depth = this.#levels.length - 1 - h;
    return Math.max(MIN_LEVEL_CAPACITY, Math.ceil(this.k * CAPACITY_DECAY ** depth));
  }

  #maxRetained(): number {
    let total = 0;
    for (let h = 0; h < this.#levels.length; h++) total += this.#capacity(h);
    return total;
  }

  #compress(): void {
    for (let h = 0; h < this.#levels.length; h++) {
      const level = this.#levels[h]!;
      if (level.length < this.#capacity(h)) continue;
      if (h + 1 >= this.#levels.length) this.#levels.push([]);
      const sorted = Float64Array.from(level).sort();
      // An odd item out stays behind (the smallest), so every promoted pair is exactly 2 -> 1.
      const start = sorted.length % 2;
      const keep: number[] = start === 1 ? [sorted[0]!] : [];
      const offset = this.#nextBit();
      const up = this.#levels[h + 1]!;
      for (let i = start + offset; i < sorted.length; i += 2) up.push(sorted[i]!);
      this.#levels[h] = keep;
      this.#retained -= (sorted.length - start) / 2;
      if (this.#retained < this.#maxRetained()) return;
    }
  }

  /** mulberry32: one 32-bit step; the low bit picks the odd or even positions. */
  #nextBit(): number {
    this.#rng = (this.#rng + 0x6d2b79f5) >>> 0;
    let t = this.#rng;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) & 1;
  }

  #view(): { values: Float64Array; cumulative: Float64Array } {
    if (this.#sorted) return this.#sorted;
    const n = this.#retained;
    const values = new Float64Array(n);
    const weights = new Float64Array(n);
    let i = 0;
    for (let h = 0; h < this.#levels.length; h++) {
      const w = 2 ** h;
      for (const item of this.#levels[h]!) {
        values[i] = item;
        weights[i++] = w;
      }
    }
    const order = Array.from({ length: n }, (_, j) => j).sort((a, b) => values[a]! - values[b]!);
    const sortedValues = new Float64Array(n);
    const cumulative = new Float64Array(n);
    let total = 0;
    for (let j = 0; j < n; j++) {
      const idx = order[j]!;
      sortedValues[j] = values[idx]!;
      total += weights[idx]!;
      cumulative[j] = total;
    }
    this.#sorted = { values: sortedValues, cumulative };
    return this.#sorted;
  }

  /** The largest-first item at which the weight counted from the top first reaches `weight`. */
  #valueAtWeightFromTop(weight: number): number {
    const { values, cumulative } = this.#view();
    // Weight of items >= values[j] is count - cumulative[j - 1]. Find the largest j where that is >= weight.
    const total = this.#count;
    let lo = 0;
    let hi = values.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      const above = total - (mid === 0 ? 0 : cumulative[mid - 1]!);
      if (above >= weight) lo = mid;
      else hi = mid - 1;
    }
    return values[lo]!;
  }
}
