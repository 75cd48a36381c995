/**
 * A local, single-node Apache Kafka broker in KRaft mode, without Docker.
 *
 * The machines clipsieve is developed and tested on run no Docker engine, but they have Java 17 and
 * Maven. So the broker's jars come from Maven Central (fetched once into a cache folder by Maven), and
 * the broker runs as a plain JVM process on 127.0.0.1. Its settings are those a single broker needs for
 * transactions to work: replication factor and min ISR of 1 for the offsets and transaction-state topics.
 *
 * The broker process is detached from the caller (it outlives `clipsieve kafka start`), and its pid,
 * ports and logs live in one state folder, so `stop` and `status` can find it later.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, Socket } from "node:net";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { ClipsieveError } from "../common/errors.ts";
import type { Logger } from "../common/logger.ts";
import { silentLogger } from "../common/logger.ts";
import {
  type LocalBrokerSecurity,
  makeBrokerTls,
  scramFormatArgs,
  securedListenerProperties,
} from "./local-broker-security.ts";

const execFileAsync = promisify(execFile);

export const DEFAULT_KAFKA_VERSION = "4.1.1";
/** Log4j 2 and SLF4J 2 bindings so the broker's own logs land in the state folder. */
const LOGGING_ARTIFACTS = [
  "org.slf4j:slf4j-api:2.0.17",
  "org.apache.logging.log4j:log4j-slf4j2-impl:2.24.3",
  "org.apache.logging.log4j:log4j-core:2.24.3",
];

export interface LocalBrokerOptions {
  /** Folder for data, logs, config and the pid file. */
  stateDir: string;
  /** Client port; 0 picks a free one. */
  port?: number;
  /** Controller port; 0 picks a free one. */
  controllerPort?: number;
  /** Kafka version fetched from Maven Central. */
  kafkaVersion?: string;
  /** Folder the jars are cached in (per version). */
  cacheDir?: string;
  /** JVM heap, e.g. "768m". Sized for a 2-core, few-GiB machine by default. */
  heap?: string;
  /** How long to wait for the broker to answer (default 120 s: a JVM starting on a busy 2-core machine is slow). */
  startTimeoutMs?: number;
  logger?: Logger;
  /** Also open a SASL_SSL listener with these users, ACLs enforced (local-broker-security.ts). */
  secure?: LocalBrokerSecurity;
}

export interface BrokerState {
  pid: number;
  port: number;
  controllerPort: number;
  brokers: string;
  kafkaVersion: string;
  startedAt: string;
  /** With `secure`: the SASL_SSL listener (`localhost:<port>`, which its certificate names) and its CA. */
  secured?: { port: number; brokers: string; caFile: string; caKeyFile: string };
}

export function defaultCacheDir(): string {
  const base =
    process.env.CLIPSIEVE_CACHE_DIR ??
    join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "clipsieve");
  return resolve(base);
}

export function defaultStateDir(): string {
  return resolve(process.env.CLIPSIEVE_KAFKA_DIR ?? join(process.cwd(), ".clipsieve", "kafka"));
}

/** Fetch (once) the broker's runtime jars into `<cacheDir>/kafka-<version>/libs`, returning that folder. */
export async function ensureKafkaJars(
  kafkaVersion = DEFAULT_KAFKA_VERSION,
  cacheDir = defaultCacheDir(),
  logger: Logger = silentLogger,
): Promise<string> {
  const home = join(cacheDir, `kafka-${kafkaVersion}`);
  const libs = join(home, "libs");
  const marker = join(home, ".complete");
  if (existsSync(marker)) return libs;
  mkdirSync(home, { recursive: true });
  const deps = [`org.apache.kafka:kafka_2.13:${kafkaVersion}`, ...LOGGING_ARTIFACTS]
    .map((gav) => {
      const [g, a, v] = gav.split(":");
      return `<dependency><groupId>${g}</groupId><artifactId>${a}</artifactId><version>${v}</version></dependency>`;
    })
    .join("\n    ");
  writeFileSync(
    join(home, "pom.xml"),
    `<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>clipsieve.local</groupId><artifactId>kafka-broker</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    ${deps}
  </dependencies>
</project>
`,
  );
  logger.info({ kafkaVersion, libs }, "fetching the Kafka broker's jars from Maven Central (first run only)");
  rmSync(libs, { recursive: true, force: true });
  try {
    await execFileAsync(
      "mvn",
      ["-q", "-B", "dependency:copy-dependencies", `-DoutputDirectory=${libs}`, "-DincludeScope=runtime"],
      { cwd: home, maxBuffer: 16 * 1024 * 1024 },
    );
  } catch (err) {
    const e = err as { code?: string; stdout?: string; stderr?: string };
    const hint = e.code === "ENOENT" ? "Maven (`mvn`) is not on PATH. " : "";
    throw new ClipsieveError(
      "BROKER_JARS_FETCH_FAILED",
      `${hint}Fetching Kafka ${kafkaVersion} from Maven Central failed: ${(e.stdout ?? "") + (e.stderr ?? "") || String(err)}`,
      { cause: err },
    );
  }
  writeFileSync(marker, new Date().toISOString());
  return libs;
}

async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolvePort(port));
    });
  });
}

function serverProperties(
  stateDir: string,
  port: number,
  controllerPort: number,
  securedPort?: number,
): string {
  const secured = securedPort
    ? {
        listener: `,SASL_SSL://127.0.0.1:${securedPort}`,
        advertised: `,SASL_SSL://localhost:${securedPort}`,
        map: ",SASL_SSL:SASL_SSL",
      }
    : { listener: "", advertised: "", map: "" };
  return `# Written by clipsieve: a single-node KRaft broker for local use and tests.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:${controllerPort}
listeners=PLAINTEXT://127.0.0.1:${port}${secured.listener},CONTROLLER://127.0.0.1:${controllerPort}
advertised.listeners=PLAINTEXT://127.0.0.1:${port}${secured.advertised}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT${secured.map}
log.dirs=${join(stateDir, "data")}
num.partitions=1
auto.create.topics.enable=true
# One broker: internal topics cannot have more than one replica, or transactions never start.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=8
default.replication.factor=1
min.insync.replicas=1
# Consumer groups form at once instead of waiting 3 s for more members.
group.initial.rebalance.delay.ms=0
# Small machine: few threads, modest segments.
num.network.threads=2
num.io.threads=4
background.threads=4
log.segment.bytes=67108864
log.retention.check.interval.ms=300000
`;
}

function log4jProperties(stateDir: string): string {
  return `rootLogger.level=INFO
rootLogger.appenderRef.file.ref=FILE
appender.file.type=File
appender.file.name=FILE
appender.file.fileName=${join(stateDir, "server.log")}
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=[%d] %p %m (%c)%n
logger.kafka.name=kafka
logger.kafka.level=WARN
logger.apache.name=org.apache.kafka
logger.apache.level=WARN
`;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export function readBrokerState(stateDir: string): BrokerState | undefined {
  const file = join(stateDir, "broker.json");
  if (!existsSync(file)) return undefined;
  try {
    return JSON.parse(readFileSync(file, "utf8")) as BrokerState;
  } catch {
    return undefined;
  }
}

/** Whether a Kafka broker answers on host:port (a TCP connect plus an ApiVersions round trip). */
export async function brokerAnswers(host: string, port: number, timeoutMs = 2000): Promise<boolean> {
  // ApiVersions v0 request: size, api_key=18, api_version=0, correlation_id=1, client_id="probe".
  const clientId = Buffer.from("probe");
  const body = Buffer.alloc(2 + 2 + 4 + 2 + clientId.length);
  body.writeInt16BE(18, 0);
  body.writeInt16BE(0, 2);
  body.writeInt32BE(1, 4);
  body.writeInt16BE(clientId.length, 8);
  clientId.copy(body, 10);
  const frame = Buffer.concat([Buffer.alloc(4), body]);
  frame.writeInt32BE(body.length, 0);
  return new Promise((resolveAnswer) => {
    const sock = new Socket();
    let done = false;
    const finish = (ok: boolean) => {
      if (done) return;
      done = true;
      sock.destroy();
      resolveAnswer(ok);
    };
    sock.setTimeout(timeoutMs, () => finish(false));
    sock.once("error", () => finish(false));
    sock.once("data", (data) => finish(data.length >= 8 && data.readInt32BE(4) === 1));
    sock.connect(port, host, () => sock.write(frame));
  });
}

export interface BrokerStatus {
  running: boolean;
  answering: boolean;
  state?: BrokerState;
}

export async function localBrokerStatus(stateDir = defaultStateDir()): Promise<BrokerStatus> {
  const state = readBrokerState(stateDir);
  if (!state || !isAlive(state.pid)) return { running: false, answering: false, state };
  return { running: true, answering: await brokerAnswers("127.0.0.1", state.port), state };
}

function tail(file: string, lines = 30): string {
  if (!existsSync(file)) return "";
  return readFileSync(file, "utf8").split("\n").slice(-lines).join("\n");
}

/**
 * Start the broker (fetching its jars first if needed) and wait until it answers.
 * If a broker started from the same state folder is already running, it is reused.
 */
export async function startLocalBroker(options: LocalBrokerOptions): Promise<BrokerState> {
  const logger = options.logger ?? silentLogger;
  const stateDir = resolve(options.stateDir);
  const kafkaVersion = options.kafkaVersion ?? DEFAULT_KAFKA_VERSION;
  const existing = await localBrokerStatus(stateDir);
  if (existing.running && existing.state) {
    if (!existing.answering)
      await waitUntilAnswering(existing.state, stateDir, options.startTimeoutMs ?? 120_000);
    logger.info(
      { brokers: existing.state.brokers, pid: existing.state.pid },
      "local Kafka broker already running",
    );
    return existing.state;
  }

  await assertJava();
  const libs = await ensureKafkaJars(kafkaVersion, options.cacheDir ?? defaultCacheDir(), logger);
  const port = options.port || (await freePort());
  const controllerPort = options.controllerPort || (await freePort());

  // A fresh data folder each start: a local broker is for tests and demos, and a clean log makes
  // every run independent of the last (and formatting never meets a stale cluster id).
  rmSync(join(stateDir, "data"), { recursive: true, force: true });
  mkdirSync(join(stateDir, "data"), { recursive: true });
  const propsFile = join(stateDir, "server.properties");
  let secured: BrokerState["secured"];
  let properties = serverProperties(stateDir, port, controllerPort);
  if (options.secure) {
    const securedPort = await freePort();
    const tls = await makeBrokerTls(join(stateDir, "tls"));
    properties =
      serverProperties(stateDir, port, controllerPort, securedPort) +
      securedListenerProperties(options.secure, tls);
    secured = {
      port: securedPort,
      brokers: `localhost:${securedPort}`,
      caFile: tls.caFile,
      caKeyFile: tls.caKeyFile,
    };
  }
  writeFileSync(propsFile, properties);
  writeFileSync(join(stateDir, "log4j2.properties"), log4jProperties(stateDir));

  const jvmBase = jvmBaseArgs(libs);
  try {
    await execFileAsync(
      "java",
      [
        ...jvmBase,
        "kafka.tools.StorageTool",
        "format",
        "-t",
        clusterId(),
        "-c",
        propsFile,
        "--ignore-formatted",
        ...(options.secure ? scramFormatArgs(options.secure) : []),
      ],
      { maxBuffer: 4 * 1024 * 1024 },
    );
  } catch (err) {
    // The SCRAM users' passwords are in the command line: the message keeps the tool's output only.
    const e = err as { stdout?: string; stderr?: string; code?: unknown };
    throw new ClipsieveError(
      "BROKER_START_FAILED",
      `Formatting the broker's storage failed (exit ${String(e.code)}): ${`${e.stderr ?? ""}${e.stdout ?? ""}`.trim() || "no output"}`,
    );
  }

  return launch(options, { stateDir, port, controllerPort, kafkaVersion, jvmBase, logger, secured });
}

/**
 * Start again the broker of a state folder that stopped or was killed, on the same ports and on its
 * log (no new storage, no new cluster id): a broker restart, as the broker-restart test needs.
 */
export async function restartLocalBroker(options: LocalBrokerOptions): Promise<BrokerState> {
  const logger = options.logger ?? silentLogger;
  const stateDir = resolve(options.stateDir);
  const previous = readBrokerState(stateDir);
  if (!previous)
    throw new ClipsieveError(
      "BROKER_START_FAILED",
      `No broker was started from ${stateDir}: nothing to restart.`,
    );
  if (isAlive(previous.pid))
    throw new ClipsieveError(
      "BROKER_START_FAILED",
      `The broker of ${stateDir} (pid ${previous.pid}) still runs.`,
    );
  const libs = await ensureKafkaJars(previous.kafkaVersion, options.cacheDir ?? defaultCacheDir(), logger);
  const jvmBase = jvmBaseArgs(libs);
  return launch(options, {
    stateDir,
    port: previous.port,
    controllerPort: previous.controllerPort,
    kafkaVersion: previous.kafkaVersion,
    jvmBase,
    logger,
    secured: previous.secured,
  });
}

/** JVM settings of every broker tool and of the broker: a small serial collector, sized for 2 cores. */
function jvmBaseArgs(libs: string): string[] {
  return [
    "-XX:+UseSerialGC",
    "-XX:ActiveProcessorCount=2",
    "-Djava.awt.headless=true",
    "-cp",
    join(libs, "*"),
  ];
}

/** Run the broker's JVM on the state folder's server.properties and wait until it answers. */
async function launch(
  options: LocalBrokerOptions,
  b: {
    stateDir: string;
    port: number;
    controllerPort: number;
    kafkaVersion: string;
    jvmBase: string[];
    logger: Logger;
    secured?: BrokerState["secured"];
  },
): Promise<BrokerState> {
  const { stateDir, port, controllerPort, kafkaVersion, jvmBase, logger, secured } = b;
  const propsFile = join(stateDir, "server.properties");
  const heap = options.heap ?? "768m";
  const out = openSync(join(stateDir, "stdout.log"), "a");
  const child: ChildProcess = spawn(
    "java",
    [
      `-Xms${heap}`,
      `-Xmx${heap}`,
      `-Dlog4j2.configurationFile=${join(stateDir, "log4j2.properties")}`,
      ...jvmBase,
      "kafka.Kafka",
      propsFile,
    ],
    { detached: true, stdio: ["ignore", out, out] },
  );
  child.unref();
  if (!child.pid) throw new ClipsieveError("BROKER_START_FAILED", "Could not spawn the broker's JVM.");
  const state: BrokerState = {
    pid: child.pid,
    port,
    controllerPort,
    brokers: `127.0.0.1:${port}`,
    kafkaVersion,
    startedAt: new Date().toISOString(),
    ...(secured ? { secured } : {}),
  };
  writeFileSync(join(stateDir, "broker.json"), JSON.stringify(state, null, 2));
  logger.info({ brokers: state.brokers, pid: state.pid, stateDir }, "starting local Kafka broker");
  try {
    await waitUntilAnswering(state, stateDir, options.startTimeoutMs ?? 120_000);
  } catch (err) {
    await stopLocalBroker(stateDir);
    throw err;
  }
  logger.info({ brokers: state.brokers }, "local Kafka broker is answering");
  return state;
}

async function waitUntilAnswering(state: BrokerState, stateDir: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isAlive(state.pid)) {
      throw new ClipsieveError(
        "BROKER_START_FAILED",
        `The broker's JVM exited during start-up. Its last output:\n${tail(join(stateDir, "stdout.log"))}\n${tail(join(stateDir, "server.log"))}`,
      );
    }
    if (await brokerAnswers("127.0.0.1", state.port, 1000)) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new ClipsieveError(
    "BROKER_START_FAILED",
    `The broker did not answer on ${state.brokers} within ${timeoutMs} ms. Its log: ${join(stateDir, "server.log")}`,
  );
}

/** Stop the broker started from this state folder: SIGTERM, then SIGKILL after `graceMs`. */
export async function stopLocalBroker(stateDir = defaultStateDir(), graceMs = 20_000): Promise<boolean> {
  const state = readBrokerState(stateDir);
  if (!state) return false;
  let stopped = false;
  if (isAlive(state.pid)) {
    // The JVM leads its own process group (detached), so signal the group.
    signalGroup(state.pid, "SIGTERM");
    const deadline = Date.now() + graceMs;
    while (isAlive(state.pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    if (isAlive(state.pid)) signalGroup(state.pid, "SIGKILL");
    while (isAlive(state.pid)) await new Promise((r) => setTimeout(r, 50));
    stopped = true;
  }
  rmSync(join(stateDir, "broker.json"), { force: true });
  return stopped;
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

async function assertJava(): Promise<void> {
  try {
    await execFileAsync("java", ["-version"]);
  } catch (err) {
    throw new ClipsieveError(
      "JAVA_NOT_FOUND",
      "The local broker needs Java 17 or newer on PATH (`java -version`).",
      {
        cause: err,
      },
    );
  }
}

/** A KRaft cluster id: 16 random bytes, base64url without padding (what `kafka-storage random-uuid` prints). */
function clusterId(): string {
  return Buffer.from(randomUUID().replaceAll("-", ""), "hex").toString("base64url");
}
