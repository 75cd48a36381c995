/**
 * The test tiers (docs/architecture.md, "Tests"): every test file names its tier, `.unit.`, `.kafka.`
 * or `.crash.`, and a unit test reaches no broker: it imports none of the helpers that talk to one,
 * and `npm run test:unit` runs without the broker set-up (so a unit test that needs one fails there).
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const TEST_DIR = fileURLToPath(new URL("..", import.meta.url));
const BROKER_HELPERS = /from "[./]*\/?helpers\/(kafka|filter|exactly-once)\.ts"|startLocalBroker\(/;

function testFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return testFiles(path);
    return e.name.endsWith(".test.ts") ? [relative(TEST_DIR, path)] : [];
  });
}

test("every test file names its tier", () => {
  const files = testFiles(TEST_DIR);
  assert.ok(files.length > 50, `found only ${files.length} test files`);
  const untiered = files.filter((f) => !/\.(unit|kafka|crash)\.test\.ts$/.test(f));
  assert.deepEqual(untiered, [], "name each test file *.unit.test.ts, *.kafka.test.ts or *.crash.test.ts");
});

test("unit tests import nothing that talks to a broker", () => {
  const offenders = testFiles(TEST_DIR)
    .filter((f) => f.endsWith(".unit.test.ts"))
    .filter((f) => BROKER_HELPERS.test(readFileSync(join(TEST_DIR, f), "utf8")));
  assert.deepEqual(offenders, [], "these unit tests reach a broker: make them .kafka.test.ts");
});

test("npm test runs every tier; the unit tier runs without the broker set-up", () => {
  const scripts = JSON.parse(readFileSync(join(TEST_DIR, "..", "package.json"), "utf8")).scripts as Record<
    string,
    string
  >;
  assert.match(scripts["test:unit"], /\*\.unit\.test\.ts/);
  assert.doesNotMatch(scripts["test:unit"], /global-setup/);
  assert.match(scripts["test:broker"], /\*\.kafka\.test\.ts/);
  assert.match(scripts["test:broker"], /\*\.crash\.test\.ts/);
  assert.match(scripts.test, /test:unit/);
  assert.match(scripts.test, /test:broker/);
});
