import type { ScoringEngine } from "../score/engine.ts";
import { makeTargetSet, type TargetManifest, writeTargetSet } from "../score/target-set.ts";
import { SIM_MODEL, type Simulation } from "./generator.ts";

/**
 * Write the target set that matches a simulation: image embeddings of its target topics, as a
 * `clipsieve target build` artifact (teacher `clipsieve-sim`), so `run --target` can score NormSim.
 */
export async function writeSimulationTarget(
  sim: Simulation,
  path: string,
  engine: Pick<ScoringEngine, "gram">,
): Promise<TargetManifest> {
  const { rows, dim, data } = sim.targetEmbeddings();
  const target = await makeTargetSet(engine, SIM_MODEL, data, rows, dim);
  return writeTargetSet(path, target, { sources: [`simulate-seed${sim.options.seed}-d${dim}`] });
}
