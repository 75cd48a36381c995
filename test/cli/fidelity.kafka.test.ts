/**
 * `clipsieve fidelity --input` on a topic of the real broker: it reads the first --limit records
 * (bad ones are read but not scored), selects them offline and as the filter would, and reports the
 * agreement. Expected figures follow from the settings, not from the code: with b at least the sample
 * every offline draw is the same single batch, so two offline selections agree exactly (floor 1);
 * with one window holding the whole sample and that same batch, the filter scores every record as
 * the offline selection does, so the exact cut-offs select the same records; with small windows and
 * no bank it does not.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { main } from "../../src/cli/main.ts";
import { createSimulation } from "../../src/simulate/generator.ts";
import { produceSimulation } from "../../src/simulate/producer.ts";
import { createTopics, testBrokers, testClient, testKafka, uniqueName } from "../helpers/kafka.ts";

const N = 2048;

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const printed: string[] = [];
  const errors: string[] = [];
  const log = console.log;
  const error = console.error;
  const err = process.stderr.write;
  console.log = (...parts: unknown[]) => printed.push(parts.join(" "));
  console.error = (...parts: unknown[]) => errors.push(parts.join(" "));
  process.stderr.write = (() => true) as typeof process.stderr.write;
  try {
    const code = await main(["node", "clipsieve", ...args]);
    return { code, stdout: printed.join("\n"), stderr: errors.join("\n") };
  } finally {
    console.log = log;
    console.error = error;
    process.stderr.write = err;
  }
}

test("fidelity --input compares a topic's streaming selection with its offline one", async () => {
  const topic = uniqueName("fidelity-input");
  await createTopics([topic], 1);
  const sim = createSimulation({ count: N, dim: 16, seed: 9, order: "bursty", meanRunLength: 100 });
  await produceSimulation(sim, { kafka: testClient(), topic, format: "json" });
  // Records past the limit, one of them bad: not read.
  const producer = testKafka().producer();
  await producer.connect();
  await producer.send({ topic, messages: [{ value: "{not json" }, { value: "{}" }] });
  await producer.disconnect();

  const common = [
    "fidelity",
    "--input",
    topic,
    "--brokers",
    testBrokers().join(","),
    "--dim",
    "16",
    "--keep",
    "s_clip_loss=0.3",
    "--warmup",
    "0",
    "--tau",
    "0.01",
    "--json",
  ];
  const whole = await cli([
    ...common,
    "--limit",
    String(N),
    "--window-size",
    String(N),
    "--bank-size",
    "0",
    "--batch-size",
    String(N),
    "--draws",
    "1",
    "--offline-draws",
    "3",
  ]);
  assert.equal(whole.code, 0);
  const a = JSON.parse(whole.stdout);
  assert.equal(a.read, N);
  assert.equal(a.scored, N);
  assert.equal(a.offline.accepted, Math.floor(0.3 * N));
  assert.equal(a.noiseFloor, 1);
  assert.equal(a.streaming.windows, 1);
  // Every record's streamed score is its offline score (up to the order of float sums), so with
  // exact cut-offs the selections are the same; the running sketch's cut-off may move a record at
  // the margin (its rank error, well under 1 % here).
  assert.ok(a.agreement.streamNoise < 1e-6, `spread ${a.agreement.streamNoise}`);
  assert.equal(a.agreement.exactCutJaccard, 1);
  assert.ok(a.agreement.jaccard >= 0.99, `Jaccard ${a.agreement.jaccard}`);

  // With --dedup on both sides (after the policy; on the offline selection in stream order), the
  // copies go from both selections alike: fewer accepted, the same agreement.
  const deduped = await cli([
    ...common,
    ...["--limit", String(N), "--window-size", String(N), "--bank-size", "0", "--batch-size", String(N)],
    ...["--draws", "1", "--offline-draws", "3", "--dedup"],
  ]);
  assert.equal(deduped.code, 0, deduped.stderr);
  const d = JSON.parse(deduped.stdout);
  assert.ok(d.offline.accepted < a.offline.accepted, `${d.offline.accepted} of ${a.offline.accepted} kept`);
  assert.ok(d.streaming.accepted < a.streaming.accepted);
  assert.ok(d.agreement.jaccard >= 0.99, `Jaccard ${d.agreement.jaccard}`);

  const small = await cli([
    ...common,
    "--limit",
    String(N + 2),
    "--window-size",
    "128",
    "--bank-size",
    "0",
    "--batch-size",
    String(N + 2),
    "--draws",
    "1",
  ]);
  assert.equal(small.code, 0);
  const b = JSON.parse(small.stdout);
  assert.equal(b.read, N + 2);
  assert.equal(b.scored, N, "the two bad records are read, not scored");
  assert.equal(b.noiseFloor, 1);
  assert.ok(b.agreement.jaccard < 0.95, `windows of 128 without a bank: Jaccard ${b.agreement.jaccard}`);
  assert.ok(b.agreement.streamNoise > 0);
  assert.ok(b.agreement.disagreements > 0);

  // The report as text: the figures of the JSON, worded.
  const text = await cli([
    ...common.filter((a) => a !== "--json"),
    "--limit",
    String(N),
    "--window-size",
    "512",
    "--bank-size",
    "1536",
    "--batch-size",
    "1024",
    "--normaliser",
    "pool",
  ]);
  assert.equal(text.code, 0);
  assert.match(text.stdout, new RegExp(`${topic}: 2,048 records read, 2,048 scored`));
  assert.match(text.stdout, /the first also taking the bank's 1536; pool normaliser scaled to b = 1024/);
  assert.match(text.stdout, /Noise floor \(offline against offline, another draw seed\): Jaccard \d\.\d{3}/);
  assert.match(text.stdout, /Jaccard streaming against offline: \d\.\d{3} \(gap to the floor -?\d\.\d{3}\)/);
});

test("fidelity --input without a policy, brokers or decodable records says what is missing", async () => {
  const noPolicy = await cli(["fidelity", "--input", "some-topic", "--brokers", testBrokers().join(",")]);
  assert.equal(noPolicy.code, 2);
  assert.match(noPolicy.stderr, /needs the policy to compare: --keep/);
  const noBrokers = await cli(["fidelity", "--input", "some-topic", "--keep", "s_clip_loss=0.3"]);
  assert.equal(noBrokers.code, 2);
  assert.match(noBrokers.stderr, /--input needs --brokers/);
  const badOnly = uniqueName("fidelity-bad");
  await createTopics([badOnly], 1);
  const producer = testKafka().producer();
  await producer.connect();
  await producer.send({ topic: badOnly, messages: [{ value: "{not json" }, { value: "{}" }] });
  await producer.disconnect();
  const nothing = await cli([
    "fidelity",
    "--input",
    badOnly,
    "--brokers",
    testBrokers().join(","),
    "--keep",
    "s_clip_loss=0.3",
    "--limit",
    "2",
  ]);
  assert.equal(nothing.code, 2);
  assert.match(nothing.stderr, /none of the 2 records read could be decoded/);
});
