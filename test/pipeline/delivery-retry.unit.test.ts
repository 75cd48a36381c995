/**
 * A window's delivery through broker trouble (src/pipeline/delivery-retry.ts): retriable errors of
 * either client are retried with a back-off of 400 ms, doubling, at most 10 s, for as long as they
 * last; a lost group membership, or a rebalance that began before or during a back-off, gives the
 * window up (false, no further try); a fatal error, or a retriable one while stopping, is thrown.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { ClipsieveError } from "../../src/common/errors.ts";
import { createLogger } from "../../src/common/logger.ts";
import { deliverWithRetry, type RetryContext, retryDelayMs } from "../../src/pipeline/delivery-retry.ts";
import { flush, ManualClock } from "../helpers/clock.ts";

const logger = createLogger("test", "silent");

/** A kafkajs-style retriable error. */
const kafkajsRetriable = () =>
  Object.assign(new Error("coordinator not available"), {
    retriable: true,
    type: "COORDINATOR_NOT_AVAILABLE",
  });
/** A librdkafka-style retriable error (-185: local timeout). */
const librdkafkaRetriable = () =>
  Object.assign(new Error("Local: Timed out"), { code: -185, isRetriable: true });
/** An error after which the transaction must be aborted (a fresh one may succeed). */
const abortable = () => Object.assign(new Error("txn requires abort"), { isTxnRequiresAbort: true });

interface Harness {
  clock: ManualClock;
  ctx: RetryContext;
  flags: { rebalanced: boolean; stopping: boolean };
  calls: () => number;
  /**
   * Run deliverWithRetry, recording its outcome in `state` instead of awaiting it; returns once the
   * first try (and the back-off it asks for, if any) has begun.
   */
  run(): Promise<{ state: { result?: boolean; error?: unknown; settled: boolean } }>;
}

/** `outcomes[i]` is what try i + 1 does: throw that error, or (undefined, or past the end) succeed. */
function harness(outcomes: (unknown | undefined)[]): Harness {
  const clock = new ManualClock();
  const flags = { rebalanced: false, stopping: false };
  let n = 0;
  const deliver = async () => {
    const err = outcomes[n];
    n++;
    if (err !== undefined) throw err;
  };
  const ctx: RetryContext = {
    logger,
    clock,
    rebalanced: () => flags.rebalanced,
    stopping: () => flags.stopping,
  };
  return {
    clock,
    ctx,
    flags,
    calls: () => n,
    async run() {
      const state: { result?: boolean; error?: unknown; settled: boolean } = { settled: false };
      deliverWithRetry(deliver, ctx).then(
        (r) => {
          state.result = r;
          state.settled = true;
        },
        (err: unknown) => {
          state.error = err;
          state.settled = true;
        },
      );
      await flush();
      return { state };
    },
  };
}

test("retryDelayMs: 400 ms before the second try, doubling, capped at 10 s", () => {
  assert.equal(retryDelayMs(1), 400);
  assert.equal(retryDelayMs(2), 800);
  assert.equal(retryDelayMs(3), 1600);
  assert.equal(retryDelayMs(4), 3200);
  assert.equal(retryDelayMs(5), 6400);
  assert.equal(retryDelayMs(6), 10_000);
  assert.equal(retryDelayMs(7), 10_000);
  assert.equal(retryDelayMs(30), 10_000);
});

test("a delivery that succeeds the first time: true, one try, no sleep", async () => {
  const h = harness([]);
  const { state } = await h.run();
  assert.deepEqual(state, { result: true, settled: true });
  assert.equal(h.calls(), 1);
  assert.deepEqual(h.clock.sleeps, []);
});

test("a retriable error is retried after the back-off, not before", async () => {
  const h = harness([kafkajsRetriable(), librdkafkaRetriable()]);
  const { state } = await h.run();
  assert.equal(h.calls(), 1);
  assert.deepEqual(h.clock.sleeps, [400]);
  await h.clock.advance(399);
  assert.equal(h.calls(), 1);
  await h.clock.advance(1);
  assert.equal(h.calls(), 2);
  assert.deepEqual(h.clock.sleeps, [400, 800]);
  await h.clock.advance(799);
  assert.equal(h.calls(), 2);
  assert.equal(state.settled, false);
  await h.clock.advance(1);
  assert.equal(h.calls(), 3);
  assert.deepEqual(state, { result: true, settled: true });
});

test("a long outage is ridden out, the back-off growing to 10 s and staying there", async () => {
  const errors = [
    kafkajsRetriable(),
    librdkafkaRetriable(),
    abortable(),
    kafkajsRetriable(),
    new ClipsieveError("KAFKA_UNREACHABLE", "no broker answers"),
    librdkafkaRetriable(),
    abortable(),
    kafkajsRetriable(),
  ];
  const h = harness(errors);
  const { state } = await h.run();
  for (let i = 0; i < 20 && !state.settled; i++) await h.clock.advance(10_000);
  assert.deepEqual(state, { result: true, settled: true });
  assert.equal(h.calls(), 9);
  assert.deepEqual(h.clock.sleeps, [400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]);
});

for (const [name, err] of [
  [
    "kafkajs REBALANCE_IN_PROGRESS",
    Object.assign(new Error("rebalancing"), { type: "REBALANCE_IN_PROGRESS" }),
  ],
  // librdkafka's REBALANCE_IN_PROGRESS, although flagged retriable.
  ["librdkafka code 27", Object.assign(new Error("rebalancing"), { code: 27, isRetriable: true })],
  [
    "kafkajs UNKNOWN_MEMBER_ID",
    Object.assign(new Error("gone"), { type: "UNKNOWN_MEMBER_ID", retriable: true }),
  ],
  ["GROUP_MEMBERSHIP_LOST", new ClipsieveError("GROUP_MEMBERSHIP_LOST", "expelled")],
] as const) {
  test(`a membership error (${name}) gives the window up: false, no retry`, async () => {
    const h = harness([err, err, err]);
    const { state } = await h.run();
    assert.deepEqual(state, { result: false, settled: true });
    assert.equal(h.calls(), 1);
    assert.deepEqual(h.clock.sleeps, []);
  });
}

test("a fatal error is thrown at once", async () => {
  const fenced = Object.assign(new Error("producer fenced"), { code: 90, isFatal: true });
  const h = harness([fenced]);
  const { state } = await h.run();
  assert.equal(state.settled, true);
  assert.equal(state.error, fenced);
  assert.equal(h.calls(), 1);
  assert.deepEqual(h.clock.sleeps, []);
});

test("an error with no retriable mark is fatal", async () => {
  const plain = new Error("something else");
  const h = harness([plain]);
  const { state } = await h.run();
  assert.equal(state.error, plain);
  assert.equal(h.calls(), 1);
});

test("a fatal error after retries is thrown, ending the retries", async () => {
  const fatal = Object.assign(new Error("authorization failed"), { isFatal: true });
  const h = harness([kafkajsRetriable(), fatal, kafkajsRetriable()]);
  const { state } = await h.run();
  await h.clock.advance(400);
  assert.equal(state.error, fatal);
  assert.equal(h.calls(), 2);
  assert.deepEqual(h.clock.sleeps, [400]);
});

test("a retriable error while the filter is stopping is thrown, not retried", async () => {
  const err = kafkajsRetriable();
  const h = harness([err]);
  h.flags.stopping = true;
  const { state } = await h.run();
  assert.equal(state.error, err);
  assert.equal(h.calls(), 1);
  assert.deepEqual(h.clock.sleeps, []);
});

test("a rebalance that began before the error: false, no back-off", async () => {
  const h = harness([abortable()]);
  h.flags.rebalanced = true;
  const { state } = await h.run();
  assert.deepEqual(state, { result: false, settled: true });
  assert.equal(h.calls(), 1);
  assert.deepEqual(h.clock.sleeps, []);
});

test("a rebalance during the back-off: false, and no further try", async () => {
  const h = harness([kafkajsRetriable(), kafkajsRetriable()]);
  const { state } = await h.run();
  await h.clock.advance(400);
  assert.equal(h.calls(), 2);
  assert.deepEqual(h.clock.sleeps, [400, 800]);
  h.flags.rebalanced = true;
  await h.clock.advance(799);
  assert.equal(state.settled, false, "the back-off is not cut short");
  await h.clock.advance(1);
  assert.deepEqual(state, { result: false, settled: true });
  assert.equal(h.calls(), 2);
  await h.clock.advance(20_000);
  assert.equal(h.calls(), 2);
});
