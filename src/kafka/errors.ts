/**
 * One reading of the errors Kafka clients throw, so that no stage looks inside a client's error:
 *
 * - `membership`: this member's view of its partitions is stale (a rebalance, an expelled member);
 *   whatever it was committing is re-read by the partitions' owner after the rejoin.
 * - `retryable`: the same operation may succeed if repeated (a coordinator moving, a broker briefly
 *   away, a request timing out).
 * - `abortable`: the transaction in hand must be aborted, after which a new one may succeed.
 * - `fatal`: repeating will not help (a fenced producer, an authorisation failure, a bad request).
 *
 * kafkajs marks errors with `retriable` and a protocol `type` name; librdkafka with a numeric `code`
 * and `isRetriable` / `isFatal` / `isTxnRequiresAbort` flags (both clients' KafkaJS-style layers
 * also set `retriable`). clipsieve's own errors carry `retryable`.
 */
import { isClipsieveError } from "../common/errors.ts";

export type KafkaErrorKind = "membership" | "retryable" | "abortable" | "fatal";

const MEMBERSHIP_TYPES = new Set([
  "REBALANCE_IN_PROGRESS",
  "ILLEGAL_GENERATION",
  "UNKNOWN_MEMBER_ID",
  "FENCED_INSTANCE_ID",
  "ERR_REBALANCE_IN_PROGRESS",
  "ERR_ILLEGAL_GENERATION",
  "ERR_UNKNOWN_MEMBER_ID",
]);

interface ClientErrorShape {
  retriable?: boolean;
  retryable?: boolean;
  type?: string;
  code?: number | string;
  isRetriable?: boolean;
  isFatal?: boolean;
  isTxnRequiresAbort?: boolean;
  abortable?: boolean;
}

/** librdkafka's codes for the same: ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS, FENCED_INSTANCE_ID. */
const MEMBERSHIP_CODES = new Set([22, 25, 27, 82]);

export function kafkaErrorKind(err: unknown): KafkaErrorKind {
  if (isClipsieveError(err, "GROUP_MEMBERSHIP_LOST")) return "membership";
  if (isClipsieveError(err)) return err.retryable ? "retryable" : "fatal";
  const e = (err ?? {}) as ClientErrorShape;
  if (MEMBERSHIP_TYPES.has(e.type ?? "")) return "membership";
  if (typeof e.code === "number" && MEMBERSHIP_CODES.has(e.code)) return "membership";
  if (e.isFatal === true) return "fatal";
  if (e.retriable === true || e.retryable === true || e.isRetriable === true) return "retryable";
  if (e.isTxnRequiresAbort === true || e.abortable === true) return "abortable";
  return "fatal";
}
