/**
 * The rebalance guard: which windows may still become transactions. Each fetched record carries the
 * consumer group generation it was fetched in. When the group rebalances, the consumer first calls
 * `beforeRejoin`: from then on no window of the old generation starts a transaction (its partitions
 * may move to another member, which re-reads them), and the rejoin waits for the one transaction in
 * flight. `onRebalance` then opens the new generation. So a window is delivered only by the member
 * that owns its partitions in the generation it was fetched in (docs/streaming.md, rebalances).
 */
export class GenerationGuard {
  private current = 0;
  private revoking = false;
  private inFlight: Promise<unknown> | undefined;

  /** The generation records fetched now belong to. */
  get generation(): number {
    return this.current;
  }

  /** A window of `generation` may still be delivered. */
  isCurrent(generation: number): boolean {
    return generation === this.current && !this.revoking;
  }

  /** The group is about to rebalance: close this generation and wait for the delivery in flight. */
  async beforeRejoin(): Promise<{ waited: boolean }> {
    this.revoking = true;
    const waited = this.inFlight !== undefined;
    await this.inFlight?.catch(() => undefined);
    return { waited };
  }

  /** The rejoin completed in `generation`. */
  onRebalance(generation: number): void {
    this.current = generation;
    this.revoking = false;
  }

  /** A window's delivery, which a rejoin must wait for. */
  track<T>(delivery: Promise<T>): Promise<T> {
    this.inFlight = delivery;
    return delivery.finally(() => {
      if (this.inFlight === delivery) this.inFlight = undefined;
    });
  }
}
