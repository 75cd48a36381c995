/**
 * The command line. Each command lives in `commands/<name>.ts` and registers itself on the program;
 * this file only wires them together and turns errors into exit codes (the only place that does).
 */
import "../common/quiet-warnings.ts";
import { Command, CommanderError } from "commander";
import { isClipsieveError } from "../common/errors.ts";

/**
 * Each command's module, loaded only when needed: the pipeline, Parquet (a WebAssembly module compiled
 * at load) and the embedding stack cost seconds of start-up that a call of another command never uses.
 */
const COMMANDS: Record<string, () => Promise<(program: Command) => void>> = {
  kafka: async () => (await import("./commands/kafka.ts")).registerKafkaCommand,
  bench: async () => (await import("./commands/bench.ts")).registerBenchCommand,
  "embed-bench": async () => (await import("./commands/embed-bench.ts")).registerEmbedBenchCommand,
  run: async () => (await import("./commands/run.ts")).registerRunCommand,
  replay: async () => (await import("./commands/replay.ts")).registerReplayCommand,
  score: async () => (await import("./commands/score.ts")).registerScoreCommand,
  select: async () => (await import("./commands/select.ts")).registerSelectCommand,
  target: async () => (await import("./commands/target.ts")).registerTargetCommand,
  simulate: async () => (await import("./commands/simulate.ts")).registerSimulateCommand,
  demo: async () => (await import("./commands/demo.ts")).registerDemoCommand,
  fidelity: async () => (await import("./commands/fidelity.ts")).registerFidelityCommand,
  "bench-e2e": async () => (await import("./commands/bench-e2e.ts")).registerBenchE2eCommand,
  "bench-dedup": async () => (await import("./commands/bench-dedup.ts")).registerBenchDedupCommand,
  diff: async () => (await import("./commands/diff.ts")).registerDiffCommand,
  dump: async () => (await import("./commands/dump.ts")).registerDumpCommand,
  calibrate: async () => (await import("./commands/calibrate.ts")).registerCalibrateCommand,
  export: async () => (await import("./commands/export.ts")).registerExportCommand,
  load: async () => (await import("./commands/load.ts")).registerLoadCommand,
};

/** The program with every command, or only `only` when that names one (help then lists just it). */
export async function buildProgram(only?: string): Promise<Command> {
  const program = new Command("clipsieve")
    .description(
      "Streaming filter for image-text training data on Kafka: s-CLIPLoss and NormSim, exactly once.",
    )
    .version("0.1.0")
    .showHelpAfterError()
    .exitOverride();
  const names = only !== undefined && Object.hasOwn(COMMANDS, only) ? [only] : Object.keys(COMMANDS);
  for (const register of await Promise.all(names.map((name) => COMMANDS[name]()))) register(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  try {
    // argv[2] is the command: load just its module.
    await (await buildProgram(argv[2])).parseAsync(argv);
    return Number(process.exitCode ?? 0);
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    if (isClipsieveError(err)) {
      console.error(`clipsieve: ${err.message} [${err.code}]`);
      return 2;
    }
    console.error(err);
    return 1;
  }
}

if (import.meta.main || process.argv[1]?.endsWith("clipsieve.js")) {
  const code = await main(process.argv);
  process.exitCode = code;
  // A failed command ends now: a client request still in flight (a connect the brokers refused
  // half-way, waiting out its own timeout in a native thread) must not hold the process for it.
  if (code !== 0) (process as unknown as { reallyExit(code: number): never }).reallyExit(code);
}
