// Records every file that Node resolves (ESM imports and require() alike) in the file named by
// CLIPSIEVE_TRACE_OUT, one file: URL a line. pack.sh runs the bench command under it
// (`node --import ./trace-deps.mjs ...`) to learn which packages of node_modules the bundle needs.
import { appendFileSync } from "node:fs";
import { registerHooks } from "node:module";

const out = process.env.CLIPSIEVE_TRACE_OUT;
if (out) {
  registerHooks({
    resolve(specifier, context, nextResolve) {
      const resolved = nextResolve(specifier, context);
      if (resolved.url.startsWith("file:")) appendFileSync(out, `${resolved.url}\n`);
      return resolved;
    },
  });
}
