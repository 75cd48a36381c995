import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { ClipsieveError } from "../../src/common/errors.ts";
import { configFromEnv, envVarName, RUN_CONFIG_KEYS, resolveRunConfig } from "../../src/pipeline/config.ts";

const required = {
  brokers: "127.0.0.1:9092",
  group: "g",
  input: "in",
  accepted: "acc",
  rejected: "rej",
  deadLetter: "dlq",
  scores: "scores",
};

function configError(fn: () => unknown): ClipsieveError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ClipsieveError);
    assert.equal(err.code, "CONFIG_INVALID");
    return err;
  }
  assert.fail("expected a CONFIG_INVALID error");
}

test("defaults fill in, and derived topics follow the given names", () => {
  const c = resolveRunConfig({ flags: required });
  assert.deepEqual(c.brokers, ["127.0.0.1:9092"]);
  assert.equal(c.windowSize, 4096);
  assert.equal(c.delivery, "exactly-once");
  assert.equal(c.windowsTopic, "scores-windows");
  assert.equal(c.stateTopic, "g-policy-state");
});

test("flags override environment variables, which override the config file", () => {
  const c = resolveRunConfig({
    file: { path: "f.json", values: { ...required, windowSize: 10, bankSize: 20, draws: 3 } },
    env: { bankSize: "30", draws: "4" },
    flags: { draws: "5" },
  });
  assert.equal(c.windowSize, 10);
  assert.equal(c.bankSize, 30);
  assert.equal(c.draws, 5);
});

test("an error names the bad key and where it came from", () => {
  assert.match(
    configError(() => resolveRunConfig({ flags: { ...required, windowSize: "-3" } })).message,
    /flag --window-size/,
  );
  assert.match(
    configError(() => resolveRunConfig({ flags: required, env: { tau: "hot" } })).message,
    /environment variable CLIPSIEVE_TAU/,
  );
  assert.match(
    configError(() => resolveRunConfig({ file: { path: "x.json", values: { ...required, windowSise: 5 } } }))
      .message,
    /unknown option\(s\) "windowSise" \(config file x\.json/,
  );
  assert.match(
    configError(() => resolveRunConfig({ flags: { ...required, brokers: "nohost" } })).message,
    /brokers.*host:port/s,
  );
  assert.match(
    configError(() => resolveRunConfig({ flags: { ...required, format: "avro" } })).message,
    /schema-registry/,
  );
  const missing = configError(() => resolveRunConfig({ flags: { brokers: "h:1" } })).message;
  for (const key of ["group", "input", "accepted", "rejected", "deadLetter", "scores"])
    assert.match(missing, new RegExp(`"${key}"`));
});

test("every option has an environment variable CLIPSIEVE_<UPPER_SNAKE>", () => {
  assert.equal(envVarName("deadLetter"), "CLIPSIEVE_DEAD_LETTER");
  assert.equal(envVarName("transactionTimeoutMs"), "CLIPSIEVE_TRANSACTION_TIMEOUT_MS");
  assert.deepEqual(configFromEnv({ CLIPSIEVE_WINDOW_SIZE: "12", CLIPSIEVE_NOT_AN_OPTION: "x", OTHER: "y" }), {
    windowSize: "12",
  });
});

test("docs/streaming.md documents every config key", () => {
  const doc = readFileSync(new URL("../../docs/streaming.md", import.meta.url), "utf8");
  for (const key of RUN_CONFIG_KEYS) {
    assert.match(
      doc,
      new RegExp(`^\\|\\s*\`${key}\`\\s*\\|`, "m"),
      `docs/streaming.md lacks a row for ${key}`,
    );
  }
});
