/** Synthetic CLIP-like records for tests: seeded, small, with known good and bad ones. */

export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function gaussian(rand: () => number): number {
  const u = Math.max(rand(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
}

export function unit(v: number[]): number[] {
  const n = Math.hypot(...v);
  return v.map((x) => x / n);
}

export interface SyntheticPair {
  uid: string;
  image: number[];
  text: number[];
}

/** `n` pairs in `dim` dimensions: image near a topic centre, text near its image (some mismatched). */
export function syntheticPairs(n: number, dim: number, seed: number, topics = 8): SyntheticPair[] {
  const rand = mulberry32(seed);
  const centres = Array.from({ length: topics }, () =>
    unit(Array.from({ length: dim }, () => gaussian(rand))),
  );
  const out: SyntheticPair[] = [];
  for (let i = 0; i < n; i++) {
    const c = centres[i % topics];
    const image = unit(c.map((x) => x + (0.8 * gaussian(rand)) / Math.sqrt(dim)));
    const mismatched = rand() < 0.2;
    const base = mismatched ? centres[(i + 3) % topics] : image;
    const text = unit(base.map((x) => x + (0.9 * gaussian(rand)) / Math.sqrt(dim)));
    out.push({ uid: (seed * 1_000_003 + i).toString(16).padStart(32, "0"), image, text });
  }
  return out;
}

/** The JSON record format (docs/record-format.md), embeddings as arrays or base64 float32. */
export function jsonRecord(p: SyntheticPair, opts: { base64?: boolean; model?: string } = {}): string {
  const enc = (v: number[]) => (opts.base64 ? Buffer.from(new Float32Array(v).buffer).toString("base64") : v);
  return JSON.stringify({
    uid: p.uid,
    text: `caption ${p.uid}`,
    url: `https://example.com/${p.uid}.jpg`,
    ...(opts.model ? { model: opts.model } : {}),
    image_embedding: enc(p.image),
    text_embedding: enc(p.text),
  });
}
