/**
 * Where windows end (src/window/cut.ts): a window holds `windowSize` records, and while the bank is
 * filling the first windows take `bankSize` extra records between them (bank priming), counted by the
 * records cut so far, bad ones included, so the cut depends on the input alone. The live operator
 * also cuts a window `lingerMs` after its first record (never before), a size cut cancels that timer,
 * and the open window is emitted when the input completes.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Subject } from "rxjs";
import { cutWindows, type FormedWindow, WindowCut } from "../../src/window/cut.ts";
import { ManualClock } from "../helpers/clock.ts";

interface Item {
  n: number;
  good: boolean;
}

const items = (from: number, count: number, good = true): Item[] =>
  Array.from({ length: count }, (_, i) => ({ n: from + i, good }));

/** Feed `input` through `cut` and return the sizes of the windows it completed. */
function sizes(cut: WindowCut<Item>, input: Item[]): number[] {
  const out: number[] = [];
  for (const item of input) {
    const w = cut.add(item);
    if (w) out.push(w.length);
  }
  return out;
}

describe("WindowCut", () => {
  it("primes the bank: with windowSize 4 and bankSize 6 the first window has 10 records, then 4", () => {
    const cut = new WindowCut<Item>({ windowSize: 4, bankSize: 6 });
    assert.equal(cut.limit, 10);
    const windows: Item[][] = [];
    const pending: number[] = [];
    for (const item of items(0, 18)) {
      const w = cut.add(item);
      if (w) windows.push(w);
      pending.push(cut.pending);
    }
    assert.deepEqual(pending, [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 3, 0, 1, 2, 3, 0]);
    assert.deepEqual(
      windows.map((w) => w.map((x) => x.n)),
      [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [10, 11, 12, 13],
        [14, 15, 16, 17],
      ],
    );
    assert.equal(cut.limit, 4);
    assert.equal(cut.pending, 0);
  });

  it("counts bad records towards priming: a first window with bad records is no longer", () => {
    const cut = new WindowCut<Item>({ windowSize: 4, bankSize: 6 });
    const input = [...items(0, 3, false), ...items(3, 7), ...items(10, 2, false), ...items(12, 6)];
    assert.deepEqual(sizes(cut, input), [10, 4, 4]);
  });

  it("counts the records of an early cut: the next window takes the bank rows still unpromised", () => {
    const cut = new WindowCut<Item>({ windowSize: 4, bankSize: 6 });
    assert.deepEqual(sizes(cut, items(0, 3)), []);
    assert.deepEqual(
      cut.cut()?.map((x) => x.n),
      [0, 1, 2],
    ); // a linger cut or the end of input
    assert.equal(cut.limit, 7, "4 + the 3 bank rows not yet promised");
    assert.deepEqual(sizes(cut, items(3, 1)), []);
    assert.equal(cut.cut()?.length, 1);
    assert.equal(cut.limit, 6);
    assert.deepEqual(sizes(cut, items(4, 14)), [6, 4, 4]);
  });

  it("primeBank false: every window has windowSize records", () => {
    const cut = new WindowCut<Item>({ windowSize: 4, bankSize: 6, primeBank: false });
    assert.equal(cut.limit, 4);
    assert.deepEqual(sizes(cut, items(0, 12)), [4, 4, 4]);
  });

  it("bankSize 0: nothing to prime", () => {
    const cut = new WindowCut<Item>({ windowSize: 3, bankSize: 0 });
    assert.deepEqual(sizes(cut, items(0, 9)), [3, 3, 3]);
  });

  it("cut() of an empty window is undefined and does not count towards priming", () => {
    const cut = new WindowCut<Item>({ windowSize: 4, bankSize: 6 });
    assert.equal(cut.cut(), undefined);
    assert.equal(cut.limit, 10);
    assert.deepEqual(sizes(cut, items(0, 10)), [10]);
    assert.equal(cut.cut(), undefined);
  });
});

/** The operator on a manual clock, its emissions collected. */
function live(settings: { windowSize: number; bankSize: number; lingerMs: number }) {
  const clock = new ManualClock();
  const input = new Subject<number>();
  const windows: number[][] = [];
  let completed = false;
  const subscription = input.pipe(cutWindows<number>(settings, clock)).subscribe({
    next: (w: FormedWindow<number>) => windows.push(w.items),
    complete: () => (completed = true),
  });
  return { clock, input, windows, subscription, completed: () => completed };
}

describe("cutWindows", () => {
  it("cuts a partial window lingerMs after its first record, not before", async () => {
    const h = live({ windowSize: 3, bankSize: 0, lingerMs: 100 });
    h.input.next(1);
    await h.clock.advance(60);
    h.input.next(2); // a later record does not restart the linger
    await h.clock.advance(39);
    assert.deepEqual(h.windows, []);
    await h.clock.advance(1);
    assert.deepEqual(h.windows, [[1, 2]]);
    assert.equal(h.clock.timers, 0);
  });

  it("starts the next window's linger at its own first record", async () => {
    const h = live({ windowSize: 3, bankSize: 0, lingerMs: 100 });
    h.input.next(1);
    await h.clock.advance(100);
    await h.clock.advance(500); // nothing open: no timer, no empty window
    assert.deepEqual(h.windows, [[1]]);
    h.input.next(2);
    await h.clock.advance(99);
    assert.deepEqual(h.windows, [[1]]);
    await h.clock.advance(1);
    assert.deepEqual(h.windows, [[1], [2]]);
  });

  it("a size cut clears the linger timer: no empty or extra window later", async () => {
    const h = live({ windowSize: 2, bankSize: 0, lingerMs: 100 });
    h.input.next(1);
    await h.clock.advance(50);
    h.input.next(2);
    assert.deepEqual(h.windows, [[1, 2]]);
    assert.equal(h.clock.timers, 0);
    h.input.next(3);
    await h.clock.advance(50); // 100 ms after record 1: its timer must not cut record 3's window
    assert.deepEqual(h.windows, [[1, 2]]);
    await h.clock.advance(50);
    assert.deepEqual(h.windows, [[1, 2], [3]]);
    await h.clock.advance(1000);
    assert.deepEqual(h.windows, [[1, 2], [3]]);
  });

  it("primes the bank, and a linger cut counts towards the priming", async () => {
    const h = live({ windowSize: 2, bankSize: 3, lingerMs: 100 });
    h.input.next(1);
    await h.clock.advance(100);
    assert.deepEqual(h.windows, [[1]]);
    for (const n of [2, 3, 4, 5, 6, 7]) h.input.next(n);
    assert.deepEqual(h.windows, [[1], [2, 3, 4, 5], [6, 7]]);
  });

  it("emits the open window when the input completes, and no empty one", async () => {
    const h = live({ windowSize: 4, bankSize: 0, lingerMs: 100 });
    h.input.next(1);
    h.input.next(2);
    h.input.complete();
    assert.deepEqual(h.windows, [[1, 2]]);
    assert.equal(h.completed(), true);
    assert.equal(h.clock.timers, 0);
    await h.clock.advance(1000);
    assert.deepEqual(h.windows, [[1, 2]]);

    const empty = live({ windowSize: 4, bankSize: 0, lingerMs: 100 });
    empty.input.complete();
    assert.deepEqual(empty.windows, []);
    assert.equal(empty.completed(), true);
  });

  it("unsubscribing clears the linger timer", async () => {
    const h = live({ windowSize: 4, bankSize: 0, lingerMs: 100 });
    h.input.next(1);
    assert.equal(h.clock.timers, 1);
    h.subscription.unsubscribe();
    assert.equal(h.clock.timers, 0);
    await h.clock.advance(1000);
    assert.deepEqual(h.windows, []);
  });
});
