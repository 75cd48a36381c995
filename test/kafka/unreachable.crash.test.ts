/**
 * A command pointed at a broker that does not answer ends with one coded line naming the brokers
 * tried, for how long and what failed: no client stack trace, no hang. (A running filter rides an
 * outage out instead: test/pipeline/broker-restart.crash.test.ts.)
 */
import assert from "node:assert/strict";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { exited, freePort, spawnClipsieve } from "../helpers/filter.ts";

test("no broker answers: one line with the brokers, the wait and the failure, coded KAFKA_UNREACHABLE", async () => {
  const port = await freePort();
  const child = spawnClipsieve(
    ["dump", "--brokers", `127.0.0.1:${port}`, "--topic", "nowhere", "--out", join(tmpdir(), "never.jsonl")],
    { CLIPSIEVE_LOG_LEVEL: "warn" },
  );
  assert.equal(await exited(child), 2, child.output());
  const lines = child.output().trim().split("\n");
  const last = lines[lines.length - 1] ?? "";
  assert.match(
    last,
    new RegExp(
      `^clipsieve: .*no answer from Kafka brokers 127\\.0\\.0\\.1:${port} within \\d+ s: .*transport failure.* \\[KAFKA_UNREACHABLE\\]$`,
    ),
  );
  assert.ok(!/^\s+at /m.test(child.output()), `a stack trace was printed:\n${child.output()}`);
});
