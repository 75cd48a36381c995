/**
 * A local HTTP server (127.0.0.1 only) that serves images and every way an image URL can fail:
 * 404, 503 then success, a stall past the timeouts, HTML, an oversized body, opt-out headers and
 * corrupt bytes. It counts requests per path and the most requests it held open at once.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export type Handler = (req: IncomingMessage, res: ServerResponse, hit: number) => void;

export interface ImageServer {
  url(path: string): string;
  hits(path: string): number;
  /** The most requests open at the same time, over the server's life. */
  readonly peakOpen: number;
  close(): Promise<void>;
}

export async function startImageServer(routes: Record<string, Handler>): Promise<ImageServer> {
  const hits = new Map<string, number>();
  let open = 0;
  let peakOpen = 0;
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const hit = (hits.get(path) ?? 0) + 1;
    hits.set(path, hit);
    open++;
    peakOpen = Math.max(peakOpen, open);
    res.on("close", () => open--);
    const handler = routes[path];
    if (!handler) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found");
      return;
    }
    handler(req, res, hit);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: (path) => `http://127.0.0.1:${port}${path}`,
    hits: (path) => hits.get(path) ?? 0,
    get peakOpen() {
      return peakOpen;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export const serve =
  (body: Buffer, headers: Record<string, string> = { "content-type": "image/png" }, status = 200): Handler =>
  (_req, res) => {
    res.writeHead(status, { "content-length": String(body.byteLength), ...headers }).end(body);
  };

/** Answers after `ms` (or never, while the test runs, when it is long). */
export const stall =
  (ms: number, body: Buffer): Handler =>
  (_req, res) => {
    const t = setTimeout(() => res.writeHead(200, { "content-type": "image/png" }).end(body), ms);
    res.on("close", () => clearTimeout(t));
  };
