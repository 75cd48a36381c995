/**
 * Telemetry with a fixed vocabulary: metric names `clipsieve_<what>_<unit>`, labels only from closed
 * sets (decision, reason, code, score, stage, provider, partition), never a uid, URL or message.
 */
import { createServer, type Server } from "node:http";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

export interface PipelineMetrics {
  registry: Registry;
  recordsIn: Counter<"topic">;
  recordsOut: Counter<"decision" | "reason">;
  deadLetters: Counter<"code">;
  windows: Counter<"outcome">;
  windowRecords: Histogram<string>;
  windowSeconds: Histogram<"stage">;
  scores: Histogram<"score">;
  thresholds: Gauge<"score" | "stage">;
  consumerLag: Gauge<"partition">;
  undelivered: Gauge<string>;
  provider: Gauge<"provider">;
  brokerReachable: Gauge<string>;
}

export function createPipelineMetrics(withDefaults = true): PipelineMetrics {
  const registry = new Registry();
  if (withDefaults) collectDefaultMetrics({ register: registry, prefix: "clipsieve_process_" });
  const r = [registry];
  return {
    registry,
    recordsIn: new Counter({
      name: "clipsieve_records_in_total",
      help: "Records read from the input topic",
      labelNames: ["topic"],
      registers: r,
    }),
    recordsOut: new Counter({
      name: "clipsieve_records_out_total",
      help: "Records delivered, by decision (accepted, rejected, dead_letter) and reason",
      labelNames: ["decision", "reason"],
      registers: r,
    }),
    deadLetters: new Counter({
      name: "clipsieve_dead_letters_total",
      help: "Dead-lettered records by error code",
      labelNames: ["code"],
      registers: r,
    }),
    windows: new Counter({
      name: "clipsieve_windows_total",
      help: "Windows by outcome (committed, aborted_rebalance, failed)",
      labelNames: ["outcome"],
      registers: r,
    }),
    windowRecords: new Histogram({
      name: "clipsieve_window_records",
      help: "Records per window",
      buckets: [1, 16, 64, 256, 1024, 4096, 16384, 65536],
      registers: r,
    }),
    windowSeconds: new Histogram({
      name: "clipsieve_window_seconds",
      help: "Time per window and stage (embed, score, policy, dedup, deliver, total)",
      labelNames: ["stage"],
      buckets: [0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
      registers: r,
    }),
    scores: new Histogram({
      name: "clipsieve_score",
      help: "Score distributions",
      labelNames: ["score"],
      buckets: [-0.3, -0.2, -0.1, -0.05, 0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.8, 1],
      registers: r,
    }),
    thresholds: new Gauge({
      name: "clipsieve_threshold",
      help: "Thresholds in force, by score and policy stage",
      labelNames: ["score", "stage"],
      registers: r,
    }),
    consumerLag: new Gauge({
      name: "clipsieve_consumer_lag_records",
      help: "Records behind the input's end, by partition",
      labelNames: ["partition"],
      registers: r,
    }),
    undelivered: new Gauge({
      name: "clipsieve_undelivered_records",
      help: "Records fetched but not yet delivered (bounded by the backpressure)",
      registers: r,
    }),
    provider: new Gauge({
      name: "clipsieve_provider_info",
      help: "Execution provider in use (value 1)",
      labelNames: ["provider"],
      registers: r,
    }),
    brokerReachable: new Gauge({
      name: "clipsieve_broker_reachable",
      help: "1 while a Kafka broker answers, 0 during an outage (the filter reconnects meanwhile)",
      registers: r,
    }),
  };
}

/** Serve /metrics (Prometheus text) and /healthz (200 while `healthy()` holds, else 503). */
export async function serveMetrics(
  metrics: PipelineMetrics,
  port: number,
  healthy: () => { ok: boolean; detail: string },
): Promise<Server> {
  const server = createServer(async (req, res) => {
    if (req.url === "/metrics") {
      res.setHeader("content-type", metrics.registry.contentType);
      res.end(await metrics.registry.metrics());
    } else if (req.url === "/healthz") {
      const h = healthy();
      res.statusCode = h.ok ? 200 : 503;
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ status: h.ok ? "ok" : "unhealthy", detail: h.detail }));
    } else {
      res.statusCode = 404;
      res.end("not found\n");
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "0.0.0.0", () => resolve());
  });
  return server;
}
