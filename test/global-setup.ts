/**
 * Test-run set-up (node --test --test-global-setup): make sure a real Kafka broker is there.
 * - KAFKA_BROKERS set: use that broker, start nothing.
 * - otherwise: start the project's local KRaft broker on free ports in a temporary folder, export
 *   KAFKA_BROKERS for the test files (they run in child processes that inherit it), stop it after.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import "../src/common/quiet-warnings.ts";
import { createLogger } from "../src/common/logger.ts";
import { createKafkaClient } from "../src/kafka/index.ts";
import { startLocalBroker, stopLocalBroker } from "../src/kafka/local-broker.ts";

let stateDir: string | undefined;

export async function globalSetup(): Promise<void> {
  // Every test file and every clipsieve it spawns is a new Node process that would compile the same
  // few thousand modules again (about 2 s of CPU each): V8's on-disk compile cache halves that.
  process.env.NODE_COMPILE_CACHE ??= join(tmpdir(), "clipsieve-node-compile-cache");
  if (process.env.KAFKA_BROKERS) return;
  stateDir = mkdtempSync(join(tmpdir(), "clipsieve-test-kafka-"));
  const state = await startLocalBroker({
    stateDir,
    port: 0,
    controllerPort: 0,
    logger: createLogger("test-kafka", "warn"),
  });
  process.env.KAFKA_BROKERS = state.brokers;
  // The broker answers before its controller is ready to create topics: make sure it is, once, here.
  const kafka = createKafkaClient({ clientId: "clipsieve-test-setup", brokers: [state.brokers] });
  await kafka.ensureTopics([{ topic: "clipsieve-test-warmup" }], 60_000);
  process.env.CLIPSIEVE_TEST_BROKER_DIR = stateDir;
}

export async function globalTeardown(): Promise<void> {
  if (!stateDir) return;
  await stopLocalBroker(stateDir);
  rmSync(stateDir, { recursive: true, force: true });
}
