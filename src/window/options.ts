/** Window stage options. Names carry their unit. */
export interface WindowOptions {
  /** Records per window (the streaming counterpart of a DataComp shard). */
  windowSize: number;
  /** A window is cut this long after its first record arrived, even when not full. */
  lingerMs: number;
  /** Rows of earlier windows kept as extra negatives (0 = no bank). */
  bankSize: number;
  /** K: seeded draws per window. */
  draws: number;
  /** b: contrastive batch size. */
  batchSize: number;
  /** Base seed; each window's seed derives from it and the window id. */
  seed: number;
}

export const WINDOW_DEFAULTS: WindowOptions = {
  windowSize: 4096,
  lingerMs: 2000,
  bankSize: 4096,
  draws: 5,
  batchSize: 8192,
  seed: 0,
};
