/**
 * The rebalance guard (src/pipeline/generation-guard.ts): a window may become a transaction only in
 * the generation it was fetched in, and not at all between `beforeRejoin` and `onRebalance`; the
 * rejoin waits for the one delivery in flight (even one that fails) and for nothing once it settled.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { GenerationGuard } from "../../src/pipeline/generation-guard.ts";
import { flush } from "../helpers/clock.ts";

function deferred<T = void>() {
  let resolve!: (v: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Start a rejoin and expose its result once it resolves (or its error once it rejects). */
function startRejoin(guard: GenerationGuard) {
  const state: { result?: { waited: boolean }; error?: unknown } = {};
  const rejoin = guard.beforeRejoin().then(
    (r) => {
      state.result = r;
    },
    (err: unknown) => {
      state.error = err;
    },
  );
  return { state, rejoin };
}

test("only the current generation is current", () => {
  const guard = new GenerationGuard();
  assert.equal(guard.generation, 0);
  assert.equal(guard.isCurrent(0), true);
  guard.onRebalance(3);
  assert.equal(guard.generation, 3);
  assert.equal(guard.isCurrent(2), false);
  assert.equal(guard.isCurrent(3), true);
  assert.equal(guard.isCurrent(4), false);
});

test("no generation is current from beforeRejoin until onRebalance", async () => {
  const guard = new GenerationGuard();
  guard.onRebalance(5);
  const { state } = startRejoin(guard);
  assert.equal(guard.isCurrent(5), false, "closed as soon as the rejoin begins");
  await flush();
  assert.deepEqual(state.result, { waited: false });
  assert.equal(guard.isCurrent(5), false, "still closed after the wait, until the rejoin completes");
  guard.onRebalance(6);
  assert.equal(guard.isCurrent(5), false);
  assert.equal(guard.isCurrent(6), true);
});

test("beforeRejoin waits for the tracked delivery, then reports that it waited", async () => {
  const guard = new GenerationGuard();
  const delivery = deferred<string>();
  const tracked = guard.track(delivery.promise);
  const { state } = startRejoin(guard);
  await flush();
  assert.equal(state.result, undefined, "pending while the delivery is");
  delivery.resolve("committed");
  assert.equal(await tracked, "committed");
  await flush();
  assert.deepEqual(state.result, { waited: true });
  assert.equal(state.error, undefined);
});

test("a failed tracked delivery does not make beforeRejoin fail", async () => {
  const guard = new GenerationGuard();
  const delivery = deferred();
  const tracked = guard.track(delivery.promise);
  const trackedOutcome = tracked.then(
    () => "resolved",
    (err: unknown) => (err as Error).message,
  );
  const { state } = startRejoin(guard);
  await flush();
  assert.equal(state.result, undefined);
  delivery.reject(new Error("fenced"));
  // track() passes the delivery's own outcome on to its caller...
  assert.equal(await trackedOutcome, "fenced");
  await flush();
  // ...while the rejoin only waited for it.
  assert.equal(state.error, undefined);
  assert.deepEqual(state.result, { waited: true });
});

test("once the tracked delivery settled, a later beforeRejoin does not wait", async () => {
  const guard = new GenerationGuard();
  const delivery = deferred();
  const tracked = guard.track(delivery.promise);
  delivery.resolve();
  await tracked;
  const { state } = startRejoin(guard);
  await flush();
  assert.deepEqual(state.result, { waited: false });
});

test("once a tracked delivery failed, a later beforeRejoin does not wait either", async () => {
  const guard = new GenerationGuard();
  const delivery = deferred();
  const tracked = guard.track(delivery.promise);
  delivery.reject(new Error("fatal"));
  await assert.rejects(tracked, /fatal/);
  const { state } = startRejoin(guard);
  await flush();
  assert.deepEqual(state.result, { waited: false });
});
