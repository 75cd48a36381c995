#!/usr/bin/env node
// Entry shim: refuse old Node.js with a clear message, then run the built CLI (dist/) when it exists,
// or the TypeScript sources directly (Node 24 strips types natively) in a source checkout.
import { existsSync } from "node:fs";
import module from "node:module";
import { fileURLToPath } from "node:url";

const major = Number(process.versions.node.split(".")[0]);
if (major < 24) {
  console.error(
    `clipsieve needs Node.js 24 or newer; this is ${process.version}. ` +
      "In a checkout, run it through npm (`npm run clipsieve -- ...` or `npx clipsieve ...`), which puts the " +
      "project's own Node 24 (the `node` devDependency) first on PATH.",
  );
  process.exit(1);
}
// main.ts runs itself only when argv[1] names this file; npx and npm's global install call it through
// a link named `clipsieve` (no .js), which would otherwise exit silently.
process.argv[1] = fileURLToPath(import.meta.url);
// V8's on-disk compile cache (in the OS temp folder, or NODE_COMPILE_CACHE) halves the start-up time
// of every later call: loading the CLI's modules costs about 2 s of CPU without it.
module.enableCompileCache?.();
const built = new URL("../dist/cli/main.js", import.meta.url);
await import(existsSync(built) ? built.href : new URL("../src/cli/main.ts", import.meta.url).href);
