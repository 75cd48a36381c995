/**
 * The images: both Dockerfiles run the same command line as the tests (`clipsieve run --config`), copy
 * only files that exist and that .dockerignore lets through, install production dependencies only, run
 * as a non-root user and check /healthz; the GPU image installs onnxruntime-node's CUDA provider with a
 * flag its installer accepts.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { test } from "node:test";
import {
  containerCommand,
  copies,
  type Dockerfile,
  fileExists,
  finalStage,
  healthcheck,
  keptByDockerignore,
  lastInstruction,
  loadDockerfile,
  parseDockerfile,
  repoPath,
  workdir,
} from "./deploy-files.ts";

const IMAGES = ["Dockerfile", "Dockerfile.gpu"] as const;
const CONFIG_IN_CONTAINER = "/etc/clipsieve/config.json";
const pkg = JSON.parse(readFileSync(repoPath("package.json"), "utf8")) as {
  engines: { node: string };
};

function runSteps(d: Dockerfile): string[] {
  return d.stages.flatMap((s) => s.instructions.filter((i) => i.keyword === "RUN").map((i) => i.args));
}

test("the Dockerfile reader joins continuation lines and resolves ARG defaults in FROM", () => {
  const d = parseDockerfile(
    [
      "ARG BASE=node:24-slim",
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a Dockerfile's ARG reference, not JavaScript's
      "FROM ${BASE} AS deps",
      "RUN a \\",
      "  # note",
      "  && b",
      "FROM deps",
      'CMD ["x", "y"]',
    ].join("\n"),
  );
  assert.deepEqual(
    d.stages.map((s) => [s.image, s.name]),
    [
      ["node:24-slim", "deps"],
      ["deps", undefined],
    ],
  );
  assert.equal(d.stages[0].instructions[0].args, "a && b");
  assert.deepEqual(containerCommand(d.stages[1]), ["x", "y"]);
});

for (const file of IMAGES) {
  test(`${file}: the container runs \`clipsieve run --config ${CONFIG_IN_CONTAINER}\` from the sources`, () => {
    const stage = finalStage(loadDockerfile(file));
    const command = containerCommand(stage);
    assert.deepEqual(command, ["node", "/app/bin/clipsieve.js", "run", "--config", CONFIG_IN_CONTAINER]);
    assert.equal(workdir(stage), "/app");
    // The entry point the command names is copied into the image, and dist/ is not (bin/ would prefer it).
    const copied = copies(stage);
    const dest = (p: string) => copied.find((c) => `/app/${c.dest.replace(/^\.\//, "")}` === p);
    assert.ok(dest("/app/bin"), `${file} does not copy bin/ to /app/bin`);
    assert.ok(dest("/app/src"), `${file} does not copy src/ to /app/src`);
    assert.ok(!copied.some((c) => c.sources.some((s) => s.startsWith("dist"))), `${file} copies dist/`);
    assert.ok(!keptByDockerignore("dist"), ".dockerignore lets dist/ into the build context");
  });

  test(`${file}: every file copied from the build context exists and is not ignored`, () => {
    const d = loadDockerfile(file);
    for (const stage of d.stages) {
      for (const c of copies(stage).filter((c) => c.from === undefined)) {
        for (const source of c.sources) {
          assert.ok(fileExists(source), `${file}: COPY ${source}: no such file in the repository`);
          assert.ok(keptByDockerignore(source), `${file}: COPY ${source}: .dockerignore leaves it out`);
        }
      }
      for (const c of copies(stage).filter((c) => c.from !== undefined)) {
        const from = c.from ?? "";
        assert.ok(
          d.stages.some((s) => s.name === from) || from.includes(":"),
          `${file}: COPY --from=${from} names no stage`,
        );
      }
    }
  });

  test(`${file}: production dependencies only, from the lock file`, () => {
    const d = loadDockerfile(file);
    const installs = runSteps(d).filter((r) => /\bnpm (ci|install)\b/.test(r));
    assert.ok(installs.length > 0, `${file} installs no dependencies`);
    for (const r of installs) {
      assert.match(r, /\bnpm ci\b/, `${file}: \`${r}\` should be npm ci (the lock file's versions)`);
      assert.match(r, /--omit=dev\b/, `${file}: \`${r}\` installs dev dependencies`);
    }
    const finalCopies = copies(finalStage(d));
    assert.ok(
      finalCopies.some((c) => c.from !== undefined && c.sources.includes("/app/node_modules")),
      `${file}: the final stage should take node_modules from the install stage`,
    );
  });

  test(`${file}: Node.js ${pkg.engines.node} and a non-root user`, () => {
    const d = loadDockerfile(file);
    const wanted = Number(/(\d+)/.exec(pkg.engines.node)?.[1]);
    const nodeImages = d.stages.map((s) => s.image).filter((i) => i.startsWith("node:"));
    assert.ok(nodeImages.length > 0, `${file} uses no node: image`);
    for (const image of nodeImages) {
      assert.ok(
        Number(/^node:(\d+)/.exec(image)?.[1]) >= wanted,
        `${file}: ${image} is older than Node ${wanted}`,
      );
    }
    const user = lastInstruction(finalStage(d), "USER")?.args;
    assert.ok(user, `${file} runs as root (no USER)`);
    assert.match(user, /^[1-9]\d*(:[1-9]\d*)?$/, `${file}: USER ${user} should be a numeric non-root uid`);
  });

  test(`${file}: the health check calls /healthz through the copied script`, () => {
    const stage = finalStage(loadDockerfile(file));
    const h = healthcheck(stage);
    assert.equal(h.command[0], "node");
    const script = h.command[1];
    const copiedTo = copies(stage).map((c) => `/app/${c.dest.replace(/^\.\//, "")}`);
    assert.ok(copiedTo.includes(script), `${file}: the health check script ${script} is not copied`);
    assert.equal(
      h.command[2],
      CONFIG_IN_CONTAINER,
      "the health check reads the same config file as the command",
    );
    assert.match(readFileSync(repoPath(script.replace(/^\/app\//, "")), "utf8"), /\/healthz/);
    assert.ok(h.options["start-period"], `${file}: give the health check a start period`);
  });
}

test("Dockerfile: the CPU image skips onnxruntime-node's CUDA download", () => {
  const d = loadDockerfile("Dockerfile");
  const env = d.stages.flatMap((s) => s.instructions.filter((i) => i.keyword === "ENV").map((i) => i.args));
  assert.ok(env.some((e) => /ONNXRUNTIME_NODE_INSTALL=skip/.test(e)));
  assert.ok(!runSteps(d).some((r) => /onnxruntime-node-install=/.test(r)));
});

test("Dockerfile.gpu: CUDA 12 + cuDNN runtime base, and the CUDA provider installed and checked at build time", () => {
  const d = loadDockerfile("Dockerfile.gpu");
  assert.match(finalStage(d).image, /^nvidia\/cuda:12\.[\d.]+-cudnn-runtime-/);
  const install = runSteps(d).find((r) => /onnxruntime-node\/script\/install\.js/.test(r));
  assert.ok(install, "Dockerfile.gpu does not run onnxruntime-node's installer");
  const flag = /--onnxruntime-node-install=(\S+)/.exec(install)?.[1];
  assert.ok(flag, "the installer is run without --onnxruntime-node-install=<manifest>");
  // The flag must name a manifest the installed onnxruntime-node knows for linux/x64.
  const require = createRequire(repoPath("package.json"));
  const metadata = require("onnxruntime-node/script/install-metadata.js") as {
    requirements: Record<string, string[]>;
    manifests: Record<string, Record<string, unknown>>;
  };
  assert.ok(metadata.requirements["linux/x64"].includes(flag), `onnxruntime-node has no ${flag} manifest`);
  for (const lib of Object.keys(metadata.manifests[`linux/x64:${flag}`]).filter((f) =>
    /cuda|shared/.test(f),
  )) {
    const name = lib.replace(/^\.\//, "");
    assert.ok(install.includes(name), `the build does not check that ${name} was installed`);
  }
});

for (const file of IMAGES) {
  test(`${file}: the librdkafka client is built in the install stage, its tool chain stays there`, () => {
    const d = loadDockerfile(file);
    const install = d.stages.find((s) =>
      s.instructions.some((i) => i.keyword === "RUN" && /\bnpm ci\b/.test(i.args)),
    );
    assert.ok(install, `${file}: no install stage`);
    const runs = install.instructions.filter((i) => i.keyword === "RUN").map((i) => i.args);
    assert.ok(
      runs.some((r) => /\bg\+\+/.test(r) && /libssl-dev/.test(r) && /zlib1g-dev/.test(r)),
      `${file}: the install stage lacks the tool chain and headers the librdkafka build needs`,
    );
    // The postinstall that builds it must be in the build context at npm ci time.
    const copied = copies(install).flatMap((c) => c.sources);
    assert.ok(copied.includes("scripts/build-librdkafka.ts"), `${file}: postinstall script not copied`);
    const final = finalStage(d);
    const finalRuns = final.instructions.filter((i) => i.keyword === "RUN").map((i) => i.args);
    assert.ok(
      !finalRuns.some((r) => /\bg\+\+|libssl-dev|zlib1g-dev|\bmake\b/.test(r)),
      `${file}: build tools in the final image`,
    );
    assert.ok(
      finalRuns.some((r) => /\blibssl3\b|\bopenssl\b/.test(r)),
      `${file}: the final image lacks the OpenSSL the client links`,
    );
  });
}
