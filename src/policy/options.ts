/**
 * The policy's options: the flags (`--keep`, `--then`, `--threshold`, `--warmup`, `--warmup-mode`), the
 * zod schema a config file embeds, their defaults, and the policy version (a short hash of the
 * normalised spec, recorded with every decision so a reader can tell which policy made it).
 */
import { createHash } from "node:crypto";
import { z } from "zod";
import { ClipsieveError } from "../common/errors.ts";
import { SCORE_NAMES, type ScoreName } from "../score/registry.ts";
import { DEFAULT_SKETCH_K } from "./sketch.ts";

export const WARMUP_MODES = ["provisional", "accept", "reject"] as const;
export type WarmupMode = (typeof WARMUP_MODES)[number];

/**
 * "provisional" by default: the first window is judged by its own scores (the sketch is fed before it
 * decides), which is exactly the offline selection over that window, so nothing is let through or lost
 * wholesale; "accept"/"reject" would skew the accepted fraction by up to the warm-up length.
 */
export const DEFAULT_WARMUP_MODE: WarmupMode = "provisional";
/** A few windows' worth: by then the running cut-off's sampling error is below about 0.5 points. */
export const DEFAULT_WARMUP_RECORDS = 10_000;

const scoreName = z.enum(SCORE_NAMES);
const fraction = z.number().gt(0).lte(1);

const topFractionSchema = z
  .object({
    score: scoreName.describe("The score ranked."),
    fraction: fraction.describe("Fraction of the FULL stream kept, in (0, 1]."),
  })
  .strict();

export const policySpecSchema = z
  .object({
    keep: topFractionSchema
      .optional()
      .describe("Stage 1: keep the top `fraction` of the stream by `score` (`--keep <score>=<fraction>`)."),
    thenKeep: topFractionSchema
      .optional()
      .describe(
        "Stage 2 (needs keep; flag `--then`): of the stage-1 passers keep the top `fraction` of the FULL stream by `score` " +
          "(`--then <score>=<fraction>`, fraction <= keep's).",
      ),
    thresholds: z
      .array(
        z
          .object({
            score: scoreName.describe("The score tested."),
            min: z.number().describe("Accept only when score >= min."),
          })
          .strict(),
      )
      .default([])
      .describe("Fixed thresholds, all of which must pass (`--threshold <score>>=<value>`, repeatable)."),
    warmup: z
      .object({
        records: z
          .number()
          .int()
          .nonnegative()
          .default(DEFAULT_WARMUP_RECORDS)
          .describe("Records before the quantile sketch counts as trustworthy (`--warmup`)."),
        mode: z
          .enum(WARMUP_MODES)
          .default(DEFAULT_WARMUP_MODE)
          .describe("What the quantile rules do during warm-up (`--warmup-mode`)."),
      })
      .strict()
      .default({ records: DEFAULT_WARMUP_RECORDS, mode: DEFAULT_WARMUP_MODE }),
    sketch: z
      .object({
        k: z
          .number()
          .int()
          .min(8)
          .max(65536)
          .default(DEFAULT_SKETCH_K)
          .describe("KLL top-level capacity: rank error about 1/k of the stream, memory about 3k numbers."),
      })
      .strict()
      .default({ k: DEFAULT_SKETCH_K }),
  })
  .strict()
  .superRefine((spec, ctx) => {
    if (spec.thenKeep && !spec.keep) {
      ctx.addIssue({ code: "custom", path: ["thenKeep"], message: "thenKeep needs keep (the stage-1 rule)" });
    }
    if (spec.thenKeep && spec.keep && spec.thenKeep.fraction > spec.keep.fraction) {
      ctx.addIssue({
        code: "custom",
        path: ["thenKeep", "fraction"],
        message: `thenKeep's fraction ${spec.thenKeep.fraction} is of the full stream and cannot exceed keep's ${spec.keep.fraction}`,
      });
    }
    const seen = new Set<ScoreName>();
    spec.thresholds.forEach((t, i) => {
      if (seen.has(t.score)) {
        ctx.addIssue({
          code: "custom",
          path: ["thresholds", i],
          message: `a second threshold on ${t.score}`,
        });
      }
      seen.add(t.score);
    });
  });

/** The normalised spec: defaults filled in, thresholds in SCORE_NAMES order. */
export type PolicySpec = z.output<typeof policySpecSchema>;
export type PolicySpecInput = z.input<typeof policySpecSchema>;

/** Validates a spec (from a config file or built in code) and normalises it. `where` prefixes messages. */
export function parsePolicySpec(input: unknown, where = "policy"): PolicySpec {
  const parsed = policySpecSchema.safeParse(input);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((issue) => {
      const path = [where, ...issue.path.map(String)].join(".");
      return `${path}: ${issue.message}`;
    });
    throw new ClipsieveError("CONFIG_INVALID", issues.join("; "));
  }
  const spec = parsed.data;
  spec.thresholds.sort((a, b) => SCORE_NAMES.indexOf(a.score) - SCORE_NAMES.indexOf(b.score));
  return spec;
}

/** The flag values as commander hands them over (strings; `threshold` repeatable). */
export interface PolicyFlags {
  keep?: string;
  then?: string;
  threshold?: string | string[];
  warmup?: string | number;
  warmupMode?: string;
}

const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

function flagError(flag: string, value: string, why: string): ClipsieveError {
  return new ClipsieveError("CONFIG_INVALID", `${flag} ${JSON.stringify(value)}: ${why}`);
}

function parseScoreName(flag: string, value: string, name: string): ScoreName {
  const trimmed = name.trim();
  if (!(SCORE_NAMES as readonly string[]).includes(trimmed)) {
    throw flagError(
      flag,
      value,
      `unknown score ${JSON.stringify(trimmed)} (one of ${SCORE_NAMES.join(", ")})`,
    );
  }
  return trimmed as ScoreName;
}

function parseDecimal(flag: string, value: string, text: string, what: string): number {
  const trimmed = text.trim();
  const n = DECIMAL.test(trimmed) ? Number(trimmed) : Number.NaN;
  if (!Number.isFinite(n)) throw flagError(flag, value, `${what} ${JSON.stringify(trimmed)} is not a number`);
  return n;
}

function parseTopFraction(flag: string, value: string): { score: ScoreName; fraction: number } {
  const at = value.indexOf("=");
  if (at < 0) throw flagError(flag, value, "expected <score>=<fraction>, e.g. s_clip_loss=0.3");
  const score = parseScoreName(flag, value, value.slice(0, at));
  const f = parseDecimal(flag, value, value.slice(at + 1), "fraction");
  if (!(f > 0 && f <= 1)) throw flagError(flag, value, `the fraction must be in (0, 1], got ${f}`);
  return { score, fraction: f };
}

function parseThreshold(value: string): { score: ScoreName; min: number } {
  const flag = "--threshold";
  const at = value.indexOf(">=");
  if (at < 0) {
    throw flagError(flag, value, "expected <score>>=<value>, e.g. clip_score>=0.2 (only >= is supported)");
  }
  return {
    score: parseScoreName(flag, value, value.slice(0, at)),
    min: parseDecimal(flag, value, value.slice(at + 2), "value"),
  };
}

/**
 * Turns the flags into a spec. Unlike a config file, the command line must name at least one rule: a
 * forgotten flag must not silently accept every record.
 */
export function parsePolicyFlags(flags: PolicyFlags): PolicySpec {
  const keep = flags.keep === undefined ? undefined : parseTopFraction("--keep", flags.keep);
  const then = flags.then === undefined ? undefined : parseTopFraction("--then", flags.then);
  if (then && !keep) throw flagError("--then", flags.then!, "needs --keep (the stage-1 rule)");
  if (then && keep && then.fraction > keep.fraction) {
    throw flagError(
      "--then",
      flags.then!,
      `the fraction is of the full stream and cannot exceed --keep's ${keep.fraction}`,
    );
  }
  const raw =
    flags.threshold === undefined ? [] : Array.isArray(flags.threshold) ? flags.threshold : [flags.threshold];
  const thresholds = raw.map(parseThreshold);
  const seen = new Map<ScoreName, string>();
  raw.forEach((value, i) => {
    const { score } = thresholds[i]!;
    const before = seen.get(score);
    if (before !== undefined) {
      throw flagError(
        "--threshold",
        value,
        `a second threshold on ${score} (the first was ${JSON.stringify(before)})`,
      );
    }
    seen.set(score, value);
  });
  if (!keep && thresholds.length === 0) {
    throw new ClipsieveError(
      "CONFIG_INVALID",
      "no policy given: use --keep <score>=<fraction> (optionally --then) and/or --threshold <score>>=<value>",
    );
  }
  let records = DEFAULT_WARMUP_RECORDS;
  if (flags.warmup !== undefined) {
    const text = String(flags.warmup).trim();
    if (!/^\d+$/.test(text))
      throw flagError("--warmup", String(flags.warmup), "expected a whole number of records");
    records = Number(text);
    if (!Number.isSafeInteger(records)) throw flagError("--warmup", text, "too large");
  }
  let mode = DEFAULT_WARMUP_MODE;
  if (flags.warmupMode !== undefined) {
    if (!(WARMUP_MODES as readonly string[]).includes(flags.warmupMode)) {
      throw flagError("--warmup-mode", flags.warmupMode, `expected one of ${WARMUP_MODES.join(", ")}`);
    }
    mode = flags.warmupMode as WarmupMode;
  }
  return parsePolicySpec({ keep, thenKeep: then, thresholds, warmup: { records, mode } });
}

function _collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** The spec as flags, for logs and error messages ("made by --keep s_clip_loss=0.3 ..."). */
export function describePolicy(spec: PolicySpec): string {
  const parts: string[] = [];
  if (spec.keep) parts.push(`--keep ${spec.keep.score}=${spec.keep.fraction}`);
  if (spec.thenKeep) parts.push(`--then ${spec.thenKeep.score}=${spec.thenKeep.fraction}`);
  for (const t of spec.thresholds) parts.push(`--threshold ${t.score}>=${t.min}`);
  if (spec.keep) parts.push(`--warmup ${spec.warmup.records} --warmup-mode ${spec.warmup.mode}`);
  if (spec.sketch.k !== DEFAULT_SKETCH_K) parts.push(`(sketch k ${spec.sketch.k})`);
  return parts.join(" ");
}

function shortHash(label: string, value: unknown): string {
  return createHash("sha256")
    .update(`${label}\n${JSON.stringify(value)}`)
    .digest("hex")
    .slice(0, 12);
}

/**
 * The policy version: 12 hex digits of sha256 over the normalised spec written with a fixed key order,
 * so the same rules give the same version on any machine and in any flag order.
 */
export function policyVersion(spec: PolicySpec): string {
  return shortHash("clipsieve.policy/1", {
    keep: spec.keep ? [spec.keep.score, spec.keep.fraction] : null,
    thenKeep: spec.thenKeep ? [spec.thenKeep.score, spec.thenKeep.fraction] : null,
    thresholds: spec.thresholds.map((t) => [t.score, t.min]),
    warmup: [spec.warmup.records, spec.warmup.mode],
    k: spec.sketch.k,
  });
}

/**
 * What the sketches' contents depend on: the stage-1 score, and for stage 2 also who passed stage 1
 * (its score and fraction). Two specs with the same sketch version can share sketches: only `then`'s
 * fraction, the fixed thresholds or the warm-up differ (or keep's fraction when there is no stage 2).
 */
export function sketchVersion(spec: PolicySpec): string {
  return shortHash("clipsieve.policy-sketches/1", {
    keep: spec.keep ? spec.keep.score : null,
    thenKeep: spec.thenKeep && spec.keep ? [spec.thenKeep.score, spec.keep.score, spec.keep.fraction] : null,
    k: spec.sketch.k,
  });
}
