import { ClipsieveError } from "../common/errors.ts";

/** A commander argument parser for an integer flag of at least `min`; errors name the flag. */
export function integer(flag: string, min: number) {
  return (text: string): number => {
    const n = Number(text);
    if (text.trim() === "" || !Number.isSafeInteger(n) || n < min) {
      throw new ClipsieveError("CONFIG_INVALID", `${flag} ${text}: expected an integer >= ${min}`);
    }
    return n;
  };
}
