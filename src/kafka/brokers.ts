/**
 * Kafka bootstrap broker lists, read one way everywhere: `host:port,...`, spaces around commas and
 * empty entries ignored. `run`'s configuration schema and every other command's `--brokers` flag use
 * these, so a list one command takes, every command takes.
 */
import { ClipsieveError } from "../common/errors.ts";

/** One bootstrap broker. */
export const BROKER_PATTERN = /^[^:\s]+:\d+$/;

export function splitBrokerList(list: string | readonly string[]): string[] {
  return (typeof list === "string" ? list.split(",") : list).map((s) => s.trim()).filter(Boolean);
}

/** A `--brokers` flag; without it, CLIPSIEVE_BROKERS is read, as `run` does. */
export function parseBrokers(text: string | undefined, flag = "--brokers"): string[] {
  const brokers = splitBrokerList(text ?? process.env.CLIPSIEVE_BROKERS ?? "");
  if (brokers.length === 0) {
    throw new ClipsieveError(
      "CONFIG_INVALID",
      `${flag} is required to read or write Kafka (host:port,...; or set CLIPSIEVE_BROKERS, as for run)`,
    );
  }
  const bad = brokers.find((b) => !BROKER_PATTERN.test(b));
  if (bad !== undefined) throw new ClipsieveError("CONFIG_INVALID", `${flag} ${bad}: expected host:port`);
  return brokers;
}
