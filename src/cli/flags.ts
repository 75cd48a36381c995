/**
 * One parser per kind of flag value: integers, numbers, integer lists and broker lists. Every error
 * is a CONFIG_INVALID that names the flag and the text given. The `...Option` forms are commander
 * argument parsers (`.option("--count <n>", "records", integerOption("--count", 1), 10_000)`).
 */
import { ClipsieveError } from "../common/errors.ts";

function invalid(flag: string, text: string, expected: string): ClipsieveError {
  return new ClipsieveError("CONFIG_INVALID", `${flag} ${text}: ${expected}`);
}

/** An integer in [min, max] (both safe integers); the text is read as `Number(text)` does. */
export function parseInteger(flag: string, text: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(text);
  if (text.trim() === "" || !Number.isSafeInteger(n) || n < min || n > max) {
    throw invalid(
      flag,
      text,
      max === Number.MAX_SAFE_INTEGER
        ? `expected an integer >= ${min}`
        : `expected an integer in [${min}, ${max}]`,
    );
  }
  return n;
}

/** `parseInteger` as a commander argument parser. */
export function integerOption(flag: string, min: number, max?: number): (text: string) => number {
  return (text) => parseInteger(flag, text, min, max);
}

/** Comma-separated integers, each at least `min` (`--window-sizes 500,1000`). */
export function parseIntegerList(flag: string, text: string, min: number): number[] {
  return text.split(",").map((part) => {
    const n = Number(part);
    if (part.trim() === "" || !Number.isSafeInteger(n) || n < min) {
      throw invalid(flag, text, `expected integers >= ${min}, comma-separated`);
    }
    return n;
  });
}

/** `parseIntegerList` as a commander argument parser. */
export function integerListOption(flag: string, min: number): (text: string) => number[] {
  return (text) => parseIntegerList(flag, text, min);
}

/** One of a closed set of names, e.g. `--normaliser pool`. */
export function parseChoice<T extends string>(flag: string, text: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(text)) {
    throw new ClipsieveError("CONFIG_INVALID", `${flag} ${text}: expected one of ${allowed.join(", ")}`);
  }
  return text as T;
}

/** A comma-separated list of such names, as a commander argument parser. */
export function choiceListOption<T extends string>(
  flag: string,
  allowed: readonly T[],
): (text: string) => T[] {
  return (text) => text.split(",").map((v) => parseChoice(flag, v, allowed));
}

export interface NumberRange {
  /** The least value allowed (default: none). */
  min?: number;
  /** `min` itself is not allowed (`--tau` must be > 0). */
  exclusive?: boolean;
  /** Appended to the error, e.g. "(0.01 in the paper)". */
  hint?: string;
}

/** A finite number in a range; the text is read as `Number(text)` does. */
export function parseNumber(flag: string, text: string, range: NumberRange = {}): number {
  const n = Number(text);
  const { min, exclusive = false } = range;
  const belowMin = min !== undefined && (exclusive ? n <= min : n < min);
  if (text.trim() === "" || !Number.isFinite(n) || belowMin) {
    const bound = min === undefined ? "" : ` ${exclusive ? ">" : ">="} ${min}`;
    throw invalid(flag, text, `expected a number${bound}${range.hint ? ` ${range.hint}` : ""}`);
  }
  return n;
}

/** `parseNumber` as a commander argument parser. */
export function numberOption(flag: string, range: NumberRange = {}): (text: string) => number {
  return (text) => parseNumber(flag, text, range);
}

/** Kafka bootstrap brokers (`host:port,...`): read as every command reads them (src/kafka/brokers.ts). */
export { parseBrokers } from "../kafka/index.ts";
