import { type ChildProcess, spawn } from "node:child_process";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import type { KafkaClient } from "../../src/kafka/index.ts";
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

/** Topic and group names for one filter run, with the topics created (on `kafka`, else the tests' broker). */
export async function filterTopics(partitions: number, kafka?: KafkaClient): Promise<FilterTopics> {
  const t = {
    input: uniqueName("in"),
    accepted: uniqueName("acc"),
    rejected: uniqueName("rej"),
    deadLetter: uniqueName("dlq"),
    scores: uniqueName("scores"),
    windows: uniqueName("windows"),
    group: uniqueName("group"),
  };
  const outputs = [t.accepted, t.rejected, t.deadLetter, t.scores, t.windows];
  if (kafka) {
    await kafka.ensureTopics([{ topic: t.input, numPartitions: partitions }], 60_000);
    await kafka.ensureTopics(
      outputs.map((topic) => ({ topic })),
      60_000,
    );
  } else {
    await createTopics([t.input], partitions);
    await createTopics(outputs, 1);
  }
  return t;
}

/** A port nothing listens on (taken from the OS, then released). */
export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() => resolve(typeof addr === "object" && addr ? addr.port : 0));
    });
  });
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
