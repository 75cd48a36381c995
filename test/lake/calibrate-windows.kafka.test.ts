/**
 * `calibrate` and `run` cut and score the same windows from the same topic: the same window ids, the
 * same members and dead-lettered records in the same order, and the same negative-bank rows, from
 * the first (bank-primed) window to the last. Both go through src/window/ (cut.ts, scorer.ts); this
 * fails if either cuts on its own (fixed-size windows, no priming) or banks rows the other does not.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { createLogger } from "../../src/common/logger.ts";
import { createDecoder } from "../../src/decode/decoder.ts";
import { Calibration, calibrateFromTopic } from "../../src/lake/calibrate.ts";
import { parsePolicyFlags } from "../../src/policy/index.ts";
import { createScoringEngine } from "../../src/score/engine.ts";
import { WindowScorer } from "../../src/window/scorer.ts";
import type { WindowManifest } from "../../src/window/window.ts";
import { exited, filterArgs, filterTopics, spawnClipsieve } from "../helpers/filter.ts";
import { readAll, testClient, testKafka } from "../helpers/kafka.ts";
import { jsonRecord, syntheticPairs } from "../helpers/records.ts";

const DIM = 16;
const WINDOW = 200;
const BANK = 300;
// A primed first window of WINDOW + BANK records, then whole windows: no window is cut by linger time.
const N = WINDOW + BANK + 5 * WINDOW;
const SCORING = { draws: 2, batchSize: 128, tau: 0.01, seed: 7 };

test("calibrate forms the windows run forms: ids, members, dead letters and bank rows", async () => {
  const kafka = testKafka();
  const topics = await filterTopics(1);
  const pairs = syntheticPairs(N, DIM, 5);
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  // Every 97th record is not JSON: dead-lettered, but a member of its window all the same.
  const values = pairs.map((p, i) => (i % 97 === 13 ? "{not json" : jsonRecord(p, { base64: true })));
  for (let i = 0; i < N; i += 500) {
    await producer.send({
      topic: topics.input,
      messages: values.slice(i, i + 500).map((value, k) => ({ key: pairs[i + k].uid, value })),
    });
  }
  await producer.disconnect();

  const run = spawnClipsieve(
    filterArgs(topics, [
      "--dim",
      String(DIM),
      "--window-size",
      String(WINDOW),
      "--bank-size",
      String(BANK),
      "--draws",
      String(SCORING.draws),
      "--batch-size",
      String(SCORING.batchSize),
      "--seed",
      String(SCORING.seed),
      "--linger-ms",
      "60000",
      "--keep",
      "s_clip_loss=0.5",
      "--warmup",
      "0",
    ]),
  );
  let manifests: WindowManifest[];
  try {
    await readAll(kafka, topics.scores, { expected: N, timeoutMs: 180_000 });
    const expectedWindows = 1 + 5;
    manifests = (await readAll(kafka, topics.windows, { expected: expectedWindows, timeoutMs: 60_000 })).map(
      (m) => JSON.parse(String(m.value)) as WindowManifest,
    );
  } finally {
    run.kill("SIGTERM");
    await exited(run);
  }

  const logger = createLogger("test", "warn");
  const engine = await createScoringEngine({ device: "cpu", logger });
  const calibrated: WindowManifest[] = [];
  try {
    await calibrateFromTopic({
      kafka: testClient(),
      topic: topics.input,
      logger,
      calibration: new Calibration(parsePolicyFlags({ keep: "s_clip_loss=0.5", warmup: 0 })),
      windowSize: WINDOW,
      async makeInputScoring() {
        const decoder = await createDecoder({ format: "json", expectedDim: DIM });
        return {
          decode: (raws) => decoder.decodeBatch(raws),
          scorer: new WindowScorer(engine, { dim: DIM, bankSize: BANK, ...SCORING }),
          close: () => decoder.close(),
        };
      },
      onWindow: (w) => calibrated.push(w.plan.manifest),
    });
  } finally {
    await engine.close();
  }

  const shape = (m: WindowManifest) => ({
    id: m.window_id,
    seed: m.seed,
    members: m.members,
    failed: m.failed,
    bank: m.bank,
  });
  assert.equal(manifests.length, 6, "run: one primed window, then five whole ones");
  assert.equal(manifests[0].members.length + manifests[0].failed.length > 0, true);
  assert.deepEqual(calibrated.map(shape), manifests.map(shape));
  // The first window is primed: it holds the bank's rows to be.
  const firstSize = (m: WindowManifest) =>
    [...m.members, ...m.failed].reduce((n, [, , , count]) => n + count, 0);
  assert.equal(firstSize(calibrated[0]), WINDOW + BANK);
});
