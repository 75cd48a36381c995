/**
 * Monitoring against the code: Prometheus scrapes the services that run the filter on the config's
 * metricsPort; every metric and label that the alerts and the Grafana dashboard query exists in
 * src/common/metrics.ts; the dashboard's panels cover what an operator needs and use the provisioned
 * data source; the target acceptance rate is the config's; docs/operations.md explains every alert
 * and every metric, and names only CLIPSIEVE_* variables that exist.
 */

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { createPipelineMetrics } from "../../src/common/metrics.ts";
import { SECRET_ENV } from "../../src/kafka/index.ts";
import { envVarName, RUN_CONFIG_KEYS, resolveRunConfig } from "../../src/pipeline/config.ts";
import {
  bindMounts,
  containerPorts,
  environmentOf,
  fileExists,
  loadCompose,
  promqlGroupings,
  promqlSelectors,
  readRepoFile,
  readYaml,
  repoPath,
} from "./deploy-files.ts";

const compose = loadCompose();
const CONFIG_FILE = "deploy/base/config.json";
const config = resolveRunConfig({
  file: { path: CONFIG_FILE, values: JSON.parse(readFileSync(repoPath(CONFIG_FILE), "utf8")) },
});
/** Labels Prometheus adds to every scraped series: the job, the target, and the variant relabelled on. */
const TARGET_LABELS = ["job", "instance", "variant"];

interface MetricInfo {
  type: string;
  labels: string[];
}
const metrics = createPipelineMetrics(true);
const known = new Map<string, MetricInfo>();
for (const m of await metrics.registry.getMetricsAsJSON()) {
  const labels =
    (metrics.registry.getSingleMetric(m.name) as unknown as { labelNames?: string[] }).labelNames ?? [];
  known.set(m.name, { type: String(m.type), labels: [...labels] });
}

/** The metric a series name belongs to: histograms expose `_bucket` (with `le`), `_sum` and `_count`. */
function lookup(series: string): { info: MetricInfo; extra: string[] } | undefined {
  const direct = known.get(series);
  if (direct) return { info: direct, extra: [] };
  const m = /^(.*)_(bucket|sum|count)$/.exec(series);
  const info = m ? known.get(m[1]) : undefined;
  if (!m || info?.type !== "histogram") return undefined;
  return { info, extra: m[2] === "bucket" ? ["le"] : [] };
}

function checkExpr(expr: string, where: string): string[] {
  const selectors = promqlSelectors(expr);
  const allowed = new Set(TARGET_LABELS);
  for (const s of selectors) {
    const found = lookup(s.metric);
    assert.ok(found, `${where}: ${s.metric} is not a clipsieve metric`);
    for (const l of [...found.info.labels, ...found.extra]) allowed.add(l);
    for (const l of s.labels) {
      assert.ok(
        [...found.info.labels, ...found.extra, ...TARGET_LABELS].includes(l),
        `${where}: ${s.metric} has no label ${l}`,
      );
    }
  }
  for (const l of promqlGroupings(expr))
    assert.ok(allowed.has(l), `${where}: grouping by unknown label ${l}`);
  return selectors.map((s) => s.metric);
}

/** The target acceptance rate of the config's policy: the keep fraction, times the `then` fraction. */
function targetRate(): number {
  const fraction = (rule: string | undefined) => (rule ? Number(rule.split("=")[1]) : 1);
  return fraction(config.keep) * fraction(config.thenKeep);
}

interface ScrapeConfig {
  job_name: string;
  metrics_path?: string;
  static_configs?: { targets: string[] }[];
  dns_sd_configs?: { names: string[]; type: string; port: number }[];
  relabel_configs?: {
    source_labels?: string[];
    regex?: string;
    target_label?: string;
    replacement?: string;
  }[];
}
const prometheus = readYaml<{ rule_files: string[]; scrape_configs: ScrapeConfig[] }>(
  "deploy/prometheus/prometheus.yml",
);
interface Rule {
  alert: string;
  expr: string;
  for?: string;
  labels: { severity: string };
  annotations: { summary: string };
}
const alerts = readYaml<{ groups: { name: string; rules: Rule[] }[] }>("deploy/prometheus/alerts.yml");
const rules = alerts.groups.flatMap((g) => g.rules);

interface Panel {
  title: string;
  type: string;
  datasource?: { uid: string };
  targets?: { expr: string; datasource?: { uid: string } }[];
}
const DASHBOARD = "deploy/grafana/dashboards/clipsieve.json";
const dashboard = JSON.parse(readRepoFile(DASHBOARD)) as {
  uid: string;
  panels: Panel[];
  templating: { list: { name: string; type: string; query: unknown }[] };
};

test("the metric reader finds the pipeline's metrics and their labels", () => {
  // Hand-picked from src/common/metrics.ts: a counter with labels and a histogram's series.
  assert.deepEqual(known.get("clipsieve_records_out_total")?.labels, ["decision", "reason"]);
  assert.deepEqual(lookup("clipsieve_window_seconds_bucket")?.extra, ["le"]);
  assert.equal(lookup("clipsieve_records_in_total_bucket"), undefined);
  assert.deepEqual(promqlSelectors('sum by (le) (rate(clipsieve_score_bucket{score="x", le!="1"}[5m]))'), [
    { metric: "clipsieve_score_bucket", labels: ["score", "le"] },
  ]);
});

test("Prometheus scrapes every `clipsieve run` service on the config's metricsPort", () => {
  const job = prometheus.scrape_configs.find((s) => s.job_name === "clipsieve");
  assert.ok(job, 'no scrape job named clipsieve (the alerts select job="clipsieve")');
  assert.equal(job.metrics_path ?? "/metrics", "/metrics");
  const targets = (job.dns_sd_configs ?? []).flatMap((d) => d.names.map((n) => [n, d.port] as const));
  const runServices = Object.entries(compose.services).filter(
    ([, s]) => Array.isArray(s.command) && s.command[0] === "run",
  );
  assert.deepEqual(targets.map(([n]) => n).sort(), runServices.map(([n]) => n).sort());
  for (const [name, port] of targets) {
    assert.equal(port, config.metricsPort, `target ${name}`);
    assert.ok(containerPorts(compose.services[name]).includes(port), `${name} does not publish ${port}`);
  }
  // The variant label the GPU alert selects on is set by relabelling.
  const variants = (job.relabel_configs ?? [])
    .filter((r) => r.target_label === "variant")
    .map((r) => r.replacement);
  assert.deepEqual(variants.sort(), ["cpu", "gpu"]);
});

test("Prometheus' own files are mounted where its config reads them", () => {
  const mounts = bindMounts(compose.services.prometheus);
  const at = (container: string) => mounts.find((m) => m.container === container);
  assert.equal(at("/etc/prometheus/prometheus.yml")?.host, "./deploy/prometheus/prometheus.yml");
  for (const file of prometheus.rule_files) {
    const m = at(file);
    assert.ok(m && fileExists(m.host), `rule file ${file} is not mounted from the repository`);
  }
});

test("alerts query only metrics and labels that exist", () => {
  assert.ok(rules.length >= 5);
  for (const r of rules) {
    assert.match(r.alert, /^Clipsieve[A-Z]\w+$/);
    assert.ok(["critical", "warning"].includes(r.labels.severity), `${r.alert}: severity`);
    assert.ok(r.annotations.summary, `${r.alert}: summary`);
    checkExpr(r.expr, `alert ${r.alert}`);
  }
});

test("the acceptance alert and the dashboard use the config's target rate", () => {
  const target = targetRate();
  const rule = rules.find((r) => r.alert === "ClipsieveAcceptanceOffTarget");
  assert.ok(rule);
  assert.match(rule.expr, new RegExp(`-\\s*${String(target).replace(".", "\\.")}\\s*\\)`));
  const variable = dashboard.templating.list.find((v) => v.name === "target");
  assert.equal(Number(variable?.query), target);
});

test("the dashboard's panels query metrics and labels that exist, through the provisioned data source", () => {
  const provisioned = readYaml<{ datasources: { uid: string; url: string }[] }>(
    "deploy/grafana/provisioning/datasources/prometheus.yaml",
  ).datasources;
  assert.equal(provisioned.length, 1);
  const uid = provisioned[0].uid;
  const [host, port] = new URL(provisioned[0].url).host.split(":");
  assert.ok(
    containerPorts(compose.services[host]).includes(Number(port)),
    "the data source is the compose Prometheus",
  );
  for (const p of dashboard.panels) {
    assert.equal(p.datasource?.uid, uid, `panel ${p.title}`);
    assert.ok((p.targets ?? []).length > 0, `panel ${p.title} has no query`);
    for (const t of p.targets ?? []) checkExpr(t.expr, `panel ${p.title}`);
  }
});

test("the dashboard covers throughput, acceptance, thresholds, latency, lag and score distributions", () => {
  const exprs = (pred: (p: Panel) => boolean) =>
    dashboard.panels
      .filter(pred)
      .flatMap((p) => p.targets ?? [])
      .map((t) => t.expr)
      .join("\n");
  const all = exprs(() => true);
  assert.match(all, /by \(decision\) \(rate\(clipsieve_records_out_total/, "throughput by decision");
  const acceptance = exprs((p) => /acceptance/i.test(p.title));
  assert.match(acceptance, /clipsieve_records_out_total\{decision="accepted"\}/, "acceptance rate");
  assert.match(acceptance, /\$target/, "acceptance rate against the target");
  assert.match(all, /clipsieve_threshold/, "thresholds over time");
  assert.match(all, /histogram_quantile\(.*clipsieve_window_seconds_bucket/, "window latency");
  assert.match(all, /clipsieve_consumer_lag_records/, "consumer lag");
  assert.match(
    exprs((p) => p.type === "heatmap"),
    /clipsieve_score_bucket/,
    "score distributions",
  );
});

test("Grafana loads the dashboard from where compose mounts it", () => {
  const grafana = compose.services.grafana;
  const providers = readYaml<{ providers: { options: { path: string } }[] }>(
    "deploy/grafana/provisioning/dashboards/clipsieve.yaml",
  ).providers;
  const mounts = bindMounts(grafana);
  const dashboards = mounts.find((m) => m.container === providers[0].options.path);
  assert.ok(dashboards, "the dashboards folder is not mounted where the provider reads");
  assert.ok(fileExists(`${dashboards.host}/clipsieve.json`.replace(/^\.\//, "")));
  assert.ok(mounts.some((m) => m.container === "/etc/grafana/provisioning" && fileExists(m.host)));
  const home = environmentOf(grafana).GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH;
  assert.equal(home, `${providers[0].options.path}/clipsieve.json`);
});

test("docs/operations.md explains every alert and metric, and names only variables that exist", () => {
  const doc = readRepoFile("docs/operations.md");
  for (const r of rules) assert.ok(doc.includes(r.alert), `docs/operations.md does not explain ${r.alert}`);
  for (const [name] of [...known].filter(([n]) => !n.startsWith("clipsieve_process_"))) {
    assert.ok(doc.includes(name), `docs/operations.md does not explain ${name}`);
  }
  const vars = new Set([
    ...RUN_CONFIG_KEYS.map((k) => envVarName(k)),
    ...Object.values(SECRET_ENV),
    "CLIPSIEVE_LOG_LEVEL",
  ]);
  for (const [v] of doc.matchAll(/CLIPSIEVE_[A-Z_]+[A-Z]/g))
    assert.ok(vars.has(v), `docs/operations.md: ${v}`);
  for (const [, series] of doc.matchAll(/`(clipsieve_[a-z_]*[a-z])[`{]/g)) {
    assert.ok(lookup(series), `docs/operations.md names ${series}, which is not a metric`);
  }
});
