import type { SourceRef } from "../common/record.ts";

/**
 * The negative bank: a bounded ring of the most recent good rows of earlier windows. Its rows join a
 * window's pool as extra contrastive negatives (they take part in R but are not scored again), so a
 * small or skewed window still meets a large, representative batch.
 *
 * Memory is fixed at construction: 2 * capacity * dim float32 values.
 */
export class NegativeBank {
  readonly capacity: number;
  readonly dim: number;
  private readonly image: Float32Array;
  private readonly text: Float32Array;
  private readonly refs: (SourceRef | undefined)[];
  /** Next slot to write. */
  private head = 0;
  private filled = 0;

  constructor(capacity: number, dim: number) {
    this.capacity = capacity;
    this.dim = dim;
    this.image = new Float32Array(capacity * dim);
    this.text = new Float32Array(capacity * dim);
    this.refs = new Array(capacity);
  }

  get size(): number {
    return this.filled;
  }

  /** Add rows (oldest first); when full, the oldest rows are overwritten. */
  push(image: Float32Array, text: Float32Array, refs: SourceRef[]): void {
    if (this.capacity === 0) return;
    const d = this.dim;
    // Only the last `capacity` rows can survive: skip the rest.
    const start = Math.max(0, refs.length - this.capacity);
    for (let i = start; i < refs.length; i++) {
      this.image.set(image.subarray(i * d, (i + 1) * d), this.head * d);
      this.text.set(text.subarray(i * d, (i + 1) * d), this.head * d);
      this.refs[this.head] = refs[i];
      this.head = (this.head + 1) % this.capacity;
      if (this.filled < this.capacity) this.filled++;
    }
  }

  /**
   * Copy the bank's rows, oldest first, into `image`/`text` starting at row `atRow`, and return their
   * sources in the same order (recorded with the window so a replay can rebuild the same pool).
   */
  copyInto(image: Float32Array, text: Float32Array, atRow: number): SourceRef[] {
    const d = this.dim;
    const oldest = this.filled < this.capacity ? 0 : this.head;
    const out: SourceRef[] = [];
    for (let k = 0; k < this.filled; k++) {
      const slot = (oldest + k) % this.capacity;
      image.set(this.image.subarray(slot * d, (slot + 1) * d), (atRow + k) * d);
      text.set(this.text.subarray(slot * d, (slot + 1) * d), (atRow + k) * d);
      out.push(this.refs[slot] as SourceRef);
    }
    return out;
  }

  clear(): void {
    this.head = 0;
    this.filled = 0;
    this.refs.fill(undefined);
  }
}
