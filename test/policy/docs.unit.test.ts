import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { it } from "node:test";
import { Command } from "commander";
import { addConfigFlags } from "../../src/cli/config-flags.ts";
import { POLICY_KEYS } from "../../src/pipeline/config.ts";
import {
  DECISION_REASONS,
  DEFAULT_SKETCH_K,
  DEFAULT_WARMUP_MODE,
  DEFAULT_WARMUP_RECORDS,
  policySpecSchema,
  WARMUP_MODES,
} from "../../src/policy/index.ts";
import { SCORE_NAMES, SCORES } from "../../src/score/registry.ts";

// docs/policy.md is the reference for operators; this keeps its tables in step with the code.
const doc = readFileSync(new URL("../../docs/policy.md", import.meta.url), "utf8");
const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
/** A table row whose first cell is `cell`, whatever padding the formatter gives the table. */
const row = (cell: string) => new RegExp(`^\\|\\s*${escapeRegExp(cell)}\\s*\\|`, "m");
const ERROR_CODES = [
  "CONFIG_INVALID",
  "POLICY_SCORE_INVALID",
  "POLICY_STATE_INVALID",
  "POLICY_STATE_MISMATCH",
];

it("docs/policy.md lists every flag, config key, default, mode, reason and error code", () => {
  for (const option of addConfigFlags(new Command("x"), POLICY_KEYS, { configFile: false }).options) {
    assert.ok(doc.includes(`\`${option.long} `), `flag ${option.long}`);
  }
  for (const key of Object.keys(policySpecSchema.shape))
    assert.ok(doc.includes(`\`${key}`), `config key ${key}`);
  assert.ok(doc.includes(`\`warmup.records\` (default ${DEFAULT_WARMUP_RECORDS})`));
  assert.ok(doc.includes(`\`warmup.mode\` (default \`${DEFAULT_WARMUP_MODE}\`)`));
  assert.ok(doc.includes(`\`sketch.k\` (default ${DEFAULT_SKETCH_K})`));
  assert.match(doc, row(`\`${DEFAULT_WARMUP_MODE}\` (default)`));
  for (const mode of WARMUP_MODES.filter((m) => m !== DEFAULT_WARMUP_MODE))
    assert.match(doc, row(`\`${mode}\``));
  for (const reason of DECISION_REASONS) assert.match(doc, row(`\`${reason}\``));
  for (const code of ERROR_CODES) assert.match(doc, row(`\`${code}\``));
});

it("docs/policy.md's score table is the score registry, in order", () => {
  const cells = (line: string) =>
    line
      .split("|")
      .slice(1, -1)
      .map((c) => c.trim());
  const rows = doc
    .split("\n")
    .filter((line) => /^\|\s*`[a-z_0-9]+`\s*\|\s*(yes|no)\s*\|/.test(line))
    .map(cells);
  assert.deepEqual(
    rows,
    SCORES.map((s) => [`\`${s.name}\``, s.needsTarget ? "yes" : "no", `\`${s.family}\``, s.description]),
  );
  assert.ok(doc.includes(`(in \`SCORE_NAMES\` order: ${SCORE_NAMES.map((n) => `\`${n}\``).join(", ")})`));
});
