/** docs/record-format.md stays true: its JSON examples decode, and it documents every Avro field. */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { createDecoder } from "../../src/decode/decoder.ts";

const doc = readFileSync(new URL("../../docs/record-format.md", import.meta.url), "utf8");

test("every JSON example in docs/record-format.md decodes to the vectors it shows", async () => {
  const examples = [...doc.matchAll(/```json\n([\s\S]*?)```/g)].map((m) => m[1]);
  assert.ok(examples.length >= 3, "examples found");
  const decoder = await createDecoder({
    format: "json",
    expectedDim: 4,
    expectedModel: "openai/clip-vit-large-patch14",
  });
  // All examples carry image [0.25, -0.5, 0.75, 0.125] (exact in float16 too): norm sqrt(0.890625).
  const n = Math.sqrt(0.890625);
  for (const [i, text] of examples.entries()) {
    const out = await decoder.decode({
      source: { topic: "docs", partition: 0, offset: String(i) },
      key: null,
      value: Buffer.from(text, "utf8"),
      headers: {},
      timestamp: "0",
    });
    assert.equal(out.failure, undefined, out.failure?.message);
    assert.equal(out.uid, "0123456789abcdef0123456789abcdef");
    assert.deepEqual(
      Array.from(out.imageEmbedding ?? []),
      [0.25 / n, -0.5 / n, 0.75 / n, 0.125 / n].map(Math.fround),
      `example ${i + 1}`,
    );
    assert.deepEqual(Array.from(out.textEmbedding ?? []), [0.5, 0.5, -0.5, 0.5]);
  }
});

test("docs/record-format.md and schemas/README.md name every field of clip_record.avsc", () => {
  const schema = JSON.parse(
    readFileSync(new URL("../../schemas/clip_record.avsc", import.meta.url), "utf8"),
  ) as {
    fields: { name: string }[];
  };
  const readme = readFileSync(new URL("../../schemas/README.md", import.meta.url), "utf8");
  for (const { name } of schema.fields) {
    assert.ok(doc.includes(`| \`${name}\``), `docs/record-format.md lacks a row for ${name}`);
    assert.ok(readme.includes(`| \`${name}\``), `schemas/README.md lacks a row for ${name}`);
  }
});
