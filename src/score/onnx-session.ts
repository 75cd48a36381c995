/**
 * The onnxruntime session settings every clipsieve session uses: the scoring engine's graphs, the
 * engine benchmark and the CLIP encoders (src/embed/encoders.ts). Kept apart from the engine so the
 * embed stage shares the settings without depending on the scoring engine.
 */
import type * as ort from "onnxruntime-node";
import type { Device } from "./types.ts";

/** onnxruntime session options for a provider. */
export function sessionOptions(device: Device, threads: number): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: [device],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: "sequential",
    graphOptimizationLevel: "all",
    // The engine reports a provider that cannot load itself (one warning); onnxruntime's own error
    // lines about it would only repeat that, so a non-cpu attempt logs fatal errors only.
    logSeverityLevel: device === "cpu" ? 3 : 4,
    // onnxruntime's worker threads spin between runs by default. In the filter, ORT calls alternate
    // with decoding and Kafka work on the same cores, which the spinning threads would take from them
    // (and several filters or test processes on one machine burn their CPU spinning).
    extra: { session: { intra_op: { allow_spinning: "0" } } },
  };
}
