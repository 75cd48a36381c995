import { Agent as HttpsAgent } from "node:https";
import type { SchemaRegistryClient } from "@confluentinc/schemaregistry";
import { ClipsieveError } from "../common/errors.ts";
import type { SchemaRegistrySecurity } from "../kafka/index.ts";

type RegistryLib = typeof import("@confluentinc/schemaregistry");
let lib: Promise<RegistryLib> | undefined;

/**
 * The Schema Registry client library, loaded on first use: importing it costs about 4 s of CPU (it
 * brings cloud KMS clients and rule engines along), which every command without a registry (most of
 * them, and every short-lived CLI call) would otherwise pay at start.
 */
export function loadRegistryLib(): Promise<RegistryLib> {
  lib ??= import("@confluentinc/schemaregistry");
  return lib;
}

export interface RegistryConnection {
  schemaRegistryUrl: string;
  /** Basic auth and a CA bundle (src/kafka/security.ts); none: anonymous, the system's CAs. */
  schemaRegistryAuth?: SchemaRegistrySecurity;
  schemaRegistryTimeoutMs: number;
  schemaRegistryMaxRetries: number;
  schemaRegistryRetryWaitMs: number;
}

/**
 * A registry client that gives up in bounded time: axios (under the client) has no request timeout by
 * default, so a registry that accepts connections but never answers would stall the stage for ever.
 */
export async function createRegistryClient(conn: RegistryConnection): Promise<SchemaRegistryClient> {
  const { SchemaRegistryClient } = await loadRegistryLib();
  const auth = conn.schemaRegistryAuth;
  return new SchemaRegistryClient({
    baseURLs: [conn.schemaRegistryUrl],
    maxRetries: conn.schemaRegistryMaxRetries,
    retriesWaitMs: conn.schemaRegistryRetryWaitMs,
    createAxiosDefaults: {
      timeout: conn.schemaRegistryTimeoutMs,
      ...(auth?.ca ? { httpsAgent: new HttpsAgent({ ca: auth.ca }) } : {}),
    },
    ...(auth?.basicAuth
      ? {
          basicAuthCredentials: {
            credentialsSource: "USER_INFO" as const,
            userInfo: `${auth.basicAuth.username}:${auth.basicAuth.password}`,
          },
        }
      : {}),
  });
}

/** HTTP statuses the client itself retries, so a request still failing with one is an outage. */
const RETRIED_STATUSES = new Set([408, 429, 500, 502, 503, 504]);

/**
 * The status of a registry answer, "no-answer" when the request got none (refused, reset, timed out),
 * or undefined when `err` did not come from talking to the registry at all.
 */
export function registryStatus(err: unknown): number | "no-answer" | undefined {
  // The client's RestError (checked by shape: the library may not be loaded here).
  if (err instanceof Error && typeof (err as { status?: unknown }).status === "number") {
    return (err as unknown as { status: number }).status;
  }
  // The client rethrows axios's own error when no response came back.
  if (typeof err === "object" && err !== null && (err as { isAxiosError?: unknown }).isAxiosError === true) {
    return "no-answer";
  }
  return undefined;
}

/**
 * The error to throw for a registry request that failed as infrastructure: no answer or a server-side
 * status is retryable (SCHEMA_REGISTRY_UNAVAILABLE); any other status (401, 403, 422, ...) will fail
 * the same way every time (SCHEMA_REGISTRY_REQUEST_FAILED).
 */
export function registryFailure(err: unknown, url: string, what: string): ClipsieveError {
  const status = registryStatus(err);
  const detail = err instanceof Error ? err.message : String(err);
  if (status === "no-answer" || status === undefined || RETRIED_STATUSES.has(status)) {
    const how = status === "no-answer" || status === undefined ? "no answer" : `HTTP ${status}`;
    return new ClipsieveError(
      "SCHEMA_REGISTRY_UNAVAILABLE",
      `Schema registry ${url} unavailable while ${what} (${how}: ${detail}${codeOf(err, detail)})`,
      { cause: err },
    );
  }
  return new ClipsieveError(
    "SCHEMA_REGISTRY_REQUEST_FAILED",
    `Schema registry ${url} refused ${what} (HTTP ${status}: ${detail})`,
    { cause: err },
  );
}

// A refused connection to a host with several addresses comes as an AggregateError with an empty
// message; its code (ECONNREFUSED, ETIMEDOUT, ...) is then the only clue.
function codeOf(err: unknown, detail: string): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && !detail.includes(code) ? `, ${code}` : "";
}
