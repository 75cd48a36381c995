/**
 * A synthetic crawl stream with known ground truth: CLIP-like image and text embeddings, each record
 * labelled with the kind of pair it is. Pure and seeded: the same options give the same records, byte
 * for byte, on the same Node version, and a record depends only on (seed, its slot), never on the
 * order it is emitted in, so the shuffled and the bursty stream of one seed hold the same records.
 *
 * The embedding model (squared weights of unit directions, then L2-normalised):
 *
 *   image  = 0.30 u_img + 0.08 u_shared + 0.52 content + 0.02 site style + 0.08 noise
 *   text   = 0.30 u_txt + 0.08 u_shared + q^2 content  + (rest) noise,   q^2 ~ U(0.03, 0.16)
 *   content = 0.45 topic centre + 0.30 subtopic + 0.25 detail
 *
 * u_img and u_txt are orthogonal: the modality gap, so an image is nearer every other image (cosine
 * about 0.4-0.8) than any text, as in CLIP. A well-aligned pair has CLIPScore about 0.08 + 0.72 q, i.e.
 * 0.2-0.37; a caption of another topic about 0.08. Records of one topic, and more so of one subtopic,
 * are each other's hard negatives, which is what makes s-CLIPLoss's normaliser depend on the batch.
 *
 * Kinds (SIM_KINDS): `aligned` pairs of the target topics; `off_target`, aligned pairs whose images are
 * of topics the target set does not cover (good CLIP alignment, low NormSim); `mismatched`, a caption of
 * another topic; `boilerplate`, a site's template caption shared by many of its stock images (a strong
 * site style in the image, the same text embedding for all): high CLIPScore, but every copy in a batch
 * raises the others' normaliser, so s-CLIPLoss is low (the case the paper's normaliser exists for);
 * `duplicate`, clusters of 2-8 near-copies of one aligned pair.
 */
import { ClipsieveError } from "../common/errors.ts";
import { createRandom, type Random } from "../score/random.ts";

export const SIM_KINDS = ["aligned", "off_target", "mismatched", "boilerplate", "duplicate"] as const;
export type SimKind = (typeof SIM_KINDS)[number];

export const SIM_ORDERS = ["shuffled", "bursty"] as const;
export type SimOrder = (typeof SIM_ORDERS)[number];

/** The teacher name simulated records and their target set carry. */
export const SIM_MODEL = "clipsieve-sim";

/** Share of each kind in the stream. A dirty crawl: most pairs are not worth training on. */
export const DEFAULT_MIX: Readonly<Record<SimKind, number>> = {
  aligned: 0.22,
  off_target: 0.14,
  mismatched: 0.28,
  boilerplate: 0.18,
  duplicate: 0.18,
};

/** Mixture of the longtail profile: cleaner pairs, more copies, less boilerplate. */
export const LONGTAIL_MIX: Readonly<Record<SimKind, number>> = {
  aligned: 0.3,
  off_target: 0.2,
  mismatched: 0.2,
  boilerplate: 0.1,
  duplicate: 0.2,
};

/**
 * Two worlds of different structure, for studies that must not hold for one generator only.
 * - `crawl` (the default, the demo's): 24 topics of equal weight, 12 sites, near-copies in clusters of
 *   2-8, a target set made of the target topics only.
 * - `longtail`: 240 topics with Zipf popularity (exponent 1.1, so a few topics fill much of the stream
 *   and most are rare), 60 sites, heavy near-copy clusters (2-40 copies, closer to each other), a wider
 *   spread of caption quality, and a weakly discriminative target set (35 % of its rows show topics
 *   outside the target topics, as a target set gathered with some noise does).
 */
export const SIM_PROFILES = ["crawl", "longtail"] as const;
export type SimProfile = (typeof SIM_PROFILES)[number];

interface ProfileShape {
  topics: number;
  sites: number;
  mix: Readonly<Record<SimKind, number>>;
  /** Squared weight of the content in a caption: uniform in [min, max]. */
  caption: { min: number; max: number };
  duplicateCluster: { min: number; max: number };
  duplicateImageNoise: number;
  duplicateTextNoise: number;
  /** Zipf exponent of topic popularity (0: every topic alike). */
  topicSkew: number;
  /** Share of the target set's rows that show a topic outside the target topics. */
  targetStray: number;
}

const PROFILES: Readonly<Record<SimProfile, ProfileShape>> = {
  crawl: {
    topics: 24,
    sites: 12,
    mix: DEFAULT_MIX,
    caption: { min: 0.03, max: 0.16 },
    duplicateCluster: { min: 2, max: 8 },
    duplicateImageNoise: 0.15,
    duplicateTextNoise: 0.05,
    topicSkew: 0,
    targetStray: 0,
  },
  longtail: {
    topics: 240,
    sites: 60,
    mix: LONGTAIL_MIX,
    caption: { min: 0.01, max: 0.24 },
    duplicateCluster: { min: 2, max: 40 },
    duplicateImageNoise: 0.06,
    duplicateTextNoise: 0.03,
    topicSkew: 1.1,
    targetStray: 0.35,
  },
};

export interface SimulationOptions {
  /** Records in the stream. */
  count: number;
  /** Embedding dimension D (at least 8). */
  dim: number;
  seed: number;
  order: SimOrder;
  /** The world's structure (SIM_PROFILES); default "crawl". Sets the defaults of mix, topics and sites. */
  profile?: SimProfile;
  mix?: Readonly<Record<SimKind, number>>;
  /** Topic clusters; the first half are the target set's topics. Default 24 (crawl), 240 (longtail). */
  topics?: number;
  /**
   * Sites, each with its own boilerplate caption; topic t's favourite site is floor(t / 2) mod sites
   * (two topics a site with crawl's 24 and 12, four with longtail's 240 and 60). Default 12 / 60.
   */
  sites?: number;
  /** Bursty order: mean length of a run of one topic or one site. Default 1024. */
  meanRunLength?: number;
  /** Rows of the matching target set. Default 2048. */
  targetRows?: number;
}

export interface SimRecord {
  /** Position in the stream (0-based). */
  position: number;
  /** The record's slot: its identity, independent of the order. */
  slot: number;
  /** Near-copy cluster: the first slot of its duplicate cluster (a record that is no copy: its own slot). */
  cluster: number;
  uid: string;
  text: string;
  url: string;
  model: string;
  kind: SimKind;
  topic: number;
  site: number;
  imageEmbedding: Float32Array;
  textEmbedding: Float32Array;
}

export interface Simulation {
  readonly options: Readonly<Required<SimulationOptions>>;
  /** The record at stream position `position`. */
  record(position: number): SimRecord;
  /** Every record, in stream order. */
  records(): Generator<SimRecord>;
  /** How many records of each kind the stream holds. */
  kindCounts(): Record<SimKind, number>;
  /** The matching target set's image embeddings: `targetRows` unit rows of the target topics. */
  targetEmbeddings(): { rows: number; dim: number; data: Float32Array };
  /**
   * A target set at the paper's scale (`rows` in the millions): image rows of `classes` classes, the
   * simulation's target topics first, then classes of their own, each with its own spread (tight and
   * loose ones, as real image features are). See `clusteredTargetRow`.
   */
  clusteredTarget(rows: number, classes?: number): { rows: number; dim: number; data: Float32Array };
  /**
   * A reference set (e.g. the evaluation images a model will be tested on) with planted
   * contamination: `contaminated` of its rows are near-copies of the images of aligned records of the
   * stream (`plantedSlots`, their slots, in row order), the other rows fresh images of the target topics.
   */
  referenceSet(
    rows: number,
    contaminated: number,
  ): { rows: number; dim: number; data: Float32Array; plantedSlots: Int32Array };
}

/** Classes of a clustered target by default: as many as ImageNet-1k's. */
export const CLUSTERED_TARGET_CLASSES = 1000;
/** Random directions the clustered target's per-row detail is made of (three at a time). */
const DETAIL_POOL = 8192;
/** The share of a class row's content that is the row's own detail: tight classes low, loose ones high. */
const CLASS_DETAIL = { min: 0.1, max: 0.6 } as const;

const SUBTOPICS = 8;
/** The teacher width whose statistics the generator keeps at any D (see randomShare). */
const EFFECTIVE_DIM = 768;
const MIN_DIM = 8;
/** Streams of the generator: the world, the plan, then one per slot / duplicate cluster / target row. */
const STREAM_WORLD = 0;
const STREAM_PLAN = 1;
const STREAM_ORDER = 2;
const STREAM_POPULARITY = 3;
const STREAM_SLOT = 1_000;
const STREAM_CLUSTER = 2 ** 39;
const STREAM_TARGET = 2 ** 40;
const STREAM_REFERENCE = 2 ** 41;

// Squared weights of the parts of an embedding (see the header).
const W = {
  gap: 0.3,
  shared: 0.08,
  imageContent: 0.52,
  imageSite: 0.02,
  stockContent: 0.27,
  stockSite: 0.27,
  imageNoise: 0.08,
  topic: 0.45,
  subtopic: 0.3,
  detail: 0.25,
  boilerplateMin: 0.2,
  boilerplateMax: 0.35,
} as const;

const TOPIC_NAMES = [
  "bicycle",
  "mountain",
  "espresso",
  "sneaker",
  "golden retriever",
  "sailboat",
  "cathedral",
  "sushi",
  "guitar",
  "tulip",
  "laptop",
  "lighthouse",
  "tabby cat",
  "pizza",
  "skyscraper",
  "wristwatch",
  "owl",
  "tractor",
  "violin",
  "waterfall",
  "armchair",
  "strawberry",
  "train",
  "jellyfish",
];
const SUBTOPIC_WORDS = ["red", "vintage", "tiny", "wet", "bright", "wooden", "snowy", "crowded"];
const SETTINGS = ["at dusk", "on a table", "in the city", "close-up", "from above", "in the rain"];
const BOILERPLATE = [
  "Click here to see more products",
  "Image may contain: outdoor",
  "Free shipping on orders over $50",
  "Photo for illustration purposes only",
  "Buy now - limited stock",
  "Stock photo, royalty free",
];

type Vec = Float64Array;

function gaussian(rng: Random): number {
  // Box-Muller on two 32-bit uniforms in (0, 1].
  const u = (rng.nextUint32() + 1) / 4294967296;
  const v = rng.nextUint32() / 4294967296;
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

function uniform(rng: Random, lo: number, hi: number): number {
  return lo + ((hi - lo) * rng.nextUint32()) / 4294967296;
}

function normalise(v: Vec): Vec {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i] * v[i];
  const n = Math.sqrt(s);
  for (let i = 0; i < v.length; i++) v[i] /= n;
  return v;
}

function dot(a: Vec, b: Vec): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** out += w * v */
function addScaled(out: Vec, v: Vec, w: number): void {
  for (let i = 0; i < out.length; i++) out[i] += w * v[i];
}

function toFloat32(v: Vec): Float32Array {
  return Float32Array.from(normalise(v));
}

interface World {
  gap: { image: Vec; text: Vec; shared: Vec };
  topics: Vec[];
  subtopics: Vec[][];
  siteStyle: Vec[];
  /** Each site's boilerplate caption: one text embedding shared by all its boilerplate records. */
  siteBoilerplate: { text: string; embedding: Float32Array }[];
  /** The site that favours topic t, for t in [0, topics). */
  siteOfTopic: number[];
}

interface Slot {
  kind: SimKind;
  topic: number;
  site: number;
  /** Duplicates: the first slot of the cluster (its content is the cluster's). */
  cluster: number;
}

function checkOptions(given: SimulationOptions): Required<SimulationOptions> {
  // An option given as undefined takes its default, as one not given does.
  const o = Object.fromEntries(
    Object.entries(given).filter(([, v]) => v !== undefined),
  ) as unknown as SimulationOptions;
  const profile = o.profile ?? "crawl";
  if (!(SIM_PROFILES as readonly string[]).includes(profile)) {
    throw new ClipsieveError(
      "CONFIG_INVALID",
      `simulation: profile must be one of ${SIM_PROFILES.join(", ")}, got ${String(profile)}`,
    );
  }
  const shape = PROFILES[profile];
  const full: Required<SimulationOptions> = {
    profile,
    mix: shape.mix,
    topics: shape.topics,
    sites: shape.sites,
    meanRunLength: 1024,
    targetRows: 2048,
    ...o,
  };
  const bad = (what: string) => new ClipsieveError("CONFIG_INVALID", `simulation: ${what}`);
  if (!Number.isSafeInteger(full.count) || full.count < 0)
    throw bad(`count must be an integer >= 0, got ${full.count}`);
  if (!Number.isSafeInteger(full.dim) || full.dim < MIN_DIM)
    throw bad(`dim must be an integer >= ${MIN_DIM}, got ${full.dim}`);
  if (!Number.isSafeInteger(full.seed) || full.seed < 0)
    throw bad(`seed must be an integer >= 0, got ${full.seed}`);
  if (!(SIM_ORDERS as readonly string[]).includes(full.order)) {
    throw bad(`order must be one of ${SIM_ORDERS.join(", ")}, got ${String(full.order)}`);
  }
  if (!Number.isSafeInteger(full.topics) || full.topics < 2)
    throw bad(`topics must be an integer >= 2, got ${full.topics}`);
  if (!Number.isSafeInteger(full.sites) || full.sites < 1)
    throw bad(`sites must be an integer >= 1, got ${full.sites}`);
  if (!(full.meanRunLength >= 1)) throw bad(`meanRunLength must be >= 1, got ${full.meanRunLength}`);
  if (!Number.isSafeInteger(full.targetRows) || full.targetRows < 1) {
    throw bad(`targetRows must be an integer >= 1, got ${full.targetRows}`);
  }
  let total = 0;
  for (const kind of SIM_KINDS) {
    const share = full.mix[kind];
    if (!(share >= 0)) throw bad(`mix.${kind} must be a number >= 0, got ${share}`);
    total += share;
  }
  if (Math.abs(total - 1) > 1e-6) throw bad(`the mix's shares must add up to 1, got ${total}`);
  return full;
}

/** A random unit vector orthogonal to the modality-gap directions (so it never shifts the gap). */
function semanticDirection(rng: Random, dim: number, gap?: World["gap"]): Vec {
  const v = new Float64Array(dim);
  for (let i = 0; i < dim; i++) v[i] = gaussian(rng);
  if (gap) for (const g of [gap.image, gap.text, gap.shared]) addScaled(v, g, -dot(v, g));
  return normalise(v);
}

function buildWorld(o: Required<SimulationOptions>): World {
  const rng = createRandom(o.seed, STREAM_WORLD);
  // Three orthonormal directions by Gram-Schmidt.
  const image = semanticDirection(rng, o.dim);
  const text = semanticDirection(rng, o.dim);
  addScaled(text, image, -dot(text, image));
  normalise(text);
  const shared = semanticDirection(rng, o.dim);
  for (const g of [image, text]) addScaled(shared, g, -dot(shared, g));
  normalise(shared);
  const gap = { image, text, shared };
  const topics = Array.from({ length: o.topics }, () => semanticDirection(rng, o.dim, gap));
  const subtopics = topics.map(() =>
    Array.from({ length: SUBTOPICS }, () => semanticDirection(rng, o.dim, gap)),
  );
  const siteStyle = Array.from({ length: o.sites }, () => semanticDirection(rng, o.dim, gap));
  const siteBoilerplate = siteStyle.map((style, s) => {
    const w = uniform(rng, W.boilerplateMin, W.boilerplateMax);
    const v = new Float64Array(o.dim);
    addScaled(v, gap.text, Math.sqrt(W.gap));
    addScaled(v, gap.shared, Math.sqrt(W.shared));
    addScaled(v, style, Math.sqrt(w));
    addScaled(v, semanticDirection(rng, o.dim, gap), Math.sqrt(1 - W.gap - W.shared - w));
    return {
      text: `${BOILERPLATE[s % BOILERPLATE.length]} | site${s}.example`,
      embedding: toFloat32(v),
    };
  });
  const siteOfTopic = topics.map((_, t) => Math.floor(t / 2) % o.sites);
  return { gap, topics, subtopics, siteStyle, siteBoilerplate, siteOfTopic };
}

function targetTopicCount(o: Required<SimulationOptions>): number {
  return Math.max(1, Math.floor(o.topics / 2));
}

/**
 * Draws a topic in [lo, hi): uniformly without skew (as the crawl profile always has), else with Zipf
 * weights (rank + 1)^-skew, each topic's rank from a seeded shuffle so that popular topics fall among
 * target and other topics alike.
 */
function topicPicker(
  o: Required<SimulationOptions>,
  skew: number,
  rng: Random,
): (lo: number, hi: number) => number {
  if (skew === 0) return (lo, hi) => lo + rng.below(hi - lo);
  const rank = shuffle(
    Int32Array.from({ length: o.topics }, (_, i) => i),
    createRandom(o.seed, STREAM_POPULARITY),
  );
  const weight = Array.from(rank, (r) => (r + 1) ** -skew);
  return (lo, hi) => {
    let total = 0;
    for (let t = lo; t < hi; t++) total += weight[t];
    let u = (total * rng.nextUint32()) / 4294967296;
    for (let t = lo; t < hi - 1; t++) {
      u -= weight[t];
      if (u < 0) return t;
    }
    return hi - 1;
  };
}

/** Kinds, topics, sites and duplicate clusters of every slot (slot order = generation order). */
function buildPlan(o: Required<SimulationOptions>, world: World): Slot[] {
  const rng = createRandom(o.seed, STREAM_PLAN);
  const counts = SIM_KINDS.map((k) => Math.floor(o.count * o.mix[k]));
  // Rounding leftovers go to the kinds with the largest remainders, so counts add up to `count`.
  const order = SIM_KINDS.map((k, i) => ({ i, rem: o.count * o.mix[k] - counts[i] })).sort(
    (a, b) => b.rem - a.rem,
  );
  for (let left = o.count - counts.reduce((a, b) => a + b, 0), j = 0; left > 0; left--, j++)
    counts[order[j % order.length].i]++;

  const nTarget = targetTopicCount(o);
  const shape = PROFILES[o.profile];
  const pick = (lo: number, hi: number) => lo + rng.below(hi - lo);
  const topicIn = topicPicker(o, shape.topicSkew, rng);
  const topicFor = (kind: SimKind): number => {
    if (kind === "aligned" || kind === "duplicate") return topicIn(0, nTarget);
    if (kind === "off_target") return nTarget < o.topics ? topicIn(nTarget, o.topics) : topicIn(0, o.topics);
    return topicIn(0, o.topics);
  };
  // A record comes from the site that favours its topic 70% of the time, from any site otherwise.
  const siteFor = (topic: number) => (rng.below(10) < 7 ? world.siteOfTopic[topic] : rng.below(o.sites));

  const slots: Slot[] = [];
  SIM_KINDS.forEach((kind, k) => {
    let left = counts[k];
    while (left > 0) {
      if (kind === "duplicate") {
        const size = Math.min(left, pick(shape.duplicateCluster.min, shape.duplicateCluster.max + 1));
        const topic = topicFor(kind);
        const site = siteFor(topic);
        const cluster = slots.length;
        for (let i = 0; i < size; i++) slots.push({ kind, topic, site, cluster });
        left -= size;
      } else if (kind === "boilerplate") {
        // A site's stock images show its favourite topics.
        const site = rng.below(o.sites);
        const favourites = world.siteOfTopic.flatMap((s, t) => (s === site ? [t] : []));
        const topic = favourites.length > 0 ? favourites[rng.below(favourites.length)] : topicFor(kind);
        slots.push({ kind, topic, site, cluster: slots.length });
        left--;
      } else {
        const topic = topicFor(kind);
        slots.push({ kind, topic, site: siteFor(topic), cluster: slots.length });
        left--;
      }
    }
  });
  return slots;
}

function shuffle(a: Int32Array, rng: Random): Int32Array {
  for (let i = a.length - 1; i > 0; i--) {
    const j = rng.below(i + 1);
    const t = a[i];
    a[i] = a[j];
    a[j] = t;
  }
  return a;
}

/**
 * The emission order, as slot indices. Bursty: runs of one topic or one site (half each), the run's
 * key drawn in proportion to what it has left, its length geometric with the configured mean, as a
 * crawler that stays on a site, or a feed that stays on a subject, for a while.
 */
function buildOrder(o: Required<SimulationOptions>, slots: Slot[]): Int32Array {
  const rng = createRandom(o.seed, STREAM_ORDER);
  const all = shuffle(
    Int32Array.from(slots, (_, i) => i),
    rng,
  );
  if (o.order === "shuffled") return all;
  const byTopic: number[][] = Array.from({ length: o.topics }, () => []);
  const bySite: number[][] = Array.from({ length: o.sites }, () => []);
  for (const i of all) {
    byTopic[slots[i].topic].push(i);
    bySite[slots[i].site].push(i);
  }
  const cursor = { topic: new Int32Array(o.topics), site: new Int32Array(o.sites) };
  const leftIn = { topic: byTopic.map((l) => l.length), site: bySite.map((l) => l.length) };
  const used = new Uint8Array(slots.length);
  const out = new Int32Array(slots.length);
  let emitted = 0;
  const take = (i: number) => {
    used[i] = 1;
    leftIn.topic[slots[i].topic]--;
    leftIn.site[slots[i].site]--;
    out[emitted++] = i;
  };
  const pForStop = 1 / o.meanRunLength;
  while (emitted < slots.length) {
    const by: "topic" | "site" = rng.below(2) === 0 ? "topic" : "site";
    const left = leftIn[by];
    let r = rng.below(slots.length - emitted);
    let key = 0;
    while (r >= left[key]) r -= left[key++];
    const list = by === "topic" ? byTopic[key] : bySite[key];
    const cur = cursor[by];
    // Geometric run length with mean meanRunLength.
    let length = 1;
    while (rng.nextUint32() / 4294967296 >= pForStop) length++;
    while (length > 0 && left[key] > 0) {
      const i = list[cur[key]++];
      if (used[i]) continue;
      take(i);
      length--;
    }
  }
  return out;
}

function hex32(rng: Random): string {
  let s = "";
  for (let i = 0; i < 4; i++) s += rng.nextUint32().toString(16).padStart(8, "0");
  return s;
}

function contentVector(world: World, rng: Random, topic: number, dim: number): Vec {
  const c = new Float64Array(dim);
  addScaled(c, world.topics[topic], Math.sqrt(W.topic));
  addScaled(c, world.subtopics[topic][rng.below(SUBTOPICS)], Math.sqrt(W.subtopic));
  addScaled(c, semanticDirection(rng, dim, world.gap), Math.sqrt(W.detail));
  return normalise(c);
}

/**
 * The share of a noise term's weight that stays random at this D; the rest joins the modality-gap
 * direction. A random unit vector's projection on any fixed direction has a spread of 1/sqrt(D), so in
 * fewer dimensions than a real teacher's the noise alone would make unrelated pairs look related
 * (at D = 64 the spread of CLIPScore and the tail of each row's similarities grow threefold, and the
 * normaliser R is dominated by chance). Scaling the random part by D / 768 keeps the cross-modal
 * spread of a 768-d teacher whatever D is, so D sets the cost of a study, not its statistics.
 */
function randomShare(dim: number): number {
  return Math.min(1, dim / EFFECTIVE_DIM);
}

function imageVector(
  world: World,
  rng: Random,
  content: Vec,
  site: number,
  stock: boolean,
  dim: number,
): Vec {
  const f = new Float64Array(dim);
  const r = randomShare(dim);
  addScaled(f, world.gap.image, Math.sqrt(W.gap + (1 - r) * W.imageNoise));
  addScaled(f, world.gap.shared, Math.sqrt(W.shared));
  addScaled(f, content, Math.sqrt(stock ? W.stockContent : W.imageContent));
  addScaled(f, world.siteStyle[site], Math.sqrt(stock ? W.stockSite : W.imageSite));
  addScaled(f, semanticDirection(rng, dim, world.gap), Math.sqrt(r * W.imageNoise));
  return normalise(f);
}

function captionVector(
  world: World,
  rng: Random,
  content: Vec,
  dim: number,
  quality: ProfileShape["caption"],
): Vec {
  const q2 = uniform(rng, quality.min, quality.max);
  const noise = 1 - W.gap - W.shared - q2;
  const r = randomShare(dim);
  const g = new Float64Array(dim);
  addScaled(g, world.gap.text, Math.sqrt(W.gap + (1 - r) * noise));
  addScaled(g, world.gap.shared, Math.sqrt(W.shared));
  addScaled(g, content, Math.sqrt(q2));
  addScaled(g, semanticDirection(rng, dim, world.gap), Math.sqrt(r * noise));
  return normalise(g);
}

function perturbed(v: Vec, rng: Random, weight: number, world: World): Vec {
  const out = Float64Array.from(v);
  addScaled(out, semanticDirection(rng, v.length, world.gap), weight);
  return normalise(out);
}

function captionText(rng: Random, topic: number): string {
  const noun = TOPIC_NAMES[topic % TOPIC_NAMES.length];
  const adjective = SUBTOPIC_WORDS[rng.below(SUBTOPIC_WORDS.length)];
  const setting = SETTINGS[rng.below(SETTINGS.length)];
  return `a ${adjective} ${noun}${topic >= TOPIC_NAMES.length ? ` (${topic})` : ""} ${setting}`;
}

export function createSimulation(options: SimulationOptions): Simulation {
  const o = checkOptions(options);
  const world = buildWorld(o);
  const slots = buildPlan(o, world);
  const order = buildOrder(o, slots);
  const { dim } = o;
  const shape = PROFILES[o.profile];

  /** An aligned pair's image and caption, from its own generator (a duplicate cluster shares one). */
  function pairOf(rng: Random, slot: Slot): { image: Vec; text: Vec; caption: string } {
    const content = contentVector(world, rng, slot.topic, dim);
    const image = imageVector(world, rng, content, slot.site, false, dim);
    const text = captionVector(world, rng, content, dim, shape.caption);
    return { image, text, caption: captionText(rng, slot.topic) };
  }

  function record(position: number): SimRecord {
    if (!Number.isSafeInteger(position) || position < 0 || position >= o.count) {
      throw new ClipsieveError(
        "CONFIG_INVALID",
        `simulation: position ${position} is outside 0..${o.count - 1}`,
      );
    }
    const index = order[position];
    const slot = slots[index];
    const rng = createRandom(o.seed, STREAM_SLOT + index);
    const uid = hex32(rng);
    let image: Vec;
    let text: Float32Array;
    let caption: string;
    switch (slot.kind) {
      case "aligned":
      case "off_target": {
        const p = pairOf(rng, slot);
        image = p.image;
        text = toFloat32(p.text);
        caption = p.caption;
        break;
      }
      case "mismatched": {
        const content = contentVector(world, rng, slot.topic, dim);
        image = imageVector(world, rng, content, slot.site, false, dim);
        // A caption of another topic: what a wrong alt text or a scraped neighbour's caption looks like.
        const other = (slot.topic + 1 + rng.below(o.topics - 1)) % o.topics;
        text = toFloat32(
          captionVector(world, rng, contentVector(world, rng, other, dim), dim, shape.caption),
        );
        caption = captionText(rng, other);
        break;
      }
      case "boilerplate": {
        const content = contentVector(world, rng, slot.topic, dim);
        image = imageVector(world, rng, content, slot.site, true, dim);
        text = world.siteBoilerplate[slot.site].embedding.slice();
        caption = world.siteBoilerplate[slot.site].text;
        break;
      }
      case "duplicate": {
        const base = pairOf(createRandom(o.seed, STREAM_CLUSTER + slot.cluster), slot);
        image = perturbed(base.image, rng, shape.duplicateImageNoise, world);
        text = toFloat32(perturbed(base.text, rng, shape.duplicateTextNoise, world));
        caption = base.caption;
        break;
      }
    }
    return {
      position,
      slot: index,
      cluster: slot.cluster,
      uid,
      text: caption,
      url: `https://site${slot.site}.example/${slot.kind === "boilerplate" ? "stock" : "p"}/${uid.slice(0, 12)}.jpg`,
      model: SIM_MODEL,
      kind: slot.kind,
      topic: slot.topic,
      site: slot.site,
      imageEmbedding: toFloat32(image),
      textEmbedding: text,
    };
  }

  return {
    options: o,
    record,
    *records() {
      for (let p = 0; p < o.count; p++) yield record(p);
    },
    kindCounts() {
      const out = Object.fromEntries(SIM_KINDS.map((k) => [k, 0])) as Record<SimKind, number>;
      for (const s of slots) out[s.kind]++;
      return out;
    },
    clusteredTarget(rows: number, classes = CLUSTERED_TARGET_CLASSES) {
      return clusteredTargetRows(world, o, rows, classes);
    },
    referenceSet(rows: number, contaminated: number) {
      if (!Number.isSafeInteger(rows) || rows < 1) throw new RangeError(`rows must be >= 1, got ${rows}`);
      const aligned = slots.flatMap((s, i) => (s.kind === "aligned" ? [i] : []));
      if (
        !Number.isSafeInteger(contaminated) ||
        contaminated < 0 ||
        contaminated > Math.min(rows, aligned.length)
      ) {
        throw new RangeError(
          `contaminated must be 0..${Math.min(rows, aligned.length)}, got ${contaminated}`,
        );
      }
      const pick = createRandom(o.seed, STREAM_REFERENCE - 1);
      for (let i = 0; i < contaminated; i++) {
        const j = i + pick.below(aligned.length - i);
        [aligned[i], aligned[j]] = [aligned[j], aligned[i]];
      }
      const plantedSlots = Int32Array.from(aligned.slice(0, contaminated));
      const positionOf = new Int32Array(order.length);
      order.forEach((slot, position) => {
        positionOf[slot] = position;
      });
      const data = new Float32Array(rows * dim);
      const nTarget = targetTopicCount(o);
      for (let r = 0; r < rows; r++) {
        const rng = createRandom(o.seed, STREAM_REFERENCE + r);
        let image: Vec;
        if (r < contaminated) {
          const source = record(positionOf[plantedSlots[r]]).imageEmbedding;
          image = perturbed(Float64Array.from(source), rng, shape.duplicateImageNoise, world);
        } else {
          const topic = r % nTarget;
          image = imageVector(
            world,
            rng,
            contentVector(world, rng, topic, dim),
            rng.below(o.sites),
            false,
            dim,
          );
        }
        data.set(toFloat32(image), r * dim);
      }
      return { rows, dim, data, plantedSlots };
    },
    targetEmbeddings() {
      const data = new Float32Array(o.targetRows * dim);
      const nTarget = targetTopicCount(o);
      for (let r = 0; r < o.targetRows; r++) {
        const rng = createRandom(o.seed, STREAM_TARGET + r);
        // A stray row (longtail profile) shows one of the other topics.
        const stray =
          shape.targetStray > 0 && nTarget < o.topics && rng.nextUint32() / 4294967296 < shape.targetStray;
        const topic = stray ? nTarget + (r % (o.topics - nTarget)) : r % nTarget;
        const content = contentVector(world, rng, topic, dim);
        data.set(toFloat32(imageVector(world, rng, content, rng.below(o.sites), false, dim)), r * dim);
      }
      return { rows: o.targetRows, dim, data };
    },
  };
}

/**
 * Rows of a clustered target: row r belongs to class r mod classes; its content is the class's topic
 * (weight 0.45), one of the class's subtopics and the row's own detail (together the rest, the detail's
 * share set per class between CLASS_DETAIL.min and .max), and it is made an image as the stream's
 * images are (gap, shared and site parts, image noise). The detail and noise are sums of three random
 * directions of a fixed pool with random signs: millions of distinct, nearly orthogonal directions for
 * the cost of a few additions per value (a fresh Gaussian direction per row would take minutes).
 */
function clusteredTargetRows(
  world: World,
  o: Required<SimulationOptions>,
  rows: number,
  classes: number,
): { rows: number; dim: number; data: Float32Array } {
  const dim = o.dim;
  if (!Number.isSafeInteger(rows) || rows < 1) throw new RangeError(`rows must be >= 1, got ${rows}`);
  if (!Number.isSafeInteger(classes) || classes < 1)
    throw new RangeError(`classes must be >= 1, got ${classes}`);
  const rng = createRandom(o.seed, STREAM_TARGET - 1);
  const nTarget = targetTopicCount(o);
  const classTopic = Array.from({ length: classes }, (_, k) =>
    k < nTarget ? world.topics[k] : semanticDirection(rng, dim, world.gap),
  );
  const classSubtopics = Array.from({ length: classes }, (_, k) =>
    k < nTarget
      ? world.subtopics[k]
      : Array.from({ length: SUBTOPICS }, () => semanticDirection(rng, dim, world.gap)),
  );
  const classDetail = Array.from({ length: classes }, () => uniform(rng, CLASS_DETAIL.min, CLASS_DETAIL.max));
  const pool = Array.from({ length: DETAIL_POOL }, () => semanticDirection(rng, dim, world.gap));
  const r = randomShare(dim);
  const data = new Float32Array(rows * dim);
  const content = new Float64Array(dim);
  const f = new Float64Array(dim);
  const addPooled = (out: Vec, weight: number) => {
    const w = weight / Math.sqrt(3);
    for (let j = 0; j < 3; j++) addScaled(out, pool[rng.below(DETAIL_POOL)], rng.below(2) === 0 ? w : -w);
  };
  for (let row = 0; row < rows; row++) {
    const k = row % classes;
    const detail = classDetail[k];
    content.fill(0);
    addScaled(content, classTopic[k], Math.sqrt(W.topic));
    addScaled(content, classSubtopics[k][rng.below(SUBTOPICS)], Math.sqrt((1 - W.topic) * (1 - detail)));
    addPooled(content, Math.sqrt((1 - W.topic) * detail));
    normalise(content);
    f.fill(0);
    addScaled(f, world.gap.image, Math.sqrt(W.gap + (1 - r) * W.imageNoise));
    addScaled(f, world.gap.shared, Math.sqrt(W.shared));
    addScaled(f, content, Math.sqrt(W.imageContent));
    addScaled(f, world.siteStyle[rng.below(o.sites)], Math.sqrt(W.imageSite));
    addPooled(f, Math.sqrt(r * W.imageNoise));
    normalise(f);
    const base = row * dim;
    for (let d = 0; d < dim; d++) data[base + d] = f[d];
  }
  return { rows, dim, data };
}
