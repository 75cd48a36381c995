/**
 * The command line. Each command lives in `commands/<name>.ts` and registers itself on the program;
 * this file only wires them together and turns errors into exit codes (the only place that does).
 */
import "../common/quiet-warnings.ts";
import { Command, CommanderError } from "commander";
import { isClipsieveError } from "../common/errors.ts";
import { registerBenchCommand } from "./commands/bench.ts";
import { registerBenchE2eCommand } from "./commands/bench-e2e.ts";
import { registerCalibrateCommand } from "./commands/calibrate.ts";
import { registerDemoCommand } from "./commands/demo.ts";
import { registerDiffCommand } from "./commands/diff.ts";
import { registerDumpCommand } from "./commands/dump.ts";
import { registerEmbedBenchCommand } from "./commands/embed-bench.ts";
import { registerExportCommand } from "./commands/export.ts";
import { registerFidelityCommand } from "./commands/fidelity.ts";
import { registerKafkaCommand } from "./commands/kafka.ts";
import { registerLoadCommand } from "./commands/load.ts";
import { registerReplayCommand } from "./commands/replay.ts";
import { registerRunCommand } from "./commands/run.ts";
import { registerScoreCommand } from "./commands/score.ts";
import { registerSelectCommand } from "./commands/select.ts";
import { registerSimulateCommand } from "./commands/simulate.ts";
import { registerTargetCommand } from "./commands/target.ts";

export function buildProgram(): Command {
  const program = new Command("clipsieve")
    .description(
      "Streaming filter for image-text training data on Kafka: s-CLIPLoss and NormSim, exactly once.",
    )
    .version("0.1.0")
    .showHelpAfterError()
    .exitOverride();
  registerKafkaCommand(program);
  registerBenchCommand(program);
  registerEmbedBenchCommand(program);
  registerRunCommand(program);
  registerReplayCommand(program);
  registerScoreCommand(program);
  registerSelectCommand(program);
  registerTargetCommand(program);
  registerSimulateCommand(program);
  registerDemoCommand(program);
  registerFidelityCommand(program);
  registerBenchE2eCommand(program);
  registerDiffCommand(program);
  registerDumpCommand(program);
  registerCalibrateCommand(program);
  registerExportCommand(program);
  registerLoadCommand(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
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
  process.exitCode = await main(process.argv);
}
