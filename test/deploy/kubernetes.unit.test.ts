/**
 * deploy/ (kustomize base, cpu and gpu overlays) against the code and the images: every object is
 * valid against the Kubernetes (and KEDA) schemas; the Deployment runs the image's command with the
 * ConfigMap generated from the config file at the path the command reads; it sets only CLIPSIEVE_*
 * variables the config schema knows; ports, probes, selectors, the user id, the drain time and the
 * autoscaler's topic, group and brokers agree with the config and the Dockerfiles. Where kubectl is
 * installed, each overlay is built with its kustomize and the result is checked the same way.
 */

import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { test } from "node:test";
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget";
import { ConfigMap } from "kubernetes-models/v1/ConfigMap";
import { Service } from "kubernetes-models/v1/Service";
import { SECRET_ENV } from "../../src/kafka/index.ts";
import { envVarName, RUN_CONFIG_KEYS, resolveRunConfig } from "../../src/pipeline/config.ts";
import {
  containerCommand,
  fileExists,
  finalStage,
  type K8sObject,
  type Kustomization,
  kustomizeBuild,
  lastInstruction,
  loadCompose,
  loadDockerfile,
  loadKustomization,
  readYaml,
  repoPath,
} from "./deploy-files.ts";

const BASE = "deploy/base";
const OVERLAYS = { cpu: "deploy/overlays/cpu", gpu: "deploy/overlays/gpu" } as const;
const DOCKERFILE_OF = { cpu: "Dockerfile", gpu: "Dockerfile.gpu" } as const;
/** The drain budget `clipsieve run` gives itself after SIGTERM (docs/streaming.md, "Shutdown"). */
const DRAIN_SECONDS = 30;
const OTHER_CLIPSIEVE_VARS = new Set(["CLIPSIEVE_LOG_LEVEL"]);

const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  "apps/v1/Deployment": Deployment,
  "v1/Service": Service,
  "v1/ConfigMap": ConfigMap,
  "policy/v1/PodDisruptionBudget": PodDisruptionBudget,
  "keda.sh/v1alpha1/ScaledObject": ScaledObject,
};

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: unknown;
}
interface Probe {
  httpGet?: { path: string; port: string | number };
}
interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  env?: EnvVar[];
  ports?: { name?: string; containerPort: number }[];
  startupProbe?: Probe;
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  volumeMounts?: { name: string; mountPath: string }[];
}
interface PodSpec {
  containers: Container[];
  volumes?: { name: string; configMap?: { name: string } }[];
  terminationGracePeriodSeconds?: number;
  securityContext?: { runAsUser?: number; runAsNonRoot?: boolean };
}
interface DeploymentSpec {
  replicas?: number;
  selector: { matchLabels: Record<string, string> };
  template: {
    metadata: { labels: Record<string, string>; annotations?: Record<string, string> };
    spec: PodSpec;
  };
}
interface ScaledObjectSpec {
  scaleTargetRef: { kind?: string; name: string };
  minReplicaCount?: number;
  maxReplicaCount?: number;
  triggers: { type: string; metadata: Record<string, string> }[];
}

const baseKustomization = loadKustomization(BASE);
const baseObjects = (baseKustomization.resources ?? []).map((r) => readYaml<K8sObject>(`${BASE}/${r}`));
const configFile = baseKustomization.configMapGenerator?.[0]?.files?.[0] ?? "";
const configValues = JSON.parse(readFileSync(repoPath(`${BASE}/${configFile}`), "utf8")) as Record<
  string,
  unknown
>;
const config = resolveRunConfig({ file: { path: `${BASE}/${configFile}`, values: configValues } });

function one(objects: K8sObject[], kind: string): K8sObject {
  const found = objects.filter((o) => o.kind === kind);
  assert.equal(found.length, 1, `expected one ${kind}, found ${found.length}`);
  return found[0];
}

function validateAll(objects: K8sObject[], where: string): void {
  for (const o of objects) {
    const Model = MODELS[`${o.apiVersion}/${o.kind}`];
    assert.ok(Model, `${where}: no schema for ${o.apiVersion} ${o.kind} (unexpected kind?)`);
    assert.doesNotThrow(() => new Model(o as never).validate(), `${where}: ${o.kind} ${o.metadata.name}`);
  }
}

function container(deployment: K8sObject): Container {
  const spec = deployment.spec as unknown as DeploymentSpec;
  const c = spec.template.spec.containers.find((c) => c.name === "clipsieve");
  assert.ok(c, "no container named clipsieve");
  return c;
}

function matches(selector: Record<string, string>, labels: Record<string, string>): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

/** The checks that hold for the base and for every built overlay. */
function checkDeployment(objects: K8sObject[], where: string, configMapName: (n: string) => boolean): void {
  const deployment = one(objects, "Deployment");
  const spec = deployment.spec as unknown as DeploymentSpec;
  const pod = spec.template.spec;
  const c = container(deployment);
  // The image's own command line: `clipsieve run --config <file>`, with nothing else that could drift.
  const imageCmd = containerCommand(finalStage(loadDockerfile("Dockerfile")));
  assert.equal(c.command, undefined, `${where}: keep the image's ENTRYPOINT`);
  assert.deepEqual(c.args, imageCmd.slice(2), `${where}: args differ from the image's CMD`);
  const configPath = imageCmd[imageCmd.indexOf("--config") + 1];
  const mount = c.volumeMounts?.find((m) => `${m.mountPath.replace(/\/$/, "")}/${configFile}` === configPath);
  assert.ok(mount, `${where}: nothing mounted to give ${configPath}`);
  const volume = pod.volumes?.find((v) => v.name === mount.name);
  assert.ok(
    volume?.configMap && configMapName(volume.configMap.name),
    `${where}: ${configPath} is not the ConfigMap`,
  );

  const known = new Set(RUN_CONFIG_KEYS.map((k) => envVarName(k)));
  for (const e of c.env ?? []) {
    if (!e.name.startsWith("CLIPSIEVE_")) continue;
    assert.ok(
      known.has(e.name) ||
        OTHER_CLIPSIEVE_VARS.has(e.name) ||
        Object.values(SECRET_ENV).includes(e.name as never),
      `${where}: ${e.name} is not a clipsieve option`,
    );
  }
  // The file with the literal environment over it validates, as `clipsieve run` would merge them.
  const env: Record<string, string> = {};
  for (const e of c.env ?? []) {
    const key = RUN_CONFIG_KEYS.find((k) => envVarName(k) === e.name);
    if (key && e.value !== undefined) env[key] = e.value;
  }
  resolveRunConfig({ file: { path: configFile, values: configValues }, env });

  const metricsPort = c.ports?.find((p) => p.name === "metrics");
  assert.equal(metricsPort?.containerPort, config.metricsPort, `${where}: metrics port is not the config's`);
  for (const probe of [c.startupProbe, c.livenessProbe, c.readinessProbe]) {
    assert.equal(probe?.httpGet?.path, "/healthz", `${where}: probes check /healthz`);
    assert.equal(probe?.httpGet?.port, "metrics", `${where}: probes use the metrics port`);
  }
  assert.equal(spec.template.metadata.annotations?.["prometheus.io/port"], String(config.metricsPort));
  assert.ok(
    (pod.terminationGracePeriodSeconds ?? 30) > DRAIN_SECONDS,
    `${where}: terminationGracePeriodSeconds must exceed the ${DRAIN_SECONDS} s drain`,
  );
  assert.equal(spec.replicas, undefined, `${where}: replicas belongs to the autoscaler`);
  assert.ok(matches(spec.selector.matchLabels, spec.template.metadata.labels), `${where}: selector`);

  const service = one(objects, "Service");
  const sspec = service.spec as {
    selector: Record<string, string>;
    ports: { port: number; targetPort: string }[];
  };
  assert.ok(matches(sspec.selector, spec.template.metadata.labels), `${where}: the Service selects no pod`);
  assert.deepEqual(
    sspec.ports.map((p) => [p.port, p.targetPort]),
    [[config.metricsPort, "metrics"]],
  );
  const pdb = one(objects, "PodDisruptionBudget");
  const pspec = pdb.spec as { selector: { matchLabels: Record<string, string> } };
  assert.ok(
    matches(pspec.selector.matchLabels, spec.template.metadata.labels),
    `${where}: the PDB selects no pod`,
  );

  const scaled = one(objects, "ScaledObject");
  const so = scaled.spec as unknown as ScaledObjectSpec;
  assert.equal(so.scaleTargetRef.name, deployment.metadata.name);
  assert.equal(so.scaleTargetRef.kind ?? "Deployment", "Deployment");
  const kafka = so.triggers.filter((t) => t.type === "kafka");
  assert.equal(kafka.length, 1, `${where}: one kafka trigger`);
  const m = kafka[0].metadata;
  assert.equal(m.topic, config.input, `${where}: KEDA watches another topic than the input`);
  assert.equal(m.consumerGroup, config.group, `${where}: KEDA watches another group`);
  assert.equal(m.bootstrapServers, config.brokers.join(","), `${where}: KEDA asks other brokers`);
  assert.equal(m.allowIdleConsumers, "false", `${where}: replicas must not exceed the partitions`);
  assert.ok(
    Number(m.lagThreshold) > 0 && Number(m.lagThreshold) % config.windowSize === 0,
    "whole windows of lag",
  );
  assert.ok((so.minReplicaCount ?? 0) >= 1 && (so.maxReplicaCount ?? 0) >= (so.minReplicaCount ?? 0));
}

test("the base's resources exist and are valid Kubernetes and KEDA objects", () => {
  for (const r of baseKustomization.resources ?? []) assert.ok(fileExists(`${BASE}/${r}`), r);
  const listed = new Set([...(baseKustomization.resources ?? []), "kustomization.yaml"]);
  const stray = readdirSync(repoPath(BASE)).filter((f) => f.endsWith(".yaml") && !listed.has(f));
  assert.deepEqual(stray, [], "YAML files in the base that the kustomization leaves out");
  validateAll(baseObjects, BASE);
});

test("the ConfigMap's config file is a valid `clipsieve run` config", () => {
  assert.equal(configFile, "config.json");
  assert.ok(config.metricsPort, "metricsPort must be set: the probes and Prometheus use it");
  assert.equal(config.device, "cpu", "the base is device-neutral; the gpu overlay sets cuda");
});

test("the base Deployment agrees with the image, the config and the autoscaler", () => {
  const generated = baseKustomization.configMapGenerator?.[0]?.name ?? "";
  checkDeployment(baseObjects, BASE, (n) => n === generated);
});

test("a secured cluster's secrets come from Kubernetes Secrets, never from a literal in the manifest", () => {
  const c = container(one(baseObjects, "Deployment"));
  const fromSecret = new Map(
    (c.env ?? [])
      .filter((e) => (e as { valueFrom?: { secretKeyRef?: unknown } }).valueFrom?.secretKeyRef)
      .map((e) => [
        e.name,
        (e as { valueFrom: { secretKeyRef: { name: string; optional?: boolean } } }).valueFrom.secretKeyRef,
      ]),
  );
  for (const name of Object.values(SECRET_ENV)) {
    assert.ok(fromSecret.has(name), `${name} is not taken from a Secret`);
    assert.equal(fromSecret.get(name)?.optional, true, `${name}: a plaintext cluster needs no Secret`);
  }
  const literal = (c.env ?? []).filter(
    (e) => /PASSWORD|SECRET/.test(e.name) && (e as { value?: string }).value !== undefined,
  );
  assert.deepEqual(literal, [], "a secret given as a literal value");
  for (const key of Object.keys(config))
    assert.doesNotMatch(key, /password$|secret$/i, `config.json holds ${key}`);
  const pod = (one(baseObjects, "Deployment").spec as unknown as DeploymentSpec).template.spec;
  const tls = (pod.volumes ?? []).find(
    (v) => (v as { secret?: { secretName: string } }).secret?.secretName === "clipsieve-kafka-tls",
  );
  assert.ok(tls, "the TLS files come from the Secret clipsieve-kafka-tls");
});

test("the Deployment's user is the images' non-root user", () => {
  const deployment = one(baseObjects, "Deployment");
  const pod = (deployment.spec as unknown as DeploymentSpec).template.spec;
  assert.equal(pod.securityContext?.runAsNonRoot, true);
  for (const dockerfile of Object.values(DOCKERFILE_OF)) {
    const user = lastInstruction(finalStage(loadDockerfile(dockerfile)), "USER")?.args ?? "";
    assert.equal(Number(user.split(":")[0]), pod.securityContext?.runAsUser, `${dockerfile} USER ${user}`);
  }
});

for (const [variant, dir] of Object.entries(OVERLAYS) as [keyof typeof OVERLAYS, string][]) {
  const k: Kustomization = loadKustomization(dir);

  test(`overlay ${variant}: builds on the base, with the image compose builds from ${DOCKERFILE_OF[variant]}`, () => {
    assert.deepEqual(k.resources, ["../../base"]);
    for (const p of k.patches ?? []) assert.ok(fileExists(`${dir}/${p.path}`), `${dir}/${p.path}`);
    const image = k.images?.find((i) => i.name === container(one(baseObjects, "Deployment")).image);
    assert.ok(image?.newName && image.newTag, `${dir}: the image is not set`);
    const built = Object.values(loadCompose().services).find(
      (s) => s.image === `${image.newName}:${image.newTag}`,
    );
    assert.equal(
      built?.build?.dockerfile,
      DOCKERFILE_OF[variant],
      `${dir}: ${image.newName}:${image.newTag}`,
    );
  });

  test(`overlay ${variant}: patches set only CLIPSIEVE_* variables that exist`, () => {
    const known = new Set(RUN_CONFIG_KEYS.map((key) => envVarName(key)));
    for (const p of k.patches ?? []) {
      const text = readFileSync(repoPath(`${dir}/${p.path}`), "utf8");
      for (const [, name] of text.matchAll(/name:\s*(CLIPSIEVE_\w+)/g)) {
        assert.ok(known.has(name) || OTHER_CLIPSIEVE_VARS.has(name), `${dir}/${p.path}: ${name}`);
      }
    }
  });

  test(`overlay ${variant}: kustomize builds it, and the result holds (where kubectl is installed)`, (t) => {
    const objects = kustomizeBuild(dir);
    if (!objects) {
      t.skip("kubectl is not installed here");
      return;
    }
    validateAll(objects, dir);
    const configMap = one(objects, "ConfigMap");
    assert.deepEqual(JSON.parse(configMap.data?.[configFile] ?? "{}"), configValues);
    checkDeployment(objects, dir, (n) => n === configMap.metadata.name);
    const c = container(one(objects, "Deployment"));
    const image = k.images?.[0];
    assert.equal(c.image, `${image?.newName}:${image?.newTag}`);
    const device = c.env?.find((e) => e.name === "CLIPSIEVE_DEVICE")?.value ?? config.device;
    const gpus = c.resources?.limits?.["nvidia.com/gpu"];
    if (variant === "gpu") {
      assert.equal(device, "cuda");
      assert.equal(gpus, "1", "one GPU per instance");
      assert.equal(c.resources?.requests?.["nvidia.com/gpu"], "1");
    } else {
      assert.equal(device, "cpu");
      assert.equal(gpus, undefined);
    }
    const so = one(objects, "ScaledObject").spec as unknown as ScaledObjectSpec;
    const baseMax =
      (one(baseObjects, "ScaledObject").spec as unknown as ScaledObjectSpec).maxReplicaCount ?? 0;
    assert.ok(
      (so.maxReplicaCount ?? 0) <= baseMax,
      "an overlay may lower the partition ceiling, not raise it",
    );
  });
}
