/**
 * What a decided window becomes on Kafka (src/sink/outputs.ts) and the output topics' names
 * (src/sink/topics.ts): accepted and rejected records keep their key and value bytes and gain the
 * clipsieve-* headers, dead letters carry the error, every input record gets one scores record, the
 * manifest goes to the windows topic, and the offsets to commit are each partition's last offset + 1.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { DecodedRecord, RecordOutcome, SourceRef } from "../../src/common/record.ts";
import { buildWindowOutputs, nextOffsets } from "../../src/sink/outputs.ts";
import {
  type OutputTopics,
  outputTopicNames,
  outputTopicsOf,
  prefixedOutputTopics,
} from "../../src/sink/topics.ts";

const TOPICS: OutputTopics = {
  accepted: "acc",
  rejected: "rej",
  deadLetter: "dlq",
  scores: "sc",
  windowsTopic: "win",
};
const CTX = { windowId: "w-0123456789abcdef0123", seed: 99, policyVersion: "abcdef012345" };

function rec(offset: string, extra: Partial<DecodedRecord> = {}): DecodedRecord {
  return {
    source: { topic: "in", partition: 2, offset },
    key: Buffer.from(`key-${offset}`),
    value: Buffer.from([0, 255, Number(offset)]),
    headers: { trace: "t-1", "clipsieve-decision": "stale", gone: undefined },
    timestamp: "1700000000000",
    ...extra,
  };
}

const scoresA = { clip_score: 0.31, s_clip_loss: 0.72 };
const scoresR = { clip_score: 0.12, s_clip_loss: 0.05 };
const thresholds = { "threshold:s_clip_loss": 0.5 };

function outcomes(): RecordOutcome[] {
  return [
    {
      record: rec("7", { uid: "uid-a" }),
      decision: "accepted",
      reason: "passed",
      scores: scoresA,
      thresholds,
    },
    {
      record: rec("8", { uid: "uid-r", key: null }),
      decision: "rejected",
      reason: "below_threshold",
      rule: "s_clip_loss",
      scores: scoresR,
      thresholds,
    },
    {
      record: rec("9", { failure: { code: "EMBEDDING_ZERO", stage: "embed", message: "zero vector" } }),
      decision: "dead_letter",
      reason: "EMBEDDING_ZERO",
    },
  ];
}

describe("buildWindowOutputs", () => {
  it("accepted and rejected records keep their bytes and gain the clipsieve-* headers", () => {
    const input = outcomes();
    const out = buildWindowOutputs(input, TOPICS, CTX);
    const [accepted] = out.get("acc") ?? [];
    const [rejected] = out.get("rej") ?? [];
    assert.equal(out.get("acc")?.length, 1);
    assert.equal(out.get("rej")?.length, 1);
    assert.deepEqual(accepted.key, Buffer.from("key-7"));
    assert.deepEqual(accepted.value, Buffer.from([0, 255, 7]));
    assert.deepEqual(accepted.headers, {
      trace: "t-1",
      "clipsieve-decision": "accepted",
      "clipsieve-reason": "passed",
      "clipsieve-scores": '{"clip_score":0.31,"s_clip_loss":0.72}',
      "clipsieve-thresholds": '{"threshold:s_clip_loss":0.5}',
      "clipsieve-policy-version": "abcdef012345",
      "clipsieve-window-id": "w-0123456789abcdef0123",
      "clipsieve-source": "in/2/7",
    });
    assert.equal(rejected.key, null);
    assert.deepEqual(rejected.value, Buffer.from([0, 255, 8]));
    assert.deepEqual(rejected.headers, {
      trace: "t-1",
      "clipsieve-decision": "rejected",
      "clipsieve-reason": "below_threshold",
      "clipsieve-rule": "s_clip_loss",
      "clipsieve-scores": '{"clip_score":0.12,"s_clip_loss":0.05}',
      "clipsieve-thresholds": '{"threshold:s_clip_loss":0.5}',
      "clipsieve-policy-version": "abcdef012345",
      "clipsieve-window-id": "w-0123456789abcdef0123",
      "clipsieve-source": "in/2/8",
    });
  });

  it("dead letters keep their bytes and carry the error code, stage and message", () => {
    const out = buildWindowOutputs(outcomes(), TOPICS, CTX);
    assert.equal(out.get("dlq")?.length, 1);
    const [dead] = out.get("dlq") ?? [];
    assert.deepEqual(dead, {
      key: Buffer.from("key-9"),
      value: Buffer.from([0, 255, 9]),
      headers: {
        trace: "t-1",
        "clipsieve-error-code": "EMBEDDING_ZERO",
        "clipsieve-error-stage": "embed",
        "clipsieve-error-message": "zero vector",
        "clipsieve-source": "in/2/9",
        "clipsieve-window-id": "w-0123456789abcdef0123",
      },
    });
  });

  it("a dead letter without a failure mark takes its reason as the code", () => {
    const out = buildWindowOutputs(
      [{ record: rec("3"), decision: "dead_letter", reason: "SCORER_FAILED" }],
      TOPICS,
      CTX,
    );
    const [dead] = out.get("dlq") ?? [];
    assert.equal(dead.headers["clipsieve-error-code"], "SCORER_FAILED");
    assert.equal(dead.headers["clipsieve-error-stage"], "decode");
    assert.equal(dead.headers["clipsieve-error-message"], "");
  });

  it("writes one scores record per input record, in record order", () => {
    const out = buildWindowOutputs(outcomes(), TOPICS, CTX);
    const scores = out.get("sc") ?? [];
    assert.deepEqual(
      scores.map((m) => m.key),
      ["uid-a", "uid-r", "in/2/9"],
    );
    assert.ok(scores.every((m) => Object.keys(m.headers).length === 0));
    const common = { window_id: "w-0123456789abcdef0123", seed: 99, policy_version: "abcdef012345" };
    assert.deepEqual(
      scores.map((m) => JSON.parse(String(m.value))),
      [
        {
          source: { topic: "in", partition: 2, offset: "7" },
          uid: "uid-a",
          scores: scoresA,
          thresholds,
          decision: "accepted",
          reason: "passed",
          rule: null,
          ...common,
        },
        {
          source: { topic: "in", partition: 2, offset: "8" },
          uid: "uid-r",
          scores: scoresR,
          thresholds,
          decision: "rejected",
          reason: "below_threshold",
          rule: "s_clip_loss",
          ...common,
        },
        {
          source: { topic: "in", partition: 2, offset: "9" },
          uid: null,
          scores: {},
          thresholds: {},
          decision: "dead_letter",
          reason: "EMBEDDING_ZERO",
          rule: null,
          ...common,
          error: { code: "EMBEDDING_ZERO", stage: "embed", message: "zero vector" },
        },
      ],
    );
  });

  it("a score not computed is null in the scores record and the header, with the reason beside it", () => {
    const lazy: RecordOutcome = {
      record: rec("4", { uid: "uid-l" }),
      decision: "rejected",
      reason: "below_keep_quantile",
      rule: "s_clip_loss",
      scores: { clip_score: 0.2, s_clip_loss: -0.1, normsim_2: 3.5 },
      notComputed: { normsim_inf: "below_keep_quantile" },
      thresholds: { "keep:s_clip_loss": 0.02, "then:normsim_inf": 0.6 },
    };
    const out = buildWindowOutputs([lazy], TOPICS, CTX);
    const [rejected] = out.get("rej") ?? [];
    // Registry order, null where not computed: never left out, never 0.
    assert.equal(
      rejected.headers["clipsieve-scores"],
      '{"clip_score":0.2,"s_clip_loss":-0.1,"normsim_2":3.5,"normsim_inf":null}',
    );
    assert.equal(rejected.headers["clipsieve-not-computed"], '{"normsim_inf":"below_keep_quantile"}');
    const [record] = out.get("sc") ?? [];
    const written = JSON.parse(String(record.value));
    assert.deepEqual(written.scores, {
      clip_score: 0.2,
      s_clip_loss: -0.1,
      normsim_2: 3.5,
      normsim_inf: null,
    });
    assert.deepEqual(written.not_computed, { normsim_inf: "below_keep_quantile" });
    // Records that have every score carry no such field or header.
    const full = buildWindowOutputs(outcomes(), TOPICS, CTX);
    assert.ok((full.get("sc") ?? []).every((m) => !("not_computed" in JSON.parse(String(m.value)))));
    assert.ok(!("clipsieve-not-computed" in (full.get("acc") ?? [])[0]!.headers));
  });

  it("puts the manifest, keyed by the window id, on the windows topic only when there is one", () => {
    const manifest = { window_id: CTX.windowId, members: [["in", 2, "7", 2]] };
    const withManifest = buildWindowOutputs(outcomes(), TOPICS, CTX, manifest);
    assert.deepEqual(withManifest.get("win"), [
      {
        key: "w-0123456789abcdef0123",
        value: '{"window_id":"w-0123456789abcdef0123","members":[["in",2,"7",2]]}',
        headers: {},
      },
    ]);
    const without = buildWindowOutputs(outcomes(), TOPICS, CTX);
    assert.equal(without.has("win"), false);
    assert.deepEqual([...without.keys()].sort(), ["acc", "dlq", "rej", "sc"]);
  });

  it("an empty window has every record topic, each empty", () => {
    const out = buildWindowOutputs([], TOPICS, CTX);
    assert.deepEqual(
      [...out.entries()].map(([t, m]) => [t, m.length]),
      [
        ["acc", 0],
        ["rej", 0],
        ["dlq", 0],
        ["sc", 0],
      ],
    );
  });
});

describe("nextOffsets", () => {
  const at = (topic: string, partition: number, offset: string): { source: SourceRef } => ({
    source: { topic, partition, offset },
  });
  const plain = (m: Map<string, Map<number, string>>) =>
    Object.fromEntries([...m].map(([t, parts]) => [t, Object.fromEntries(parts)]));

  it("is the highest offset + 1 of each partition, whatever the record order", () => {
    const next = nextOffsets([
      at("in", 0, "5"),
      at("in", 0, "10"), // numerically, not as text, above "9"
      at("in", 0, "9"),
      at("in", 1, "0"),
      at("other", 0, "41"),
    ]);
    assert.deepEqual(plain(next), { in: { 0: "11", 1: "1" }, other: { 0: "42" } });
  });

  it("is exact beyond 2^53", () => {
    const next = nextOffsets([at("in", 3, "9007199254740993"), at("in", 3, "9007199254740992")]);
    assert.equal(next.get("in")?.get(3), "9007199254740994");
  });

  it("is empty for no records", () => {
    assert.equal(nextOffsets([]).size, 0);
  });
});

describe("output topics", () => {
  it("prefixedOutputTopics names every topic <prefix>.<suffix>", () => {
    assert.deepEqual(prefixedOutputTopics("replay-v2"), {
      accepted: "replay-v2.accepted",
      rejected: "replay-v2.rejected",
      deadLetter: "replay-v2.dead-letter",
      scores: "replay-v2.scores",
      windowsTopic: "replay-v2.windows",
    });
  });

  it("outputTopicsOf defaults the windows topic to <scores>-windows, and a given one wins", () => {
    const given = { accepted: "a", rejected: "r", deadLetter: "d", scores: "s" };
    assert.deepEqual(outputTopicsOf(given), { ...given, windowsTopic: "s-windows" });
    assert.deepEqual(outputTopicsOf({ ...given, windowsTopic: "w" }), { ...given, windowsTopic: "w" });
  });

  it("outputTopicNames lists accepted, rejected, dead-letter, scores, windows, in that order", () => {
    assert.deepEqual(outputTopicNames(TOPICS), ["acc", "rej", "dlq", "sc", "win"]);
  });
});
