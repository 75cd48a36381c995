/**
 * A secured listener for the local broker (`clipsieve kafka start --secure`, and the tests of
 * docs/operations.md "Secured clusters"): SASL_SSL on a port of its own beside the plaintext one,
 * a certificate authority and a broker certificate made here with the `openssl` command, SCRAM users
 * created when the storage is formatted, PLAIN users in the listener's JAAS settings, and ACLs
 * enforced by KRaft's StandardAuthorizer (nothing is allowed that no ACL allows, but to super users).
 *
 * The plaintext listener stays for the broker's own traffic (inter-broker, controller); its
 * principal, ANONYMOUS, is a super user, so it must not be exposed: it binds 127.0.0.1 only.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { ClipsieveError } from "../common/errors.ts";

const execFileAsync = promisify(execFile);

export interface LocalBrokerUser {
  name: string;
  password: string;
}

export interface LocalBrokerSecurity {
  /** Users for PLAIN and for both SCRAM mechanisms. */
  users: LocalBrokerUser[];
  /** Users the authorizer lets do anything (ACLs are created as one of them). */
  superUsers: string[];
}

/** Files the secured listener uses; `caFile` is what a client trusts. */
export interface LocalBrokerTls {
  caFile: string;
  caKeyFile: string;
  keystoreFile: string;
  keystorePassword: string;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  try {
    await execFileAsync("openssl", args, { cwd });
  } catch (err) {
    const e = err as { code?: string; stderr?: string };
    throw new ClipsieveError(
      "BROKER_START_FAILED",
      e.code === "ENOENT"
        ? "A secured local broker needs the `openssl` command on PATH to make its certificates."
        : `openssl ${args[0]} failed: ${e.stderr ?? String(err)}`,
      { cause: err },
    );
  }
}

/** A CA (made once per folder) and a certificate signed by it, with `names` as its subject alternative names. */
export async function makeCertificate(
  dir: string,
  name: string,
  names: string[],
): Promise<{ caFile: string; caKeyFile: string; certFile: string; keyFile: string }> {
  mkdirSync(dir, { recursive: true });
  const caFile = join(dir, "ca.pem");
  const caKeyFile = join(dir, "ca-key.pem");
  if (!existsSync(caFile)) {
    await openssl(
      [
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "3650",
        "-subj",
        "/CN=clipsieve local CA",
      ].concat(["-keyout", caKeyFile, "-out", caFile]),
      dir,
    );
  }
  const keyFile = join(dir, `${name}-key.pem`);
  const csr = join(dir, `${name}.csr`);
  const certFile = join(dir, `${name}.pem`);
  const ext = join(dir, `${name}.ext`);
  writeFileSync(
    ext,
    `subjectAltName=${names.map((n) => (/^[\d.]+$/.test(n) ? `IP:${n}` : `DNS:${n}`)).join(",")}\n`,
  );
  await openssl(
    ["req", "-newkey", "rsa:2048", "-nodes", "-subj", `/CN=${name}`, "-keyout", keyFile, "-out", csr],
    dir,
  );
  await openssl(
    [
      "x509",
      "-req",
      "-in",
      csr,
      "-CA",
      caFile,
      "-CAkey",
      caKeyFile,
      "-CAcreateserial",
      "-days",
      "3650",
    ].concat(["-extfile", ext, "-out", certFile]),
    dir,
  );
  return { caFile, caKeyFile, certFile, keyFile };
}

/** The broker's TLS material: a CA and a broker certificate for localhost and 127.0.0.1, as PKCS12. */
export async function makeBrokerTls(dir: string): Promise<LocalBrokerTls> {
  const { caFile, caKeyFile, certFile, keyFile } = await makeCertificate(dir, "broker", [
    "localhost",
    "127.0.0.1",
  ]);
  const keystoreFile = join(dir, "broker.p12");
  const keystorePassword = "clipsieve-local-keystore";
  await openssl(
    ["pkcs12", "-export", "-in", certFile, "-inkey", keyFile, "-certfile", caFile, "-name", "broker"].concat([
      "-out",
      keystoreFile,
      "-passout",
      `pass:${keystorePassword}`,
    ]),
    dir,
  );
  return { caFile, caKeyFile, keystoreFile, keystorePassword };
}

const jaasValue = (s: string) => s.replaceAll("\\", "\\\\").replaceAll('"', '\\"');

/** server.properties lines of the secured listener. */
export function securedListenerProperties(security: LocalBrokerSecurity, tls: LocalBrokerTls): string {
  const plainUsers = security.users.map((u) => `user_${u.name}="${jaasValue(u.password)}"`).join(" ");
  return `# The secured listener (src/kafka/local-broker-security.ts).
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required ${plainUsers};
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PKCS12
listener.name.sasl_ssl.ssl.keystore.location=${tls.keystoreFile}
listener.name.sasl_ssl.ssl.keystore.password=${tls.keystorePassword}
listener.name.sasl_ssl.ssl.truststore.type=PEM
listener.name.sasl_ssl.ssl.truststore.location=${tls.caFile}
listener.name.sasl_ssl.ssl.client.auth=requested
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=${["ANONYMOUS", ...security.superUsers].map((u) => `User:${u}`).join(";")}
`;
}

/** StorageTool arguments that create every user for both SCRAM mechanisms at format time. */
export function scramFormatArgs(security: LocalBrokerSecurity): string[] {
  return security.users.flatMap((u) =>
    ["SCRAM-SHA-256", "SCRAM-SHA-512"].flatMap((m) => [
      "--add-scram",
      `${m}=[name=${u.name},password=${u.password}]`,
    ]),
  );
}
