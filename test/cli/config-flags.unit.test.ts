/**
 * The run configuration's flags are derived from its schema (src/cli/config-flags.ts): one flag per
 * key with the key's description, `--then` for thenKeep, the enum's choices enforced, a repeatable
 * --threshold, and no commander defaults (a flag not given must not hide the config file or the
 * environment). `replay`'s flag set (`addFilterOptions`) leaves out the keys only `run` takes.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Command, CommanderError, type Option } from "commander";
import { registerReplayCommand } from "../../src/cli/commands/replay.ts";
import { addFilterOptions, registerRunCommand } from "../../src/cli/commands/run.ts";
import { addConfigFlags } from "../../src/cli/config-flags.ts";
import { runConfigSchema } from "../../src/pipeline/config.ts";

const SCHEMA_KEYS = Object.keys(runConfigSchema.shape) as (keyof typeof runConfigSchema.shape)[];

/** camelCase -> --kebab-case, except thenKeep, whose flag is --then. */
function expectedFlag(key: string): string {
  if (key === "thenKeep") return "--then";
  return `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

/** The keys only `run` takes (its group, input and output topics, state topic, instance id). */
const RUN_ONLY_FLAGS = [
  "--group",
  "--input",
  "--accepted",
  "--rejected",
  "--dead-letter",
  "--scores",
  "--windows-topic",
  "--state-topic",
  "--dedup-history-topic",
  "--instance-id",
];

/** A fresh command with the config flags, that throws instead of exiting and prints nothing. */
function command(): Command {
  const c = addConfigFlags(new Command("run"));
  c.exitOverride();
  c.configureOutput({ writeErr: () => {}, writeOut: () => {} });
  return c;
}

function option(c: Command, long: string): Option {
  const o = c.options.find((x) => x.long === long);
  assert.ok(o, `${long} is a flag`);
  return o;
}

describe("addConfigFlags", () => {
  it("adds --config and one flag per schema key, nothing else", () => {
    const longs = command().options.map((o) => o.long);
    assert.deepEqual([...longs].sort(), ["--config", ...SCHEMA_KEYS.map(expectedFlag)].sort());
    assert.ok(SCHEMA_KEYS.length > 40, "the schema is read, not an empty shape");
  });

  it("describes each flag with the key's schema description (and a default, where printed)", () => {
    const c = command();
    for (const key of SCHEMA_KEYS) {
      const description = runConfigSchema.shape[key].description;
      assert.ok(description, `${key} has a description in the schema`);
      const o = option(c, expectedFlag(key));
      assert.ok(
        o.description === description || o.description.startsWith(`${description} (default `),
        `${o.long}: ${JSON.stringify(o.description)}`,
      );
    }
    assert.equal(option(c, "--window-size").description, "Records per window (default 4096)");
    assert.equal(option(c, "--brokers").description, "Kafka bootstrap brokers, comma-separated host:port");
    // The instance id's default is the host name: not printed.
    assert.equal(
      option(c, "--instance-id").description,
      "Stable id of this instance (transactional id suffix)",
    );
  });

  it("has --then for thenKeep, and no --then-keep", () => {
    const c = command();
    c.parse(["--then", "s_clip_loss=0.1"], { from: "user" });
    assert.equal(c.opts().then, "s_clip_loss=0.1");
    assert.equal(c.opts().thenKeep, undefined);
    assert.throws(
      () => command().parse(["--then-keep", "s_clip_loss=0.1"], { from: "user" }),
      (err: unknown) => err instanceof CommanderError && err.code === "commander.unknownOption",
    );
  });

  it("gives enum keys their choices and rejects a value outside them", () => {
    const c = command();
    assert.deepEqual(option(c, "--device").argChoices, ["cpu", "cuda", "webgpu"]);
    assert.deepEqual(option(c, "--format").argChoices, ["json", "avro"]);
    assert.deepEqual(option(c, "--delivery").argChoices, ["exactly-once", "at-least-once"]);
    assert.deepEqual(option(c, "--kafka-client").argChoices, ["librdkafka", "kafkajs"]);
    assert.equal(option(c, "--window-size").argChoices, undefined);
    assert.throws(
      () => command().parse(["--device", "tpu"], { from: "user" }),
      (err: unknown) => err instanceof CommanderError && err.code === "commander.invalidArgument",
    );
    c.parse(["--device", "cuda"], { from: "user" });
    assert.equal(c.opts().device, "cuda");
  });

  it("collects a repeated --threshold into an array (one given is an array of one)", () => {
    const c = command();
    c.parse(["--threshold", "clip_score>=0.2", "--threshold", "s_clip_loss>=0.1"], { from: "user" });
    assert.deepEqual(c.opts().threshold, ["clip_score>=0.2", "s_clip_loss>=0.1"]);
    const one = command();
    one.parse(["--threshold", "clip_score>=0.2"], { from: "user" });
    assert.deepEqual(one.opts().threshold, ["clip_score>=0.2"]);
  });

  it("sets no defaults: a flag not given is undefined", () => {
    const c = command();
    for (const o of c.options) assert.equal(o.defaultValue, undefined, `${o.long} has no commander default`);
    c.parse([], { from: "user" });
    assert.deepEqual(c.opts(), {});
    c.parse(["--window-size", "16"], { from: "user" });
    assert.deepEqual(c.opts(), { windowSize: "16" });
  });

  it("--fetch-allow-private-addresses is a switch", () => {
    const c = command();
    c.parse(["--fetch-allow-private-addresses"], { from: "user" });
    assert.deepEqual(c.opts(), { fetchAllowPrivateAddresses: true });
  });

  it("--score-all is a switch", () => {
    const c = command();
    c.parse(["--score-all"], { from: "user" });
    assert.deepEqual(c.opts(), { scoreAll: true });
  });
});

describe("run and replay flag sets", () => {
  it("addFilterOptions leaves out the keys only run takes and keeps every other key", () => {
    const longs = addFilterOptions(new Command("x")).options.map((o) => o.long);
    for (const flag of RUN_ONLY_FLAGS) assert.ok(!longs.includes(flag), `${flag} is not a filter flag`);
    const expected = SCHEMA_KEYS.map(expectedFlag).filter((f) => !RUN_ONLY_FLAGS.includes(f));
    assert.deepEqual([...longs].sort(), ["--config", ...expected].sort());
  });

  it("run has every config flag; replay has the filter flags plus its own, run's topic flags not", () => {
    const program = new Command();
    registerRunCommand(program);
    registerReplayCommand(program);
    const flags = (name: string) =>
      program.commands.find((c) => c.name() === name)?.options.map((o) => o.long) ?? [];
    const run = flags("run");
    for (const flag of [...RUN_ONLY_FLAGS, "--window-size", "--then", "--threshold"])
      assert.ok(run.includes(flag), `run has ${flag}`);
    const replay = flags("replay");
    for (const flag of ["--window-size", "--then", "--threshold", "--out-prefix", "--reproduce"])
      assert.ok(replay.includes(flag), `replay has ${flag}`);
    for (const flag of RUN_ONLY_FLAGS.filter((f) => f !== "--input"))
      assert.ok(!replay.includes(flag), `replay has no ${flag}`);
    // replay's own --input (the topic to replay), once.
    assert.equal(replay.filter((f) => f === "--input").length, 1);
  });

  it("run --help lists the run-only flags; replay --help does not list run's topic flags", () => {
    const program = new Command();
    registerRunCommand(program);
    registerReplayCommand(program);
    const help = (name: string) => program.commands.find((c) => c.name() === name)?.helpInformation() ?? "";
    assert.match(help("run"), /--dead-letter <value>/);
    assert.match(help("run"), /--instance-id <value>/);
    assert.doesNotMatch(help("replay"), /--dead-letter|--instance-id|--state-topic|--windows-topic/);
    assert.match(help("replay"), /--window-size <n>/);
  });
});
