/**
 * `clipsieve replay`: rescore a closed range of a historic topic with a new policy, target set or model.
 *
 * A bounded run of the same pipeline as `run`: the end offsets are captured when it starts and it stops
 * by itself there. Outputs go to versioned topics `<prefix>.accepted|.rejected|.dead-letter|.scores|
 * .windows`, exactly once: the consumer group `clipsieve-replay-<prefix>` commits its offsets with the
 * outputs, so a replay that is interrupted and started again resumes where it committed and completes
 * without duplicates. `--reproduce <windows topic>` re-forms the windows an earlier run recorded, so
 * the same settings give the same scores bit for bit.
 */
import { type Command, Option } from "commander";
import { ClipsieveError } from "../../common/errors.ts";
import { createLogger, type Logger } from "../../common/logger.ts";
import { createKafkaClient, type KafkaClient, resolveKafkaAccess } from "../../kafka/index.ts";
import { RangeTracker } from "../../pipeline/bounds.ts";
import { buildPipeline } from "../../pipeline/pipeline.ts";
import { outputTopicNames, prefixedOutputTopics } from "../../sink/topics.ts";
import { decodeRuns } from "../../window/ranges.ts";
import { scoringDifferences } from "../../window/reproduce.ts";
import type { WindowManifest } from "../../window/window.ts";
import { createProgress } from "../progress.ts";
import { addFilterOptions, closeOnSignals, configFromOptions } from "./run.ts";

type Offsets = Map<number, bigint>;

/** `beginning` | `now` | `0:120,1:80` | an ISO time. */
export async function resolvePosition(
  kafka: KafkaClient,
  topic: string,
  spec: string,
  which: "start" | "end",
): Promise<Offsets> {
  const ends = await kafka.endOffsets(topic);
  const out: Offsets = new Map();
  if (spec === "beginning" || spec === "now") {
    for (const [p, o] of ends) out.set(p, spec === "beginning" ? o.low : o.high);
    return out;
  }
  if (/^\d+:\d+(,\d+:\d+)*$/.test(spec)) {
    const given = new Map(spec.split(",").map((kv) => kv.split(":").map(Number) as [number, number]));
    for (const [p, o] of ends) {
      const at = given.get(p);
      // A partition not named starts at its beginning / ends at its current end.
      out.set(p, at !== undefined ? BigInt(at) : which === "start" ? o.low : o.high);
    }
    for (const key of given.keys()) {
      if (!ends.has(key)) {
        throw new ClipsieveError(
          "CONFIG_INVALID",
          `--${which} names partition ${key}, which ${topic} does not have`,
        );
      }
    }
    return out;
  }
  const ms = Date.parse(spec);
  if (Number.isNaN(ms)) {
    throw new ClipsieveError(
      "CONFIG_INVALID",
      `--${which} ${JSON.stringify(spec)}: expected ${which === "start" ? "beginning" : "now"}, <partition>:<offset>,... or an ISO time`,
    );
  }
  return kafka.offsetsAtTime(topic, ms);
}

export async function readManifests(kafka: KafkaClient, topic: string): Promise<WindowManifest[]> {
  const manifests: WindowManifest[] = [];
  const { complete } = await kafka.readTopicToEnd(topic, (message) => {
    if (message.value) manifests.push(JSON.parse(message.value.toString()) as WindowManifest);
  });
  if (!complete)
    throw new ClipsieveError("CONFIG_INVALID", `Reading the window manifests of ${topic} timed out.`);
  if (manifests.length === 0)
    throw new ClipsieveError("CONFIG_INVALID", `${topic} holds no window manifests.`);
  return manifests;
}

/** The input range the recorded windows cover, per partition: [first, last + 1). */
function recordedRange(
  manifests: readonly WindowManifest[],
  input: string,
): { start: Offsets; end: Offsets } {
  const start: Offsets = new Map();
  const end: Offsets = new Map();
  for (const m of manifests) {
    for (const r of decodeRuns([...m.members, ...m.failed])) {
      if (r.topic !== input) continue;
      const o = BigInt(r.offset);
      if (!start.has(r.partition) || o < (start.get(r.partition) as bigint)) start.set(r.partition, o);
      if (!end.has(r.partition) || o + 1n > (end.get(r.partition) as bigint)) end.set(r.partition, o + 1n);
    }
  }
  return { start, end };
}

/**
 * With --start/--end as well as --reproduce: the recorded windows the range holds whole. A window the
 * range cuts through could never be re-formed (the replay would wait for members it never reads),
 * and a window whose bank rows lie before the range could not rebuild its pool: both are refused
 * before anything runs.
 */
export function windowsInRange(
  manifests: readonly WindowManifest[],
  input: string,
  start: Offsets,
  end: Offsets,
): WindowManifest[] {
  const inRange = (r: { topic: string; partition: number; offset: string }) => {
    const o = BigInt(r.offset);
    return r.topic === input && o >= (start.get(r.partition) ?? 0n) && o < (end.get(r.partition) ?? 0n);
  };
  const kept: WindowManifest[] = [];
  const members = new Set<string>();
  for (const m of manifests) {
    const refs = decodeRuns([...m.members, ...m.failed]);
    const inside = refs.filter(inRange).length;
    if (inside === 0) continue;
    if (inside < refs.length) {
      throw new ClipsieveError(
        "CONFIG_INVALID",
        `--start/--end cut through recorded window ${m.window_id} (${inside} of its ${refs.length} records are in the range): choose a range that holds whole windows, or leave out --start and --end to replay the range the windows cover`,
      );
    }
    kept.push(m);
    for (const r of decodeRuns(m.members)) members.add(`${r.partition}/${r.offset}`);
  }
  for (const m of kept) {
    const missing = decodeRuns(m.bank).find((r) => !members.has(`${r.partition}/${r.offset}`));
    if (missing) {
      throw new ClipsieveError(
        "CONFIG_INVALID",
        `recorded window ${m.window_id} draws bank rows from before --start (${missing.topic} partition ${missing.partition} offset ${missing.offset}): start the range where the recorded run started, or leave out --start and --end`,
      );
    }
  }
  return kept;
}

async function ensureOutputTopics(kafka: KafkaClient, topics: string[], partitions: number): Promise<void> {
  await kafka.ensureTopics(topics.map((topic) => ({ topic, numPartitions: partitions })));
}

/**
 * A fresh replay group starts at `start`; a group that already committed offsets (an interrupted
 * replay started again) resumes from them. Returns where the run starts, per partition.
 */
async function positionGroup(
  kafka: KafkaClient,
  groupId: string,
  topic: string,
  start: Offsets,
  logger: Logger,
): Promise<Offsets> {
  const committed = await kafka.committedOffsets(groupId, topic);
  if (committed.size > 0) {
    logger.info({ groupId }, "resuming an interrupted replay from its committed offsets");
    const from: Offsets = new Map(start);
    for (const [p, offset] of committed) from.set(p, offset);
    return from;
  }
  await kafka.setCommittedOffsets(groupId, topic, start);
  return start;
}

export function registerReplayCommand(program: Command): void {
  const replay = program
    .command("replay")
    .description(
      "Rescore a closed range of a topic into versioned topics <prefix>.*, exactly once, then stop",
    )
    .option("--input <topic>", "topic to replay")
    .option("--start <position>", "beginning | <partition>:<offset>,... | ISO time (default: beginning)")
    .option("--end <position>", "now | <partition>:<offset>,... | ISO time, exclusive (default: now)")
    .requiredOption(
      "--out-prefix <name>",
      "outputs go to <name>.accepted, .rejected, .dead-letter, .scores, .windows",
    )
    .option(
      "--reproduce <windows topic>",
      "re-form the windows recorded in this windows topic (same scores, bit for bit)",
    )
    .addOption(
      new Option("--progress <mode>", "progress display")
        .choices(["auto", "bar", "lines", "none"])
        .default("auto"),
    );
  addFilterOptions(replay).action(async (opts: Record<string, unknown>) => {
    const logger = createLogger("replay");
    const prefix = String(opts.outPrefix);
    const {
      start: startFlag,
      end: endFlag,
      outPrefix: _p,
      reproduce: reproduceTopic,
      progress,
      ...filterOpts
    } = opts;
    const config = configFromOptions(filterOpts, {
      group: `clipsieve-replay-${prefix}`,
      ...prefixedOutputTopics(prefix),
      stateTopic: `${prefix}.policy-state`,
      instanceId: "replay",
    });
    const kafka = createKafkaClient({
      brokers: config.brokers,
      clientId: "clipsieve-replay",
      logger,
      adapter: config.kafkaClient,
      security: resolveKafkaAccess(config).security,
    });

    let manifests =
      typeof reproduceTopic === "string" ? await readManifests(kafka, reproduceTopic) : undefined;
    let start: Offsets;
    let end: Offsets;
    if (manifests && startFlag === undefined && endFlag === undefined) {
      ({ start, end } = recordedRange(manifests, config.input));
      logger.info({ windows: manifests.length }, "re-forming recorded windows over the range they cover");
    } else {
      start = await resolvePosition(kafka, config.input, String(startFlag ?? "beginning"), "start");
      end = await resolvePosition(kafka, config.input, String(endFlag ?? "now"), "end");
    }
    for (const p of start.keys()) if (!end.has(p)) end.set(p, start.get(p) as bigint);
    for (const p of end.keys()) if (!start.has(p)) start.set(p, end.get(p) as bigint);
    if (manifests && (startFlag !== undefined || endFlag !== undefined)) {
      manifests = windowsInRange(manifests, config.input, start, end);
    }

    if (manifests) {
      const differences = scoringDifferences(manifests, config);
      if (differences.length > 0) {
        logger.warn(
          { differences },
          "the recorded windows were scored with other settings than this replay's: their pools are re-formed, their scores will differ",
        );
      }
    }
    await ensureOutputTopics(kafka, outputTopicNames(config), Math.max(1, end.size));
    const from = await positionGroup(kafka, config.group, config.input, start, logger);
    const range = new RangeTracker(from, end);
    if ([...end].every(([p, e]) => (from.get(p) ?? 0n) >= e)) {
      console.log(`nothing to replay: no records of ${config.input} in the range are left to deliver`);
      return;
    }
    const bar = createProgress({
      label: `replay ${config.input} -> ${prefix}.*`,
      total: range.total,
      mode: String(progress),
    });
    const pipeline = await buildPipeline(config, logger, undefined, {
      range,
      reproduce: manifests,
      hooks: { onWindowDelivered: () => bar.update(range.delivered) },
    });
    const release = closeOnSignals(pipeline, logger);
    try {
      await pipeline.start();
      await pipeline.done;
      bar.stop();
      console.log(
        `replayed ${range.delivered} records of ${config.input} into ${prefix}.{accepted,rejected,dead-letter,scores,windows}`,
      );
    } finally {
      release();
    }
  });
}
