import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { ERROR_CODES } from "../../src/common/errors.ts";

const doc = readFileSync(new URL("../../docs/errors.md", import.meta.url), "utf8");

test("docs/errors.md lists every error code of the catalogue, with its summary and retryability", () => {
  for (const [code, e] of Object.entries(ERROR_CODES)) {
    const row = doc.split("\n").find((l) => new RegExp(`^\\|\\s*\`${code}\`\\s*\\|`).test(l));
    assert.ok(row, `${code} is missing from docs/errors.md (run: node scripts/errors-doc.ts)`);
    assert.match(row, e.retryable ? /\|\s*yes\s*\|/ : /\|\s*no\s*\|/, `${code}: retryable differs`);
    assert.ok(row.includes(e.summary.replaceAll("|", "\\|")), `${code}: summary differs`);
  }
});

test("docs/errors.md lists no code the catalogue lacks", () => {
  const documented = [...doc.matchAll(/^\|\s*`([A-Z_0-9]+)`\s*\|/gm)].map((m) => m[1]);
  assert.ok(documented.length > 0);
  for (const code of documented) assert.ok(code in ERROR_CODES, `docs/errors.md lists unknown code ${code}`);
});
