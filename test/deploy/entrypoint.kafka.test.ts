/**
 * The container's entry point, outside Docker, against the real broker: the Dockerfile's final stage
 * is laid out in a temporary folder (its COPY instructions, with the checkout's files and installed
 * node_modules standing in for the build), the config file the ConfigMap and compose mount is written
 * where the command reads it (only the brokers, topics, group and port changed, so the test owns
 * them), and the image's ENTRYPOINT + CMD runs as they are. Records produced to the input are decided;
 * /healthz answers, and so does the image's HEALTHCHECK command; SIGTERM stops it with exit code 0.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import {
  cpSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, test } from "node:test";
import { exited } from "../helpers/filter.ts";
import { createTopics, readAll, testBrokers, testKafka, uniqueName } from "../helpers/kafka.ts";
import { jsonRecord, syntheticPairs } from "../helpers/records.ts";
import {
  containerCommand,
  copies,
  finalStage,
  healthcheck,
  loadDockerfile,
  repoPath,
  workdir,
} from "./deploy-files.ts";

const RECORDS = 24;
const stage = finalStage(loadDockerfile("Dockerfile"));
const root = mkdtempSync(join(tmpdir(), "clipsieve-image-"));
after(() => rmSync(root, { recursive: true, force: true }));

/** A path inside the container, in the temporary folder. */
function inContainer(path: string): string {
  return join(root, path);
}

/**
 * Lay out the final stage: what is copied from the build context is copied (so `bin/clipsieve.js`
 * resolves `../dist` and `../src` inside the layout, as in the image, and never reaches a dist/
 * folder of the checkout), and the install stage's node_modules is a link to the checkout's.
 */
function layOutImage(): void {
  const base = workdir(stage);
  for (const c of copies(stage)) {
    const dest = c.dest.startsWith("/") ? c.dest : join(base, c.dest);
    for (const source of c.sources) {
      const from = c.from === undefined ? repoPath(source) : repoPath(source.replace(/^\/app\//, ""));
      const target = inContainer(dest.endsWith("/") || c.sources.length > 1 ? join(dest, source) : dest);
      mkdirSync(dirname(target), { recursive: true });
      if (c.from !== undefined) symlinkSync(from, target, statSync(from).isDirectory() ? "dir" : "file");
      else cpSync(from, target, { recursive: true });
    }
  }
}

function imageEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const i of stage.instructions.filter((i) => i.keyword === "ENV")) {
    for (const [, k, v] of i.args.matchAll(/(\w+)=(\S*)/g)) env[k] = v;
  }
  return env;
}

/** The process environment without the developer's CLIPSIEVE_* settings, plus the image's ENV. */
function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("CLIPSIEVE_")) env[k] = v;
  return { ...env, ...imageEnv(), CLIPSIEVE_LOG_LEVEL: "info" };
}

/** argv in the container -> argv here: `node` is this Node.js, absolute paths are in the layout. */
function hostArgv(argv: string[]): string[] {
  return argv.map((a, i) =>
    i === 0 && a === "node" ? process.execPath : a.startsWith("/") ? inContainer(a) : a,
  );
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const address = server.address();
  await new Promise<void>((r) => server.close(() => r()));
  assert.ok(address && typeof address === "object");
  return address.port;
}

async function waitForHealth(port: number, child: ChildProcess, output: () => string): Promise<Response> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    assert.equal(child.exitCode, null, `clipsieve exited early:\n${output()}`);
    const res = await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined);
    if (res) return res;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`/healthz never answered:\n${output()}`);
}

layOutImage();

test("the image's command runs the filter from the deployed config file against the real broker", async () => {
  const command = containerCommand(stage);
  const configPath = command[command.indexOf("--config") + 1];
  const config = JSON.parse(readFileSync(repoPath("deploy/base/config.json"), "utf8")) as Record<
    string,
    unknown
  >;
  const port = await freePort();
  const topics = {
    input: uniqueName("entry-in"),
    accepted: uniqueName("entry-acc"),
    rejected: uniqueName("entry-rej"),
    deadLetter: uniqueName("entry-dlq"),
    scores: uniqueName("entry-scores"),
    windowsTopic: uniqueName("entry-windows"),
    stateTopic: uniqueName("entry-state"),
  };
  const deployed = {
    ...config,
    ...topics,
    brokers: testBrokers().join(","),
    group: uniqueName("entry-group"),
    metricsPort: port,
  };
  // Only what the test must own differs from the deployed file.
  assert.deepEqual(
    Object.keys(deployed)
      .filter((k) => deployed[k as keyof typeof deployed] !== config[k])
      .sort(),
    [...Object.keys(topics), "brokers", "group", "metricsPort"].sort(),
  );
  mkdirSync(dirname(inContainer(configPath)), { recursive: true });
  writeFileSync(inContainer(configPath), JSON.stringify(deployed, null, 2));

  const kafka = testKafka();
  await createTopics([topics.input], 2);
  await createTopics([
    topics.accepted,
    topics.rejected,
    topics.deadLetter,
    topics.scores,
    topics.windowsTopic,
  ]);
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const pairs = syntheticPairs(RECORDS, Number(config.dim), 11);
  await producer.send({
    topic: topics.input,
    messages: pairs.map((p, i) => ({ key: p.uid, value: jsonRecord(p), partition: i % 2 })),
  });
  await producer.disconnect();

  const [bin, ...args] = hostArgv(command);
  const child = spawn(bin, args, {
    cwd: inContainer(workdir(stage)),
    env: childEnv(),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (out += d));
  const output = () => out;
  try {
    const health = await waitForHealth(port, child, output);
    assert.equal(health.status, 200, await health.text());

    const scores = await readAll(kafka, topics.scores, { expected: RECORDS, timeoutMs: 60_000 });
    assert.equal(scores.length, RECORDS, `scores: ${scores.length} of ${RECORDS}\n${out}`);
    const uids = new Set(pairs.map((p) => p.uid));
    for (const m of scores) {
      const s = JSON.parse(m.value?.toString() ?? "{}") as {
        uid: string;
        decision: string;
        source: { topic: string };
      };
      assert.ok(uids.delete(s.uid), `unexpected or repeated uid ${s.uid}`);
      assert.ok(["accepted", "rejected"].includes(s.decision), `record ${s.uid}: ${s.decision}`);
      assert.equal(s.source.topic, topics.input);
    }

    // The image's HEALTHCHECK command, as Docker would run it inside the container.
    const [hcBin, ...hcArgs] = hostArgv(healthcheck(stage).command);
    const hc = spawnSync(hcBin, hcArgs, { env: childEnv(), encoding: "utf8", timeout: 10_000 });
    assert.equal(hc.status, 0, `HEALTHCHECK failed: ${hc.stderr}`);

    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const delivered = [...metrics.matchAll(/^clipsieve_records_out_total\{[^}]*\} (\d+)$/gm)]
      .map((m) => Number(m[1]))
      .reduce((a, b) => a + b, 0);
    assert.equal(delivered, RECORDS, "clipsieve_records_out_total counts every record");
  } finally {
    child.kill("SIGTERM");
    assert.equal(await exited(child), 0, `exit after SIGTERM:\n${out}`);
  }
  assert.match(out, /stopped cleanly/);
});

test("the HEALTHCHECK command fails when nothing answers on the metrics port", async () => {
  const port = await freePort();
  const configFile = join(root, "unhealthy.json");
  writeFileSync(configFile, JSON.stringify({ metricsPort: port }));
  const [hcBin, script] = hostArgv(healthcheck(stage).command);
  const hc = spawnSync(hcBin, [script, configFile], { env: childEnv(), encoding: "utf8", timeout: 10_000 });
  assert.equal(hc.status, 1);
  assert.match(hc.stderr, new RegExp(`127\\.0\\.0\\.1:${port}/healthz`));
});
