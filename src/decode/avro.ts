import type { SchemaRegistryClient } from "@confluentinc/schemaregistry";
import type { ClipsieveError } from "../common/errors.ts";
import { BadRecordError } from "./bad-record.ts";
import { describe } from "./embedding.ts";
import {
  createRegistryClient,
  loadRegistryLib,
  type RegistryConnection,
  registryFailure,
  registryStatus,
} from "./registry.ts";

/** Confluent wire format: magic byte 0, then the writer schema's id as a 4-byte big-endian int. */
export const CONFLUENT_MAGIC_BYTE = 0;
export const CONFLUENT_HEADER_BYTES = 5;

export interface AvroValueReader {
  /** The record object the value holds. Throws BadRecordError for a bad value, ClipsieveError for a registry outage. */
  read(value: Buffer, topic: string): Promise<Record<string, unknown>>;
  close(): Promise<void>;
}

/**
 * Reads Confluent-framed Avro with the Schema Registry client's AvroDeserializer, which fetches each
 * writer schema once and caches it. The framing is checked here first, so that a wrong magic byte or
 * a short value gets a clear message rather than the deserializer's RangeError.
 */
export async function createAvroValueReader(conn: RegistryConnection): Promise<AvroValueReader> {
  const { AvroDeserializer, SerdeType, SubjectNameStrategyType } = await loadRegistryLib();
  const client = await createRegistryClient(conn);
  await checkReachable(client, conn.schemaRegistryUrl);
  // TOPIC (`<topic>-value`) rather than the client's default ASSOCIATED strategy, which asks the
  // registry's associations API on every new topic; the subject only scopes the id lookup anyway.
  const deserializer = new AvroDeserializer(client, SerdeType.VALUE, {
    subjectNameStrategyType: SubjectNameStrategyType.TOPIC,
  });
  return {
    async read(value, topic) {
      const schemaId = readFraming(value);
      let decoded: unknown;
      try {
        // No headers: the schema id is taken from the value's prefix only, never from a header.
        decoded = await deserializer.deserialize(topic, value);
      } catch (err) {
        throw classify(err, schemaId, conn.schemaRegistryUrl);
      }
      if (
        typeof decoded !== "object" ||
        decoded === null ||
        Array.isArray(decoded) ||
        decoded instanceof Uint8Array
      ) {
        throw new BadRecordError(
          "RECORD_UNDECODABLE",
          `Avro value (schema id ${schemaId}) is ${describe(decoded)}, not a record`,
        );
      }
      return decoded as Record<string, unknown>;
    },
    async close() {
      deserializer.close();
      await client.close();
    },
  };
}

function readFraming(value: Buffer): number {
  if (value.byteLength < CONFLUENT_HEADER_BYTES) {
    throw new BadRecordError(
      "RECORD_UNDECODABLE",
      `value has ${value.byteLength} bytes, fewer than the ${CONFLUENT_HEADER_BYTES}-byte Confluent header (magic byte 0 + schema id)`,
    );
  }
  if (value[0] !== CONFLUENT_MAGIC_BYTE) {
    throw new BadRecordError(
      "SCHEMA_UNKNOWN",
      `value starts with byte 0x${value[0].toString(16).padStart(2, "0")}, not the Confluent magic byte 0x00: ` +
        "not Confluent-framed Avro (framing by schema GUID, magic byte 0x01, is not read)",
    );
  }
  return value.readInt32BE(1);
}

function classify(err: unknown, schemaId: number, url: string): BadRecordError | ClipsieveError {
  const status = registryStatus(err);
  if (status === 404) {
    return new BadRecordError(
      "SCHEMA_UNKNOWN",
      `schema id ${schemaId} is not registered in the schema registry ${url}`,
    );
  }
  if (status !== undefined) return registryFailure(err, url, `fetching schema id ${schemaId}`);
  // Anything else comes from reading the body with the writer schema: truncated, trailing bytes, a
  // bad varint or union index (or a schema id that names a non-Avro schema).
  const detail = err instanceof Error ? err.message : String(err);
  return new BadRecordError(
    "RECORD_UNDECODABLE",
    `Avro value cannot be read with its writer schema (id ${schemaId}): ${detail}`,
  );
}

/** Fail at start, not at the first record, when the registry cannot be reached. */
async function checkReachable(client: SchemaRegistryClient, url: string): Promise<void> {
  try {
    await client.getDefaultConfig();
  } catch (err) {
    const status = registryStatus(err);
    // Any other answer (a 404 from a registry without /config, say) still proves that it is there.
    const answered = typeof status === "number" && status < 500 && ![401, 403, 408, 429].includes(status);
    if (!answered) throw registryFailure(err, url, "checking that it is reachable");
  }
}
