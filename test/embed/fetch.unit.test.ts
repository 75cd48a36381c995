/**
 * The image fetcher against a local server: each failure kind comes back with its code and reason,
 * retries back off and then succeed, hosts get at most their share of connections, deadlines hold.
 */
import assert from "node:assert/strict";
import { type AddressInfo, createServer as createNetServer, type Socket } from "node:net";
import { after, before, test } from "node:test";
import {
  createImageFetcher,
  type FetchOptions,
  isBlockedAddress,
  optOutDirective,
} from "../../src/embed/fetch.ts";
import { EmbedRecordError } from "../../src/embed/record-error.ts";
import { type ImageServer, serve, stall, startImageServer } from "./image-server.ts";

const BODY = Buffer.from("\x89PNG pretend image bytes");

const options: FetchOptions = {
  fetchConnectTimeoutMs: 1000,
  fetchTimeoutMs: 300,
  fetchRetries: 2,
  fetchRetryWaitMs: 20,
  fetchConcurrency: 16,
  fetchConcurrencyPerHost: 2,
  maxImageBytes: 1000,
  optOutDirectives: ["noai", "noimageai"],
  userAgent: "clipsieve/0.1",
  fetchAllowPrivateAddresses: true,
};

let server: ImageServer;
before(async () => {
  server = await startImageServer({
    "/ok.png": serve(BODY),
    "/octet": serve(BODY, { "content-type": "application/octet-stream" }),
    "/html": serve(Buffer.from("<html></html>"), { "content-type": "text/html; charset=utf-8" }),
    "/gone": serve(Buffer.from("gone"), { "content-type": "text/plain" }, 410),
    "/flaky": (_req, res, hit) => {
      if (hit < 3) res.writeHead(503, { "content-type": "text/plain" }).end("busy");
      else res.writeHead(200, { "content-type": "image/png" }).end(BODY);
    },
    "/always-503": serve(Buffer.from("busy"), { "content-type": "text/plain" }, 503),
    "/slow": stall(5_000, BODY),
    "/big-declared": serve(Buffer.alloc(5000), { "content-type": "image/jpeg" }),
    "/big-chunked": (_req, res) => {
      // No Content-Length: the cap has to be enforced while the body arrives.
      res.writeHead(200, { "content-type": "image/jpeg" });
      for (let i = 0; i < 10; i++) res.write(Buffer.alloc(300));
      res.end();
    },
    "/noai": serve(BODY, { "content-type": "image/png", "x-robots-tag": "noindex, NoAI" }),
    "/noimageai-for-us": serve(BODY, { "content-type": "image/png", "x-robots-tag": "clipsieve: noimageai" }),
    "/noai-for-others": serve(BODY, { "content-type": "image/png", "x-robots-tag": "otherbot: noai" }),
    "/redirect": (_req, res) => res.writeHead(302, { location: "/ok.png" }).end(),
    "/loop": (_req, res) => res.writeHead(302, { location: "/loop" }).end(),
    "/host-a": stall(150, BODY),
  });
});
after(() => server.close());

async function failure(p: Promise<unknown>): Promise<EmbedRecordError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof EmbedRecordError, `expected EmbedRecordError, got ${err}`);
    return err;
  }
  assert.fail("expected the fetch to fail");
}

const soon = () => Date.now() + 10_000;

test("fetches an image, follows a redirect, accepts application/octet-stream", async () => {
  const f = createImageFetcher({ ...options, fetchTimeoutMs: 10_000 });
  try {
    assert.deepEqual(await f.fetch(server.url("/ok.png"), soon()), BODY);
    assert.deepEqual(await f.fetch(server.url("/redirect"), soon()), BODY);
    assert.deepEqual(await f.fetch(server.url("/octet"), soon()), BODY);
  } finally {
    f.close();
  }
});

test("each failure kind has its code and a message naming the cause", async () => {
  // No timeouts are tested here: a busy machine must not turn a slow redirect chain into one.
  const f = createImageFetcher({ ...options, fetchTimeoutMs: 10_000 });
  try {
    const cases: [string, string, RegExp][] = [
      ["/missing", "IMAGE_FETCH_FAILED", /HTTP 404/],
      ["/gone", "IMAGE_FETCH_FAILED", /HTTP 410/],
      ["/html", "IMAGE_CONTENT_TYPE", /text\/html/],
      ["/big-declared", "IMAGE_TOO_LARGE", /Content-Length 5000 .* maxImageBytes 1000/],
      ["/big-chunked", "IMAGE_TOO_LARGE", /maxImageBytes 1000 while arriving/],
      ["/noai", "IMAGE_OPTED_OUT", /X-Robots-Tag: noai/],
      ["/noimageai-for-us", "IMAGE_OPTED_OUT", /noimageai/],
      ["/loop", "IMAGE_FETCH_FAILED", /more than 5 redirects/],
    ];
    for (const [path, code, message] of cases) {
      const err = await failure(f.fetch(server.url(path), soon()));
      assert.equal(err.code, code, `${path}: ${err.message}`);
      assert.match(err.message, message, path);
    }
    // A 404 is final: one request, no retry.
    assert.equal(server.hits("/missing"), 1);
    // An opt-out addressed to another crawler does not apply to us.
    assert.deepEqual(await f.fetch(server.url("/noai-for-others"), soon()), BODY);
    const bad = await failure(f.fetch("ftp://127.0.0.1/x.png", soon()));
    assert.match(bad.message, /scheme ftp: is not http or https/);
  } finally {
    f.close();
  }
});

test("a 503 is retried with back-off and then succeeds; a lasting one fails after the retries", async () => {
  const f = createImageFetcher(options);
  try {
    assert.deepEqual(await f.fetch(server.url("/flaky"), soon()), BODY);
    assert.equal(server.hits("/flaky"), 3);
    const err = await failure(f.fetch(server.url("/always-503"), soon()));
    assert.equal(err.code, "IMAGE_FETCH_FAILED");
    assert.match(err.message, /HTTP 503 .* \(after 3 tries\)/);
    assert.equal(server.hits("/always-503"), 3);
  } finally {
    f.close();
  }
});

test("a stalled answer times out per try, and the record's deadline bounds all tries", async () => {
  const f = createImageFetcher({ ...options, fetchRetries: 10 });
  try {
    const started = Date.now();
    const err = await failure(f.fetch(server.url("/slow"), Date.now() + 1000));
    const took = Date.now() - started;
    assert.equal(err.code, "IMAGE_FETCH_TIMEOUT");
    assert.ok(took < 1600, `took ${took} ms, past the 1000 ms deadline`);
    assert.ok(server.hits("/slow") >= 2, "the timed-out try was retried");
  } finally {
    f.close();
  }
});

test("a connection whose TLS handshake never completes hits the connect timeout", async () => {
  // A TCP server on loopback that accepts and stays silent: TCP connects, TLS never does.
  const sockets: Socket[] = [];
  const silent = createNetServer((socket) => sockets.push(socket));
  await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
  const { port } = silent.address() as AddressInfo;
  const f = createImageFetcher({
    ...options,
    fetchConnectTimeoutMs: 150,
    fetchTimeoutMs: 5000,
    fetchRetries: 0,
  });
  try {
    const started = Date.now();
    const err = await failure(f.fetch(`https://127.0.0.1:${port}/x.png`, Date.now() + 5000));
    assert.equal(err.code, "IMAGE_FETCH_TIMEOUT", err.message);
    assert.match(err.message, /fetchConnectTimeoutMs 150/);
    assert.ok(Date.now() - started < 2000);
  } finally {
    f.close();
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => silent.close(resolve));
  }
});

test("at most fetchConcurrencyPerHost requests to one host at once", async () => {
  const f = createImageFetcher({ ...options, fetchTimeoutMs: 5000 });
  try {
    const before = server.peakOpen;
    assert.ok(before <= 2);
    const all = await Promise.all(Array.from({ length: 8 }, () => f.fetch(server.url("/host-a"), soon())));
    assert.equal(all.length, 8);
    assert.equal(server.hits("/host-a"), 8);
    assert.equal(server.peakOpen, 2, "peak concurrent requests to the host");
  } finally {
    f.close();
  }
});

test("private addresses are refused unless allowed", async () => {
  const f = createImageFetcher({ ...options, fetchAllowPrivateAddresses: false });
  const hitsBefore = server.hits("/ok.png");
  try {
    for (const url of [
      server.url("/ok.png"),
      "http://[::1]:1/x.png",
      "http://169.254.169.254/latest/meta-data",
    ]) {
      const err = await failure(f.fetch(url, soon()));
      assert.equal(err.code, "IMAGE_FETCH_FAILED");
      assert.match(err.message, /private or reserved address/);
    }
    const named = await failure(f.fetch(server.url("/ok.png").replace("127.0.0.1", "localhost"), soon()));
    assert.match(named.message, /localhost resolves to .*private or reserved/);
    assert.equal(server.hits("/ok.png"), hitsBefore, "no request reached the private address");
  } finally {
    f.close();
  }
  assert.equal(isBlockedAddress("8.8.8.8"), false);
  assert.equal(isBlockedAddress("2001:4860:4860::8888"), false);
  assert.equal(isBlockedAddress("::ffff:192.168.1.1"), true);
  assert.equal(isBlockedAddress("172.31.0.1"), true);
  assert.equal(isBlockedAddress("172.32.0.1"), false);
});

test("X-Robots-Tag parsing follows img2dataset: optional user agent, comma-separated directives", () => {
  const d = new Set(["noai", "noimageai"]);
  assert.equal(optOutDirective(undefined, d, "clipsieve"), undefined);
  assert.equal(optOutDirective("noindex, nofollow", d, "clipsieve"), undefined);
  assert.equal(optOutDirective(" NoImageAI ", d, "clipsieve"), "noimageai");
  assert.equal(optOutDirective(["otherbot: noai", "clipsieve: noai"], d, "clipsieve"), "noai");
  assert.equal(optOutDirective("otherbot: noai", d, "clipsieve"), undefined);
});
