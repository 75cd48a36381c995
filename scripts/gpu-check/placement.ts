/**
 * Which onnxruntime execution provider runs each node of the scoring engine's graphs on `--device`:
 * the honest answer to "did the GPU do the work", since onnxruntime quietly places nodes a provider
 * lacks on the CPU, and the engine falls back to the CPU whole when a provider cannot load.
 *
 *     node scripts/gpu-check/placement.ts --device webgpu [--json FILE]
 *
 * For each graph a child process opens one session with onnxruntime's verbose log (written by the
 * native library to stderr, out of JavaScript's reach) and this parent reads the "Node placements"
 * lines from it. Prints one line per graph; --json also writes the result. Exit status 0 even when
 * the provider cannot load: that is a finding, not an error of this script.
 */
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const GRAPHS = [
  "sClipLossFastBlockGraph",
  "sClipLossExactBlockGraph",
  "rowDotGraph",
  "gramNormGraph",
  "maxAbsDotGraph",
  "dotGraph",
  "nearestGraph",
  "gramAccumulateGraph",
  "matMulGraph",
] as const;
type GraphName = (typeof GRAPHS)[number];

export interface GraphPlacement {
  graph: string;
  /** Whether the session opened on the requested provider. */
  opened: boolean;
  /** onnxruntime's error, when it did not. */
  error?: string;
  /** Provider name (as onnxruntime spells it) -> the op types of the nodes placed on it. */
  nodes: Record<string, string[]>;
}

export interface PlacementReport {
  device: string;
  graphs: GraphPlacement[];
  /** Log lines of the provider itself (adapter, CUDA libraries), at most a few, de-duplicated. */
  providerLog: string[];
}

async function child(device: string, graph: GraphName): Promise<void> {
  const ort = await import("onnxruntime-node");
  const graphs = await import("../../src/score/graphs.ts");
  const { sessionOptions } = await import("../../src/score/onnx-session.ts");
  const options = {
    ...sessionOptions(device as "cpu", 1),
    logSeverityLevel: 0 as const,
    logVerbosityLevel: 0,
  };
  try {
    const session = await ort.InferenceSession.create(graphs[graph](), options);
    await session.release();
    process.stdout.write(`${JSON.stringify({ opened: true })}\n`);
  } catch (err) {
    const message = (err instanceof Error ? err.message : String(err)).split("\n")[0];
    process.stdout.write(`${JSON.stringify({ opened: false, error: message.slice(0, 400) })}\n`);
  }
}

/** The "Node placements" block of a verbose onnxruntime log. */
function parsePlacements(log: string): Record<string, string[]> {
  const nodes: Record<string, string[]> = {};
  let current: string[] | undefined;
  for (const line of log.split("\n")) {
    const all = /All nodes placed on \[(\w+)\]\. Number of nodes: (\d+)/.exec(line);
    if (all) {
      nodes[all[1]] = [`all ${all[2]} nodes`];
      current = undefined;
      continue;
    }
    const some = /Node\(s\) placed on \[(\w+)\]\. Number of nodes: (\d+)/.exec(line);
    if (some) {
      current = nodes[some[1]] = [];
      continue;
    }
    // A node line of a "Node(s) placed on" block: "  OpType (node_name)", no timestamp.
    const node = /^\s+(\w+) \(/.exec(line);
    if (current && node) current.push(node[1]);
    else if (/^\d{4}-\d\d-\d\d /.test(line)) current = undefined;
  }
  return nodes;
}

const PROVIDER_LOG =
  /webgpu_context|adapter|vendor|cuda_execution_provider|cuda_provider|cudnn|cublas|libonnxruntime_providers|vulkan/i;

function parent(device: string, jsonPath: string | undefined): void {
  const self = fileURLToPath(import.meta.url);
  const report: PlacementReport = { device, graphs: [], providerLog: [] };
  const providerLog = new Set<string>();
  for (const graph of GRAPHS) {
    const run = spawnSync(process.execPath, [self, "--child", "--device", device, "--graph", graph], {
      encoding: "utf8",
      maxBuffer: 256 * 1024 * 1024,
      timeout: 120_000,
    });
    const stdout = run.stdout ?? "";
    const log = run.stderr ?? "";
    const last = stdout.trim().split("\n").at(-1) ?? "";
    let result: { opened: boolean; error?: string };
    try {
      result = JSON.parse(last) as { opened: boolean; error?: string };
    } catch {
      result = {
        opened: false,
        error: `probe exited with ${run.signal ?? `status ${run.status}`} before reporting`,
      };
    }
    report.graphs.push({ graph, ...result, nodes: parsePlacements(log) });
    for (const line of log.split("\n")) {
      if (PROVIDER_LOG.test(line) && !/graph_transformer|Applying|Removing|Node placements/.test(line)) {
        providerLog.add(
          line
            // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping ANSI colours is the point
            .replace(/\u001b\[[0-9;]*m/g, "")
            .replace(/^\d{4}-\d\d-\d\d \S+ /, "")
            .trim()
            .slice(0, 600),
        );
      }
    }
  }
  report.providerLog = [...providerLog].slice(0, 12);
  const errors = new Set(report.graphs.map((g) => (g.opened ? "" : g.error)));
  if (errors.size === 1 && !report.graphs[0].opened) {
    console.log(`  all ${report.graphs.length} graphs NOT OPENED on ${device}: ${report.graphs[0].error}`);
  } else {
    for (const g of report.graphs) printGraph(g);
  }
  if (report.providerLog.length > 0) {
    console.log("  provider log:");
    for (const line of report.providerLog) console.log(`    ${line}`);
  }
  if (jsonPath) writeFileSync(jsonPath, `${JSON.stringify(report, null, 2)}\n`);
}

function printGraph(g: GraphPlacement): void {
  const placed = Object.entries(g.nodes)
    .map(([provider, ops]) => {
      const all = ops.length === 1 && ops[0].startsWith("all ");
      return `${provider}: ${all ? ops[0] : `${ops.length} (${ops.join(", ")})`}`;
    })
    .join("; ");
  const what = g.opened ? placed || "opened (no placement lines)" : `NOT OPENED: ${g.error}`;
  console.log(`  ${g.graph.padEnd(25)} ${what}`);
}

const { values } = parseArgs({
  options: {
    device: { type: "string", default: "cpu" },
    json: { type: "string" },
    child: { type: "boolean", default: false },
    graph: { type: "string" },
  },
});
if (values.child) {
  if (!GRAPHS.includes(values.graph as GraphName)) throw new Error(`unknown graph ${values.graph}`);
  await child(values.device, values.graph as GraphName);
} else {
  parent(values.device, values.json);
}
