import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, it } from "node:test";
import { Command } from "commander";
import { addConfigFlags } from "../../src/cli/config-flags.ts";
import { isClipsieveError } from "../../src/common/errors.ts";
import { POLICY_KEYS } from "../../src/pipeline/config.ts";
import {
  describePolicy,
  type PolicyFlags,
  parsePolicyFlags,
  parsePolicySpec,
  policyVersion,
  sketchVersion,
} from "../../src/policy/options.ts";

/** The flags as commander hands them over; `thenKeep` stands for `--then` (see below). */
function flags(values: Omit<PolicyFlags, "then"> & { thenKeep?: string }): PolicyFlags {
  const { thenKeep, ...rest } = values;
  if (thenKeep === undefined) return rest;
  // biome-ignore lint/suspicious/noThenProperty: commander stores the value of `--then` under `then`.
  return { ...rest, then: thenKeep };
}

function throwsNaming(fn: () => unknown, flag: string, pattern: RegExp): void {
  assert.throws(fn, (err) => {
    assert.ok(isClipsieveError(err, "CONFIG_INVALID"), `expected CONFIG_INVALID, got ${String(err)}`);
    assert.ok(err.message.includes(flag), `message names ${flag}: ${err.message}`);
    assert.match(err.message, pattern);
    return true;
  });
}

describe("parsePolicyFlags", () => {
  it("turns the flags into a normalised spec", () => {
    const spec = parsePolicyFlags(
      flags({
        keep: "s_clip_loss=0.3",
        thenKeep: "normsim_inf=0.2",
        threshold: ["normsim_2>=1.5", "clip_score>=-0.05"],
        warmup: "5000",
        warmupMode: "accept",
      }),
    );
    assert.deepEqual(spec, {
      keep: { score: "s_clip_loss", fraction: 0.3 },
      thenKeep: { score: "normsim_inf", fraction: 0.2 },
      // SCORE_NAMES order, whatever the flag order.
      thresholds: [
        { score: "clip_score", min: -0.05 },
        { score: "normsim_2", min: 1.5 },
      ],
      warmup: { records: 5000, mode: "accept" },
      sketch: { k: 1000 },
    });
  });

  it("fills the documented defaults: warm-up 10000 records, provisional", () => {
    const spec = parsePolicyFlags(flags({ keep: "clip_score=1", threshold: "s_clip_loss>=0" }));
    assert.deepEqual(spec.warmup, { records: 10000, mode: "provisional" });
    assert.deepEqual(spec.thresholds, [{ score: "s_clip_loss", min: 0 }]);
    assert.equal(spec.thenKeep, undefined);
  });

  it("names the flag and the value at fault", () => {
    throwsNaming(
      () => parsePolicyFlags(flags({ keep: "s_clip_loss" })),
      "--keep",
      /expected <score>=<fraction>/,
    );
    throwsNaming(
      () => parsePolicyFlags(flags({ keep: "clipscore=0.3" })),
      "--keep",
      /unknown score "clipscore"/,
    );
    throwsNaming(() => parsePolicyFlags(flags({ keep: "s_clip_loss=0" })), "--keep", /in \(0, 1\], got 0/);
    throwsNaming(
      () => parsePolicyFlags(flags({ keep: "s_clip_loss=1.5" })),
      "--keep",
      /in \(0, 1\], got 1.5/,
    );
    throwsNaming(
      () => parsePolicyFlags(flags({ keep: "s_clip_loss=30%" })),
      "--keep",
      /"30%" is not a number/,
    );
    throwsNaming(() => parsePolicyFlags(flags({ keep: "s_clip_loss=" })), "--keep", /is not a number/);
    throwsNaming(() => parsePolicyFlags(flags({ thenKeep: "normsim_inf=0.2" })), "--then", /needs --keep/);
    throwsNaming(
      () => parsePolicyFlags(flags({ keep: "s_clip_loss=0.2", thenKeep: "normsim_inf=0.3" })),
      "--then",
      /cannot exceed --keep's 0.2/,
    );
    throwsNaming(
      () => parsePolicyFlags(flags({ threshold: "clip_score>0.2" })),
      "--threshold",
      /only >= is supported/,
    );
    throwsNaming(
      () => parsePolicyFlags(flags({ threshold: "clip_score>=high" })),
      "--threshold",
      /"high" is not a number/,
    );
    throwsNaming(
      () => parsePolicyFlags(flags({ threshold: ["clip_score>=0.2", "clip_score>=0.3"] })),
      "--threshold",
      /second threshold on clip_score/,
    );
    throwsNaming(
      () => parsePolicyFlags(flags({ keep: "clip_score=0.5", warmup: "-1" })),
      "--warmup",
      /whole number/,
    );
    throwsNaming(
      () => parsePolicyFlags(flags({ keep: "clip_score=0.5", warmup: "1e3" })),
      "--warmup",
      /whole number/,
    );
    throwsNaming(
      () => parsePolicyFlags(flags({ keep: "clip_score=0.5", warmupMode: "maybe" })),
      "--warmup-mode",
      /provisional, accept, reject/,
    );
    throwsNaming(() => parsePolicyFlags(flags({})), "--keep", /no policy given/);
  });

  it("works with the policy flags made from the run configuration's schema", () => {
    const command = addConfigFlags(new Command("run").exitOverride(), POLICY_KEYS, { configFile: false });
    command.parse(
      [
        "--keep",
        "s_clip_loss=0.3",
        "--then",
        "normsim_inf=0.2",
        "--threshold",
        "clip_score>=0.1",
        "--threshold",
        "normsim_2>=2",
        "--warmup",
        "50",
        "--warmup-mode",
        "reject",
      ],
      { from: "user" },
    );
    const spec = parsePolicyFlags(command.opts<PolicyFlags>());
    assert.deepEqual(spec.thenKeep, { score: "normsim_inf", fraction: 0.2 });
    assert.deepEqual(
      spec.thresholds.map((t) => t.score),
      ["clip_score", "normsim_2"],
    );
    assert.deepEqual(spec.warmup, { records: 50, mode: "reject" });
  });
});

describe("parsePolicySpec (config file)", () => {
  it("names the path at fault", () => {
    assert.throws(
      () => parsePolicySpec({ keep: { score: "s_clip_loss", fraction: 2 } }, "filter.policy"),
      (err) => isClipsieveError(err, "CONFIG_INVALID") && /filter\.policy\.keep\.fraction/.test(err.message),
    );
    assert.throws(
      () => parsePolicySpec({ thenKeep: { score: "normsim_inf", fraction: 0.2 } }),
      (err) =>
        isClipsieveError(err, "CONFIG_INVALID") && /policy\.thenKeep: thenKeep needs keep/.test(err.message),
    );
    assert.throws(
      () => parsePolicySpec({ keep: { score: "s_clip_loss", fraction: 0.3 }, extra: 1 }),
      (err) => isClipsieveError(err, "CONFIG_INVALID") && /extra/.test(err.message),
    );
  });
});

describe("policyVersion", () => {
  const base = {
    keep: { score: "s_clip_loss", fraction: 0.3 },
    thenKeep: { score: "normsim_inf", fraction: 0.2 },
    thresholds: [{ score: "clip_score", min: 0.1 }],
  } as const;

  it("is 12 hex digits of sha256 over the documented canonical form", () => {
    const canonical = JSON.stringify({
      keep: ["s_clip_loss", 0.3],
      thenKeep: ["normsim_inf", 0.2],
      thresholds: [["clip_score", 0.1]],
      warmup: [10000, "provisional"],
      k: 1000,
    });
    const expected = createHash("sha256")
      .update(`clipsieve.policy/1\n${canonical}`)
      .digest("hex")
      .slice(0, 12);
    assert.equal(policyVersion(parsePolicySpec(base)), expected);
  });

  it("does not depend on the flag order, and changes with every rule", () => {
    const a = parsePolicyFlags(
      flags({ keep: "s_clip_loss=0.3", threshold: ["clip_score>=0.1", "normsim_2>=1"] }),
    );
    const b = parsePolicyFlags(
      flags({ threshold: ["normsim_2>=1", "clip_score>=0.1"], keep: "s_clip_loss=0.30" }),
    );
    assert.equal(policyVersion(a), policyVersion(b));
    const v = policyVersion(parsePolicySpec(base));
    const variants = [
      { ...base, keep: { score: "s_clip_loss", fraction: 0.31 } },
      { ...base, thenKeep: { score: "normsim_2", fraction: 0.2 } },
      { ...base, thresholds: [] },
      { ...base, warmup: { mode: "reject" } },
      { ...base, sketch: { k: 500 } },
    ];
    for (const variant of variants)
      assert.notEqual(policyVersion(parsePolicySpec(variant)), v, JSON.stringify(variant));
  });

  it("sketchVersion ignores what does not change how the sketches are fed", () => {
    const v = sketchVersion(parsePolicySpec(base));
    assert.equal(
      sketchVersion(parsePolicySpec({ ...base, thenKeep: { score: "normsim_inf", fraction: 0.1 } })),
      v,
    );
    assert.equal(sketchVersion(parsePolicySpec({ ...base, thresholds: [], warmup: { records: 5 } })), v);
    // With a stage 2, keep's fraction decides who feeds the stage-2 sketch.
    assert.notEqual(
      sketchVersion(parsePolicySpec({ ...base, keep: { score: "s_clip_loss", fraction: 0.4 } })),
      v,
    );
    const keepOnly = sketchVersion(parsePolicySpec({ keep: { score: "s_clip_loss", fraction: 0.3 } }));
    assert.equal(sketchVersion(parsePolicySpec({ keep: { score: "s_clip_loss", fraction: 0.5 } })), keepOnly);
    assert.notEqual(
      sketchVersion(parsePolicySpec({ keep: { score: "clip_score", fraction: 0.3 } })),
      keepOnly,
    );
  });

  it("describePolicy writes the spec as flags", () => {
    assert.equal(
      describePolicy(parsePolicySpec(base)),
      "--keep s_clip_loss=0.3 --then normsim_inf=0.2 --threshold clip_score>=0.1 --warmup 10000 --warmup-mode provisional",
    );
  });
});
