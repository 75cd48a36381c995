/**
 * Every command that talks to Kafka or the Schema Registry takes the same security options, those of
 * the run configuration's schema (src/kafka/security.ts), and no command takes a secret as a flag:
 * a password, passphrase or client secret is read from a file or its environment variable only.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { buildProgram } from "../../src/cli/main.ts";
import { SECURITY_KEYS } from "../../src/kafka/index.ts";
import { flagName, runConfigSchema } from "../../src/pipeline/config.ts";

const KAFKA_COMMANDS = ["run", "replay", "export", "load", "dump", "diff", "calibrate", "simulate"];

test("the security block is part of the run configuration's schema", () => {
  for (const key of SECURITY_KEYS) assert.ok(key in runConfigSchema.shape, key);
  assert.ok(SECURITY_KEYS.length >= 15);
});

test("every command that talks to Kafka takes every security option", async () => {
  for (const name of KAFKA_COMMANDS) {
    const program = await buildProgram(name);
    const command = program.commands.find((c) => c.name() === name);
    assert.ok(command, name);
    const longs = new Set(command.options.map((o) => o.long));
    const missing = SECURITY_KEYS.map((k) => `--${flagName(k)}`).filter((f) => !longs.has(f));
    assert.deepEqual(missing, [], `${name} lacks ${missing.join(", ")}`);
    assert.ok(longs.has("--kafka-client"), `${name} lacks --kafka-client`);
  }
});

test("no command takes a secret as a flag", async () => {
  const program = await buildProgram();
  for (const command of program.commands) {
    const secretFlags = command.options
      .map((o) => o.long ?? "")
      .filter((f) => /(password|secret|passphrase|token)$/.test(f));
    assert.deepEqual(secretFlags, [], `${command.name()} takes a secret as a flag`);
  }
});
