/**
 * The exactly-once check shared by the crash and broker-restart tests: write a stream of synthetic
 * records, then read every output topic back (read_committed, with the tests' own kafkajs client,
 * independent of the code under test) and require each input record exactly once.
 */
import assert from "node:assert/strict";
import type { Kafka } from "kafkajs";
import { HEADER } from "../../src/sink/outputs.ts";
import type { FilterTopics } from "./filter.ts";
import { readAll } from "./kafka.ts";
import { jsonRecord, syntheticPairs } from "./records.ts";

export const DIM = 16;

export async function produce(
  kafka: Kafka,
  topic: string,
  n: number,
  partitions: number,
  seed: number,
  /** Sends records [from, to) and resolves; called until the stream's n records are all sent. */
  pace?: (send: (from: number, to: number) => Promise<void>) => Promise<void>,
): Promise<void> {
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const pairs = syntheticPairs(n, DIM, seed);
  const send = async (from: number, to: number) => {
    for (let i = from; i < Math.min(to, n); i += 500) {
      await producer.send({
        topic,
        messages: pairs
          .slice(i, Math.min(i + 500, to, n))
          .map((p, j) => ({ key: p.uid, value: jsonRecord(p), partition: (i + j) % partitions })),
      });
    }
  };
  try {
    if (pace) await pace(send);
    else await send(0, n);
  } finally {
    await producer.disconnect();
  }
}

export async function assertExactlyOnce(
  kafka: Kafka,
  t: FilterTopics,
  n: number,
  log: () => string,
): Promise<void> {
  const scores = await readAll(kafka, t.scores, { expected: n, timeoutMs: 120_000 });
  const [accepted, rejected, dead] = await Promise.all(
    [t.accepted, t.rejected, t.deadLetter].map((topic) =>
      readAll(kafka, topic, { idleMs: 1500, timeoutMs: 30_000 }),
    ),
  );
  const seen = new Map<string, number>();
  for (const m of [...accepted, ...rejected, ...dead]) {
    const src = m.headers[HEADER.source];
    seen.set(src, (seen.get(src) ?? 0) + 1);
  }
  const doubled = [...seen].filter(([, c]) => c > 1);
  // On failure, say what the group went through (joins, rebalances, aborted windows, expulsions).
  const groupEvents = () =>
    log()
      .split("\n")
      .filter((l) =>
        /rebalanc|joined consumer group|aborted|not aware of this member|delivery failed/.test(l),
      )
      .slice(-40)
      .join("\n");
  assert.deepEqual(doubled, [], `records delivered twice\n${doubled.length ? groupEvents() : ""}`);
  assert.equal(seen.size, n, `delivered ${seen.size} of ${n}\n${log().slice(-3000)}`);
  const scoreSources = new Set(
    scores.map(
      (m) =>
        JSON.parse(m.value?.toString() ?? "{}").source.offset +
        "/" +
        JSON.parse(m.value?.toString() ?? "{}").source.partition,
    ),
  );
  assert.equal(scores.length, n, "one score record per input");
  assert.equal(scoreSources.size, n);
}
