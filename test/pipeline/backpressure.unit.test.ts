/**
 * Backpressure (src/pipeline/backpressure.ts): the source waits for room while too many records are
 * fetched but undelivered, and only then; records a re-formed window holds (`held.waiting`) do not
 * count; a stop or a rebalance (`stillWaiting()` false) ends the wait; the group hears a heartbeat
 * about once a second meanwhile; and the undelivered count is reported on every change.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { Backpressure } from "../../src/pipeline/backpressure.ts";
import { flush, ManualClock } from "../helpers/clock.ts";

/** Start a wait and expose whether it has ended and how many heartbeats it sent. */
function startWait(bp: Backpressure, stillWaiting: () => boolean = () => true) {
  const state = { done: false, heartbeats: 0 };
  const wait = bp
    .waitForRoom(stillWaiting, async () => {
      state.heartbeats++;
    })
    .then(() => {
      state.done = true;
    });
  return { state, wait };
}

test("waitForRoom returns at once while the undelivered count is below the limit", async () => {
  const clock = new ManualClock();
  const bp = new Backpressure(10, clock);
  bp.taken(9);
  const { state } = startWait(bp);
  await flush();
  assert.equal(state.done, true);
  assert.equal(state.heartbeats, 0);
  assert.equal(clock.timers, 0);
});

test("when full, the wait lasts until released() frees room, and not before", async () => {
  const clock = new ManualClock();
  const bp = new Backpressure(10, clock);
  bp.taken(15);
  assert.equal(bp.full, true);
  const { state } = startWait(bp);
  await flush();
  assert.equal(state.done, false);

  // 13 undelivered: still full, so the wait goes on after the wake-up.
  bp.released(2);
  await flush();
  assert.equal(state.done, false);

  // 9 undelivered: room.
  bp.released(4);
  await flush();
  assert.equal(state.done, true);
  assert.equal(bp.undelivered, 9);
});

test("records held by the window re-former do not count towards the limit", async () => {
  const clock = new ManualClock();
  const bp = new Backpressure(10, clock);
  bp.taken(12);
  bp.held.waiting = 5; // 12 - 5 = 7 counted
  assert.equal(bp.full, false);
  const { state } = startWait(bp);
  await flush();
  assert.equal(state.done, true);
});

test("a wait already under way ends once held records make room (at the 1 s re-check)", async () => {
  const clock = new ManualClock();
  const bp = new Backpressure(10, clock);
  bp.taken(12);
  const { state } = startWait(bp);
  await flush();
  assert.equal(state.done, false);
  bp.held.waiting = 5;
  await clock.advance(999);
  assert.equal(state.done, false);
  await clock.advance(1);
  assert.equal(state.done, true);
});

test("stillWaiting() turning false ends the wait on wake(), though still full", async () => {
  const clock = new ManualClock();
  const bp = new Backpressure(10, clock);
  bp.taken(20);
  let waiting = true;
  const { state } = startWait(bp, () => waiting);
  await flush();
  assert.equal(state.done, false);
  waiting = false;
  bp.wake();
  await flush();
  assert.equal(state.done, true);
  assert.equal(bp.full, true);
});

test("stillWaiting() turning false ends the wait at the 1 s re-check without a wake()", async () => {
  const clock = new ManualClock();
  const bp = new Backpressure(10, clock);
  bp.taken(20);
  let waiting = true;
  const { state } = startWait(bp, () => waiting);
  await flush();
  waiting = false;
  await clock.advance(999);
  assert.equal(state.done, false);
  await clock.advance(1);
  assert.equal(state.done, true);
});

test("a heartbeat goes out about once a second while waiting", async () => {
  const clock = new ManualClock();
  const bp = new Backpressure(10, clock);
  bp.taken(10);
  const { state } = startWait(bp);
  await flush();
  assert.equal(state.heartbeats, 0);
  await clock.advance(3000);
  assert.equal(state.heartbeats, 3);
  assert.equal(state.done, false);
  bp.released(10);
  await flush();
  assert.equal(state.done, true);
});

test("onChange hears the undelivered count after every take and release", () => {
  const clock = new ManualClock();
  const heard: number[] = [];
  const bp = new Backpressure(100, clock, (n) => heard.push(n));
  bp.taken(3);
  bp.taken(4);
  bp.released(5);
  bp.taken(10);
  assert.deepEqual(heard, [3, 7, 2, 12]);
  assert.equal(bp.undelivered, 12);
});
