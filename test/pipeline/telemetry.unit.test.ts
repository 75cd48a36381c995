/**
 * What the filter reports (src/pipeline/telemetry.ts), read back from the real prom-client metrics:
 * a delivered window counts its records by decision and reason, dead letters by code, scores by
 * name and cut-offs by stage and score; stage timings come from the clock's monotonic time; and
 * /healthz turns unhealthy when stopped, while Kafka is unreachable, or once decoding has failed for
 * more than a minute, and healthy again when decoding recovers.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { createPipelineMetrics } from "../../src/common/metrics.ts";
import type { DecodedRecord, RecordOutcome } from "../../src/common/record.ts";
import type { BrokerReachability } from "../../src/kafka/index.ts";
import { Telemetry } from "../../src/pipeline/telemetry.ts";
import { ManualClock } from "../helpers/clock.ts";

interface Readable {
  get(): Promise<{ values: readonly { value: number; labels: object; metricName?: string }[] }>;
}

/** The value of the series with exactly these labels (and this metric name, for a histogram's parts). */
async function seriesValue(metric: Readable, labels: Record<string, string>, metricName?: string) {
  const want = JSON.stringify(Object.entries(labels).sort());
  const found = (await metric.get()).values.filter(
    (v) =>
      (metricName === undefined || v.metricName === metricName) &&
      JSON.stringify(Object.entries(v.labels).sort()) === want,
  );
  assert.equal(found.length, 1, `one series ${metricName ?? ""} ${want}, found ${found.length}`);
  return found[0].value;
}

/** Every series of a metric, as "label=value,... -> value" lines, sorted. */
async function series(metric: Readable): Promise<string[]> {
  return (await metric.get()).values
    .map(
      (v) =>
        `${Object.entries(v.labels)
          .sort()
          .map(([k, x]) => `${k}=${x}`)
          .join(",")} -> ${v.value}`,
    )
    .sort();
}

const record: DecodedRecord = {
  source: { topic: "in", partition: 0, offset: "0" },
  key: null,
  value: null,
  headers: {},
  timestamp: "0",
};

function outcome(decision: RecordOutcome["decision"], reason: string, scores?: Record<string, number>) {
  return { record, decision, reason, scores } satisfies RecordOutcome;
}

const reachable: BrokerReachability = { reachable: true, since: 0, detail: "" };

test("a delivered window counts its records by decision and reason, dead letters by code", async () => {
  const metrics = createPipelineMetrics(false);
  const t = new Telemetry(metrics, new ManualClock());
  t.windowDelivered(
    [
      outcome("accepted", "passed", { s_clip_loss: 0.25, clip_score: 0.5 }),
      outcome("accepted", "passed", { s_clip_loss: 0.125, clip_score: 0.25 }),
      outcome("rejected", "below_threshold", { s_clip_loss: -0.5, clip_score: 0.125 }),
      outcome("dead_letter", "EMBEDDING_ZERO"),
      outcome("dead_letter", "EMBEDDING_ZERO"),
      outcome("dead_letter", "EMBEDDING_NOT_FINITE"),
    ],
    {},
  );
  assert.deepEqual(await series(metrics.recordsOut), [
    "decision=accepted,reason=passed -> 2",
    "decision=dead_letter,reason=EMBEDDING_NOT_FINITE -> 1",
    "decision=dead_letter,reason=EMBEDDING_ZERO -> 2",
    "decision=rejected,reason=below_threshold -> 1",
  ]);
  assert.deepEqual(await series(metrics.deadLetters), [
    "code=EMBEDDING_NOT_FINITE -> 1",
    "code=EMBEDDING_ZERO -> 2",
  ]);
  assert.equal(await seriesValue(metrics.windows, { outcome: "committed" }), 1);
  assert.equal(await seriesValue(metrics.windowRecords, {}, "clipsieve_window_records_count"), 1);
  assert.equal(await seriesValue(metrics.windowRecords, {}, "clipsieve_window_records_sum"), 6);
  assert.equal(await seriesValue(metrics.scores, { score: "s_clip_loss" }, "clipsieve_score_count"), 3);
  assert.equal(await seriesValue(metrics.scores, { score: "s_clip_loss" }, "clipsieve_score_sum"), -0.125);
  assert.equal(await seriesValue(metrics.scores, { score: "clip_score" }, "clipsieve_score_sum"), 0.875);

  // A second window adds to the counts.
  t.windowDelivered([outcome("dead_letter", "EMBEDDING_ZERO")], {});
  assert.equal(await seriesValue(metrics.deadLetters, { code: "EMBEDDING_ZERO" }), 3);
  assert.equal(await seriesValue(metrics.windows, { outcome: "committed" }), 2);
});

test("cut-offs keyed <stage>:<score> are split into stage and score labels", async () => {
  const metrics = createPipelineMetrics(false);
  const t = new Telemetry(metrics, new ManualClock());
  t.windowDelivered([outcome("accepted", "passed")], {
    "keep:s_clip_loss": 0.25,
    "then:normsim_inf": 0.5,
    clip_score: 0.125,
  });
  assert.deepEqual(await series(metrics.thresholds), [
    "score=clip_score,stage=threshold -> 0.125",
    "score=normsim_inf,stage=then -> 0.5",
    "score=s_clip_loss,stage=keep -> 0.25",
  ]);
  // The next window's cut-off replaces the last one.
  t.windowDelivered([outcome("accepted", "passed")], { "keep:s_clip_loss": 0.375 });
  assert.equal(await seriesValue(metrics.thresholds, { score: "s_clip_loss", stage: "keep" }), 0.375);
});

test("a window aborted by a rebalance counts as aborted_rebalance", async () => {
  const metrics = createPipelineMetrics(false);
  const t = new Telemetry(metrics, new ManualClock());
  t.windowAborted("rebalance");
  t.windowAborted("rebalance");
  assert.deepEqual(await series(metrics.windows), ["outcome=aborted_rebalance -> 2"]);
});

test("time() returns the step's value and records its duration from the monotonic clock", async () => {
  const metrics = createPipelineMetrics(false);
  const clock = new ManualClock();
  const t = new Telemetry(metrics, clock);
  const result = await t.time("score", async () => {
    await clock.advance(250);
    return 42;
  });
  assert.equal(result, 42);
  await t.time("policy", () => "sync step");
  assert.equal(
    await seriesValue(metrics.windowSeconds, { stage: "score" }, "clipsieve_window_seconds_count"),
    1,
  );
  assert.equal(
    await seriesValue(metrics.windowSeconds, { stage: "score" }, "clipsieve_window_seconds_sum"),
    0.25,
  );
  assert.equal(
    await seriesValue(metrics.windowSeconds, { stage: "policy" }, "clipsieve_window_seconds_sum"),
    0,
  );

  // stageSince: from a monotonic start to now.
  const start = clock.monotonic();
  await clock.advance(1500);
  t.stageSince("total", start);
  assert.equal(
    await seriesValue(metrics.windowSeconds, { stage: "total" }, "clipsieve_window_seconds_sum"),
    1.5,
  );
});

test("gauges: undelivered records, provider, broker reachability", async () => {
  const metrics = createPipelineMetrics(false);
  const t = new Telemetry(metrics, new ManualClock());
  t.undelivered(1234);
  t.provider("cpu");
  t.brokerReachable(false);
  assert.equal(await seriesValue(metrics.undelivered, {}), 1234);
  assert.equal(await seriesValue(metrics.provider, { provider: "cpu" }), 1);
  assert.equal(await seriesValue(metrics.brokerReachable, {}), 0);
  t.brokerReachable(true);
  assert.equal(await seriesValue(metrics.brokerReachable, {}), 1);
});

test("healthy: says how long ago the last window was delivered", async () => {
  const clock = new ManualClock();
  const t = new Telemetry(createPipelineMetrics(false), clock);
  await clock.advance(1500);
  assert.deepEqual(t.health(reachable), { ok: true, detail: "last window 1500 ms ago" });
  t.windowDelivered([outcome("accepted", "passed")], {});
  await clock.advance(200);
  assert.deepEqual(t.health(reachable), { ok: true, detail: "last window 200 ms ago" });
});

test("unhealthy while the broker is unreachable, naming for how many seconds", () => {
  const clock = new ManualClock();
  const t = new Telemetry(createPipelineMetrics(false), clock);
  const down: BrokerReachability = {
    reachable: false,
    since: clock.now() - 12_000,
    detail: "connect ECONNREFUSED 127.0.0.1:9092",
  };
  assert.deepEqual(t.health(down), {
    ok: false,
    detail: "Kafka unreachable for 12 s (connect ECONNREFUSED 127.0.0.1:9092); reconnecting",
  });
  assert.equal(t.health(reachable).ok, true);
});

test("decoding failures turn it unhealthy only after more than 60 s; a good batch resets that", async () => {
  const clock = new ManualClock();
  const t = new Telemetry(createPipelineMetrics(false), clock);
  t.intakeFailed();
  await clock.advance(30_000);
  t.intakeFailed(); // still failing: the minute counts from the first failure
  await clock.advance(29_000);
  assert.equal(t.health(reachable).ok, true, "59 s");
  await clock.advance(2_000);
  assert.deepEqual(t.health(reachable), {
    ok: false,
    detail: "decoding has failed for 61 s (schema registry?)",
  });

  t.intakeOk();
  assert.equal(t.health(reachable).ok, true);
  // A new failure starts a new minute.
  t.intakeFailed();
  await clock.advance(59_000);
  assert.equal(t.health(reachable).ok, true);
  await clock.advance(2_000);
  assert.equal(t.health(reachable).ok, false);
});

test("stopped: unhealthy with the error that stopped it, the first one", () => {
  const clock = new ManualClock();
  const t = new Telemetry(createPipelineMetrics(false), clock);
  t.stopped(new Error("producer fenced"));
  t.stopped(new Error("later"));
  assert.deepEqual(t.health(reachable), { ok: false, detail: "stopped: Error: producer fenced" });
  const down: BrokerReachability = { reachable: false, since: clock.now(), detail: "x" };
  assert.deepEqual(t.health(down), { ok: false, detail: "stopped: Error: producer fenced" });
});
