/**
 * The Kafka port's boundary (src/kafka/port.ts): a client library is imported by its adapter folder
 * only, and the rest of clipsieve reaches Kafka through src/kafka/index.ts (the local broker, which
 * talks no Kafka protocol, aside). A stray import anywhere else fails here, with its file and line.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../..", import.meta.url));
const src = join(root, "src");

/** Each Kafka client library and the one folder allowed to import it. */
const LIBRARIES: Record<string, string> = {
  kafkajs: "src/kafka/kafkajs/",
  "@confluentinc/kafka-javascript": "src/kafka/librdkafka/",
};

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : [],
  );
}

/** Every module specifier of a file: static and dynamic imports, re-exports, require(). */
function specifiers(text: string): { spec: string; line: number }[] {
  const out: { spec: string; line: number }[] = [];
  const pattern =
    /(?:\bfrom\s+|\bimport\s*\(\s*|\bimport\s+|\brequire(?:\.resolve)?\s*\(\s*)["']([^"']+)["']/g;
  for (const m of text.matchAll(pattern)) {
    out.push({ spec: m[1] as string, line: text.slice(0, m.index).split("\n").length });
  }
  return out;
}

test("only the adapter folders import a Kafka client library", () => {
  const strays: string[] = [];
  for (const file of sourceFiles(src)) {
    const rel = relative(root, file).replaceAll("\\", "/");
    for (const { spec, line } of specifiers(readFileSync(file, "utf8"))) {
      const library = Object.keys(LIBRARIES).find((l) => spec === l || spec.startsWith(`${l}/`));
      if (library && !rel.startsWith(LIBRARIES[library] as string))
        strays.push(`${rel}:${line} imports ${spec}`);
    }
  }
  assert.deepEqual(
    strays,
    [],
    `Kafka client libraries imported outside their adapters:\n${strays.join("\n")}`,
  );
});

test("outside src/kafka, Kafka is reached through src/kafka/index.ts only", () => {
  const strays: string[] = [];
  for (const file of sourceFiles(src)) {
    const rel = relative(root, file).replaceAll("\\", "/");
    if (rel.startsWith("src/kafka/")) continue;
    for (const { spec, line } of specifiers(readFileSync(file, "utf8"))) {
      const m = /(?:^|\/)kafka\/([\w./-]+)$/.exec(spec);
      if (!m || !spec.startsWith(".")) continue;
      if (m[1] !== "index.ts" && m[1] !== "local-broker.ts") strays.push(`${rel}:${line} imports ${spec}`);
    }
  }
  assert.deepEqual(strays, [], `modules reaching past the Kafka port:\n${strays.join("\n")}`);
});

test("the boundary check sees the imports it polices", () => {
  // Guards the two tests above against a pattern that silently matches nothing.
  const found = specifiers(
    'import { Kafka } from "kafkajs";\nimport type { X } from "../kafka/kafkajs/client.ts";\nconst k = require("@confluentinc/kafka-javascript");\nawait import("kafkajs");',
  );
  assert.deepEqual(
    found.map((f) => `${f.line}:${f.spec}`),
    ["1:kafkajs", "2:../kafka/kafkajs/client.ts", "3:@confluentinc/kafka-javascript", "4:kafkajs"],
  );
});
