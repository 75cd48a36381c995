import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import {
  integerListOption,
  integerOption,
  numberOption,
  parseBrokers,
  parseInteger,
  parseIntegerList,
  parseNumber,
} from "../../src/cli/flags.ts";
import { isClipsieveError } from "../../src/common/errors.ts";

/** A CONFIG_INVALID whose message matches `message` (which should name the flag and the text). */
function configInvalid(message: RegExp) {
  return (err: unknown) => {
    assert.ok(isClipsieveError(err, "CONFIG_INVALID"), `expected CONFIG_INVALID, got ${String(err)}`);
    assert.match(err.message, message);
    return true;
  };
}

describe("parseInteger", () => {
  it("reads integers in range, bounds included", () => {
    assert.equal(parseInteger("--n", "0", 0), 0);
    assert.equal(parseInteger("--n", "42", 1), 42);
    assert.equal(parseInteger("--n", " 7 ", 1), 7);
    assert.equal(parseInteger("--n", "10", 1, 10), 10);
    assert.equal(parseInteger("--n", String(Number.MAX_SAFE_INTEGER), 0), Number.MAX_SAFE_INTEGER);
  });

  it("refuses fractions, non-numbers, empty text, unsafe integers and values out of range", () => {
    for (const text of ["1.5", "abc", "", "  ", "NaN", "Infinity", "1e300", String(2 ** 53)]) {
      assert.throws(
        () => parseInteger("--draws", text, 1),
        configInvalid(/^--draws .*expected an integer >= 1$/),
      );
    }
    assert.throws(
      () => parseInteger("--seed", "-1", 0),
      configInvalid(/^--seed -1: expected an integer >= 0$/),
    );
    assert.throws(
      () => parseInteger("--port", "65536", 0, 65535),
      configInvalid(/^--port 65536: expected an integer in \[0, 65535\]$/),
    );
  });

  it("integerOption is the same parser for commander", () => {
    assert.equal(integerOption("--count", 1)("3"), 3);
    assert.throws(() => integerOption("--count", 1)("0"), configInvalid(/^--count 0:/));
    assert.throws(() => integerOption("--port", 0, 10)("11"), configInvalid(/\[0, 10\]/));
  });
});

describe("parseIntegerList", () => {
  it("reads comma-separated integers, each at least min", () => {
    assert.deepEqual(parseIntegerList("--windows", "500,1000, 2000", 1), [500, 1000, 2000]);
    assert.deepEqual(parseIntegerList("--banks", "0", 0), [0]);
    assert.deepEqual(integerListOption("--banks", 0)("0,5"), [0, 5]);
  });

  it("refuses an empty entry, a fraction or a value below min, naming the whole list", () => {
    for (const text of ["500,,1000", "500,1.5", "0,500", ""]) {
      assert.throws(
        () => parseIntegerList("--windows", text, 1),
        configInvalid(/^--windows .*: expected integers >= 1, comma-separated$/),
      );
    }
  });
});

describe("parseNumber", () => {
  it("reads finite numbers in range", () => {
    assert.equal(parseNumber("--tau", "0.01", { min: 0, exclusive: true }), 0.01);
    assert.equal(parseNumber("--rate", "0", { min: 0 }), 0);
    assert.equal(parseNumber("--x", "-2.5"), -2.5);
    assert.equal(numberOption("--rate", { min: 0 })("12.5"), 12.5);
  });

  it("refuses non-numbers, infinities and values below min (or at an exclusive min)", () => {
    for (const text of ["", "abc", "Infinity", "NaN"]) {
      assert.throws(
        () => parseNumber("--rate", text, { min: 0 }),
        configInvalid(/^--rate .*expected a number >= 0$/),
      );
    }
    assert.throws(
      () => parseNumber("--rate", "-1", { min: 0 }),
      configInvalid(/^--rate -1: expected a number >= 0$/),
    );
    assert.throws(
      () => parseNumber("--tau", "0", { min: 0, exclusive: true, hint: "(0.01 in the paper)" }),
      configInvalid(/^--tau 0: expected a number > 0 \(0\.01 in the paper\)$/),
    );
  });
});

describe("parseBrokers", () => {
  let saved: string | undefined;
  beforeEach(() => {
    saved = process.env.CLIPSIEVE_BROKERS;
    delete process.env.CLIPSIEVE_BROKERS;
  });
  afterEach(() => {
    if (saved === undefined) delete process.env.CLIPSIEVE_BROKERS;
    else process.env.CLIPSIEVE_BROKERS = saved;
  });

  it("splits host:port lists, trimming spaces and dropping empty entries", () => {
    assert.deepEqual(parseBrokers("a:9092"), ["a:9092"]);
    assert.deepEqual(parseBrokers(" a:9092 , b.example:19092,,"), ["a:9092", "b.example:19092"]);
  });

  it("falls back to CLIPSIEVE_BROKERS only when the flag is absent", () => {
    process.env.CLIPSIEVE_BROKERS = "env:9092,env2:9093";
    assert.deepEqual(parseBrokers(undefined), ["env:9092", "env2:9093"]);
    assert.deepEqual(parseBrokers("flag:1"), ["flag:1"]);
  });

  it("refuses an empty list, naming the flag and CLIPSIEVE_BROKERS", () => {
    for (const text of [undefined, "", " , "]) {
      assert.throws(
        () => parseBrokers(text, "--bootstrap"),
        configInvalid(/^--bootstrap is required to read or write Kafka .*CLIPSIEVE_BROKERS/),
      );
    }
  });

  it("refuses an entry that is not host:port, naming it", () => {
    for (const bad of ["localhost", "host:", ":9092", "host:port", "a b:9092"]) {
      assert.throws(
        () => parseBrokers(`ok:9092,${bad}`),
        configInvalid(new RegExp(`^--brokers ${bad.trim()}: expected host:port$`)),
      );
    }
  });
});
