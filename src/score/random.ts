/**
 * The seeded integer generator behind draws and NormSim_2-D's subsamples. Integer arithmetic only, so
 * the same (seed, stream) gives the same numbers on any machine and in any language; docs/scoring.md
 * states the algorithm step by step for other implementations.
 *
 * - splitmix64 (Steele, Lea, Flood 2014) turns (seed, stream) into a 128-bit state:
 *   `mix64(z) = z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27; z *= 0x94D049BB133111EB; z ^= z >> 31`
 *   (all mod 2^64); start `x = mix64(seed) XOR stream`; twice `x += 0x9E3779B97F4A7C15; out = mix64(x)`.
 *   The first output gives s0 (low 32 bits) and s1 (high 32 bits), the second s2 and s3.
 * - xoshiro128** (Blackman, Vigna 2018) then makes 32-bit outputs from (s0, s1, s2, s3).
 * - `below(bound)`: draw x until x < 2^32 - (2^32 mod bound), return x mod bound (unbiased).
 */
import { ClipsieveError } from "../common/errors.ts";

const MASK64 = (1n << 64n) - 1n;
const GOLDEN_GAMMA = 0x9e3779b97f4a7c15n;

function mix64(value: bigint): bigint {
  let z = value & MASK64;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return z ^ (z >> 31n);
}

/** The first `count` outputs of splitmix64 started at `state` (uint64). */
export function splitmix64(state: bigint, count: number): bigint[] {
  const out: bigint[] = [];
  let x = state & MASK64;
  for (let i = 0; i < count; i++) {
    x = (x + GOLDEN_GAMMA) & MASK64;
    out.push(mix64(x));
  }
  return out;
}

export interface Random {
  /** The next 32-bit output of xoshiro128**, as an unsigned integer. */
  nextUint32(): number;
  /** A uniform integer in [0, bound), 1 <= bound <= 2^32. */
  below(bound: number): number;
}

/** Checks that `seed` is an integer the generator accepts: 0 <= seed <= 2^53 - 1. */
export function checkSeed(seed: number, what = "seed"): void {
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new ClipsieveError("CONFIG_INVALID", `${what} must be an integer from 0 to 2^53 - 1, got ${seed}`);
  }
}

/** An independent generator for each (seed, stream): draw k of a window uses stream k. */
export function createRandom(seed: number, stream: number): Random {
  checkSeed(seed);
  if (!Number.isSafeInteger(stream) || stream < 0) {
    throw new ClipsieveError("CONFIG_INVALID", `random stream must be a non-negative integer, got ${stream}`);
  }
  const [a, b] = splitmix64(mix64(BigInt(seed)) ^ BigInt(stream), 2);
  let s0 = Number(a & 0xffffffffn) | 0;
  let s1 = Number(a >> 32n) | 0;
  let s2 = Number(b & 0xffffffffn) | 0;
  let s3 = Number(b >> 32n) | 0;
  // xoshiro's one forbidden state; splitmix64 cannot give it for two outputs, but be explicit.
  if ((s0 | s1 | s2 | s3) === 0) s0 = 1;

  const rotl = (x: number, k: number): number => (x << k) | (x >>> (32 - k));
  const nextUint32 = (): number => {
    const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0;
    const t = s1 << 9;
    s2 ^= s0;
    s3 ^= s1;
    s1 ^= s2;
    s0 ^= s3;
    s2 ^= t;
    s3 = rotl(s3, 11);
    return result;
  };
  const below = (bound: number): number => {
    if (!Number.isInteger(bound) || bound < 1 || bound > 2 ** 32) {
      throw new RangeError(`bound must be an integer in [1, 2^32], got ${bound}`);
    }
    const limit = 2 ** 32 - (2 ** 32 % bound);
    let x = nextUint32();
    while (x >= limit) x = nextUint32();
    return x % bound;
  };
  return { nextUint32, below };
}

/** Fisher–Yates (Durstenfeld): for i = n-1 down to 1, swap items i and below(i + 1). In place. */
export function shuffleInPlace(items: Int32Array, random: Random): Int32Array {
  for (let i = items.length - 1; i > 0; i--) {
    const j = random.below(i + 1);
    const tmp = items[i];
    items[i] = items[j];
    items[j] = tmp;
  }
  return items;
}
