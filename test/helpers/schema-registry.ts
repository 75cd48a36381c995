/**
 * An in-process stand-in for Confluent Schema Registry: no registry can run on the test machines (no
 * Docker, and Confluent's server is not on Maven Central). It implements the part of the REST API that
 * @confluentinc/schemaregistry's client uses to register, look up and fetch Avro schemas, with the
 * real API's JSON shapes, status codes and error_code values, so that the client under it runs its
 * real HTTP path. It is test infrastructure, not the thing under test.
 *
 * Faithful to the real registry: ids are global (the same schema text gets the same id under every
 * subject), registering a schema again returns its id, versions count from 1 per subject, responses
 * for AVRO leave out `schemaType`, errors are `{error_code, message}` (40401 subject, 40402 version,
 * 40403 schema not found, 42201 invalid schema, 42202 invalid version). Not implemented: schema types
 * other than AVRO, references, contexts, deletion, compatibility checks, modes.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import avro from "avsc";

/** What the registry does instead of answering: an HTTP error status, or no answer at all. */
export type Outage = { status: number } | "no-answer";

export interface FakeSchemaRegistry {
  readonly url: string;
  /** Every request, as "METHOD /path?query", in arrival order. */
  readonly requests: string[];
  /** From now on answer every request this way (null: back to normal). */
  setOutage(outage: Outage | null): void;
  /** Stop listening (later requests are refused) and drop every open connection. */
  close(): Promise<void>;
}

interface StoredSchema {
  id: number;
  schema: string;
}

const CONTENT_TYPE = "application/vnd.schemaregistry.v1+json";

class HttpError extends Error {
  readonly status: number;
  readonly errorCode: number;
  constructor(status: number, errorCode: number, message: string) {
    super(message);
    this.status = status;
    this.errorCode = errorCode;
  }
}

export async function startSchemaRegistry(): Promise<FakeSchemaRegistry> {
  const byId = new Map<number, StoredSchema>();
  const byText = new Map<string, StoredSchema>();
  const subjects = new Map<string, number[]>(); // subject -> schema id of each version (index = version - 1)
  const requests: string[] = [];
  let outage: Outage | null = null;

  function register(subject: string, body: unknown): unknown {
    const schema = canonicalAvro(body);
    let stored = byText.get(schema);
    if (!stored) {
      stored = { id: byId.size + 1, schema };
      byId.set(stored.id, stored);
      byText.set(schema, stored);
    }
    const versions = subjects.get(subject) ?? [];
    if (!versions.includes(stored.id)) versions.push(stored.id);
    subjects.set(subject, versions);
    return { id: stored.id };
  }

  function versionsOf(subject: string): number[] {
    const versions = subjects.get(subject);
    if (!versions) throw new HttpError(404, 40401, `Subject '${subject}' not found.`);
    return versions;
  }

  function versionResponse(subject: string, versions: number[], version: number): unknown {
    const id = versions[version - 1];
    return { subject, id, version, schema: byId.get(id)!.schema };
  }

  function route(method: string, path: string, body: unknown): unknown {
    const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
    if (method === "GET" && parts.length === 1 && parts[0] === "config") {
      return { compatibilityLevel: "BACKWARD" };
    }
    if (method === "GET" && parts.length === 1 && parts[0] === "subjects") return [...subjects.keys()];
    if (parts[0] === "schemas" && parts[1] === "ids" && parts.length === 3 && method === "GET") {
      const stored = byId.get(Number(parts[2]));
      if (!stored) throw new HttpError(404, 40403, `Schema ${parts[2]} not found`);
      return { schema: stored.schema };
    }
    if (parts[0] === "subjects" && parts.length >= 2) {
      const subject = parts[1];
      if (parts.length === 2 && method === "POST") {
        const versions = versionsOf(subject);
        const stored = byText.get(canonicalAvro(body));
        const index = stored ? versions.indexOf(stored.id) : -1;
        if (index < 0) throw new HttpError(404, 40403, "Schema not found");
        return versionResponse(subject, versions, index + 1);
      }
      if (parts.length === 3 && parts[2] === "versions") {
        if (method === "POST") return register(subject, body);
        if (method === "GET") return versionsOf(subject).map((_, i) => i + 1);
      }
      if (parts.length === 4 && parts[2] === "versions" && method === "GET") {
        const versions = versionsOf(subject);
        const version = parts[3] === "latest" || parts[3] === "-1" ? versions.length : Number(parts[3]);
        if (!Number.isInteger(version) || version < 1) {
          throw new HttpError(
            422,
            42202,
            `The specified version '${parts[3]}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string "latest"`,
          );
        }
        if (version > versions.length) throw new HttpError(404, 40402, `Version ${version} not found.`);
        return versionResponse(subject, versions, version);
      }
    }
    throw new HttpError(404, 404, "HTTP 404 Not Found");
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    requests.push(`${req.method} ${req.url}`);
    if (outage === "no-answer") return; // hold the request open; close() drops it
    if (outage) return send(res, outage.status, { error_code: outage.status * 100 + 1, message: "outage" });
    try {
      const url = new URL(req.url ?? "/", "http://registry");
      const text = Buffer.concat(chunks).toString("utf8");
      let body: unknown;
      try {
        body = text ? JSON.parse(text) : undefined;
      } catch {
        throw new HttpError(400, 400, "Unexpected character in request body (not JSON)");
      }
      send(res, 200, route(req.method ?? "GET", url.pathname, body));
    } catch (err) {
      if (err instanceof HttpError)
        send(res, err.status, { error_code: err.errorCode, message: err.message });
      else send(res, 500, { error_code: 50001, message: `Error in the backend data store: ${String(err)}` });
    }
  }

  const server = createServer((req, res) => {
    void handle(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    setOutage(next) {
      outage = next;
    },
    close() {
      return new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

function send(res: ServerResponse, status: number, payload: unknown): void {
  res.writeHead(status, { "Content-Type": CONTENT_TYPE });
  res.end(JSON.stringify(payload));
}

/** The registry stores a parsed-and-reprinted schema, so whitespace never makes two schemas differ. */
function canonicalAvro(body: unknown): string {
  const req = body as { schema?: unknown; schemaType?: unknown } | undefined;
  if (typeof req?.schema !== "string")
    throw new HttpError(422, 42201, "Invalid schema: no schema string given");
  if (req.schemaType !== undefined && req.schemaType !== "AVRO") {
    throw new HttpError(
      422,
      42201,
      `Invalid schema: this stand-in registry reads only AVRO, not ${String(req.schemaType)}`,
    );
  }
  try {
    const parsed = JSON.parse(req.schema) as unknown;
    avro.Type.forSchema(parsed as Parameters<typeof avro.Type.forSchema>[0]);
    return JSON.stringify(parsed);
  } catch (err) {
    throw new HttpError(422, 42201, `Invalid schema ${req.schema}: ${(err as Error).message}`);
  }
}
