/**
 * The brokers a demo or benchmark runs against: the ones given, or a local single-node broker started
 * for the occasion in a temporary folder, which `stop()` shuts down and removes (and `killNow()` kills
 * at once, for a second Ctrl-C). Whoever starts a broker must stop it, also on errors and signals.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Logger } from "../common/logger.ts";
import { createKafkaClient, parseBrokers } from "../kafka/index.ts";
import { readBrokerState, startLocalBroker, stopLocalBroker } from "../kafka/local-broker.ts";

export interface BrokerHandle {
  brokers: string[];
  /** Whether this handle started the broker (and will stop it). */
  local: boolean;
  /** The local broker's JVM, when there is one. */
  pid?: number;
  stop(): Promise<void>;
  /** Kill a local broker at once and remove its folder (synchronous: safe in an exit handler). */
  killNow(): void;
}

export async function brokersOrLocal(
  brokers: string | undefined,
  logger: Logger,
  prefix = "clipsieve-kafka-",
): Promise<BrokerHandle> {
  if (brokers) {
    return { brokers: parseBrokers(brokers), local: false, stop: async () => {}, killNow: () => {} };
  }
  const stateDir = mkdtempSync(join(tmpdir(), prefix));
  let stopped = false;
  let pid: number | undefined;
  const remove = () => rmSync(stateDir, { recursive: true, force: true });
  // Whatever ends the process (an error, process.exit on a signal), even while the broker is still
  // starting, the broker must not outlive it: kill its process group from the pid its folder records.
  const onExit = () => {
    const started = readBrokerState(stateDir);
    if (started) {
      try {
        process.kill(-started.pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    remove();
  };
  process.once("exit", onExit);
  try {
    const state = await startLocalBroker({ stateDir, port: 0, controllerPort: 0, logger });
    pid = state.pid;
    // A fresh broker answers before its group and transaction coordinators have loaded; clients then
    // log "coordinator is loading" errors while they retry. Wait here, quietly, until both serve.
    await createKafkaClient({ brokers: [state.brokers], clientId: "clipsieve-ready" }).waitForCoordinators();
    const handle: BrokerHandle = {
      brokers: [state.brokers],
      local: true,
      pid,
      async stop() {
        if (stopped) return;
        stopped = true;
        try {
          // Its folder is removed next, so a clean shutdown buys nothing: a KRaft broker's controlled
          // shutdown takes seconds (more on a busy machine) that would only delay the command's exit.
          await stopLocalBroker(stateDir, 2_000);
        } finally {
          remove();
        }
      },
      killNow() {
        if (stopped) return;
        stopped = true;
        try {
          // The JVM leads its own process group (it was started detached).
          process.kill(-(pid as number), "SIGKILL");
        } catch {
          // already gone
        }
        remove();
      },
    };
    const stop = handle.stop;
    handle.stop = async () => {
      process.off("exit", onExit);
      await stop();
    };
    return handle;
  } catch (err) {
    // startLocalBroker stops a broker that started but never answered; the folder is ours to remove.
    await stopLocalBroker(stateDir).catch(() => {});
    remove();
    process.off("exit", onExit);
    throw err;
  }
}

/**
 * kafkajs 2.2.4 logs, at warn level, that its default partitioner changed in 2.0: noise for a user of
 * the demo or a benchmark, whose producers use the default knowingly. (Its TimeoutNegativeWarning is
 * dropped for every command by src/common/quiet-warnings.ts.)
 */
export function quietKafkajsNotices(): void {
  process.env.KAFKAJS_NO_PARTITIONER_WARNING ??= "1";
}
