import type { Command } from "commander";
import { ClipsieveError } from "../../common/errors.ts";
import { createLogger } from "../../common/logger.ts";
import { readEmbeddingMatrix } from "../../io/index.ts";
import { createScoringEngine } from "../../score/engine.ts";
import { normaliseRows } from "../../score/normalise.ts";
import { makeTargetSet, readTargetSet, writeTargetSet } from "../../score/target-set.ts";
import type { Device } from "../../score/types.ts";
import { parseDevice } from "./score.ts";

interface BuildOptions {
  embeddings: string[];
  key?: string;
  model: string;
  out: string;
  device: string;
}

/** Reads every input, normalises its rows (errors name the file and row) and stacks them in order. */
async function stackTargetRows(files: string[], key: string | undefined) {
  const parts: Float32Array[] = [];
  let dim = -1;
  let rows = 0;
  for (const file of files) {
    const matrix = await readEmbeddingMatrix(file, key ? { key } : {});
    if (dim === -1) dim = matrix.dim;
    else if (matrix.dim !== dim) {
      throw new ClipsieveError(
        "EMBEDDING_DIMENSION_MISMATCH",
        `${file} has ${matrix.dim}-dimensional rows, ${files[0]} has ${dim}: a target set has one dimension`,
      );
    }
    normaliseRows(matrix.data, matrix.rows, matrix.dim, key ? `${file} (${key})` : file);
    parts.push(matrix.data);
    rows += matrix.rows;
  }
  if (rows === 0) throw new ClipsieveError("INPUT_FILE_INVALID", `no target rows in ${files.join(", ")}`);
  const data = new Float32Array(rows * dim);
  let offset = 0;
  for (const part of parts) {
    data.set(part, offset);
    offset += part.length;
  }
  return { data, rows, dim };
}

async function buildTarget(opts: BuildOptions): Promise<void> {
  if (!opts.out.toLowerCase().endsWith(".npz")) {
    throw new ClipsieveError("CONFIG_INVALID", `--out ${opts.out}: a target set is written as .npz`);
  }
  if (opts.model.trim() === "") throw new ClipsieveError("CONFIG_INVALID", "--model must name the teacher");
  const device: Device = parseDevice(opts.device);
  const { data, rows, dim } = await stackTargetRows(opts.embeddings, opts.key);
  const engine = await createScoringEngine({ device, logger: createLogger("target") });
  try {
    const target = await makeTargetSet(engine, opts.model, data, rows, dim);
    const manifest = await writeTargetSet(opts.out, target, { sources: opts.embeddings });
    console.log(`target set ${opts.out}: M=${manifest.rows} D=${manifest.dim} model=${manifest.model}`);
    console.log(`sha256 ${manifest.contentHash}`);
  } finally {
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
    .option("--device <device>", "execution provider for T^T T: cpu | cuda | webgpu", "cpu")
    .action(buildTarget);

  target
    .command("inspect")
    .description("Verify a target-set artifact's hashes and print its manifest as JSON")
    .argument("<file>", "target-set artifact (.npz)")
    .action(async (file: string) => {
      const loaded = await readTargetSet(file);
      console.log(JSON.stringify(loaded.manifest, null, 2));
    });
}
