/**
 * `calibrate` against the real broker: calibrated on the first half of a synthetic input stream (scored
 * here with run's window and score code), its policy file starts `run --policy-file` warm, and on the
 * held-out second half both the run's accepted fraction and the fraction at or above the calibrated
 * cut-off are within 2 points of the target.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { main } from "../../src/cli/main.ts";
import { createPolicy, type PolicyState, parsePolicyFlags } from "../../src/policy/index.ts";
import type { ScoreRecord } from "../../src/sink/outputs.ts";
import { exited, filterArgs, filterTopics, spawnClipsieve } from "../helpers/filter.ts";
import { readAll, testBrokers, testKafka } from "../helpers/kafka.ts";
import { jsonRecord, syntheticPairs } from "../helpers/records.ts";

const DIM = 16;
const N = 16_000;
const SAMPLE = 8000;
const SCORING = [
  "--dim",
  String(DIM),
  "--window-size",
  "1000",
  "--bank-size",
  "256",
  "--draws",
  "2",
  "--batch-size",
  "128",
];
const POLICY = ["--keep", "s_clip_loss=0.3", "--warmup", "0"];

async function cli(args: string[]): Promise<{ code: number; stdout: string }> {
  const printed: string[] = [];
  const log = console.log;
  console.log = (...parts: unknown[]) => printed.push(parts.join(" "));
  try {
    const code = await main(["node", "clipsieve", ...args]);
    return { code, stdout: printed.join("\n") };
  } finally {
    console.log = log;
  }
}

test("a policy calibrated on a sample keeps the target fraction of held-out records", async (t) => {
  const kafka = testKafka();
  const topics = await filterTopics(1);
  const pairs = syntheticPairs(N, DIM, 33);
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  for (let i = 0; i < N; i += 1000) {
    await producer.send({
      topic: topics.input,
      messages: pairs.slice(i, i + 1000).map((p) => ({ key: p.uid, value: jsonRecord(p, { base64: true }) })),
    });
  }
  await producer.disconnect();

  const dir = mkdtempSync(join(tmpdir(), "clipsieve-calibrate-cli-"));
  const policyFile = join(dir, "policy.json");
  const brokers = testBrokers().join(",");
  const calibrated = await cli([
    "calibrate",
    "--brokers",
    brokers,
    "--input",
    topics.input,
    "--limit",
    String(SAMPLE),
    ...SCORING,
    ...POLICY,
    "--out",
    policyFile,
    "--json",
  ]);
  assert.equal(calibrated.code, 0);
  const result = JSON.parse(calibrated.stdout) as {
    read: number;
    scored: number;
    windows: number;
    thresholds: Record<string, number>;
  };
  assert.deepEqual([result.read, result.scored, result.windows], [SAMPLE, SAMPLE, SAMPLE / 1000]);
  const state = JSON.parse(readFileSync(policyFile, "utf8")) as PolicyState;
  const spec = parsePolicyFlags({ keep: "s_clip_loss=0.3", warmup: "0" });
  const cutoff = createPolicy(spec, { state }).thresholds()["keep:s_clip_loss"]!;
  assert.equal(cutoff, result.thresholds["keep:s_clip_loss"]);

  const filter = spawnClipsieve(
    filterArgs(topics, [
      ...SCORING,
      ...POLICY,
      "--linger-ms",
      "500",
      "--policy-file",
      policyFile,
      "--instance-id",
      "c",
    ]),
  );
  let scores: Awaited<ReturnType<typeof readAll>>;
  try {
    scores = await readAll(kafka, topics.scores, { expected: N, timeoutMs: 120_000 });
  } finally {
    filter.kill("SIGTERM");
    assert.equal(await exited(filter), 0, filter.output());
  }
  assert.equal(scores.length, N, filter.output());
  assert.match(filter.output(), /policy starts from a saved state/);

  const heldOut = scores
    .map((m) => JSON.parse(m.value!.toString()) as ScoreRecord)
    .filter((r) => BigInt(r.source.offset) >= BigInt(SAMPLE));
  assert.equal(heldOut.length, N - SAMPLE);
  const accepted = heldOut.filter((r) => r.decision === "accepted").length / heldOut.length;
  const atCutoff = heldOut.filter((r) => r.scores.s_clip_loss! >= cutoff).length / heldOut.length;
  t.diagnostic(
    `held-out: run accepted ${accepted}, ${atCutoff} at or above the calibrated cut-off ${cutoff}`,
  );
  assert.ok(Math.abs(accepted - 0.3) <= 0.02, `run accepted ${accepted} of the held-out records`);
  assert.ok(
    Math.abs(atCutoff - 0.3) <= 0.02,
    `${atCutoff} of the held-out records reach the calibrated cut-off`,
  );

  // The run's scores topic calibrates too (records already scored: fed as they were windowed).
  const fromScores = await cli([
    "calibrate",
    "--brokers",
    brokers,
    "--input",
    topics.scores,
    "--limit",
    "2000",
    ...POLICY,
    "--out",
    join(dir, "from-scores.json"),
    "--json",
  ]);
  assert.equal(fromScores.code, 0);
  const r2 = JSON.parse(fromScores.stdout) as { read: number; scored: number; acceptedFraction: number };
  assert.deepEqual([r2.read, r2.scored], [2000, 2000]);
  assert.ok(Math.abs(r2.acceptedFraction - 0.3) <= 0.01, `${r2.acceptedFraction}`);
});
