/**
 * `clipsieve demo` runs to its summary: on the test broker (its topics are deleted afterwards), and on
 * a local broker of its own, which must be gone when the command returns.
 */
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { test } from "node:test";
import { brokerAnswers } from "../../src/kafka/local-broker.ts";
import { exited, spawnClipsieve } from "../helpers/filter.ts";
import { testBrokers, testKafka } from "../helpers/kafka.ts";

const SMALL = [
  "--count",
  "1500",
  "--dim",
  "32",
  "--window-size",
  "500",
  "--bank-size",
  "500",
  "--batch-size",
  "1024",
];

/** The per-kind rows of the summary: kind -> [records, accepted after dedup, accepted by the policy]. */
function perKind(output: string): Map<string, [number, number, number]> {
  const rows = new Map<string, [number, number, number]>();
  const section = output.slice(output.indexOf("Per labelled kind"));
  const n = (s: string) => Number(s.replaceAll(",", ""));
  for (const m of section.matchAll(
    /^(aligned|off_target|mismatched|boilerplate|duplicate)\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)/gm,
  )) {
    rows.set(m[1], [n(m[2]), n(m[4]), n(m[3])]);
  }
  return rows;
}

test("demo on a given broker prints the summary and deletes its topics", async () => {
  const child = spawnClipsieve(["demo", "--brokers", testBrokers().join(","), ...SMALL], {
    CLIPSIEVE_LOG_LEVEL: "warn",
  });
  assert.equal(await exited(child), 0, child.output());
  const out = child.output();
  assert.match(out, /clipsieve demo: 1,500 simulated image-text records \(D=32/);
  assert.match(out, /policy --keep s_clip_loss=0\.3 --then normsim_inf=0\.2/);
  assert.match(out, /^accepted\s+passed\s+[\d,]+/m);
  assert.match(out, /^rejected\s+below_keep_quantile\s+[\d,]+/m);
  assert.match(out, /Throughput: [\d,]+ records\/s/);
  assert.match(out, /Latency, produced -> decision delivered: p50 [\d.]+ s, p99 [\d.]+ s/);
  const kinds = perKind(out);
  assert.deepEqual([...kinds.keys()].sort(), [
    "aligned",
    "boilerplate",
    "duplicate",
    "mismatched",
    "off_target",
  ]);
  assert.equal(
    [...kinds.values()].reduce((a, [n]) => a + n, 0),
    1500,
  );
  const rate = (k: string) =>
    (kinds.get(k) as [number, number, number])[1] / (kinds.get(k) as [number, number, number])[0];
  // What the demo is for: good pairs kept, mismatches, boilerplate and off-target images rejected.
  assert.ok(rate("aligned") > 0.4, `aligned accepted ${rate("aligned")}`);
  assert.equal(rate("mismatched"), 0);
  assert.ok(rate("boilerplate") < 0.05, `boilerplate accepted ${rate("boilerplate")}`);
  assert.ok(rate("off_target") < 0.05, `off_target accepted ${rate("off_target")}`);
  // The dedup step: of the near-copies the policy accepted, most are rejected as near_duplicate.
  const [, dupAfter, dupBefore] = kinds.get("duplicate") as [number, number, number];
  assert.ok(dupBefore > 0 && dupAfter < dupBefore / 2, `duplicates accepted ${dupBefore} -> ${dupAfter}`);
  assert.match(out, /^rejected\s+near_duplicate\s+[\d,]+/m);

  const prefix = /Topics (clipsieve-demo-[0-9a-f]+)\.\* deleted/.exec(out)?.[1];
  assert.ok(prefix, out);
  const admin = testKafka().admin();
  await admin.connect();
  try {
    const left = (await admin.listTopics()).filter((t) => t.startsWith(prefix));
    assert.deepEqual(left, []);
  } finally {
    await admin.disconnect();
  }
});

test("demo without --brokers starts a local broker and leaves nothing behind", async () => {
  const child = spawnClipsieve(["demo", ...SMALL, "--count", "600"], { CLIPSIEVE_LOG_LEVEL: "warn" });
  assert.equal(await exited(child), 0, child.output());
  const out = child.output();
  const port = Number(/broker: 127\.0\.0\.1:(\d+) \(local/.exec(out)?.[1]);
  assert.ok(port > 0, out);
  assert.match(out, /Per labelled kind/);
  assert.match(out, /The local broker is stopped and its folder removed\./);
  assert.equal(await brokerAnswers("127.0.0.1", port, 1000), false, "the local broker still answers");
  const prefix = /topics: (clipsieve-demo-[0-9a-f]+)\./.exec(out)?.[1];
  assert.ok(prefix, out);
  // Its work folder and the broker's state folder are both named after the run.
  assert.deepEqual(
    readdirSync(tmpdir()).filter((f) => f.startsWith(prefix)),
    [],
  );
});
