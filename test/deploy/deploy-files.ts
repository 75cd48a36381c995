/**
 * Readers for the deployment files (Dockerfiles, docker-compose.yml, Kubernetes manifests, the
 * Prometheus and Grafana files), shared by the tests that check them against the code.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parse, parseAllDocuments } from "yaml";

export const REPO = fileURLToPath(new URL("../../", import.meta.url));

export function repoPath(relative: string): string {
  return `${REPO}${relative.replace(/^\.\//, "")}`;
}

export function readRepoFile(relative: string): string {
  return readFileSync(repoPath(relative), "utf8");
}

export function readYaml<T>(relative: string): T {
  // Compose files use `<<` merge keys for the parts the clipsieve services share.
  return parse(readRepoFile(relative), { merge: true }) as T;
}

export function readYamlDocuments<T>(text: string): T[] {
  return parseAllDocuments(text, { merge: true }).map((d) => {
    if (d.errors.length > 0) throw new Error(d.errors.map((e) => e.message).join("\n"));
    return d.toJS() as T;
  });
}

// ---------------------------------------------------------------- Dockerfile

export interface DockerInstruction {
  keyword: string;
  args: string;
  line: number;
}

export interface DockerStage {
  image: string;
  name?: string;
  instructions: DockerInstruction[];
}

export interface Dockerfile {
  globalArgs: Record<string, string>;
  stages: DockerStage[];
}

/** Instructions with continuation lines joined and comments dropped; ARGs substituted in FROM. */
export function parseDockerfile(text: string): Dockerfile {
  const instructions: DockerInstruction[] = [];
  let pending = "";
  let startLine = 0;
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    if (pending === "" && (line === "" || line.startsWith("#"))) return;
    if (pending !== "" && line.startsWith("#")) return;
    if (pending === "") startLine = i + 1;
    if (line.endsWith("\\")) {
      pending += `${line.slice(0, -1).trim()} `;
      return;
    }
    const full = (pending + line).trim();
    pending = "";
    const m = /^(\S+)\s*(.*)$/s.exec(full);
    if (m) instructions.push({ keyword: m[1].toUpperCase(), args: m[2], line: startLine });
  });
  const globalArgs: Record<string, string> = {};
  const stages: DockerStage[] = [];
  for (const ins of instructions) {
    if (ins.keyword === "FROM") {
      const [image, as, name] = ins.args.split(/\s+/);
      const resolved = image.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a, b) => globalArgs[a ?? b] ?? "");
      stages.push({ image: resolved, name: as?.toUpperCase() === "AS" ? name : undefined, instructions: [] });
    } else if (stages.length === 0) {
      if (ins.keyword === "ARG") {
        const [k, v] = ins.args.split("=");
        globalArgs[k] = v ?? "";
      }
    } else {
      stages[stages.length - 1].instructions.push(ins);
    }
  }
  return { globalArgs, stages };
}

export function loadDockerfile(relative: string): Dockerfile {
  return parseDockerfile(readRepoFile(relative));
}

export function finalStage(d: Dockerfile): DockerStage {
  return d.stages[d.stages.length - 1];
}

/** The JSON-array ("exec") form of CMD, ENTRYPOINT or HEALTHCHECK ... CMD; throws on the shell form. */
export function execForm(args: string, where: string): string[] {
  if (!args.startsWith("[")) throw new Error(`${where} is in shell form; use the exec form ["...", ...]`);
  return JSON.parse(args) as string[];
}

export function lastInstruction(stage: DockerStage, keyword: string): DockerInstruction | undefined {
  return stage.instructions.filter((i) => i.keyword === keyword).at(-1);
}

/** The container's command line: ENTRYPOINT followed by CMD, both in exec form. */
export function containerCommand(stage: DockerStage): string[] {
  const entry = lastInstruction(stage, "ENTRYPOINT");
  const cmd = lastInstruction(stage, "CMD");
  return [...(entry ? execForm(entry.args, "ENTRYPOINT") : []), ...(cmd ? execForm(cmd.args, "CMD") : [])];
}

export interface DockerCopy {
  from?: string;
  sources: string[];
  dest: string;
}

export function copies(stage: DockerStage): DockerCopy[] {
  return stage.instructions
    .filter((i) => i.keyword === "COPY")
    .map((i) => {
      const words = i.args.split(/\s+/);
      const flags = words.filter((w) => w.startsWith("--"));
      const paths = words.filter((w) => !w.startsWith("--"));
      const from = flags.find((f) => f.startsWith("--from="))?.slice("--from=".length);
      return { from, sources: paths.slice(0, -1), dest: paths[paths.length - 1] };
    });
}

/** The WORKDIR in force at the end of the stage (relative COPY destinations hang off it). */
export function workdir(stage: DockerStage): string {
  return lastInstruction(stage, "WORKDIR")?.args ?? "/";
}

/** HEALTHCHECK's options and command. */
export function healthcheck(stage: DockerStage): { options: Record<string, string>; command: string[] } {
  const h = lastInstruction(stage, "HEALTHCHECK");
  if (!h) throw new Error("no HEALTHCHECK");
  const m = /^((?:--[\w-]+=\S+\s+)*)CMD\s+(.*)$/s.exec(h.args);
  if (!m) throw new Error(`HEALTHCHECK not understood: ${h.args}`);
  const options: Record<string, string> = {};
  for (const o of m[1].trim().split(/\s+/).filter(Boolean)) {
    const [k, v] = o.slice(2).split("=");
    options[k] = v;
  }
  return { options, command: execForm(m[2], "HEALTHCHECK CMD") };
}

/**
 * Whether .dockerignore keeps `path` in the build context. The file here is a deny-all `*` followed
 * by `!path` exceptions; a path is kept when an exception names it or one of its parent folders.
 */
export function keptByDockerignore(path: string): boolean {
  const lines = readRepoFile(".dockerignore")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
  if (lines[0] !== "*") throw new Error(".dockerignore is expected to start with a deny-all `*`");
  const clean = path.replace(/^\.\//, "").replace(/\/$/, "");
  return lines
    .filter((l) => l.startsWith("!"))
    .map((l) => l.slice(1).replace(/\/$/, ""))
    .some((keep) => clean === keep || clean.startsWith(`${keep}/`));
}

// ---------------------------------------------------------------- docker-compose.yml

export interface ComposeService {
  image?: string;
  build?: { context: string; dockerfile?: string };
  command?: string[] | string;
  entrypoint?: string[] | string;
  environment?: Record<string, string | number | boolean | null>;
  ports?: string[];
  volumes?: string[];
  profiles?: string[];
  depends_on?: Record<string, { condition: string }> | string[];
  healthcheck?: { test?: string[] | string; disable?: boolean };
  stop_grace_period?: string;
  deploy?: {
    resources?: {
      reservations?: { devices?: { driver?: string; count?: number | string; capabilities?: string[] }[] };
    };
  };
}

export interface ComposeFile {
  services: Record<string, ComposeService>;
  [key: string]: unknown;
}

export function loadCompose(): ComposeFile {
  return readYaml<ComposeFile>("docker-compose.yml");
}

export function environmentOf(service: ComposeService): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(service.environment ?? {})) out[k] = v === null ? "" : String(v);
  return out;
}

/** `./host/path:/container/path[:ro]` volumes as {host, container}. */
export function bindMounts(service: ComposeService): { host: string; container: string }[] {
  return (service.volumes ?? []).map((v) => {
    const [host, container] = v.split(":");
    return { host, container };
  });
}

/** The container-side ports a service publishes. */
export function containerPorts(service: ComposeService): number[] {
  return (service.ports ?? []).map((p) => Number(String(p).split(":").at(-1)));
}

/** "60s", "1m30s" -> seconds. */
export function durationSeconds(text: string): number {
  let total = 0;
  for (const [, n, unit] of text.matchAll(/(\d+(?:\.\d+)?)(h|ms|m|s|us)/g)) {
    total += Number(n) * { h: 3600, m: 60, s: 1, ms: 1e-3, us: 1e-6 }[unit as "h" | "m" | "s" | "ms" | "us"];
  }
  return total;
}

// ---------------------------------------------------------------- Kubernetes

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec?: Record<string, unknown>;
  data?: Record<string, string>;
}

export interface Kustomization {
  resources?: string[];
  patches?: { path: string }[];
  images?: { name: string; newName?: string; newTag?: string }[];
  configMapGenerator?: { name: string; files?: string[] }[];
}

export function loadKustomization(dir: string): Kustomization {
  return readYaml<Kustomization>(`${dir}/kustomization.yaml`);
}

/** `kubectl kustomize <dir>` when kubectl is installed, else undefined (the caller skips). */
export function kustomizeBuild(dir: string): K8sObject[] | undefined {
  if (!hasKubectl()) return undefined;
  const out = spawnSync("kubectl", ["kustomize", repoPath(dir)], { encoding: "utf8", timeout: 30_000 });
  if (out.status !== 0) throw new Error(`kubectl kustomize ${dir} failed:\n${out.stderr}`);
  return readYamlDocuments<K8sObject>(out.stdout);
}

function hasKubectl(): boolean {
  const probe = spawnSync("kubectl", ["version", "--client"], { encoding: "utf8", timeout: 10_000 });
  return !probe.error && probe.status === 0;
}

export function fileExists(relative: string): boolean {
  return existsSync(repoPath(relative));
}

// ---------------------------------------------------------------- PromQL

/** `clipsieve_*` metric names an expression reads, each with the label names of its matchers. */
export function promqlSelectors(expr: string): { metric: string; labels: string[] }[] {
  const out: { metric: string; labels: string[] }[] = [];
  for (const m of expr.matchAll(/\b(clipsieve_[a-z0-9_]+)(\{([^}]*)\})?/g)) {
    const labels = (m[3] ?? "")
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean)
      .map((s) => s.split(/[=!~]/)[0].trim());
    out.push({ metric: m[1], labels });
  }
  return out;
}

/** Label names of `by (...)` and `without (...)` clauses. */
export function promqlGroupings(expr: string): string[] {
  return [...expr.matchAll(/\b(?:by|without)\s*\(([^)]*)\)/g)].flatMap((m) =>
    m[1]
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean),
  );
}
