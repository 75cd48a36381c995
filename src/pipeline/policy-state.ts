/**
 * The policy's state lives in Kafka, in a compacted topic keyed by `<group>/<instance>`, and it is
 * written in the same transaction as the window it reflects: after a crash, the restored state matches
 * the committed offsets exactly, so a restarted filter neither starts cold nor counts a window twice.
 */
import { readFileSync } from "node:fs";
import { ClipsieveError } from "../common/errors.ts";
import type { Logger } from "../common/logger.ts";
import type { KafkaClient } from "../kafka/index.ts";
import type { PolicyState } from "../policy/index.ts";
import type { OutMessage } from "../sink/outputs.ts";
import type { RunConfig } from "./config.ts";

export function stateKey(group: string, instanceId: string): string {
  return `${group}/${instanceId}`;
}

export function stateMessage(key: string, state: PolicyState): OutMessage {
  return { key, value: JSON.stringify(state), headers: {} };
}

/** Make sure the state topic exists and is compacted (one partition: states are tiny). */
export async function ensureStateTopic(kafka: KafkaClient, topic: string): Promise<void> {
  await kafka.ensureTopics([
    { topic, numPartitions: 1, configEntries: [{ name: "cleanup.policy", value: "compact" }] },
  ]);
}

/**
 * Read the committed states of this group: this instance's own if present, else the most recently
 * written one of the group (an instance new to the group starts from a colleague's view, not cold).
 */
export async function readPolicyState(
  kafka: KafkaClient,
  config: Pick<RunConfig, "stateTopic" | "group" | "instanceId">,
  logger: Logger,
  timeoutMs = 30_000,
): Promise<PolicyState | undefined> {
  await ensureStateTopic(kafka, config.stateTopic);
  const states = new Map<string, PolicyState>();
  let latestKey: string | undefined;
  const { complete } = await kafka.readTopicToEnd(
    config.stateTopic,
    (message) => {
      const key = message.key?.toString();
      if (!key?.startsWith(`${config.group}/`)) return;
      if (message.value === null) states.delete(key);
      else {
        states.set(key, JSON.parse(message.value.toString()) as PolicyState);
        latestKey = key;
      }
    },
    { timeoutMs },
  );
  if (!complete)
    logger.warn({ topic: config.stateTopic }, "reading the policy state timed out; using what was read");
  const own = states.get(stateKey(config.group, config.instanceId));
  if (own) return own;
  return latestKey ? states.get(latestKey) : undefined;
}

/** A policy state saved to a file (by `calibrate`, or copied from the state topic). */
export function readPolicyFile(path: string): PolicyState {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as PolicyState;
  } catch (err) {
    throw new ClipsieveError("CONFIG_INVALID", `Cannot read policy file ${path}: ${(err as Error).message}`, {
      cause: err,
    });
  }
}
