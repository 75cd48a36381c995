/**
 * A bounded run (`replay`): the input range [start, end) per partition is fixed when the run starts,
 * and the run ends by itself once every record of the range is delivered.
 *
 * A partition is finished when nothing taken from it is undelivered and either the delivered position
 * reached `end`, or the consumer's position passed `end - 1` (records at or after `end` are not taken).
 * The second case covers a range that ends in a transaction marker, an offset no record carries: the
 * source reports each batch's last offset, markers included.
 */
export class RangeTracker {
  private readonly start: Map<number, bigint>;
  private readonly end: Map<number, bigint>;
  private readonly position = new Map<number, bigint>();
  private readonly fetchedThrough = new Map<number, bigint>();
  private readonly undelivered = new Map<number, number>();
  private deliveredCount = 0;

  constructor(start: Map<number, bigint>, end: Map<number, bigint>) {
    this.start = start;
    this.end = end;
    for (const [p, s] of start) this.position.set(p, s);
  }

  /** Records in the range (transaction markers inside it count too: an upper bound for progress). */
  get total(): number {
    let n = 0;
    for (const [p, e] of this.end) n += Math.max(0, Number(e - (this.start.get(p) ?? 0n)));
    return n;
  }

  get delivered(): number {
    return this.deliveredCount;
  }

  inRange(partition: number, offset: string): boolean {
    const e = this.end.get(partition);
    return e !== undefined && BigInt(offset) < e;
  }

  fetched(partition: number, lastOffset: string): void {
    const next = BigInt(lastOffset) + 1n;
    if (next > (this.fetchedThrough.get(partition) ?? 0n)) this.fetchedThrough.set(partition, next);
  }

  taken(partition: number, count: number): void {
    this.undelivered.set(partition, (this.undelivered.get(partition) ?? 0) + count);
  }

  deliveredRecords(sources: readonly { partition: number; offset: string }[]): void {
    for (const s of sources) {
      this.undelivered.set(s.partition, (this.undelivered.get(s.partition) ?? 0) - 1);
      const next = BigInt(s.offset) + 1n;
      if (next > (this.position.get(s.partition) ?? 0n)) this.position.set(s.partition, next);
    }
    this.deliveredCount += sources.length;
  }

  /** Records taken but dropped before delivery (a rebalance): they will be taken again. */
  dropped(sources: readonly { partition: number }[]): void {
    for (const s of sources) this.undelivered.set(s.partition, (this.undelivered.get(s.partition) ?? 0) - 1);
  }

  isDone(): boolean {
    for (const [p, e] of this.end) {
      if ((this.undelivered.get(p) ?? 0) > 0) return false;
      const pos = this.position.get(p) ?? 0n;
      const fetched = this.fetchedThrough.get(p) ?? 0n;
      if (!(pos >= e || fetched >= e)) return false;
    }
    return true;
  }
}
