/**
 * A bounded read of a topic, as both adapters' range consumers track it. The end of each partition
 * is its high watermark, captured at start; reading starts at the group's committed offset when it is
 * past the low watermark (nothing before it needs reading). A partition is finished when the group's
 * committed offset, or how far the consumer has fetched (transaction markers included), reaches its
 * end; the read is finished when every partition is, or every partition of this member's assignment.
 */
import type { KafkaClient } from "./port.ts";

export class RangeProgress {
  /** End offset of each partition (exclusive), captured at start. */
  readonly high: Map<number, bigint>;
  /** Resolves when the read is finished (never, with `follow`), or on `finish`; rejects on `fail`. */
  readonly finished: Promise<void>;
  /** This member's partitions, once the group has assigned them. */
  assigned: number[] | undefined;
  private readonly position: Map<number, bigint>;
  private readonly follow: boolean;
  private fetchedThrough = new Map<number, bigint>();
  private done = false;
  private resolve!: () => void;
  private reject!: (err: unknown) => void;

  constructor(high: Map<number, bigint>, position: Map<number, bigint>, follow: boolean) {
    this.high = high;
    this.position = position;
    this.follow = follow;
    this.finished = new Promise<void>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    this.finished.catch(() => {});
  }

  get isFinished(): boolean {
    return this.done;
  }

  partitionDone(p: number): boolean {
    const end = this.high.get(p) ?? 0n;
    return (this.position.get(p) ?? 0n) >= end || (this.fetchedThrough.get(p) ?? -1n) >= end;
  }

  /** The consumer has fetched `partition` up to `next` (exclusive). */
  fetched(partition: number, next: bigint): void {
    if (next > (this.fetchedThrough.get(partition) ?? -1n)) this.fetchedThrough.set(partition, next);
  }

  /** The group committed `next` for `partition`. */
  committed(partition: number, next: bigint): void {
    if (next > (this.position.get(partition) ?? 0n)) this.position.set(partition, next);
  }

  /** A rejoin: the consumer fetches from the committed offsets again. */
  rejoined(assigned: number[]): void {
    this.assigned = assigned;
    this.fetchedThrough.clear();
  }

  /** Resolve `finished` if the read is done. */
  check(): void {
    if (this.follow || this.done) return;
    // Nothing left anywhere: no need to wait for the group's assignment.
    const all = [...this.high.keys()].every((p) => this.partitionDone(p));
    const mine = this.assigned?.every((p) => this.partitionDone(p)) === true;
    if (all || mine) this.finish();
  }

  finish(): void {
    this.done = true;
    this.resolve();
  }

  fail(err: unknown): void {
    this.done = true;
    this.reject(err);
  }
}

export async function rangeProgress(
  client: KafkaClient,
  topic: string,
  groupId: string | undefined,
  follow: boolean,
): Promise<RangeProgress> {
  const ends = await client.endOffsets(topic);
  const committed =
    groupId === undefined ? new Map<number, bigint>() : await client.committedOffsets(groupId, topic);
  const high = new Map([...ends].map(([p, r]) => [p, r.high]));
  const position = new Map<number, bigint>();
  for (const [p, r] of ends) {
    const c = committed.get(p);
    position.set(p, c !== undefined && c > r.low ? c : r.low);
  }
  return new RangeProgress(high, position, follow);
}
