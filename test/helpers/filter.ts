import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { createTopics, testBrokers, uniqueName } from "./kafka.ts";

export interface FilterTopics {
  input: string;
  accepted: string;
  rejected: string;
  deadLetter: string;
  scores: string;
  windows: string;
  group: string;
}

export async function filterTopics(partitions: number): Promise<FilterTopics> {
  const t = {
    input: uniqueName("in"),
    accepted: uniqueName("acc"),
    rejected: uniqueName("rej"),
    deadLetter: uniqueName("dlq"),
    scores: uniqueName("scores"),
    windows: uniqueName("windows"),
    group: uniqueName("group"),
  };
  await createTopics([t.input], partitions);
  await createTopics([t.accepted, t.rejected, t.deadLetter, t.scores, t.windows], 1);
  return t;
}

export function filterArgs(t: FilterTopics, extra: string[] = []): string[] {
  return [
    "run",
    "--brokers",
    testBrokers().join(","),
    "--group",
    t.group,
    "--input",
    t.input,
    "--accepted",
    t.accepted,
    "--rejected",
    t.rejected,
    "--dead-letter",
    t.deadLetter,
    "--scores",
    t.scores,
    "--windows-topic",
    t.windows,
    ...extra,
  ];
}

const MAIN = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));

/** Run `clipsieve <args>` as a child process (the same entry point a user runs). */
export function spawnClipsieve(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): ChildProcess & { output: () => string } {
  const child = spawn(process.execPath, [MAIN, ...args], {
    env: { ...process.env, CLIPSIEVE_LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout?.on("data", (d) => {
    out += d;
  });
  child.stderr?.on("data", (d) => {
    out += d;
  });
  return Object.assign(child, { output: () => out });
}

export function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode);
    else child.once("exit", (code) => resolve(code));
  });
}
