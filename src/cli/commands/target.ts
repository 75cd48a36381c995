import type { Command } from "commander";
import { ClipsieveError } from "../../common/errors.ts";
import { createLogger } from "../../common/logger.ts";
import { createScoringEngine } from "../../score/engine.ts";
import { buildTargetFromFiles } from "../../score/target-build.ts";
import { INDEX_MIN_ROWS } from "../../score/target-index.ts";
import {
  describeTargetLayout,
  readTargetSet,
  targetMemoryBytes,
  writeTargetSet,
} from "../../score/target-set.ts";
import type { Device, TargetStorage } from "../../score/types.ts";
import { integerOption } from "../flags.ts";
import { createProgress, type Progress } from "../progress.ts";
import { parseDevice } from "./score.ts";

interface BuildOptions {
  embeddings: string[];
  key?: string;
  model: string;
  out: string;
  device: string;
  storage?: string;
  clusters?: number;
  probes?: number;
  iterations?: number;
  seed?: number;
  progress: string;
}

const PHASES = {
  read: { label: "reading target rows", unit: "rows" },
  train: { label: "training the index", unit: "k-means rounds" },
  assign: { label: "clustering target rows", unit: "rows" },
} as const;

function parseStorage(text: string | undefined): TargetStorage | undefined {
  if (text === undefined || text === "auto") return undefined;
  if (text === "float32" || text === "float16") return text;
  throw new ClipsieveError("CONFIG_INVALID", `--storage must be float32, float16 or auto, got ${text}`);
}

async function buildTarget(opts: BuildOptions): Promise<void> {
  if (!opts.out.toLowerCase().endsWith(".npz")) {
    throw new ClipsieveError("CONFIG_INVALID", `--out ${opts.out}: a target set is written as .npz`);
  }
  if (opts.model.trim() === "") throw new ClipsieveError("CONFIG_INVALID", "--model must name the teacher");
  const device: Device = parseDevice(opts.device);
  const storage = parseStorage(opts.storage);
  const engine = await createScoringEngine({ device, logger: createLogger("target") });
  // One progress line or bar per phase (reading the shards, k-means rounds, assigning every row).
  let phase: keyof typeof PHASES | undefined;
  let progress: Progress | undefined;
  const onProgress = (next: keyof typeof PHASES, done: number, total: number) => {
    if (next !== phase) {
      progress?.stop();
      phase = next;
      progress = createProgress({ ...PHASES[next], total, mode: opts.progress });
    }
    progress?.update(done);
  };
  try {
    const { target, index } = await buildTargetFromFiles(engine, opts.embeddings, {
      model: opts.model,
      ...(opts.key !== undefined ? { key: opts.key } : {}),
      ...(storage !== undefined ? { storage } : {}),
      ...(opts.clusters !== undefined ? { clusters: opts.clusters } : {}),
      ...(opts.probes !== undefined ? { probes: opts.probes } : {}),
      ...(opts.iterations !== undefined ? { iterations: opts.iterations } : {}),
      ...(opts.seed !== undefined ? { seed: opts.seed } : {}),
      onProgress,
    });
    progress?.stop();
    const manifest = await writeTargetSet(opts.out, target, {
      sources: opts.embeddings,
      ...(index ? { index } : {}),
    });
    console.log(`target set ${opts.out}: M=${manifest.rows} D=${manifest.dim} model=${manifest.model}`);
    console.log(describeTargetLayout(manifest));
    console.log(`sha256 ${manifest.contentHash}`);
  } finally {
    progress?.stop();
    await engine.close();
  }
}

/** `clipsieve target build|inspect`: the versioned target-set artifact that NormSim scores against. */
export function registerTargetCommand(program: Command): void {
  const target = program
    .command("target")
    .description("Build or inspect a target set (target image embeddings + T^T T, for NormSim)");

  target
    .command("build")
    .description("Stack target image embeddings from files, normalise them and write a target-set artifact")
    .requiredOption(
      "--embeddings <files...>",
      "inputs: .npy, .npz, Arrow IPC (.arrow/.feather/.ipc), .parquet",
    )
    .option("--key <name>", "array (.npz) or column (Arrow/Parquet) to read, e.g. l14_img")
    .requiredOption(
      "--model <teacher>",
      "teacher model that made the embeddings, e.g. openai/clip-vit-large-patch14",
    )
    .requiredOption("--out <file.npz>", "artifact to write")
    .option("--device <device>", "execution provider for T^T T and the index: cpu | cuda | webgpu", "cpu")
    .option(
      "--storage <type>",
      `float32 | float16 | auto (float16 when indexed: half the memory, products still in float32)`,
      "auto",
    )
    .option(
      "--clusters <n>",
      `NormSim_inf index clusters; 0: no index (every row, exact). Default: sqrt(M) from ${INDEX_MIN_ROWS} rows`,
      integerOption("--clusters", 0),
    )
    .option(
      "--probes <n>",
      "clusters a record visits by default (run --target-probes overrides). Default: 1/48 of them, at least 16",
      integerOption("--probes", 1),
    )
    .option("--iterations <n>", "k-means rounds", integerOption("--iterations", 1))
    .option("--seed <n>", "k-means sample seed", integerOption("--seed", 0))
    .option("--progress <mode>", "auto | bar | lines | none (on stderr)", "auto")
    .action(buildTarget);

  target
    .command("inspect")
    .description("Verify a target-set artifact's hashes and print its manifest as JSON")
    .argument("<file>", "target-set artifact (.npz)")
    .action(async (file: string) => {
      const loaded = await readTargetSet(file);
      const manifest = loaded.manifest!;
      console.log(JSON.stringify({ ...manifest, memoryBytes: targetMemoryBytes(manifest) }, null, 2));
      console.error(describeTargetLayout(manifest));
    });
}
