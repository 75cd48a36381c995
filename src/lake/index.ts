export {
  Calibration,
  type CalibrationResult,
  calibrateFromFiles,
  calibrateFromTopic,
  type InputScoring,
} from "./calibrate.ts";
export {
  type ChangedRecord,
  DiffSide,
  diffSides,
  formatDiff,
  type ScoreDiff,
} from "./diff.ts";
export {
  type ExportOptions,
  type ExportSummary,
  runExport,
  toExportRecord,
  writeExportedUids,
} from "./export.ts";
export {
  type ExportedFile,
  type ExportRecord,
  ExportWriter,
  type ExportWriterOptions,
  fileName,
  hourFolder,
  listExportFiles,
} from "./export-writer.ts";
export { createLakeKafka } from "./kafka.ts";
export { type LoadOptions, type LoadSummary, listShards, loadDataComp, type Shard } from "./load.ts";
export {
  describeSource,
  dumpTopic,
  forEachScoreRecord,
  forEachSourceValue,
  parseScoreRecord,
  parseScoreSource,
  type ScoreSource,
} from "./score-records.ts";
export {
  type ConsumeRangeOptions,
  consumeRange,
  type RangeBatch,
  type RangeConsumer,
  topicOffsets,
} from "./topic-range.ts";
