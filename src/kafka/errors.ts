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
  // Refused credentials, an untrusted certificate or a missing ACL: repeating will not help.
  if (securityFailureOf(err)) return "fatal";
  if (isClipsieveError(err)) return err.retryable ? "retryable" : "fatal";
  const e = (err ?? {}) as ClientErrorShape;
  if (MEMBERSHIP_TYPES.has(e.type ?? "")) return "membership";
  if (typeof e.code === "number" && MEMBERSHIP_CODES.has(e.code)) return "membership";
  if (e.isFatal === true) return "fatal";
  if (e.retriable === true || e.retryable === true || e.isRetriable === true) return "retryable";
  if (e.isTxnRequiresAbort === true || e.abortable === true) return "abortable";
  return "fatal";
}

/** librdkafka's codes (and the protocol's, which kafkajs names by `type`) for a refused operation. */
const AUTHORIZATION: Record<
  number,
  { type: string; resource: "topic" | "group" | "cluster" | "transactionalId" }
> = {
  29: { type: "TOPIC_AUTHORIZATION_FAILED", resource: "topic" },
  30: { type: "GROUP_AUTHORIZATION_FAILED", resource: "group" },
  31: { type: "CLUSTER_AUTHORIZATION_FAILED", resource: "cluster" },
  53: { type: "TRANSACTIONAL_ID_AUTHORIZATION_FAILED", resource: "transactionalId" },
};
const AUTHENTICATION_CODES = new Set([
  -169 /* _AUTHENTICATION */, 58 /* SASL_AUTHENTICATION_FAILED */, 33 /* UNSUPPORTED_SASL_MECHANISM */,
]);
const AUTHENTICATION_TYPES = new Set([
  "SASL_AUTHENTICATION_FAILED",
  "UNSUPPORTED_SASL_MECHANISM",
  "ILLEGAL_SASL_STATE",
]);
/** Node's TLS verification failures, which kafkajs passes on. */
const TLS_NODE_CODES = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "ERR_TLS_CERT_ALTNAME_INVALID",
  "CERT_HAS_EXPIRED",
  "CERT_UNTRUSTED",
]);

export interface SecurityFailure {
  kind: "authentication" | "tls" | "authorization";
  /** For an authorization failure: what kind of resource was refused. */
  resource?: "topic" | "group" | "cluster" | "transactionalId";
  /** The client's own words, first line. */
  detail: string;
}

/** Whether `err` (from either client, or its cause) says the cluster refused who we are or what we asked. */
export function securityFailureOf(err: unknown): SecurityFailure | undefined {
  for (
    let e = err as
        | (ClientErrorShape & Error & { name?: string; cause?: unknown; originalError?: unknown })
        | undefined,
      depth = 0;
    e && depth < 4;
    depth++
  ) {
    const detail = (e.message ?? String(e)).split("\n")[0];
    if (isClipsieveError(e)) return undefined;
    const code = typeof e.code === "number" ? e.code : undefined;
    const type = e.type;
    const authz =
      (code !== undefined ? AUTHORIZATION[code] : undefined) ??
      Object.values(AUTHORIZATION).find((a) => a.type === type);
    if (authz) return { kind: "authorization", resource: authz.resource, detail };
    if (
      (code !== undefined && AUTHENTICATION_CODES.has(code)) ||
      AUTHENTICATION_TYPES.has(e.type ?? "") ||
      e.name === "KafkaJSSASLAuthenticationError"
    )
      return { kind: "authentication", detail };
    if (
      code === -181 /* _SSL */ ||
      (typeof e.code === "string" && TLS_NODE_CODES.has(e.code)) ||
      /SSL handshake failed|certificate verify failed/i.test(detail)
    )
      return { kind: "tls", detail };
    e = (e.cause ?? e.originalError) as typeof e;
  }
  return undefined;
}
