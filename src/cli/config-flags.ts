/**
 * Command-line flags derived from the run configuration's schema (src/pipeline/config.ts): each key
 * is a kebab-case flag with the schema's description, its default and, for an enum, its choices. A
 * new option is added to the schema only, and `run`, `replay` and the docs' table follow.
 *
 * Flags carry no commander defaults: a flag the user did not give must not hide a value set in the
 * config file or a CLIPSIEVE_* variable (the schema fills defaults after the layers are merged).
 */
import { type Command, Option } from "commander";
import type { z } from "zod";
import { flagName, RUN_CONFIG_KEYS, type RunConfigKey, runConfigSchema } from "../pipeline/config.ts";

/** Keys whose flag's value reads better named, takes no value, or repeats. */
const FLAG_SHAPES: Partial<Record<RunConfigKey, { value?: string; repeatable?: true; switch?: true }>> = {
  brokers: { value: "<host:port,...>" },
  thenKeep: { value: "<score=fraction>" },
  keep: { value: "<score=fraction>" },
  threshold: { value: "<score>=value>", repeatable: true },
  fetchAllowPrivateAddresses: { switch: true },
  scoreAll: { switch: true },
  dedup: { switch: true },
};

/** Defaults not worth printing (they depend on the machine). */
const UNPRINTED_DEFAULTS = new Set<RunConfigKey>(["instanceId"]);

interface SchemaFacts {
  description: string;
  defaultValue?: unknown;
  choices?: string[];
  numeric: boolean;
}

/** What a key's schema says: its description, default, enum choices, whether it is a number. */
export function schemaFacts(key: RunConfigKey): SchemaFacts {
  let s = runConfigSchema.shape[key] as z.ZodType;
  const description = s.description ?? key;
  let defaultValue: unknown;
  // Unwrap default / optional / pipe layers down to the value's type.
  for (let i = 0; i < 8; i++) {
    const def = (
      s as unknown as { def: { type: string; innerType?: z.ZodType; in?: z.ZodType; defaultValue?: unknown } }
    ).def;
    if (def.type === "default") defaultValue = def.defaultValue;
    const inner = def.innerType ?? (def.type === "pipe" ? def.in : undefined);
    if (!inner) break;
    s = inner;
  }
  const def = (s as unknown as { def: { type: string; entries?: Record<string, string> } }).def;
  return {
    description,
    defaultValue: UNPRINTED_DEFAULTS.has(key) ? undefined : defaultValue,
    choices: def.type === "enum" && def.entries ? Object.values(def.entries) : undefined,
    numeric: def.type === "number",
  };
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

/** Add a flag for each of `keys` (all of the schema's when omitted) to `command`. */
export function addConfigFlags(
  command: Command,
  keys: readonly RunConfigKey[] = RUN_CONFIG_KEYS,
  { configFile = true }: { configFile?: boolean } = {},
): Command {
  if (configFile) {
    command.option("--config <file>", "JSON config file (keys as in docs/streaming.md; flags override it)");
  }
  for (const key of keys) {
    const shape = FLAG_SHAPES[key] ?? {};
    const facts = schemaFacts(key);
    const value = shape.switch
      ? ""
      : ` ${shape.value ?? (facts.choices ? "<name>" : facts.numeric ? "<n>" : "<value>")}`;
    const described =
      facts.defaultValue === undefined
        ? facts.description
        : `${facts.description} (default ${String(facts.defaultValue)})`;
    const option = new Option(`--${flagName(key)}${value}`, described);
    if (facts.choices) option.choices(facts.choices);
    if (shape.repeatable) option.argParser(collect);
    command.addOption(option);
  }
  return command;
}
