/**
 * The negative bank (src/window/bank.ts) is a bounded ring: it holds at most `capacity` rows, the most
 * recent ones, and hands them out oldest first at the row offset asked for, with their sources in the
 * same order; `clear` empties it.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { SourceRef } from "../../src/common/record.ts";
import { NegativeBank } from "../../src/window/bank.ts";

const DIM = 2;

/** Row i: image [10i + 1, 10i + 2], text [-(10i + 1), -(10i + 2)], source b/0/i. */
function rows(from: number, count: number): { image: Float32Array; text: Float32Array; refs: SourceRef[] } {
  const image = new Float32Array(count * DIM);
  const text = new Float32Array(count * DIM);
  const refs: SourceRef[] = [];
  for (let k = 0; k < count; k++) {
    const i = from + k;
    image[k * DIM] = 10 * i + 1;
    image[k * DIM + 1] = 10 * i + 2;
    text[k * DIM] = -(10 * i + 1);
    text[k * DIM + 1] = -(10 * i + 2);
    refs.push({ topic: "b", partition: 0, offset: String(i) });
  }
  return { image, text, refs };
}

function push(bank: NegativeBank, from: number, count: number): void {
  const r = rows(from, count);
  bank.push(r.image, r.text, r.refs);
}

/** Copy the bank out at `atRow` of a buffer of `totalRows` rows pre-filled with 99 (to see what is untouched). */
function copyOut(bank: NegativeBank, atRow: number, totalRows: number) {
  const image = new Float32Array(totalRows * DIM).fill(99);
  const text = new Float32Array(totalRows * DIM).fill(99);
  const refs = bank.copyInto(image, text, atRow);
  return { image: [...image], text: [...text], offsets: refs.map((r) => r.offset) };
}

describe("NegativeBank", () => {
  it("before it is full, holds every row pushed, in push order", () => {
    const bank = new NegativeBank(3, DIM);
    assert.equal(bank.size, 0);
    push(bank, 0, 2);
    assert.equal(bank.size, 2);
    assert.deepEqual(copyOut(bank, 0, 2), {
      image: [1, 2, 11, 12],
      text: [-1, -2, -11, -12],
      offsets: ["0", "1"],
    });
  });

  it("copyInto writes at the row offset given and leaves the rows before and after alone", () => {
    const bank = new NegativeBank(3, DIM);
    push(bank, 0, 2);
    assert.deepEqual(copyOut(bank, 1, 4), {
      image: [99, 99, 1, 2, 11, 12, 99, 99],
      text: [99, 99, -1, -2, -11, -12, 99, 99],
      offsets: ["0", "1"],
    });
  });

  it("once full, overwrites the oldest rows and still hands them out oldest first", () => {
    const bank = new NegativeBank(3, DIM);
    push(bank, 0, 2); // rows 0, 1
    push(bank, 2, 2); // rows 2, 3: row 0 is overwritten
    assert.equal(bank.size, 3);
    assert.deepEqual(copyOut(bank, 0, 3), {
      image: [11, 12, 21, 22, 31, 32],
      text: [-11, -12, -21, -22, -31, -32],
      offsets: ["1", "2", "3"],
    });
    push(bank, 4, 1); // row 4: row 1 is overwritten
    assert.equal(bank.size, 3);
    assert.deepEqual(copyOut(bank, 0, 3).offsets, ["2", "3", "4"]);
    assert.deepEqual(copyOut(bank, 0, 3).image, [21, 22, 31, 32, 41, 42]);
  });

  it("a push larger than the capacity keeps only its last `capacity` rows", () => {
    const bank = new NegativeBank(3, DIM);
    push(bank, 0, 1);
    push(bank, 10, 5); // rows 10..14
    assert.equal(bank.size, 3);
    assert.deepEqual(copyOut(bank, 0, 3), {
      image: [121, 122, 131, 132, 141, 142],
      text: [-121, -122, -131, -132, -141, -142],
      offsets: ["12", "13", "14"],
    });
  });

  it("keeps copies: changing the pushed arrays afterwards does not change the bank", () => {
    const bank = new NegativeBank(2, DIM);
    const r = rows(0, 2);
    bank.push(r.image, r.text, r.refs);
    r.image.fill(0);
    r.text.fill(0);
    assert.deepEqual(copyOut(bank, 0, 2).image, [1, 2, 11, 12]);
    assert.deepEqual(copyOut(bank, 0, 2).text, [-1, -2, -11, -12]);
  });

  it("clear empties it: nothing is copied, and later rows start a fresh ring", () => {
    const bank = new NegativeBank(3, DIM);
    push(bank, 0, 4);
    bank.clear();
    assert.equal(bank.size, 0);
    assert.deepEqual(copyOut(bank, 0, 1), { image: [99, 99], text: [99, 99], offsets: [] });
    push(bank, 7, 2);
    assert.equal(bank.size, 2);
    assert.deepEqual(copyOut(bank, 0, 2).offsets, ["7", "8"]);
    assert.deepEqual(copyOut(bank, 0, 2).image, [71, 72, 81, 82]);
  });

  it("capacity 0 holds nothing", () => {
    const bank = new NegativeBank(0, DIM);
    push(bank, 0, 3);
    assert.equal(bank.size, 0);
    assert.deepEqual(copyOut(bank, 0, 1).offsets, []);
  });
});
