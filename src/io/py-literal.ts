/**
 * The subset of Python literals that a .npy header holds: a dict of str keys whose values are str,
 * bool, int, tuples and lists (a structured dtype's descr is a list of tuples). numpy writes it with
 * repr(), so this parser accepts what repr() produces, including the `3L` ints of Python 2 files.
 */
export type PyValue = string | number | boolean | null | PyValue[] | { [key: string]: PyValue };

export function parsePyLiteral(text: string): PyValue {
  let pos = 0;

  const fail = (what: string): never => {
    throw new SyntaxError(`${what} at character ${pos} of ${JSON.stringify(text)}`);
  };
  const skipSpace = () => {
    while (pos < text.length && /\s/.test(text[pos]!)) pos++;
  };
  const expect = (char: string) => {
    skipSpace();
    if (text[pos] !== char) fail(`expected '${char}'`);
    pos++;
  };

  // Parses items up to `close`, allowing the trailing comma repr() leaves in (3,) and dicts.
  const sequence = (close: string, item: () => void) => {
    skipSpace();
    while (text[pos] !== close) {
      item();
      skipSpace();
      if (text[pos] === ",") {
        pos++;
        skipSpace();
      } else if (text[pos] !== close) {
        fail(`expected ',' or '${close}'`);
      }
    }
    pos++;
  };

  const string = (): string => {
    const quote = text[pos]!;
    pos++;
    let out = "";
    while (pos < text.length && text[pos] !== quote) {
      if (text[pos] === "\\") {
        pos++;
        const escaped = text[pos];
        if (escaped === undefined) break;
        out += escaped === "n" ? "\n" : escaped === "t" ? "\t" : escaped;
      } else {
        out += text[pos];
      }
      pos++;
    }
    if (pos >= text.length) fail("unterminated string");
    pos++;
    return out;
  };

  const value = (): PyValue => {
    skipSpace();
    const char = text[pos];
    if (char === "{") {
      pos++;
      const dict: { [key: string]: PyValue } = {};
      sequence("}", () => {
        const key = value();
        if (typeof key !== "string") fail("dict key is not a string");
        expect(":");
        dict[key as string] = value();
      });
      return dict;
    }
    if (char === "[" || char === "(") {
      pos++;
      const items: PyValue[] = [];
      sequence(char === "[" ? "]" : ")", () => items.push(value()));
      return items;
    }
    if (char === "'" || char === '"') return string();
    const word = /^(?:True|False|None|[-+]?\d+L?)/.exec(text.slice(pos));
    if (word === null) return fail("unexpected character");
    pos += word[0].length;
    if (word[0] === "True") return true;
    if (word[0] === "False") return false;
    if (word[0] === "None") return null;
    return Number.parseInt(word[0], 10);
  };

  const result = value();
  skipSpace();
  if (pos !== text.length) fail("unexpected text after the literal");
  return result;
}
