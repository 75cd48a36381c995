/**
 * `clipsieve diff --before <scores> --after <scores>`: which records changed decision between two runs
 * of the filter, and how scores and thresholds moved. Either side is a scores topic or a JSON Lines
 * dump of one (`clipsieve dump`).
 */
import type { Command } from "commander";
import { createLogger } from "../../common/logger.ts";
import { DiffSide, diffSides, formatDiff } from "../../lake/diff.ts";
import { createLakeKafka } from "../../lake/kafka.ts";
import { describeSource, forEachScoreRecord, parseScoreSource } from "../../lake/score-records.ts";
import { parseBrokers, parseInteger } from "../flags.ts";
import { addKafkaAccessFlags, kafkaAccessOf } from "../kafka-access.ts";

interface DiffOptions {
  before: string;
  after: string;
  brokers?: string;
  json?: boolean;
  list: string;
}

export function registerDiffCommand(program: Command): void {
  addKafkaAccessFlags(
    program
      .command("diff")
      .description(
        "Compare two runs' score records: decisions that changed (by old and new reason), score and threshold shifts",
      )
      .requiredOption(
        "--before <source>",
        "scores topic or .jsonl dump (kafka:<topic> or file:<path> to force)",
      )
      .requiredOption("--after <source>", "scores topic or .jsonl dump of the other run")
      .option("--brokers <list>", "Kafka bootstrap brokers, host:port,... (for topic sources)")
      .option("--json", "print the whole diff as JSON, every changed record included")
      .option("--list <n>", "changed records listed in the table", "10"),
  ).action(async (opts: DiffOptions) => {
    const logger = createLogger("diff");
    const list = parseInteger("--list", opts.list, 0);
    const access = kafkaAccessOf(opts as unknown as Record<string, unknown>);
    const sources = [parseScoreSource(opts.before), parseScoreSource(opts.after)];
    const kafka = sources.some((s) => s.kind === "topic")
      ? createLakeKafka(parseBrokers(opts.brokers), "clipsieve-diff", logger, access)
      : undefined;
    const sides = sources.map((s) => new DiffSide(describeSource(s)));
    await Promise.all(
      sources.map((s, i) => forEachScoreRecord(s, { kafka, logger }, (r) => sides[i]!.add(r))),
    );
    const diff = diffSides(sides[0]!, sides[1]!);
    console.log(opts.json ? JSON.stringify(diff, null, 2) : formatDiff(diff, list));
  });
}
