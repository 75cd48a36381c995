/**
 * A broker outage against a real broker of the test's own (the shared one serves other tests): the
 * filter is streaming when its only broker is killed (SIGKILL), and the broker is started again on its
 * log 20 s later. The filter must keep running meanwhile (/healthz and clipsieve_broker_reachable say
 * the broker is unreachable), reconnect by itself, and deliver every record exactly once.
 *
 * The default adapter (librdkafka) is tested: it reconnects with backoff for as long as it takes.
 * kafkajs gives up after its retries (docs/streaming.md), which is one reason it is the fallback.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { Kafka, logLevel } from "kafkajs";
import { createKafkaClient } from "../../src/kafka/index.ts";
import { restartLocalBroker, startLocalBroker, stopLocalBroker } from "../../src/kafka/local-broker.ts";
import { assertExactlyOnce, DIM, produce } from "../helpers/exactly-once.ts";
import { exited, filterTopics, freePort, spawnClipsieve } from "../helpers/filter.ts";
import { waitFor } from "../helpers/wait.ts";

const OUTAGE_MS = 20_000;

async function health(port: number): Promise<{ status: number; body: string; reachable: string }> {
  try {
    const signal = AbortSignal.timeout(3000);
    const res = await fetch(`http://127.0.0.1:${port}/healthz`, { signal });
    const body = await res.text();
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`, { signal })).text();
    const reachable = /^clipsieve_broker_reachable (\d)/m.exec(metrics)?.[1] ?? "?";
    return { status: res.status, body, reachable };
  } catch (err) {
    return { status: 0, body: String(err), reachable: "?" };
  }
}

test("the broker is killed mid-stream and restarted on its log 20 s later: the filter rides it out, every record exactly once", async () => {
  const stateDir = mkdtempSync(join(tmpdir(), "clipsieve-test-kafka-restart-"));
  const broker = await startLocalBroker({ stateDir, port: 0, controllerPort: 0 });
  const brokers = [broker.brokers];
  const admin = createKafkaClient({ clientId: "clipsieve-test-restart", brokers });
  await admin.waitForCoordinators(60_000);
  const t = await filterTopics(2, admin);
  const kafka = new Kafka({ clientId: "clipsieve-test-restart", brokers, logLevel: logLevel.NOTHING });
  const metricsPort = await freePort();
  const n = 2000;
  const args = [
    "run",
    ...["--brokers", broker.brokers, "--group", t.group, "--input", t.input],
    ...["--accepted", t.accepted, "--rejected", t.rejected, "--dead-letter", t.deadLetter],
    ...["--scores", t.scores, "--windows-topic", t.windows, "--metrics-port", String(metricsPort)],
    ...["--dim", String(DIM), "--window-size", "100", "--linger-ms", "200", "--bank-size", "100"],
    ...["--draws", "2", "--batch-size", "64", "--keep", "s_clip_loss=0.5", "--warmup", "0"],
    ...["--instance-id", "restart", "--transaction-timeout-ms", "60000", "--session-timeout-ms", "30000"],
  ];
  const filter = spawnClipsieve(args);
  try {
    await produce(kafka, t.input, 1000, 2, 21);
    await waitFor(
      async () => {
        const offsets = await createKafkaClient({ clientId: "probe", brokers }).endOffsets(t.scores);
        return [...offsets.values()].reduce((s, o) => s + Number(o.high), 0) >= 400;
      },
      90_000,
      `the filter's first windows\n${filter.output().slice(-3000)}`,
    );

    // The outage: SIGKILL, no clean shutdown, while windows are being delivered.
    process.kill(broker.pid, "SIGKILL");
    const killedAt = Date.now();
    await waitFor(
      async () => {
        const h = await health(metricsPort);
        return h.status === 503 && /unreachable/.test(h.body) && h.reachable === "0";
      },
      OUTAGE_MS - 2000,
      `/healthz 503 "Kafka unreachable" and clipsieve_broker_reachable 0 during the outage; last: ${JSON.stringify(await health(metricsPort))}\n${filter.output().slice(-3000)}`,
    );
    await new Promise((r) => setTimeout(r, Math.max(0, OUTAGE_MS - (Date.now() - killedAt))));
    assert.equal(
      filter.exitCode,
      null,
      `the filter is still running during the outage\n${filter.output().slice(-3000)}`,
    );

    await restartLocalBroker({ stateDir });
    // The rest of the stream arrives after the restart.
    await produce(kafka, t.input, n, 2, 21, async (send) => send(1000, n));
    await assertExactlyOnce(kafka, t, n, () => filter.output());
    assert.equal(filter.exitCode, null, `the filter is still running\n${filter.output().slice(-3000)}`);
    await waitFor(
      async () => (await health(metricsPort)).status === 200,
      30_000,
      `/healthz 200 again after the restart; last: ${JSON.stringify(await health(metricsPort))}`,
    );
  } finally {
    filter.kill("SIGTERM");
    await exited(filter);
    await stopLocalBroker(stateDir, 2000);
    rmSync(stateDir, { recursive: true, force: true });
  }
});
