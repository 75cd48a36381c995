import type { ScoringEngine } from "../score/engine.ts";
import { buildTargetFromRows, type TargetBuildOptions } from "../score/target-build.ts";
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

/**
 * Write a target set at scale for a simulation (`Simulation.clusteredTarget`: `rows` image rows of many
 * classes, the simulation's target topics among them), laid out as `target build` lays out a target of
 * that size: indexed and stored as float16 from INDEX_MIN_ROWS rows on, unless `options` say otherwise.
 */
export async function writeClusteredTarget(
  sim: Simulation,
  path: string,
  engine: Pick<ScoringEngine, "gram" | "nearest">,
  rows: number,
  options: Omit<TargetBuildOptions, "key" | "model"> = {},
): Promise<TargetManifest> {
  // The float32 rows live only inside this function, so they can be collected once the (float16)
  // target is built: at 2.1 million rows they are 6.4 GB.
  const built = await (async () => {
    const { data, dim } = sim.clusteredTarget(rows);
    return buildTargetFromRows(engine, data, rows, dim, { ...options, model: SIM_MODEL });
  })();
  return writeTargetSet(path, built.target, {
    sources: [`simulate-seed${sim.options.seed}-d${sim.options.dim}-clustered${rows}`],
    ...(built.index ? { index: built.index } : {}),
  });
}

/**
 * Write a reference set for a simulation (`Simulation.referenceSet`: `rows` images, `contaminated` of
 * them near-copies of the stream's aligned images) as a target artifact, for `run --reference`.
 */
export async function writeSimulationReference(
  sim: Simulation,
  path: string,
  engine: Pick<ScoringEngine, "gram">,
  rows: number,
  contaminated: number,
): Promise<{ manifest: TargetManifest; plantedSlots: Int32Array }> {
  const { data, dim, plantedSlots } = sim.referenceSet(rows, contaminated);
  const set = await makeTargetSet(engine, SIM_MODEL, data, rows, dim);
  const manifest = await writeTargetSet(path, set, {
    sources: [`simulate-seed${sim.options.seed}-d${dim}-reference${rows}-contaminated${contaminated}`],
  });
  return { manifest, plantedSlots };
}
