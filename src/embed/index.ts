export { type ModelFolder, readModelFolder } from "./model-dir.ts";
export {
  EMBED_DEFAULTS,
  type EmbedOptions,
  type ResolvedEmbedOptions,
  resolveEmbedOptions,
} from "./options.ts";
export { checkEmbedTeacher, type EmbedRunSettings, embedOptionsFromRun } from "./run-settings.ts";
export { createEmbedStage } from "./stage.ts";
export type { EmbedContext, EmbedStage, EmbedTimings } from "./types.ts";
