/** The dedup stage (after the policy): near-duplicates of earlier accepted records, near-copies of a reference set. */
export {
  buildReference,
  DEDUP_REASONS,
  DEFAULT_DEDUP_HORIZON,
  DEFAULT_DEDUP_PROBES,
  DEFAULT_DEDUP_THRESHOLD,
  DEFAULT_REFERENCE_THRESHOLD,
  type DedupConfig,
  Deduplicator,
  type DedupReason,
  type DedupResult,
  type DedupSettings,
  dedupSettingsOf,
  openDeduplicator,
} from "./dedup.ts";
export { historyStart, maxHistoryRows, ScopeHistory, segmentRows } from "./history.ts";
export { HistoryTopic, scopeOf } from "./history-topic.ts";
