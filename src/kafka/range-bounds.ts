/**
 * Where a bounded read of a topic starts and ends, per partition: the end is the high watermark
 * captured at start; the start is the group's committed offset when it is past the partition's low
 * watermark (nothing before it needs reading). Both adapters' range consumers start from this.
 */
import type { KafkaClient } from "./port.ts";

export interface RangeBounds {
  /** End offset of each partition (exclusive), captured now. */
  high: Map<number, bigint>;
  /** Where the group stands, or the low watermark. */
  position: Map<number, bigint>;
}

export async function rangeBounds(
  client: KafkaClient,
  topic: string,
  groupId?: string,
): Promise<RangeBounds> {
  const ends = await client.endOffsets(topic);
  const committed =
    groupId === undefined ? new Map<number, bigint>() : await client.committedOffsets(groupId, topic);
  const high = new Map([...ends].map(([p, r]) => [p, r.high]));
  const position = new Map<number, bigint>();
  for (const [p, r] of ends) {
    const c = committed.get(p);
    position.set(p, c !== undefined && c > r.low ? c : r.low);
  }
  return { high, position };
}
