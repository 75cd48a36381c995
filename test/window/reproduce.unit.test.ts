/**
 * `replay --reproduce` re-forms the windows an earlier run recorded (src/window/reproduce.ts): records
 * arriving in partition order wait until every member of the next recorded window has arrived, windows
 * come out in recorded order (planned_at, then window_id) with their recorded id and seed, bank rows are
 * rebuilt from the embeddings of earlier windows' records (a bank row never seen is an error), and
 * records no manifest holds are strays, cut into windows of their own.
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Subject } from "rxjs";
import type { Logger } from "../../src/common/logger.ts";
import type { DecodedRecord, SourceRef } from "../../src/common/record.ts";
import type { FormedWindow } from "../../src/window/cut.ts";
import { encodeRuns } from "../../src/window/ranges.ts";
import { ReproduceWindower, reformWindows, scoringDifferences } from "../../src/window/reproduce.ts";
import type { WindowManifest } from "../../src/window/window.ts";
import { ManualClock } from "../helpers/clock.ts";

const DIM = 2;
const ref = (partition: number, offset: number): SourceRef => ({
  topic: "in",
  partition,
  offset: String(offset),
});

/** Record p/o: image [p, o], text [-p, -o]; a failed record has no embeddings. */
function record(partition: number, offset: number, failed = false): DecodedRecord {
  const base = { source: ref(partition, offset), key: null, value: null, headers: {}, timestamp: "0" };
  if (failed) return { ...base, failure: { code: "EMBEDDING_ZERO", stage: "decode", message: "zero" } };
  return {
    ...base,
    imageEmbedding: new Float32Array([partition, offset]),
    textEmbedding: new Float32Array([-partition, -offset]),
  };
}

function manifest(
  id: string,
  plannedAt: number,
  seed: number,
  parts: { members: SourceRef[]; failed?: SourceRef[]; bank?: SourceRef[] },
): WindowManifest {
  return {
    window_id: id,
    planned_at: plannedAt,
    seed,
    draws: 2,
    batch_size: 4,
    tau: 0.01,
    dim: DIM,
    members: encodeRuns(parts.members),
    failed: encodeRuns(parts.failed ?? []),
    bank: encodeRuns(parts.bank ?? []),
  };
}

/**
 * Three recorded windows over partitions 0 and 1:
 *   w-b (planned 100): members 0/0, 1/0, 0/1; failed 1/1; no bank
 *   w-a (planned 200): members 0/2, 1/2; bank 0/0, 1/0 (from w-b)
 *   w-c (planned 200, after w-a by id): members 0/3; bank 1/0 (from w-b), 0/2 (from w-a)
 * Given out of order.
 */
function manifests(): WindowManifest[] {
  const wb = manifest("w-b", 100, 11, { members: [ref(0, 0), ref(1, 0), ref(0, 1)], failed: [ref(1, 1)] });
  const wa = manifest("w-a", 200, 22, { members: [ref(0, 2), ref(1, 2)], bank: [ref(0, 0), ref(1, 0)] });
  const wc = manifest("w-c", 200, 33, { members: [ref(0, 3)], bank: [ref(1, 0), ref(0, 2)] });
  return [wc, wb, wa];
}

const at = (r: SourceRef) => `${r.partition}/${r.offset}`;
const coords = (records: readonly DecodedRecord[]) => records.map((r) => at(r.source));

describe("ReproduceWindower", () => {
  it("holds records until the next recorded window is complete, then forms windows in recorded order", () => {
    const w = new ReproduceWindower(manifests());
    assert.equal(w.remaining, 3);
    const steps: string[][] = [];
    // Partition 1 arrives whole before partition 0.
    for (const r of [record(1, 0), record(1, 1, true), record(1, 2), record(0, 0), record(0, 1)]) {
      steps.push(w.add([r]).map((x) => x.recorded.id));
    }
    assert.deepEqual(steps, [[], [], [], [], ["w-b"]]);
    assert.equal(w.remaining, 2);
    assert.deepEqual(
      w.add([record(0, 2)]).map((x) => x.recorded.id),
      ["w-a"],
    );
    assert.deepEqual(
      w.add([record(0, 3)]).map((x) => x.recorded.id),
      ["w-c"],
    );
    assert.equal(w.remaining, 0);
  });

  it("forms each window of its members then its failed records, with the recorded id and seed", () => {
    const w = new ReproduceWindower(manifests());
    const all = [record(0, 3), record(0, 2), record(1, 2), record(1, 1, true), record(0, 1), record(1, 0)];
    assert.deepEqual(w.add(all), []);
    const first = record(0, 0);
    const out = w.add([first]);
    assert.deepEqual(
      out.map((x) => [x.recorded.id, x.recorded.seed, coords(x.records)]),
      [
        ["w-b", 11, ["0/0", "1/0", "0/1", "1/1"]],
        ["w-a", 22, ["0/2", "1/2"]],
        ["w-c", 33, ["0/3"]],
      ],
    );
    assert.equal(out[0].records[0], first, "the records themselves, not copies");
    assert.equal(out[2].records[0], all[0]);
  });

  it("rebuilds bank rows from the embeddings of earlier windows' records, in recorded bank order", () => {
    const w = new ReproduceWindower(manifests());
    const out = w.add([
      record(0, 0),
      record(1, 0),
      record(0, 1),
      record(1, 1, true),
      record(0, 2),
      record(1, 2),
      record(0, 3),
    ]);
    const banks = out.map((x) => ({
      image: [...x.recorded.bank.image],
      text: [...x.recorded.bank.text],
      refs: x.recorded.bank.refs.map(at),
    }));
    assert.deepEqual(banks, [
      { image: [], text: [], refs: [] },
      { image: [0, 0, 1, 0], text: [-0, -0, -1, -0], refs: ["0/0", "1/0"] },
      { image: [1, 0, 0, 2], text: [-1, -0, -0, -2], refs: ["1/0", "0/2"] },
    ]);
  });

  it("throws when a recorded bank row was never seen", () => {
    const w = new ReproduceWindower([manifest("w-x", 1, 1, { members: [ref(0, 0)], bank: [ref(9, 9)] })]);
    assert.throws(() => w.add([record(0, 0)]), /recorded bank row in\/9\/9 was never seen/);
  });

  it("knows which records a recorded window holds (members and failed, not bank-only rows)", () => {
    const w = new ReproduceWindower(manifests());
    assert.equal(w.holds(ref(0, 0)), true);
    assert.equal(w.holds(ref(1, 1)), true, "a failed record");
    assert.equal(w.holds(ref(0, 4)), false);
    assert.equal(w.holds({ topic: "other", partition: 0, offset: "0" }), false);
    const bankOnly = new ReproduceWindower([
      manifest("w-y", 1, 1, { members: [ref(0, 5)], bank: [ref(0, 4)] }),
    ]);
    assert.equal(bankOnly.holds(ref(0, 4)), false);
  });
});

interface Item {
  record: DecodedRecord;
}

function harness() {
  const warnings: string[] = [];
  const logger = { warn: (_obj: unknown, msg: string) => warnings.push(msg) } as unknown as Logger;
  const held = { waiting: 0 };
  const input = new Subject<Item>();
  const out: FormedWindow<Item>[] = [];
  let error: unknown;
  let completed = false;
  const clock = new ManualClock();
  const context = { logger, held, strayCut: { windowSize: 2, lingerMs: 1000 }, clock };
  input.pipe(reformWindows(manifests(), (t: Item) => t.record, context)).subscribe({
    next: (w) => out.push(w),
    error: (err) => (error = err),
    complete: () => (completed = true),
  });
  const windows = () =>
    out.map((w) => ({ id: w.recorded?.id, records: coords(w.items.map((t) => t.record)) }));
  return { input, out, windows, warnings, held, clock, error: () => error, completed: () => completed };
}

describe("reformWindows", () => {
  it("emits the recorded windows in order, as the items that came in, and counts what it holds", () => {
    const h = harness();
    const items = new Map<string, Item>();
    const send = (p: number, o: number, failed = false) => {
      const item = { record: record(p, o, failed) };
      items.set(`${p}/${o}`, item);
      h.input.next(item);
    };
    send(1, 0);
    send(1, 1, true);
    send(1, 2);
    assert.equal(h.held.waiting, 3);
    send(0, 0);
    send(0, 1);
    assert.deepEqual(h.windows(), [{ id: "w-b", records: ["0/0", "1/0", "0/1", "1/1"] }]);
    assert.equal(h.held.waiting, 1, "1/2 waits for w-a");
    assert.equal(h.out[0].items[0], items.get("0/0"));
    send(0, 2);
    send(0, 3);
    assert.deepEqual(
      h.windows().map((w) => w.id),
      ["w-b", "w-a", "w-c"],
    );
    assert.equal(h.held.waiting, 0);
    h.input.complete();
    assert.equal(h.completed(), true);
    assert.deepEqual(h.warnings, []);
  });

  it("holds strays until the recorded windows are formed, then emits them without a recording", () => {
    const h = harness();
    h.input.next({ record: record(5, 0) }); // a stray before the recorded windows are done
    assert.equal(h.held.waiting, 1);
    for (const [p, o, f] of [
      [1, 0],
      [1, 1, true],
      [1, 2],
      [0, 0],
      [0, 1],
      [0, 2],
      [0, 3],
    ] as [number, number, boolean?][])
      h.input.next({ record: record(p, o, f) });
    assert.deepEqual(
      h.windows().map((w) => w.id),
      ["w-b", "w-a", "w-c"],
    );
    h.input.next({ record: record(5, 1) });
    assert.deepEqual(h.windows().slice(3), [{ id: undefined, records: ["5/0", "5/1"] }]);
    assert.equal(h.held.waiting, 0);
    h.input.complete();
    assert.equal(h.out.length, 4);
    assert.equal(h.completed(), true);
  });

  it("cuts the strays after the recorded windows as the filter cuts: by size, or by linger time", async () => {
    const h = harness();
    for (const [p, o, f] of [
      [1, 0],
      [1, 1, true],
      [1, 2],
      [0, 0],
      [0, 1],
      [0, 2],
      [0, 3],
    ] as [number, number, boolean?][])
      h.input.next({ record: record(p, o, f) });
    for (const o of [0, 1, 2]) h.input.next({ record: record(5, o) });
    // windowSize 2: one window of two at once, not a window per stray.
    assert.deepEqual(h.windows().slice(3), [{ id: undefined, records: ["5/0", "5/1"] }]);
    await h.clock.advance(999);
    assert.equal(h.out.length, 4, "5/2 lingers");
    await h.clock.advance(1);
    assert.deepEqual(h.windows().slice(4), [{ id: undefined, records: ["5/2"] }]);
    h.input.complete();
    assert.equal(h.out.length, 5);
  });

  it("on completion, emits the strays left and warns about recorded windows left incomplete", () => {
    const h = harness();
    h.input.next({ record: record(5, 0) });
    h.input.next({ record: record(0, 0) }); // w-b never completes
    h.input.complete();
    assert.deepEqual(h.windows(), [{ id: undefined, records: ["5/0"] }]);
    assert.equal(h.held.waiting, 0);
    assert.equal(h.completed(), true);
    assert.deepEqual(h.warnings, [
      "recorded windows left incomplete: their records were not all read",
      "records outside the recorded windows were cut into new windows",
    ]);
  });

  it("errors the stream when a recorded bank row was never seen", () => {
    const warnings: string[] = [];
    const logger = { warn: (_o: unknown, m: string) => warnings.push(m) } as unknown as Logger;
    const input = new Subject<Item>();
    let error: unknown;
    input
      .pipe(
        reformWindows(
          [manifest("w-x", 1, 1, { members: [ref(0, 0)], bank: [ref(9, 9)] })],
          (t: Item) => t.record,
          { logger, held: { waiting: 0 }, strayCut: { windowSize: 2, lingerMs: 1000 } },
        ),
      )
      .subscribe({ error: (err) => (error = err) });
    input.next({ record: record(0, 0) });
    assert.match(String(error), /never seen/);
  });
});

describe("scoringDifferences", () => {
  const manifest = (over: Partial<WindowManifest>): WindowManifest =>
    ({ draws: 5, batch_size: 8192, tau: 0.01, ...over }) as WindowManifest;

  it("is empty when the replay scores as the recorded run did", () => {
    assert.deepEqual(
      scoringDifferences([manifest({}), manifest({})], { draws: 5, batchSize: 8192, tau: 0.01 }),
      [],
    );
    // K means nothing to the pool normaliser.
    assert.deepEqual(
      scoringDifferences([manifest({ normaliser: "pool", draws: 1 })], {
        draws: 5,
        batchSize: 8192,
        tau: 0.01,
        normaliser: "pool",
      }),
      [],
    );
  });

  it("names each setting that differs, with the recorded values and the replay's", () => {
    assert.deepEqual(
      scoringDifferences([manifest({ normaliser: "pool", draws: 1 }), manifest({ tau: 0.07 })], {
        draws: 5,
        batchSize: 4096,
        tau: 0.01,
      }),
      [
        "normaliser: recorded pool, this replay draws",
        "batch_size: recorded 8192, this replay 4096",
        "tau: recorded 0.07, this replay 0.01",
      ],
    );
  });
});
