import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { test } from "node:test";

test("docs/architecture.md names every folder of src/, and only folders that exist", () => {
  const doc = readFileSync(new URL("../../docs/architecture.md", import.meta.url), "utf8");
  const folders = readdirSync(new URL("../../src/", import.meta.url), { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => d.name);
  const documented = [...doc.matchAll(/^\|\s*`src\/([a-z-]+)\/`/gm)].map((m) => m[1]);
  for (const f of folders) assert.ok(documented.includes(f), `src/${f}/ is not in docs/architecture.md`);
  for (const f of documented)
    assert.ok(folders.includes(f), `docs/architecture.md names src/${f}/, which does not exist`);
});
