/**
 * A secured cluster, for real: the local broker with a SASL_SSL listener (a CA and broker certificate
 * made with openssl, SCRAM users created when its storage is formatted, PLAIN users, ACLs enforced by
 * KRaft's StandardAuthorizer). `clipsieve run` filters a stream exactly once through it as a user
 * whose ACLs allow just what the filter needs; each refusal (wrong password, unknown user, an
 * untrusted certificate, a missing ACL on an output topic or on the group) ends the filter with a
 * one-line coded error naming the broker and what was refused, and moves no offset and makes no
 * output visible; and no secret appears in anything the run printed or served.
 *
 * Its own broker (the shared one is plaintext): the records are written and read back through the
 * broker's plaintext listener, whose principal is a super user, with the tests' own kafkajs client.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import kafkajs, { type AclOperationTypes, type AclResourceTypes, Kafka, logLevel } from "kafkajs";

// kafkajs's enums are not named exports of its CommonJS module.
const { AclOperationTypes: OP, AclPermissionTypes, AclResourceTypes: RES, ResourcePatternTypes } = kafkajs;

import { createKafkaClient, KAFKA_ADAPTERS } from "../../src/kafka/index.ts";
import { type BrokerState, startLocalBroker, stopLocalBroker } from "../../src/kafka/local-broker.ts";
import { makeCertificate } from "../../src/kafka/local-broker-security.ts";
import { assertExactlyOnce, DIM, produce } from "../helpers/exactly-once.ts";
import { exited, type FilterTopics, filterTopics, freePort, spawnClipsieve } from "../helpers/filter.ts";
import { readAll } from "../helpers/kafka.ts";

const PASSWORDS = {
  admin: "admin-Secr3t-pw",
  alice: "alice-Secr3t-pw",
  bob: "bob-Secr3t-pw",
  carol: "carol-Secr3t-pw",
};
let dir: string;
let broker: BrokerState;
let plain: Kafka;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "clipsieve-test-kafka-secured-"));
  broker = await startLocalBroker({
    stateDir: join(dir, "broker"),
    port: 0,
    controllerPort: 0,
    secure: {
      users: Object.entries(PASSWORDS).map(([name, password]) => ({ name, password })),
      superUsers: ["admin"],
    },
  });
  await createKafkaClient({
    clientId: "clipsieve-test-secured",
    brokers: [broker.brokers],
  }).waitForCoordinators(60_000);
  plain = new Kafka({
    clientId: "clipsieve-test-secured",
    brokers: [broker.brokers],
    logLevel: logLevel.NOTHING,
  });
  for (const [user, password] of Object.entries(PASSWORDS))
    writeFileSync(join(dir, `${user}.password`), `${password}\n`);
});

after(async () => {
  await stopLocalBroker(join(dir, "broker"));
  rmSync(dir, { recursive: true, force: true });
});

/** Allow `user` what the filter of `t` needs, except `except` (a topic or the group). */
async function grantFilter(user: string, t: FilterTopics, instance: string, except?: string): Promise<void> {
  const acl = (resourceType: AclResourceTypes, resourceName: string, operation: AclOperationTypes) => ({
    resourceType,
    resourceName,
    resourcePatternType: ResourcePatternTypes.LITERAL,
    principal: `User:${user}`,
    host: "*",
    operation,
    permissionType: AclPermissionTypes.ALLOW,
  });
  const { TOPIC, GROUP, TRANSACTIONAL_ID } = RES;
  const { READ, WRITE, DESCRIBE, CREATE } = OP;
  const state = `${t.group}-policy-state`;
  const acls = [
    acl(TOPIC, t.input, READ),
    acl(TOPIC, t.input, DESCRIBE),
    acl(GROUP, t.group, READ),
    ...[t.accepted, t.rejected, t.deadLetter, t.scores, t.windows].flatMap((topic) => [
      acl(TOPIC, topic, WRITE),
      acl(TOPIC, topic, DESCRIBE),
    ]),
    ...[READ, WRITE, DESCRIBE, CREATE].map((op) => acl(TOPIC, state, op)),
    acl(TRANSACTIONAL_ID, `clipsieve-${t.group}-${instance}`, WRITE),
    acl(TRANSACTIONAL_ID, `clipsieve-${t.group}-${instance}`, DESCRIBE),
  ].filter((a) => a.resourceName !== except);
  const admin = plain.admin();
  await admin.connect();
  try {
    await admin.createAcls({ acl: acls });
  } finally {
    await admin.disconnect();
  }
}

/** `clipsieve run` through the secured listener as `user`, reading the password from a file. */
function securedRun(t: FilterTopics, instance: string, security: string[], extra: string[] = []) {
  return spawnClipsieve([
    "run",
    ...["--brokers", broker.secured!.brokers, "--group", t.group, "--input", t.input],
    ...["--accepted", t.accepted, "--rejected", t.rejected, "--dead-letter", t.deadLetter],
    ...["--scores", t.scores, "--windows-topic", t.windows, "--instance-id", instance],
    ...["--dim", String(DIM), "--window-size", "100", "--linger-ms", "200", "--bank-size", "100"],
    ...["--draws", "2", "--batch-size", "64", "--keep", "s_clip_loss=0.5", "--warmup", "0"],
    ...["--security-protocol", "sasl_ssl", "--ssl-ca-file", broker.secured!.caFile, ...security],
    ...extra,
  ]);
}

const scram = (user: string, password = join(dir, `${user}.password`)) => [
  ...["--sasl-mechanism", "SCRAM-SHA-512", "--sasl-username", user, "--sasl-password-file", password],
];

async function newTopics(): Promise<FilterTopics> {
  return filterTopics(
    2,
    createKafkaClient({ clientId: "clipsieve-test-secured", brokers: [broker.brokers] }),
  );
}

/** The filter fails: a one-line coded error naming the broker; no offset moved; nothing visible. */
async function assertRefused(
  child: ReturnType<typeof spawnClipsieve>,
  t: FilterTopics,
  code: string,
  names: RegExp,
): Promise<void> {
  const status = await Promise.race([
    exited(child),
    new Promise<"running">((r) => setTimeout(() => r("running"), 90_000)),
  ]);
  if (status === "running") child.kill("SIGKILL");
  const out = child.output();
  assert.notEqual(status, "running", `the filter did not stop on ${code}\n${out.slice(-3000)}`);
  assert.notEqual(status, 0);
  const line = out.split("\n").find((l) => l.startsWith("clipsieve: "));
  assert.ok(line, `no one-line error\n${out.slice(-3000)}`);
  assert.match(line, new RegExp(`\\[${code}\\]$`));
  assert.ok(line.includes(broker.secured!.brokers), `the error names the broker: ${line}`);
  assert.match(line, names);
  const admin = plain.admin();
  await admin.connect();
  try {
    const offsets = await admin.fetchOffsets({ groupId: t.group, topics: [t.input] });
    const moved = offsets.flatMap((o) => o.partitions).filter((p) => p.offset !== "-1");
    assert.deepEqual(moved, [], "no offset moved");
  } finally {
    await admin.disconnect();
  }
  const visible = await Promise.all(
    [t.accepted, t.rejected, t.scores].map((topic) =>
      readAll(plain, topic, { idleMs: 1000, timeoutMs: 10_000 }),
    ),
  );
  assert.deepEqual(
    visible.map((records) => records.length),
    [0, 0, 0],
    "nothing visible on the output topics",
  );
}

for (const adapter of KAFKA_ADAPTERS) {
  test(`[${adapter}] run filters a stream exactly once through SASL_SSL (SCRAM-SHA-512, ACLs), and prints no secret anywhere`, async () => {
    const t = await newTopics();
    await grantFilter("alice", t, "sec");
    const metricsPort = await freePort();
    const n = 600;
    await produce(plain, t.input, n, 2, 31);
    const filter = securedRun(t, "sec", scram("alice"), [
      "--metrics-port",
      String(metricsPort),
      "--kafka-client",
      adapter,
    ]);
    try {
      await assertExactlyOnce(plain, t, n, () => filter.output().slice(-3000));
      const served = await Promise.all(
        ["metrics", "healthz"].map(async (path) =>
          (await fetch(`http://127.0.0.1:${metricsPort}/${path}`)).text(),
        ),
      );
      const manifests = (await readAll(plain, t.windows, { idleMs: 1000, timeoutMs: 10_000 })).map((m) =>
        String(m.value),
      );
      filter.kill("SIGTERM");
      await exited(filter);
      const help = spawnClipsieve(["run", "--help"]);
      await exited(help);
      const everything = [filter.output(), ...served, ...manifests, help.output()].join("\n");
      assert.match(filter.output(), /filter running/);
      for (const secret of Object.values(PASSWORDS))
        assert.ok(!everything.includes(secret), "a password was printed");
      assert.ok(
        !everything.includes(readFileSync(join(dir, "broker", "tls", "ca-key.pem"), "utf8").split("\n")[1]),
      );
    } finally {
      filter.kill("SIGKILL");
    }
  });
}

test("a wrong password: KAFKA_AUTH_FAILED, naming the broker and the user", async () => {
  const t = await newTopics();
  await produce(plain, t.input, 50, 2, 32);
  writeFileSync(join(dir, "wrong.password"), "not-the-password\n");
  await assertRefused(
    securedRun(t, "w", scram("alice", join(dir, "wrong.password"))),
    t,
    "KAFKA_AUTH_FAILED",
    /user alice/,
  );
});

test("an unknown user (PLAIN): KAFKA_AUTH_FAILED", async () => {
  const t = await newTopics();
  await produce(plain, t.input, 50, 2, 33);
  await assertRefused(
    securedRun(t, "u", [
      ...["--sasl-mechanism", "PLAIN", "--sasl-username", "mallory"],
      ...["--sasl-password-file", join(dir, "alice.password")],
    ]),
    t,
    "KAFKA_AUTH_FAILED",
    /PLAIN user mallory/,
  );
});

test("a broker certificate no trusted CA signed: KAFKA_TLS_FAILED", async () => {
  const t = await newTopics();
  await produce(plain, t.input, 50, 2, 34);
  const other = await makeCertificate(join(dir, "other-ca"), "nobody", ["localhost"]);
  await assertRefused(
    securedRun(t, "c", scram("alice"), ["--ssl-ca-file", other.caFile]),
    t,
    "KAFKA_TLS_FAILED",
    /certificate verify failed/,
  );
});

test("no ACL to write an output topic: KAFKA_NOT_AUTHORIZED, the window aborted", async () => {
  const t = await newTopics();
  await grantFilter("bob", t, "b", t.accepted);
  await produce(plain, t.input, 300, 2, 35);
  await assertRefused(
    securedRun(t, "b", scram("bob")),
    t,
    "KAFKA_NOT_AUTHORIZED",
    new RegExp(`topic .*${t.accepted}`),
  );
});

test("no ACL on the consumer group: KAFKA_NOT_AUTHORIZED naming the group", async () => {
  const t = await newTopics();
  await grantFilter("carol", t, "g", t.group);
  await produce(plain, t.input, 50, 2, 36);
  await assertRefused(
    securedRun(t, "g", scram("carol")),
    t,
    "KAFKA_NOT_AUTHORIZED",
    new RegExp(`group ${t.group}`),
  );
});
