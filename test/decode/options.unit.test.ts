import assert from "node:assert/strict";
import { test } from "node:test";
import { isClipsieveError } from "../../src/common/errors.ts";
import { DECODER_DEFAULTS, resolveDecoderOptions } from "../../src/decode/options.ts";

test("defaults fill in the registry timing options", () => {
  const o = resolveDecoderOptions({ format: "json", expectedDim: 512 });
  assert.equal(o.schemaRegistryTimeoutMs, DECODER_DEFAULTS.schemaRegistryTimeoutMs);
  assert.equal(o.expectedDim, 512);
  // undefined means "not given": it must not erase a default
  assert.equal(
    resolveDecoderOptions({ format: "json", schemaRegistryMaxRetries: undefined }).schemaRegistryMaxRetries,
    3,
  );
});

test("bad options are CONFIG_INVALID and the message names each option at fault", () => {
  const cases: [Parameters<typeof resolveDecoderOptions>[0], string][] = [
    [{ format: "avro" }, "schemaRegistryUrl"],
    [{ format: "json", schemaRegistryUrl: "localhost:8081" }, "schemaRegistryUrl"],
    [{ format: "json", expectedDim: 0 }, "expectedDim"],
    [{ format: "json", expectedDim: 1.5 }, "expectedDim"],
    [{ format: "json", expectedModel: "" }, "expectedModel"],
    [{ format: "json", schemaRegistryTimeoutMs: -1 }, "schemaRegistryTimeoutMs"],
    [{ format: "protobuf" as "json" }, "format"],
  ];
  for (const [options, key] of cases) {
    assert.throws(
      () => resolveDecoderOptions(options),
      (err: unknown) => isClipsieveError(err, "CONFIG_INVALID") && err.message.includes(key),
      JSON.stringify(options),
    );
  }
});
