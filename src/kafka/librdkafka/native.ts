/**
 * The librdkafka adapter's one import of `@confluentinc/kafka-javascript`, and what every file of the
 * adapter shares: the base configuration, the client's log and error events routed to the process's
 * logger, broker reachability, and the callback calls turned into promises.
 *
 * The native (node-rdkafka style) API is used rather than the package's KafkaJS-style layer: the
 * window producer needs commit and abort with timeouts of its own (the KafkaJS-style layer fixes
 * them at 5 s), and the consumer needs one consume loop that owns both the fetches and the
 * rebalance events, so that a revoke is handled between two fetches (group-consumer.ts).
 * docs/dependencies.md says more.
 */
import { createRequire } from "node:module";
import type * as RdKafka from "@confluentinc/kafka-javascript";
import { ClipsieveError } from "../../common/errors.ts";
import type { Logger } from "../../common/logger.ts";
import type { RawRecord } from "../../common/record.ts";
import { securityFailureOf } from "../errors.ts";
import type { BrokerReachability } from "../port.ts";
import { type KafkaSecurity, librdkafkaSecurityConfig } from "../security.ts";

export type { RdKafka };

type Module = typeof import("@confluentinc/kafka-javascript");

let loaded: Module | undefined;

/**
 * The native module, loaded on first use: a machine where it could not be built still runs every
 * command on the kafkajs adapter, and is told how when it asks for this one.
 */
export function rdkafka(): Module {
  if (loaded) return loaded;
  try {
    loaded = createRequire(import.meta.url)("@confluentinc/kafka-javascript") as Module;
    return loaded;
  } catch (err) {
    throw new ClipsieveError(
      "KAFKA_CLIENT_UNAVAILABLE",
      `the librdkafka client (@confluentinc/kafka-javascript) is not built on this machine (${(err as Error).message.split("\n")[0]}); run \`node scripts/build-librdkafka.ts\`, or use the pure-JavaScript adapter: kafkaClient "kafkajs" (CLIPSIEVE_KAFKA_CLIENT=kafkajs)`,
      { cause: err },
    );
  }
}

/**
 * librdkafka's error codes clipsieve acts on (rdkafka.h; negative: raised by the client itself). The
 * group-membership codes are read by the port's `kafkaErrorKind` (../errors.ts).
 */
export const CODES = {
  TRANSPORT: -195,
  ALL_BROKERS_DOWN: -187,
  QUEUE_FULL: -184,
  TIMED_OUT: -185,
  ASSIGN_PARTITIONS: -175,
  FENCED: -144,
  COORDINATOR_LOAD_IN_PROGRESS: 14,
  COORDINATOR_NOT_AVAILABLE: 15,
  NOT_COORDINATOR: 16,
  TOPIC_ALREADY_EXISTS: 36,
  PRODUCER_FENCED: 90,
} as const;

export interface LibrdkafkaError extends Error {
  code: number;
  isFatal?: boolean;
  isRetriable?: boolean;
  isTxnRequiresAbort?: boolean;
}

export function errorCode(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === "number" ? code : undefined;
}

/** Disconnect a producer (flushing for at most 5 s); nothing to do when it never connected. */
export async function disconnectProducer(producer: RdKafka.Producer): Promise<void> {
  if (!producer.isConnected()) return;
  await new Promise<void>((resolve) => producer.disconnect(5000, () => resolve()));
}

/** Disconnect a consumer (leaving its group), waiting at most 10 s for the broker's answer. */
export async function disconnectConsumer(consumer: RdKafka.KafkaConsumer): Promise<void> {
  if (!consumer.isConnected()) return;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 10_000);
    consumer.disconnect(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** Call a node-style callback API and get a promise. */
export function call<T = void>(fn: (cb: (err: unknown, value?: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    fn((err, value) => {
      if (err) reject(err);
      else resolve(value as T);
    });
  });
}

export interface AdapterContext {
  brokers: readonly string[];
  clientId: string;
  logger?: Logger;
  reachability: ReachabilityTracker;
  security?: KafkaSecurity;
}

/** Settings every client of the adapter starts from. */
export function baseConfig(ctx: AdapterContext, role: string): Record<string, unknown> {
  return {
    "bootstrap.servers": ctx.brokers.join(","),
    "client.id": `${ctx.clientId}-${role}`,
    // Reconnect forever, backing off to 10 s: a broker restart of any length is ridden out.
    "reconnect.backoff.ms": 100,
    "reconnect.backoff.max.ms": 10_000,
    // Errors and warnings only; clipsieve's logger decides what is printed.
    log_level: 4,
    event_cb: true,
    // Broker states once a second, for reachability (/healthz, clipsieve_broker_reachable).
    "statistics.interval.ms": 1000,
    // TLS and SASL (src/kafka/security.ts).
    ...librdkafkaSecurityConfig(ctx.security),
  };
}

/**
 * Route a client's events: log lines to the process's logger (warnings at debug, since librdkafka
 * also logs each failed connection of an outage it rides out, which `/healthz` reports instead);
 * statistics to the reachability tracker; errors to `onError` (fatal ones end the client).
 */
export function wireEvents(
  client: { on(event: string, fn: (...args: never[]) => void): unknown },
  ctx: AdapterContext,
  onFatal?: (err: LibrdkafkaError) => void,
): void {
  client.on("event.log", ((entry: { severity: number; fac: string; message: string }) => {
    ctx.logger?.debug({ facility: entry.fac, severity: entry.severity }, `librdkafka: ${entry.message}`);
    ctx.reachability.fromLog(entry.message);
  }) as never);
  client.on("event.stats", ((stats: { message: string }) =>
    ctx.reachability.fromStats(stats.message)) as never);
  client.on("event.error", ((err: LibrdkafkaError) => {
    if (err.isFatal) {
      ctx.logger?.error({ code: err.code }, `librdkafka fatal error: ${err.message}`);
      onFatal?.(err);
      return;
    }
    ctx.reachability.fromError(err);
    ctx.logger?.debug({ code: err.code }, `librdkafka: ${err.message}`);
  }) as never);
}

/**
 * Whether any broker answers, from the clients' statistics (each broker's connection state) and
 * errors (all brokers down, a transport failure). Shared by every client of one KafkaClient.
 */
export class ReachabilityTracker implements BrokerReachability {
  reachable = true;
  since = Date.now();
  detail = "";
  private readonly brokers: readonly string[];
  private readonly logger: Logger | undefined;

  constructor(brokers: readonly string[], logger: Logger | undefined) {
    this.brokers = brokers;
    this.logger = logger;
  }

  fromStats(json: string): void {
    let up = false;
    try {
      const stats = JSON.parse(json) as { brokers?: Record<string, { state?: string }> };
      up = Object.values(stats.brokers ?? {}).some((b) => b.state === "UP");
    } catch {
      return;
    }
    if (up) this.set(true, "");
    else this.set(false, `no connection to any of ${this.brokers.join(", ")}`);
  }

  fromError(err: LibrdkafkaError): void {
    if (err.code === CODES.ALL_BROKERS_DOWN)
      this.set(false, `all brokers down (${this.brokers.join(", ")}): ${err.message}`);
    // librdkafka retries refused credentials and failed handshakes for ever: they end the wait.
    const failure = securityFailureOf(err);
    if (failure && failure.kind !== "authorization" && !this.securityFailure) {
      this.securityFailure = err;
      this.set(
        false,
        `${failure.kind === "tls" ? "TLS handshake failed" : "credentials refused"}: ${err.message}`,
      );
      for (const reject of this.securityWaiters.splice(0)) reject(err);
    }
  }

  /**
   * librdkafka says which broker refused what only in its log lines ("sasl_ssl://host:9093/1: SASL
   * authentication error: ...", "... SSL handshake failed: ... certificate verify failed"); its error
   * events carry a bare "authentication failure" or "ssl error".
   */
  fromLog(message: string): void {
    const auth = /SASL authentication error|SASL (PLAIN|SCRAM)[^:]*: .*(failed|invalid)/i.test(message);
    const tls = /SSL handshake failed|certificate verify failed/i.test(message);
    if (!auth && !tls) return;
    const detail = message.replace(/^\[thrd:[^\]]*\]: /, "").replace(/ \(after \d+ms in state \w+.*\)$/, "");
    this.fromError(Object.assign(new Error(detail), { code: auth ? -169 : -181 }) as LibrdkafkaError);
  }

  /** The first refusal of the credentials or the TLS handshake, as librdkafka reported it. */
  securityFailure: LibrdkafkaError | undefined;
  private readonly securityWaiters: ((err: unknown) => void)[] = [];

  /** Rejects (with librdkafka's error) once the brokers refuse the credentials or the handshake. */
  whenSecurityFails(): Promise<never> {
    if (this.securityFailure) return Promise.reject(this.securityFailure);
    const p = new Promise<never>((_, reject) => this.securityWaiters.push(reject));
    p.catch(() => {});
    return p;
  }

  private set(reachable: boolean, detail: string): void {
    if (reachable === this.reachable) {
      if (!reachable) this.detail = detail;
      return;
    }
    this.reachable = reachable;
    this.since = Date.now();
    this.detail = detail;
    if (reachable) this.logger?.info({ brokers: this.brokers }, "Kafka brokers reachable again");
    else this.logger?.warn({ brokers: this.brokers }, `Kafka brokers unreachable: ${detail}; reconnecting`);
  }
}

/**
 * `call`, or the brokers' refusal of the credentials or the TLS handshake, whichever comes first:
 * librdkafka would otherwise wait out its timeout and report it as one.
 */
export function untilSecurityFails<T>(ctx: AdapterContext, call: Promise<T>): Promise<T> {
  return Promise.race([call, ctx.reachability.whenSecurityFails()]);
}

/** The longest a single native connect may wait (see `connectInSteps`). */
export const CONNECT_STEP_MS = 5000;

/**
 * Connect within `totalMs`, in attempts of at most CONNECT_STEP_MS, giving up at once when the brokers
 * refuse the credentials or the handshake. A native connect waits out its whole timeout in a worker
 * thread that nothing cancels (closing the client and even the process's exit wait for it), so after
 * a refusal the process would otherwise hang for the full timeout.
 */
export async function connectInSteps(
  ctx: AdapterContext,
  connect: (timeoutMs: number) => Promise<unknown>,
  totalMs: number,
): Promise<void> {
  const deadline = Date.now() + totalMs;
  for (;;) {
    const step = Math.min(CONNECT_STEP_MS, Math.max(1000, deadline - Date.now()));
    try {
      await untilSecurityFails(ctx, connect(step));
      return;
    } catch (err) {
      const code = errorCode(err);
      const transient =
        code === CODES.TIMED_OUT || code === CODES.TRANSPORT || code === CODES.ALL_BROKERS_DOWN;
      if (!transient || ctx.reachability.securityFailure || Date.now() >= deadline) throw err;
    }
  }
}

/**
 * A one-line, coded error for a Kafka call that found no broker (or timed out) in `ms`; or, when the
 * brokers refused the credentials or the handshake meanwhile, that refusal (the port codes it).
 */
export function unreachableError(ctx: AdapterContext, what: string, ms: number, cause: unknown): Error {
  if (ctx.reachability.securityFailure) return ctx.reachability.securityFailure;
  const reason = (cause as Error | undefined)?.message?.split("\n")[0] ?? String(cause);
  // "broker transport failure: broker transport failure" and the like: say it once.
  const parts = reason.split(": ");
  const once = parts.filter((p, i) => parts.indexOf(p) === i).join(": ");
  const known = ctx.reachability.detail;
  const detail = ctx.reachability.reachable || !known || reason.includes(known) ? "" : ` (${known})`;
  return new ClipsieveError(
    "KAFKA_UNREACHABLE",
    `${what}: no answer from Kafka brokers ${ctx.brokers.join(", ")} within ${Math.round(ms / 1000)} s: ${once}${detail}`,
    { cause },
  );
}

/** Header list (librdkafka's shape) from a record's headers. */
export function toHeaderList(headers: Record<string, Buffer | string> | undefined): RdKafka.MessageHeader[] {
  if (!headers) return [];
  return Object.entries(headers).map(([k, v]) => ({ [k]: v }));
}

/** A record's headers, from librdkafka's list of one-key objects. */
export function fromHeaderList(list: RdKafka.MessageHeader[] | undefined): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  if (!list) return out;
  for (const h of list) for (const k in h) out[k] = h[k] as Buffer;
  return out;
}

/** A fetched message as the stages take it. */
export function toRawRecord(m: RdKafka.Message): RawRecord {
  return {
    source: { topic: m.topic, partition: m.partition, offset: String(m.offset) },
    key: (m.key as Buffer | null | undefined) ?? null,
    value: m.value,
    headers: fromHeaderList(m.headers) as RawRecord["headers"],
    timestamp: String(m.timestamp ?? 0),
  };
}
