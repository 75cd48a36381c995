/**
 * Backpressure against the real broker: with a backlog far larger than the filter may hold, the
 * records fetched but not delivered never exceed the bound (maxQueuedWindows x windowSize, plus the
 * window's worth being taken), and every record is still delivered.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { silentLogger } from "../../src/common/logger.ts";
import { createPipelineMetrics } from "../../src/common/metrics.ts";
import { resolveRunConfig } from "../../src/pipeline/config.ts";
import { buildPipeline } from "../../src/pipeline/pipeline.ts";
import { filterTopics } from "../helpers/filter.ts";
import { testBrokers, testKafka } from "../helpers/kafka.ts";
import { jsonRecord, syntheticPairs } from "../helpers/records.ts";

test("a backlog is taken a bounded number of records at a time", async () => {
  const kafka = testKafka();
  const t = await filterTopics(1);
  const n = 3000;
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const pairs = syntheticPairs(n, 16, 31);
  for (let i = 0; i < n; i += 500) {
    await producer.send({
      topic: t.input,
      messages: pairs.slice(i, i + 500).map((p) => ({ key: p.uid, value: jsonRecord(p) })),
    });
  }
  await producer.disconnect();

  const windowSize = 100;
  const maxQueuedWindows = 2;
  const config = resolveRunConfig({
    flags: {
      brokers: testBrokers().join(","),
      group: t.group,
      input: t.input,
      accepted: t.accepted,
      rejected: t.rejected,
      deadLetter: t.deadLetter,
      scores: t.scores,
      windowsTopic: t.windows,
      dim: 16,
      windowSize,
      maxQueuedWindows,
      bankSize: 0,
      lingerMs: 100,
      draws: 1,
      batchSize: 64,
      keep: "s_clip_loss=0.5",
      warmup: 0,
      instanceId: "bp",
    },
  });
  const metrics = createPipelineMetrics(false);
  let delivered = 0;
  const pipeline = await buildPipeline(config, silentLogger, metrics, {
    hooks: { onWindowDelivered: (w) => (delivered += w.outcomes.length) },
  });
  let peak = 0;
  const sampler = setInterval(async () => {
    const v = (await metrics.undelivered.get()).values[0]?.value ?? 0;
    peak = Math.max(peak, v);
  }, 5);
  try {
    await pipeline.start();
    const deadline = Date.now() + 120_000;
    while (delivered < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  } finally {
    clearInterval(sampler);
    await pipeline.close();
  }
  assert.equal(delivered, n, "every record delivered");
  // The whole backlog (3000) was fetchable at once; the filter held at most the bound.
  assert.ok(peak <= (maxQueuedWindows + 1) * windowSize, `peak ${peak} records in memory`);
  assert.ok(
    peak >= maxQueuedWindows * windowSize,
    `peak ${peak}: the gate was never reached, so this proves nothing`,
  );
});
