/**
 * postinstall: make `@confluentinc/kafka-javascript` (librdkafka, the default Kafka adapter) usable.
 *
 * Its own install script is off (`allowScripts` in package.json) because, left to itself, it would
 * fall back to a static build that downloads OpenSSL, zlib and zstd sources, which a machine with
 * package registries only cannot reach. This script does what that one does, with the two settings
 * such a machine needs:
 *
 * 1. the prebuilt binary is fetched where it can be (node-pre-gyp, from the package's release page);
 * 2. otherwise it builds from the librdkafka source bundled in the package, linked dynamically
 *    against the system's OpenSSL and zlib (`CKJS_LINKING=dynamic`), with the C headers of the
 *    Node.js 24 this project brings (its `node` package's platform package ships them, so node-gyp
 *    downloads nothing).
 *
 * A failed build does not fail the install: clipsieve then says, when it is asked for the librdkafka
 * adapter, that it is not built and that `kafkaClient: "kafkajs"` is the pure-JavaScript fallback.
 * `CLIPSIEVE_SKIP_NATIVE_BUILD=1` skips the step (an image whose builder stage already built it).
 */
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, realpathSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

const root = path.resolve(import.meta.dirname, "..");
const packageDir = path.join(root, "node_modules", "@confluentinc", "kafka-javascript");
const binary = path.join(packageDir, "build", "Release", "confluent-kafka-javascript.node");

function log(message: string): void {
  process.stderr.write(`clipsieve postinstall: ${message}\n`);
}

function loads(): boolean {
  const probe = spawnSync(process.execPath, ["-e", `require(${JSON.stringify(packageDir)})`], {
    stdio: "ignore",
  });
  return probe.status === 0;
}

/** The Node.js version whose headers are under `dir` (`include/node/node_version.h`), if any. */
function headersVersion(dir: string): string | undefined {
  const file = path.join(dir, "include", "node", "node_version.h");
  if (!existsSync(file)) return undefined;
  const text = readFileSync(file, "utf8");
  const part = (name: string) => text.match(new RegExp(`#define NODE_${name}_VERSION (\\d+)`))?.[1];
  return `v${part("MAJOR")}.${part("MINOR")}.${part("PATCH")}`;
}

/**
 * The headers of the Node.js that runs this script: the `node` package's platform package. A
 * `nodedir` from the user's npm config wins only when it holds the same version (a `nodedir=/usr`
 * of the system's Node.js 20 would build a module that Node.js 24 refuses to load).
 */
function nodeHeaders(): string | undefined {
  const configured = process.env.npm_config_nodedir;
  if (configured !== undefined && headersVersion(configured) === process.version) return configured;
  const platforms = path.join(root, "node_modules", "node", "node_modules");
  if (!existsSync(platforms)) return undefined;
  for (const name of readdirSync(platforms)) {
    const dir = path.join(platforms, name);
    if (name.startsWith("node-") && headersVersion(dir) === process.version) return dir;
  }
  return undefined;
}

/** node-gyp: npm's own (npm names it to its scripts; beside npm when this runs by hand). */
function nodeGyp(): string | undefined {
  const candidates = [process.env.npm_config_node_gyp];
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    const npm = path.join(dir, "npm");
    if (!existsSync(npm)) continue;
    // bin/npm links to <npm package>/bin/npm-cli.js; node-gyp is in that package's node_modules.
    const npmPackage = path.dirname(path.dirname(realpathSync(npm)));
    candidates.push(path.join(npmPackage, "node_modules", "node-gyp", "bin", "node-gyp.js"));
  }
  return candidates.find((file) => file !== undefined && existsSync(file));
}

function main(): void {
  if (process.env.CLIPSIEVE_SKIP_NATIVE_BUILD === "1") {
    log("native build skipped (CLIPSIEVE_SKIP_NATIVE_BUILD=1)");
    return;
  }
  if (!existsSync(packageDir)) return; // installed without it (--omit=optional or a pruned image)
  if (existsSync(binary) && loads()) {
    log("librdkafka client already built");
    return;
  }

  const require = createRequire(path.join(packageDir, "package.json"));
  const nodePreGyp = require.resolve("@mapbox/node-pre-gyp/bin/node-pre-gyp");
  const headers = nodeHeaders();
  const gyp = nodeGyp();
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    CKJS_LINKING: process.env.CKJS_LINKING ?? "dynamic",
    // node-pre-gyp starts node-gyp as `<this Node.js> node-gyp.js`, so the module's ABI is this one's.
    PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? ""}`,
    ...(headers !== undefined ? { npm_config_nodedir: headers } : {}),
    ...(gyp !== undefined ? { npm_config_node_gyp: gyp } : {}),
  };
  const started = Date.now();
  log(
    `building the librdkafka client for Node.js ${process.version} (prebuilt binary if reachable, else from source, ~90 s on 2 cores)`,
  );
  const result = spawnSync(process.execPath, [nodePreGyp, "install", "--fallback-to-build"], {
    cwd: packageDir,
    env,
    stdio: ["ignore", "ignore", "pipe"],
    encoding: "utf8",
  });
  const seconds = ((Date.now() - started) / 1000).toFixed(0);
  if (result.status === 0 && loads()) {
    log(`librdkafka client ready in ${seconds} s`);
    return;
  }
  const tail = (result.stderr ?? "").trim().split("\n").slice(-15).join("\n");
  log(
    `the librdkafka client could not be built (${seconds} s): ${tail}\n` +
      "clipsieve still works with the pure-JavaScript adapter: set kafkaClient: kafkajs (or CLIPSIEVE_KAFKA_CLIENT=kafkajs). " +
      "To build it, install a C/C++ tool chain, make, and the OpenSSL and zlib development headers, then run `npm rebuild clipsieve` or `node scripts/build-librdkafka.ts`.",
  );
}

main();
