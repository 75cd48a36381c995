/**
 * The scoring stage's public surface: the score registry, the engine and its onnxruntime settings,
 * draws, normalisation, NormSim_2-D and the benchmark.
 */
export * from "./bench.ts";
export * from "./draws.ts";
export * from "./engine.ts";
export * from "./graphs.ts";
export * from "./normalise.ts";
export * from "./normsim2d.ts";
export * from "./onnx-session.ts";
export * from "./random.ts";
export * from "./registry.ts";
export type * from "./types.ts";
