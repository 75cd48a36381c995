/**
 * The security block (src/kafka/security.ts, src/kafka/errors.ts, src/kafka/guard.ts) without a
 * broker: options resolve to what each client library is given (expected settings written out by
 * hand from librdkafka's CONFIGURATION.md and kafkajs's docs), secrets come from files or variables
 * and never show in descriptions or errors, the OAUTHBEARER token request is the client-credentials
 * grant, and both clients' refusals read as the right coded error. The real broker: secured.kafka.test.ts.
 */
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { isClipsieveError } from "../../src/common/errors.ts";
import { kafkaErrorKind, securityFailureOf } from "../../src/kafka/errors.ts";
import { securityError } from "../../src/kafka/guard.ts";
import {
  describeSecurity,
  kafkajsSecurityConfig,
  librdkafkaSecurityConfig,
  oauthToken,
  resolveSecurity,
  type SecurityValues,
} from "../../src/kafka/security.ts";

const dir = mkdtempSync(join(tmpdir(), "clipsieve-security-unit-"));
const file = (name: string, text: string) => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};
const base: SecurityValues = { securityProtocol: "plaintext", sslCheckHostname: true };

test("plaintext by default: nothing for either client", () => {
  const s = resolveSecurity(base, {});
  assert.deepEqual(s, { protocol: "plaintext" });
  assert.deepEqual(librdkafkaSecurityConfig(s), {});
  assert.deepEqual(kafkajsSecurityConfig(s), {});
  assert.equal(describeSecurity(s), "plaintext");
});

test("SASL_SSL with SCRAM: the password from its file (one trailing newline dropped), the settings each client takes", () => {
  const ca = file("ca.pem", "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n");
  const pw = file("pw", "s3cret value\n");
  const s = resolveSecurity(
    {
      ...base,
      securityProtocol: "sasl_ssl",
      sslCaFile: ca,
      saslMechanism: "SCRAM-SHA-512",
      saslUsername: "alice",
      saslPasswordFile: pw,
    },
    {},
  );
  assert.deepEqual(librdkafkaSecurityConfig(s), {
    "security.protocol": "sasl_ssl",
    "ssl.ca.location": ca,
    "ssl.endpoint.identification.algorithm": "https",
    "sasl.mechanisms": "SCRAM-SHA-512",
    "sasl.username": "alice",
    "sasl.password": "s3cret value",
  });
  const k = kafkajsSecurityConfig(s);
  assert.deepEqual(k.sasl, { mechanism: "scram-sha-512", username: "alice", password: "s3cret value" });
  assert.deepEqual(k.ssl?.ca, ["-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n"]);
  assert.equal(k.ssl?.rejectUnauthorized, true);
  assert.equal(k.ssl?.checkServerIdentity, undefined, "the name is checked by default");
  assert.equal(describeSecurity(s), "sasl_ssl, SCRAM-SHA-512 user alice");
});

test("the password from CLIPSIEVE_SASL_PASSWORD when no file is named; none at all is an error naming both ways", () => {
  const values: SecurityValues = {
    ...base,
    securityProtocol: "sasl_plaintext",
    saslMechanism: "PLAIN",
    saslUsername: "bob",
  };
  const s = resolveSecurity(values, { CLIPSIEVE_SASL_PASSWORD: "from-env" });
  assert.deepEqual(librdkafkaSecurityConfig(s), {
    "security.protocol": "sasl_plaintext",
    "sasl.mechanisms": "PLAIN",
    "sasl.username": "bob",
    "sasl.password": "from-env",
  });
  assert.throws(
    () => resolveSecurity(values, {}),
    (err) =>
      isClipsieveError(err, "CONFIG_INVALID") &&
      /--sasl-password-file or CLIPSIEVE_SASL_PASSWORD/.test(err.message),
  );
});

test("inconsistent options are refused before anything connects", () => {
  const cases: [SecurityValues, RegExp][] = [
    [{ ...base, sslCaFile: "/x.pem" }, /--ssl-ca-file needs --security-protocol ssl or sasl_ssl/],
    [
      { ...base, saslMechanism: "PLAIN" },
      /--sasl-mechanism needs --security-protocol sasl_plaintext or sasl_ssl/,
    ],
    [{ ...base, securityProtocol: "sasl_ssl" }, /needs --sasl-mechanism/],
    [
      { ...base, securityProtocol: "ssl", sslCertFile: "/c.pem" },
      /--ssl-cert-file and --ssl-key-file go together/,
    ],
    [
      { ...base, securityProtocol: "sasl_ssl", saslMechanism: "OAUTHBEARER", saslOauthClientId: "c" },
      /OAUTHBEARER needs --sasl-oauth-token-endpoint, --sasl-oauth-client-id and a client secret/,
    ],
    [
      { ...base, securityProtocol: "ssl", sslCaFile: join(dir, "missing.pem") },
      /--ssl-ca-file .*missing\.pem: cannot read the CA bundle \(ENOENT\)/,
    ],
  ];
  for (const [values, message] of cases) {
    assert.throws(
      () => resolveSecurity(values, {}),
      (err) => isClipsieveError(err, "CONFIG_INVALID") && message.test(err.message),
    );
  }
});

test("TLS without the host-name check: librdkafka's algorithm none; kafkajs still verifies the chain", () => {
  const s = resolveSecurity({ ...base, securityProtocol: "ssl", sslCheckHostname: false }, {});
  assert.deepEqual(librdkafkaSecurityConfig(s), {
    "security.protocol": "ssl",
    "ssl.endpoint.identification.algorithm": "none",
  });
  const k = kafkajsSecurityConfig(s);
  assert.equal(k.ssl?.rejectUnauthorized, true);
  assert.equal(typeof k.ssl?.checkServerIdentity, "function");
});

test("OAUTHBEARER: a client-credentials token request, the secret in the Authorization header only", async () => {
  const seen: { auth?: string; body: string; url?: string }[] = [];
  let refuse = false;
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (d) => (body += d));
    req.on("end", () => {
      seen.push({ auth: req.headers.authorization, body, url: req.url });
      res.statusCode = refuse ? 401 : 200;
      res.end(refuse ? "{}" : JSON.stringify({ access_token: "tok-123", expires_in: 600 }));
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  try {
    const secret = file("client-secret", "very-secret\n");
    const s = resolveSecurity(
      {
        ...base,
        securityProtocol: "sasl_ssl",
        saslMechanism: "OAUTHBEARER",
        saslOauthTokenEndpoint: `http://127.0.0.1:${port}/token`,
        saslOauthClientId: "clip",
        saslOauthClientSecretFile: secret,
        saslOauthScope: "kafka",
      },
      {},
    );
    const before = Date.now();
    const token = await oauthToken(s.sasl as Parameters<typeof oauthToken>[0]);
    assert.equal(token.token, "tok-123");
    assert.ok(token.expiresAtMs >= before + 600_000 && token.expiresAtMs <= Date.now() + 600_000);
    assert.equal(seen[0].auth, `Basic ${Buffer.from("clip:very-secret").toString("base64")}`);
    assert.equal(seen[0].body, "grant_type=client_credentials&scope=kafka");
    assert.equal(seen[0].url, "/token");
    // librdkafka gets a refresh callback, never a secret in its settings.
    const rd = librdkafkaSecurityConfig(s);
    assert.equal(typeof rd.oauthbearer_token_refresh_cb, "function");
    assert.ok(!JSON.stringify(rd).includes("very-secret"));
    const t0 = Date.now();
    const refreshed = (await (rd.oauthbearer_token_refresh_cb as () => Promise<unknown>)()) as {
      tokenValue: string;
      lifetime: number;
      principal: string;
    };
    assert.equal(refreshed.tokenValue, "tok-123");
    assert.equal(refreshed.principal, "clip");
    assert.ok(refreshed.lifetime >= t0 + 600_000 && refreshed.lifetime <= Date.now() + 600_000);
    refuse = true;
    await assert.rejects(oauthToken(s.sasl as Parameters<typeof oauthToken>[0]), (err) => {
      assert.ok(isClipsieveError(err, "KAFKA_AUTH_FAILED"));
      assert.match(err.message, /refused client clip \(HTTP 401\)/);
      assert.ok(!err.message.includes("very-secret"));
      return true;
    });
    assert.equal(describeSecurity(s), "sasl_ssl, OAUTHBEARER client clip");
  } finally {
    server.close();
  }
});

test("both clients' refusals read as security failures, and as fatal", () => {
  const cases: [unknown, string, string?][] = [
    [Object.assign(new Error("Local: Authentication failure"), { code: -169 }), "authentication"],
    [Object.assign(new Error("ssl handshake"), { code: -181 }), "tls"],
    [
      Object.assign(new Error("Broker: Topic authorization failed"), { code: 29, isTxnRequiresAbort: true }),
      "authorization",
      "topic",
    ],
    [Object.assign(new Error("Broker: Group authorization failed"), { code: 30 }), "authorization", "group"],
    [
      Object.assign(new Error("Broker: Transactional Id authorization failed"), { code: 53, isFatal: true }),
      "authorization",
      "transactionalId",
    ],
    [Object.assign(new Error("x"), { name: "KafkaJSSASLAuthenticationError" }), "authentication"],
    [
      Object.assign(new Error("x"), { type: "TOPIC_AUTHORIZATION_FAILED", retriable: false }),
      "authorization",
      "topic",
    ],
    [
      Object.assign(new Error("connect"), {
        cause: Object.assign(new Error("self-signed"), { code: "SELF_SIGNED_CERT_IN_CHAIN" }),
      }),
      "tls",
    ],
  ];
  for (const [err, kind, resource] of cases) {
    const f = securityFailureOf(err);
    assert.equal(f?.kind, kind, String(err));
    assert.equal(f?.resource, resource);
    assert.equal(kafkaErrorKind(err), "fatal");
  }
  assert.equal(securityFailureOf(Object.assign(new Error("Local: Timed out"), { code: -185 })), undefined);
});

test("the coded errors name the brokers, the principal and the refused resource, never a secret", () => {
  const security = resolveSecurity(
    { ...base, securityProtocol: "sasl_plaintext", saslMechanism: "SCRAM-SHA-256", saslUsername: "carol" },
    { CLIPSIEVE_SASL_PASSWORD: "pw-9" },
  );
  const ctx = { brokers: ["k1:9093", "k2:9093"], security };
  const group = securityError(
    { kind: "authorization", resource: "group", detail: "Group authorization failed" },
    ctx,
    { group: "g1" },
    undefined,
  );
  assert.equal(group.code, "KAFKA_NOT_AUTHORIZED");
  assert.equal(
    group.message,
    "Kafka brokers k1:9093, k2:9093 refused sasl_plaintext, SCRAM-SHA-256 user carol: no ACL allows it on consumer group g1 (grant READ): Group authorization failed",
  );
  const auth = securityError(
    { kind: "authentication", detail: "SASL authentication error" },
    ctx,
    {},
    undefined,
  );
  assert.equal(auth.code, "KAFKA_AUTH_FAILED");
  assert.match(
    auth.message,
    /^Kafka brokers k1:9093, k2:9093 refused the credentials \(sasl_plaintext, SCRAM-SHA-256 user carol\)/,
  );
  for (const e of [group, auth]) assert.ok(!e.message.includes("pw-9"));
});
