/**
 * Fetching a record's image from its URL, politely and in bounded time: a connect timeout and a
 * timeout per try, a deadline per record over all tries and waits, a size cap, a Content-Type check,
 * retries with jittered exponential back-off kept per host, a cap on fetches in flight per host and
 * overall, and the X-Robots-Tag opt-out (`noai`, `noimageai`) honoured as img2dataset honours it.
 *
 * node:http rather than fetch(): it exposes the connect phase (for the connect timeout), lets the
 * body be abandoned the moment it passes the cap, and takes a `lookup` that refuses private addresses.
 */
import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from "node:dns";
import http from "node:http";
import https from "node:https";
import { BlockList, isIP } from "node:net";
import { EmbedRecordError } from "./record-error.ts";

export interface FetchOptions {
  fetchConnectTimeoutMs: number;
  fetchTimeoutMs: number;
  fetchRetries: number;
  fetchRetryWaitMs: number;
  fetchConcurrency: number;
  fetchConcurrencyPerHost: number;
  maxImageBytes: number;
  optOutDirectives: readonly string[];
  userAgent: string;
  fetchAllowPrivateAddresses: boolean;
}

export interface ImageFetcher {
  /** The image's bytes; throws EmbedRecordError with the reason. Never waits past `deadline` (epoch ms). */
  fetch(url: string, deadline: number): Promise<Buffer>;
  close(): void;
}

const MAX_REDIRECTS = 5;
/** The longest a Retry-After or back-off may hold a host, whatever the server asks. */
const MAX_HOST_WAIT_MS = 30_000;

/** A counting semaphore whose waiters give up at a deadline. */
class Slots {
  private active = 0;
  private readonly waiters: { grant: () => void }[] = [];
  private readonly limit: number;
  constructor(limit: number) {
    this.limit = limit;
  }
  acquire(deadline: number, what: () => string): Promise<void> {
    if (this.active < this.limit) {
      this.active++;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const waiter = {
        grant: () => {
          clearTimeout(timer);
          this.active++;
          resolve();
        },
      };
      const timer = setTimeout(
        () => {
          const i = this.waiters.indexOf(waiter);
          if (i >= 0) this.waiters.splice(i, 1);
          reject(new EmbedRecordError("IMAGE_FETCH_TIMEOUT", what()));
        },
        Math.max(0, deadline - Date.now()),
      );
      this.waiters.push(waiter);
    });
  }
  release(): void {
    this.active--;
    this.waiters.shift()?.grant();
  }
}

interface HostState {
  slots: Slots;
  /** No new try to this host before this time (back-off after failures, or Retry-After). */
  notBefore: number;
  consecutiveFailures: number;
  /** Fetches for this host under way (waiting included); the state is dropped when none is left. */
  users: number;
}

export function createImageFetcher(opts: FetchOptions): ImageFetcher {
  const hosts = new Map<string, HostState>();
  const global = new Slots(opts.fetchConcurrency);
  const agentOptions = { keepAlive: true, maxFreeSockets: 4, timeout: opts.fetchTimeoutMs };
  const httpAgent = new http.Agent(agentOptions);
  const httpsAgent = new https.Agent(agentOptions);
  const lookup = opts.fetchAllowPrivateAddresses ? undefined : publicOnlyLookup;
  const optOut = new Set(opts.optOutDirectives.map((d) => d.toLowerCase()));
  const uaToken = opts.userAgent.split(/[\s/]/)[0].toLowerCase();

  const hostState = (host: string): HostState => {
    let state = hosts.get(host);
    if (!state) {
      state = {
        slots: new Slots(opts.fetchConcurrencyPerHost),
        notBefore: 0,
        consecutiveFailures: 0,
        users: 0,
      };
      hosts.set(host, state);
    }
    return state;
  };

  let calls = 0;
  // Hosts left backing off with nobody waiting: dropped once their back-off is over, so the map stays
  // as small as the set of hosts in use.
  const forgetIdleHosts = () => {
    const now = Date.now();
    for (const [key, state] of hosts) if (state.users === 0 && state.notBefore <= now) hosts.delete(key);
  };

  async function fetchImage(rawUrl: string, deadline: number): Promise<Buffer> {
    const url = parseUrl(rawUrl, opts.fetchAllowPrivateAddresses);
    if (++calls % 1024 === 0) forgetIdleHosts();
    const host = hostState(url.host);
    host.users++;
    try {
      return await fetchFromHost(url, host, deadline);
    } finally {
      host.users--;
      // A host that failed keeps its back-off for a while, so the next window does not hammer it.
      if (host.users === 0 && host.notBefore <= Date.now()) hosts.delete(url.host);
    }
  }

  async function fetchFromHost(url: URL, host: HostState, deadline: number): Promise<Buffer> {
    for (let attempt = 0; ; attempt++) {
      const wait = host.notBefore - Date.now();
      if (wait > 0) {
        if (Date.now() + wait >= deadline) {
          throw new EmbedRecordError(
            "IMAGE_FETCH_TIMEOUT",
            `host ${url.host} is backing off (${host.consecutiveFailures} failures in a row) past this record's fetch deadline`,
          );
        }
        await sleep(wait);
      }
      const waitedFor = () => `no free connection slot to ${url.host} before this record's fetch deadline`;
      await host.slots.acquire(deadline, waitedFor);
      try {
        await global.acquire(deadline, waitedFor);
      } catch (err) {
        host.slots.release();
        throw err;
      }
      try {
        const budget = Math.min(opts.fetchTimeoutMs, deadline - Date.now());
        if (budget <= 0)
          throw new EmbedRecordError("IMAGE_FETCH_TIMEOUT", "fetch deadline passed before the request");
        const bytes = await tryOnce(url, budget);
        host.consecutiveFailures = 0;
        return bytes;
      } catch (err) {
        const e = err instanceof EmbedRecordError ? err : asFetchError(err, url);
        if (!e.retryable) throw e;
        host.consecutiveFailures++;
        const backoff = opts.fetchRetryWaitMs * 2 ** (host.consecutiveFailures - 1) * (0.5 + Math.random());
        host.notBefore = Math.max(
          host.notBefore,
          Date.now() + Math.min(MAX_HOST_WAIT_MS, retryAfterMs(err) ?? backoff),
        );
        if (attempt >= opts.fetchRetries) {
          throw new EmbedRecordError(
            e.code,
            `${e.message} (after ${attempt + 1} ${attempt === 0 ? "try" : "tries"})`,
            true,
          );
        }
      } finally {
        global.release();
        host.slots.release();
      }
    }
  }

  /** One try, redirects included, within `timeoutMs`. */
  function tryOnce(start: URL, timeoutMs: number): Promise<Buffer> {
    const giveUpAt = Date.now() + timeoutMs;
    const follow = (url: URL, redirects: number): Promise<Buffer> =>
      requestOnce(url, giveUpAt, timeoutMs).then((res) => {
        if (res.kind === "body") return res.bytes;
        if (redirects >= MAX_REDIRECTS) {
          throw new EmbedRecordError(
            "IMAGE_FETCH_FAILED",
            `more than ${MAX_REDIRECTS} redirects (last to ${res.location})`,
          );
        }
        return follow(
          parseUrl(new URL(res.location, url).href, opts.fetchAllowPrivateAddresses),
          redirects + 1,
        );
      });
    return follow(start, 0);
  }

  function requestOnce(
    url: URL,
    giveUpAt: number,
    budgetMs: number,
  ): Promise<{ kind: "body"; bytes: Buffer } | { kind: "redirect"; location: string }> {
    return new Promise((resolve, reject) => {
      const secure = url.protocol === "https:";
      const req = (secure ? https : http).request(url, {
        method: "GET",
        agent: secure ? httpsAgent : httpAgent,
        lookup,
        headers: { "user-agent": opts.userAgent, accept: "image/*", "accept-encoding": "identity" },
      });
      let settled = false;
      const fail = (err: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(total);
        clearTimeout(connect);
        req.destroy();
        reject(err);
      };
      const total = setTimeout(
        () =>
          fail(
            new EmbedRecordError(
              "IMAGE_FETCH_TIMEOUT",
              `no complete answer from ${url.host} within ${budgetMs} ms (fetchTimeoutMs, or what was left of fetchDeadlineMs)`,
              true,
            ),
          ),
        Math.max(0, giveUpAt - Date.now()),
      );
      let connect: NodeJS.Timeout | undefined;
      req.on("socket", (socket) => {
        if (!socket.connecting) return; // a kept-alive socket: already connected
        connect = setTimeout(
          () =>
            fail(
              new EmbedRecordError(
                "IMAGE_FETCH_TIMEOUT",
                `no connection to ${url.host} within fetchConnectTimeoutMs ${opts.fetchConnectTimeoutMs}`,
                true,
              ),
            ),
          opts.fetchConnectTimeoutMs,
        );
        socket.once(secure ? "secureConnect" : "connect", () => clearTimeout(connect));
      });
      req.on("error", (err) => fail(err));
      req.on("response", (res) => {
        clearTimeout(connect);
        const status = res.statusCode ?? 0;
        const optedOut = optOutDirective(res.headers["x-robots-tag"], optOut, uaToken);
        if (optedOut) {
          res.resume();
          return fail(
            new EmbedRecordError("IMAGE_OPTED_OUT", `${url.host} answered X-Robots-Tag: ${optedOut}`),
          );
        }
        if ([301, 302, 303, 307, 308].includes(status) && res.headers.location) {
          res.resume();
          settled = true;
          clearTimeout(total);
          return resolve({ kind: "redirect", location: res.headers.location });
        }
        if (status < 200 || status > 299) {
          res.resume();
          const retryable = status === 408 || status === 429 || status >= 500;
          const err = new EmbedRecordError(
            "IMAGE_FETCH_FAILED",
            `HTTP ${status}${res.statusMessage ? ` ${res.statusMessage}` : ""} from ${url.host}`,
            retryable,
          );
          return fail(Object.assign(err, { retryAfter: res.headers["retry-after"] }));
        }
        const type = (res.headers["content-type"] ?? "").split(";")[0].trim().toLowerCase();
        if (type !== "" && !type.startsWith("image/") && type !== "application/octet-stream") {
          res.resume();
          return fail(
            new EmbedRecordError(
              "IMAGE_CONTENT_TYPE",
              `${url.host} answered Content-Type ${type}, not an image`,
            ),
          );
        }
        const declared = Number(res.headers["content-length"]);
        if (Number.isFinite(declared) && declared > opts.maxImageBytes) {
          return fail(
            new EmbedRecordError(
              "IMAGE_TOO_LARGE",
              `Content-Length ${declared} bytes is more than maxImageBytes ${opts.maxImageBytes}`,
            ),
          );
        }
        const chunks: Buffer[] = [];
        let received = 0;
        res.on("data", (chunk: Buffer) => {
          received += chunk.byteLength;
          if (received > opts.maxImageBytes) {
            fail(
              new EmbedRecordError(
                "IMAGE_TOO_LARGE",
                `body passed maxImageBytes ${opts.maxImageBytes} while arriving`,
              ),
            );
            return;
          }
          chunks.push(chunk);
        });
        res.on("error", (err) => fail(err));
        res.on("aborted", () =>
          fail(
            new EmbedRecordError("IMAGE_FETCH_FAILED", `${url.host} closed the connection mid-body`, true),
          ),
        );
        res.on("end", () => {
          if (settled) return;
          if (!res.complete) {
            return fail(
              new EmbedRecordError("IMAGE_FETCH_FAILED", `${url.host} closed the connection mid-body`, true),
            );
          }
          settled = true;
          clearTimeout(total);
          resolve({ kind: "body", bytes: Buffer.concat(chunks, received) });
        });
      });
      req.end();
    });
  }

  return {
    fetch: fetchImage,
    close() {
      httpAgent.destroy();
      httpsAgent.destroy();
    },
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function parseUrl(raw: string, allowPrivate: boolean): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new EmbedRecordError("IMAGE_FETCH_FAILED", `url ${JSON.stringify(raw.slice(0, 200))} is not a URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new EmbedRecordError("IMAGE_FETCH_FAILED", `url scheme ${url.protocol} is not http or https`);
  }
  const literal = url.hostname.replace(/^\[|\]$/g, "");
  if (!allowPrivate && isIP(literal) && isBlockedAddress(literal)) {
    throw new EmbedRecordError(
      "IMAGE_FETCH_FAILED",
      `url host ${literal} is a private or reserved address (fetchAllowPrivateAddresses is off)`,
    );
  }
  return url;
}

/**
 * Whether an X-Robots-Tag header opts the image out, as img2dataset reads it: each value is
 * `[<user agent>:] directive, directive...`; a value without a user agent, or for ours, counts.
 * Returns the directive that matched.
 */
export function optOutDirective(
  header: string | string[] | undefined,
  directives: ReadonlySet<string>,
  uaToken: string,
): string | undefined {
  if (header === undefined) return undefined;
  for (const value of Array.isArray(header) ? header : [header]) {
    const colon = value.indexOf(":");
    const agent = colon >= 0 ? value.slice(0, colon).trim().toLowerCase() : undefined;
    if (agent !== undefined && agent !== uaToken) continue;
    for (const d of value.slice(colon + 1).split(",")) {
      const directive = d.trim().toLowerCase();
      if (directives.has(directive)) return directive;
    }
  }
  return undefined;
}

const BLOCKED = new BlockList();
for (const [net, prefix] of [
  ["0.0.0.0", 8],
  ["10.0.0.0", 8],
  ["100.64.0.0", 10],
  ["127.0.0.0", 8],
  ["169.254.0.0", 16],
  ["172.16.0.0", 12],
  ["192.0.0.0", 24],
  ["192.168.0.0", 16],
  ["198.18.0.0", 15],
  ["224.0.0.0", 4],
  ["240.0.0.0", 4],
] as const) {
  BLOCKED.addSubnet(net, prefix, "ipv4");
}
for (const [net, prefix] of [
  ["::", 128],
  ["::1", 128],
  ["fc00::", 7],
  ["fe80::", 10],
  ["ff00::", 8],
] as const) {
  BLOCKED.addSubnet(net, prefix, "ipv6");
}

/** Loopback, private, link-local, shared, multicast and reserved ranges (IPv4-mapped IPv6 included). */
export function isBlockedAddress(address: string): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return BLOCKED.check(mapped[1], "ipv4");
  const family = isIP(address);
  if (family === 0) return true;
  return BLOCKED.check(address, family === 4 ? "ipv4" : "ipv6");
}

/** dns.lookup that refuses a name resolving to a blocked address (all of them, when asked for all). */
function publicOnlyLookup(
  hostname: string,
  options: LookupOptions,
  callback: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void,
): void {
  dnsLookup(hostname, options, (err, address: string | LookupAddress[], family?: number) => {
    if (err) return callback(err, address, family);
    const addresses = Array.isArray(address) ? address.map((a) => a.address) : [address];
    const blocked = addresses.find(isBlockedAddress);
    if (blocked !== undefined) {
      const e = new EmbedRecordError(
        "IMAGE_FETCH_FAILED",
        `${hostname} resolves to ${blocked}, a private or reserved address (fetchAllowPrivateAddresses is off)`,
      );
      return callback(e as unknown as NodeJS.ErrnoException, address, family);
    }
    callback(null, address, family);
  });
}

/** Connection errors: refused, reset and DNS hiccups may pass; an unknown host will not. */
function asFetchError(err: unknown, url: URL): EmbedRecordError {
  const code = (err as { code?: unknown }).code;
  const message = err instanceof Error ? err.message : String(err);
  const retryable = code !== "ENOTFOUND" && code !== "ERR_INVALID_URL";
  return new EmbedRecordError(
    "IMAGE_FETCH_FAILED",
    `${url.host}: ${typeof code === "string" && !message.includes(code) ? `${code} ` : ""}${message || "connection failed"}`,
    retryable,
  );
}

function retryAfterMs(err: unknown): number | undefined {
  const value = (err as { retryAfter?: unknown }).retryAfter;
  if (typeof value !== "string") return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}
