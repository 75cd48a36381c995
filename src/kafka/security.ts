/**
 * How clipsieve talks to a secured cluster: TLS (a CA bundle, a client certificate and key, the
 * server's name checked by default) and SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER with
 * a token endpoint), and basic auth and TLS for the Schema Registry.
 *
 * One block of options, `SECURITY_KEYS`, in the run configuration's schema (src/pipeline/config.ts),
 * which every command that talks to Kafka or the Schema Registry takes (as flags, config-file keys
 * and CLIPSIEVE_* variables). Secrets are never options: a password, key passphrase or client secret
 * comes from a file (`...File` options) or from its environment variable (`SECRET_ENV`), so it
 * cannot land in a shell history, a process list, `--help` or a config file checked into git.
 * `describeSecurity` is what logs may show.
 */
import { readFileSync } from "node:fs";
import { z } from "zod";
import { ClipsieveError } from "../common/errors.ts";
import type { KafkaAdapterName } from "./port.ts";

export const SECURITY_PROTOCOLS = ["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"] as const;
export type SecurityProtocol = (typeof SECURITY_PROTOCOLS)[number];
export const SASL_MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] as const;
export type SaslMechanism = (typeof SASL_MECHANISMS)[number];

/** Where each secret comes from when no file is named. */
export const SECRET_ENV = {
  saslPassword: "CLIPSIEVE_SASL_PASSWORD",
  oauthClientSecret: "CLIPSIEVE_SASL_OAUTH_CLIENT_SECRET",
  sslKeyPassword: "CLIPSIEVE_SSL_KEY_PASSWORD",
  schemaRegistryPassword: "CLIPSIEVE_SCHEMA_REGISTRY_PASSWORD",
} as const;

const bool = z.union([z.boolean(), z.enum(["true", "false"]).transform((v) => v === "true")]);
const file = z.string().min(1);

/** The security options, as configuration keys (flags `--security-protocol`, ...). */
export const securitySchemaShape = {
  securityProtocol: z
    .enum(SECURITY_PROTOCOLS)
    .default("plaintext")
    .describe("How to reach Kafka: plaintext, ssl, sasl_plaintext or sasl_ssl"),
  sslCaFile: file
    .optional()
    .describe("PEM bundle of the CAs that sign the brokers' certificates (default: the system's)"),
  sslCertFile: file.optional().describe("PEM client certificate, for clusters that ask for one (mTLS)"),
  sslKeyFile: file.optional().describe("PEM private key of the client certificate"),
  sslKeyPasswordFile: file
    .optional()
    .describe(`File holding the client key's passphrase (or ${SECRET_ENV.sslKeyPassword})`),
  sslCheckHostname: bool
    .default(true)
    .describe("Check that the broker's certificate names the host connected to"),
  saslMechanism: z
    .enum(SASL_MECHANISMS)
    .optional()
    .describe("SASL mechanism: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER"),
  saslUsername: z.string().min(1).optional().describe("SASL user name (PLAIN, SCRAM)"),
  saslPasswordFile: file
    .optional()
    .describe(`File holding the SASL password (or ${SECRET_ENV.saslPassword})`),
  saslOauthTokenEndpoint: z
    .url()
    .optional()
    .describe("OAUTHBEARER: the OAuth 2 token endpoint (client-credentials grant)"),
  saslOauthClientId: z.string().min(1).optional().describe("OAUTHBEARER: client id"),
  saslOauthClientSecretFile: file
    .optional()
    .describe(`OAUTHBEARER: file holding the client secret (or ${SECRET_ENV.oauthClientSecret})`),
  saslOauthScope: z.string().min(1).optional().describe("OAUTHBEARER: scope to ask for"),
  schemaRegistryUsername: z
    .string()
    .min(1)
    .optional()
    .describe("Schema Registry basic-auth user (an API key on Confluent Cloud)"),
  schemaRegistryPasswordFile: file
    .optional()
    .describe(`File holding the Schema Registry password (or ${SECRET_ENV.schemaRegistryPassword})`),
  schemaRegistryCaFile: file
    .optional()
    .describe("PEM bundle of the CAs that sign the Schema Registry's certificate"),
};

export type SecurityKey = keyof typeof securitySchemaShape;
export const SECURITY_KEYS = Object.keys(securitySchemaShape) as SecurityKey[];
const securitySchema = z.object(securitySchemaShape);
export type SecurityValues = z.output<typeof securitySchema>;

/** TLS and SASL settings, resolved: files read, secrets in hand. Never logged (see describeSecurity). */
export interface KafkaSecurity {
  protocol: SecurityProtocol;
  tls?: {
    /** PEM texts. */
    ca?: string;
    cert?: string;
    key?: string;
    keyPassword?: string;
    /** File paths, for clients that read files themselves (librdkafka). */
    caFile?: string;
    certFile?: string;
    keyFile?: string;
    checkHostname: boolean;
  };
  sasl?:
    | { mechanism: "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512"; username: string; password: string }
    | {
        mechanism: "OAUTHBEARER";
        tokenEndpoint: string;
        clientId: string;
        clientSecret: string;
        scope?: string;
      };
}

export interface SchemaRegistrySecurity {
  basicAuth?: { username: string; password: string };
  ca?: string;
}

function readText(path: string, what: string, key: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    throw new ClipsieveError(
      "CONFIG_INVALID",
      `${key} ${path}: cannot read the ${what} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
      { cause: err },
    );
  }
}

/** A secret: its file's content (one trailing newline dropped), else its variable, else undefined. */
function secret(
  path: string | undefined,
  key: string,
  env: string,
  vars: NodeJS.ProcessEnv,
): string | undefined {
  if (path !== undefined) return readText(path, "secret", `--${key}`).replace(/\r?\n$/, "");
  const value = vars[env];
  return value === undefined || value === "" ? undefined : value;
}

const kebab = (key: string) => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/** Resolve the options: read the files, fetch the secrets, check that what the protocol needs is there. */
export function resolveSecurity(
  values: SecurityValues,
  vars: NodeJS.ProcessEnv = process.env,
): KafkaSecurity {
  const protocol = values.securityProtocol;
  const tlsOn = protocol === "ssl" || protocol === "sasl_ssl";
  const saslOn = protocol === "sasl_plaintext" || protocol === "sasl_ssl";
  const invalid = (message: string) => new ClipsieveError("CONFIG_INVALID", message);
  const tlsKeys = ["sslCaFile", "sslCertFile", "sslKeyFile", "sslKeyPasswordFile"] as const;
  const givenTls = tlsKeys.filter((k) => values[k] !== undefined);
  if (!tlsOn && givenTls.length > 0) {
    throw invalid(`--${kebab(givenTls[0])} needs --security-protocol ssl or sasl_ssl (it is ${protocol})`);
  }
  if (!saslOn && values.saslMechanism !== undefined) {
    throw invalid(
      `--sasl-mechanism needs --security-protocol sasl_plaintext or sasl_ssl (it is ${protocol})`,
    );
  }
  const out: KafkaSecurity = { protocol };
  if (tlsOn) {
    if ((values.sslCertFile === undefined) !== (values.sslKeyFile === undefined)) {
      throw invalid("--ssl-cert-file and --ssl-key-file go together (a client certificate and its key)");
    }
    out.tls = {
      caFile: values.sslCaFile,
      certFile: values.sslCertFile,
      keyFile: values.sslKeyFile,
      ca: values.sslCaFile ? readText(values.sslCaFile, "CA bundle", "--ssl-ca-file") : undefined,
      cert: values.sslCertFile
        ? readText(values.sslCertFile, "client certificate", "--ssl-cert-file")
        : undefined,
      key: values.sslKeyFile ? readText(values.sslKeyFile, "client key", "--ssl-key-file") : undefined,
      keyPassword: secret(
        values.sslKeyPasswordFile,
        "ssl-key-password-file",
        SECRET_ENV.sslKeyPassword,
        vars,
      ),
      checkHostname: values.sslCheckHostname,
    };
  }
  if (saslOn) {
    const mechanism = values.saslMechanism;
    if (!mechanism) throw invalid(`--security-protocol ${protocol} needs --sasl-mechanism`);
    if (mechanism === "OAUTHBEARER") {
      const clientSecret = secret(
        values.saslOauthClientSecretFile,
        "sasl-oauth-client-secret-file",
        SECRET_ENV.oauthClientSecret,
        vars,
      );
      if (!values.saslOauthTokenEndpoint || !values.saslOauthClientId || clientSecret === undefined) {
        throw invalid(
          `--sasl-mechanism OAUTHBEARER needs --sasl-oauth-token-endpoint, --sasl-oauth-client-id and a client secret (--sasl-oauth-client-secret-file or ${SECRET_ENV.oauthClientSecret})`,
        );
      }
      out.sasl = {
        mechanism,
        tokenEndpoint: values.saslOauthTokenEndpoint,
        clientId: values.saslOauthClientId,
        clientSecret,
        scope: values.saslOauthScope,
      };
    } else {
      const password = secret(values.saslPasswordFile, "sasl-password-file", SECRET_ENV.saslPassword, vars);
      if (!values.saslUsername || password === undefined) {
        throw invalid(
          `--sasl-mechanism ${mechanism} needs --sasl-username and a password (--sasl-password-file or ${SECRET_ENV.saslPassword})`,
        );
      }
      out.sasl = { mechanism, username: values.saslUsername, password };
    }
  }
  return out;
}

/** The Schema Registry's basic auth and CA, resolved. */
export function resolveSchemaRegistrySecurity(
  values: Pick<
    SecurityValues,
    "schemaRegistryUsername" | "schemaRegistryPasswordFile" | "schemaRegistryCaFile"
  >,
  vars: NodeJS.ProcessEnv = process.env,
): SchemaRegistrySecurity {
  const out: SchemaRegistrySecurity = {};
  const password = secret(
    values.schemaRegistryPasswordFile,
    "schema-registry-password-file",
    SECRET_ENV.schemaRegistryPassword,
    vars,
  );
  if (values.schemaRegistryUsername !== undefined) {
    if (password === undefined) {
      throw new ClipsieveError(
        "CONFIG_INVALID",
        `--schema-registry-username needs a password (--schema-registry-password-file or ${SECRET_ENV.schemaRegistryPassword})`,
      );
    }
    out.basicAuth = { username: values.schemaRegistryUsername, password };
  }
  if (values.schemaRegistryCaFile) {
    out.ca = readText(values.schemaRegistryCaFile, "CA bundle", "--schema-registry-ca-file");
  }
  return out;
}

/** What logs and errors may say about the security in use: no secret, no key material. */
export function describeSecurity(security: KafkaSecurity | undefined): string {
  if (!security || security.protocol === "plaintext") return "plaintext";
  const parts: string[] = [security.protocol];
  if (security.sasl) {
    parts.push(
      security.sasl.mechanism === "OAUTHBEARER"
        ? `OAUTHBEARER client ${security.sasl.clientId}`
        : `${security.sasl.mechanism} user ${security.sasl.username}`,
    );
  }
  if (security.tls?.certFile) parts.push("client certificate");
  return parts.join(", ");
}

/**
 * librdkafka's settings for `security` (CONFIGURATION.md of librdkafka). OAUTHBEARER is served by a
 * token callback (`oauthToken`), since this build of librdkafka has no HTTP client of its own.
 */
export function librdkafkaSecurityConfig(security: KafkaSecurity | undefined): Record<string, unknown> {
  if (!security || security.protocol === "plaintext") return {};
  const out: Record<string, unknown> = { "security.protocol": security.protocol };
  const { tls, sasl } = security;
  if (tls) {
    if (tls.caFile) out["ssl.ca.location"] = tls.caFile;
    if (tls.certFile) out["ssl.certificate.location"] = tls.certFile;
    if (tls.keyFile) out["ssl.key.location"] = tls.keyFile;
    if (tls.keyPassword !== undefined) out["ssl.key.password"] = tls.keyPassword;
    out["ssl.endpoint.identification.algorithm"] = tls.checkHostname ? "https" : "none";
  }
  if (sasl) {
    out["sasl.mechanisms"] = sasl.mechanism;
    if (sasl.mechanism === "OAUTHBEARER") {
      // The client asks again before `lifetime` (ms since the epoch) runs out.
      out.oauthbearer_token_refresh_cb = async () => {
        const t = await oauthToken(sasl);
        return { tokenValue: t.token, lifetime: t.expiresAtMs, principal: t.principal };
      };
    } else {
      out["sasl.username"] = sasl.username;
      out["sasl.password"] = sasl.password;
    }
  }
  return out;
}

/** kafkajs's `ssl` and `sasl` options for `security`; OAUTHBEARER through `oauthToken`. */
export function kafkajsSecurityConfig(security: KafkaSecurity | undefined): {
  ssl?: {
    ca?: string[];
    cert?: string;
    key?: string;
    passphrase?: string;
    rejectUnauthorized: true;
    checkServerIdentity?: () => undefined;
  };
  sasl?:
    | { mechanism: "plain" | "scram-sha-256" | "scram-sha-512"; username: string; password: string }
    | { mechanism: "oauthbearer"; oauthBearerProvider: () => Promise<{ value: string }> };
} {
  if (!security || security.protocol === "plaintext") return {};
  const out: ReturnType<typeof kafkajsSecurityConfig> = {};
  const { tls, sasl } = security;
  if (tls) {
    out.ssl = {
      ca: tls.ca ? [tls.ca] : undefined,
      cert: tls.cert,
      key: tls.key,
      passphrase: tls.keyPassword,
      rejectUnauthorized: true,
      // The chain is still verified against the CA; only the name check is off.
      ...(tls.checkHostname ? {} : { checkServerIdentity: () => undefined }),
    };
  }
  if (sasl) {
    out.sasl =
      sasl.mechanism === "OAUTHBEARER"
        ? {
            mechanism: "oauthbearer",
            oauthBearerProvider: async () => ({ value: (await oauthToken(sasl)).token }),
          }
        : {
            mechanism: sasl.mechanism.toLowerCase() as "plain" | "scram-sha-256" | "scram-sha-512",
            username: sasl.username,
            password: sasl.password,
          };
  }
  return out;
}

/**
 * An OAuth 2 access token by the client-credentials grant (RFC 6749 §4.4), for OAUTHBEARER: what
 * Confluent Cloud, Amazon MSK (with a token service), Aiven and Redpanda Cloud's OIDC setups accept.
 * The secret goes in the Authorization header, never in a URL or a log line.
 */
export async function oauthToken(oauth: {
  tokenEndpoint: string;
  clientId: string;
  clientSecret: string;
  scope?: string;
}): Promise<{ token: string; expiresAtMs: number; principal: string }> {
  const body = new URLSearchParams({ grant_type: "client_credentials" });
  if (oauth.scope) body.set("scope", oauth.scope);
  const basic = Buffer.from(
    `${encodeURIComponent(oauth.clientId)}:${encodeURIComponent(oauth.clientSecret)}`,
  ).toString("base64");
  let response: Response;
  try {
    response = await fetch(oauth.tokenEndpoint, {
      method: "POST",
      headers: { authorization: `Basic ${basic}`, "content-type": "application/x-www-form-urlencoded" },
      body,
      signal: AbortSignal.timeout(30_000),
    });
  } catch (err) {
    throw new ClipsieveError(
      "KAFKA_AUTH_FAILED",
      `OAUTHBEARER: the token endpoint ${oauth.tokenEndpoint} did not answer (${(err as Error).message})`,
      { cause: err },
    );
  }
  const text = await response.text();
  if (!response.ok) {
    throw new ClipsieveError(
      "KAFKA_AUTH_FAILED",
      `OAUTHBEARER: the token endpoint ${oauth.tokenEndpoint} refused client ${oauth.clientId} (HTTP ${response.status})`,
    );
  }
  let parsed: { access_token?: unknown; expires_in?: unknown };
  try {
    parsed = JSON.parse(text) as typeof parsed;
  } catch {
    parsed = {};
  }
  if (typeof parsed.access_token !== "string") {
    throw new ClipsieveError(
      "KAFKA_AUTH_FAILED",
      `OAUTHBEARER: the token endpoint ${oauth.tokenEndpoint} answered without an access_token`,
    );
  }
  const expiresIn = typeof parsed.expires_in === "number" ? parsed.expires_in : 3600;
  return {
    token: parsed.access_token,
    expiresAtMs: Date.now() + expiresIn * 1000,
    principal: oauth.clientId,
  };
}

/** How a command reaches Kafka and the Schema Registry: the client library and the security block. */
export interface KafkaAccess {
  adapter: KafkaAdapterName;
  security: KafkaSecurity;
  registry: SchemaRegistrySecurity;
}

/** The access, from resolved configuration values (`run`, `replay`, `calibrate`, the lake commands). */
export function resolveKafkaAccess(
  values: SecurityValues & { kafkaClient: KafkaAdapterName },
  vars: NodeJS.ProcessEnv = process.env,
): KafkaAccess {
  return {
    adapter: values.kafkaClient,
    security: resolveSecurity(values, vars),
    registry: resolveSchemaRegistrySecurity(values, vars),
  };
}
