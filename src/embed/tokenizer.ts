/**
 * CLIP's BPE tokenizer, from the model folder's tokenizer.json, run by @huggingface/tokenizers (the
 * tokenizer of transformers.js, pure JavaScript, nothing fetched). Truncation as CLIP does it:
 * `<|startoftext|>`, the first contextLength - 2 tokens of the caption, `<|endoftext|>`, then padding.
 */
import { Tokenizer } from "@huggingface/tokenizers";
import { ClipsieveError } from "../common/errors.ts";

export const START_OF_TEXT = "<|startoftext|>";
export const END_OF_TEXT = "<|endoftext|>";

export interface ClipTokenizer {
  readonly contextLength: number;
  readonly startId: number;
  readonly endId: number;
  readonly padId: number;
  /** The ids of one caption, with start and end, truncated, not padded. */
  ids(text: string): number[];
  /** Rows of `contextLength` ids and the attention mask (1 for a token, 0 for padding), row-major. */
  batch(texts: readonly string[]): { ids: BigInt64Array; mask: BigInt64Array };
}

export function createClipTokenizer(
  tokenizerJson: Record<string, unknown>,
  tokenizerConfig: Record<string, unknown>,
  contextLength: number,
  where = "tokenizer.json",
): ClipTokenizer {
  let tokenizer: Tokenizer;
  try {
    tokenizer = new Tokenizer(tokenizerJson, tokenizerConfig);
  } catch (err) {
    throw new ClipsieveError("EMBED_MODEL_INVALID", `${where} cannot be loaded: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const special = (token: string) => {
    const id = tokenizer.token_to_id(token);
    if (id === undefined) {
      throw new ClipsieveError("EMBED_MODEL_INVALID", `${where} has no ${token} token: not a CLIP tokenizer`);
    }
    return id;
  };
  const startId = special(START_OF_TEXT);
  const endId = special(END_OF_TEXT);
  const padId = padIdOf(tokenizer, tokenizerJson, tokenizerConfig, where);
  const maxContent = contextLength - 2;
  const maxChars = textPrefixChars(tokenizer, maxContent);

  const ids = (text: string): number[] => {
    // Only a bounded prefix can reach the first maxContent tokens, so a huge caption costs no more
    // than a long one. Whitespace runs count as one character, as the normalizer collapses them.
    const prefix = text.length > maxChars ? text.replace(/\p{White_Space}+/gu, " ").slice(0, maxChars) : text;
    const content = tokenizer.encode(prefix, { add_special_tokens: false }).ids;
    return [startId, ...content.slice(0, maxContent), endId];
  };

  return {
    contextLength,
    startId,
    endId,
    padId,
    ids,
    batch(texts) {
      const rows = texts.length;
      const out = new BigInt64Array(rows * contextLength).fill(BigInt(padId));
      const mask = new BigInt64Array(rows * contextLength);
      texts.forEach((text, r) => {
        const row = ids(text);
        for (let i = 0; i < row.length; i++) {
          out[r * contextLength + i] = BigInt(row[i]);
          mask[r * contextLength + i] = 1n;
        }
      });
      return { ids: out, mask };
    },
  };
}

/**
 * Padding as the export's own tokenizer pads: tokenizer.json's `padding.pad_id`, else
 * tokenizer_config.json's `pad_token` (Hugging Face's CLIP pads with `<|endoftext|>`), else 0 (what
 * OpenAI's and open_clip's `tokenize` write). CLIP's text tower reads the features at the first
 * `<|endoftext|>`, so padding changes no embedding; it only has to match what the encoder was exported with.
 */
function padIdOf(
  tokenizer: Tokenizer,
  json: Record<string, unknown>,
  config: Record<string, unknown>,
  where: string,
): number {
  const padding = json.padding as { pad_id?: unknown } | null | undefined;
  if (padding && typeof padding.pad_id === "number") return padding.pad_id;
  const pad = config.pad_token;
  const content = typeof pad === "string" ? pad : (pad as { content?: unknown } | undefined)?.content;
  if (typeof content === "string") {
    const id = tokenizer.token_to_id(content);
    if (id === undefined) {
      throw new ClipsieveError(
        "EMBED_MODEL_INVALID",
        `tokenizer_config.json's pad_token ${JSON.stringify(content)} is not in ${where}`,
      );
    }
    return id;
  }
  return 0;
}

/**
 * How many characters of a caption (after collapsing whitespace) can contribute to its first `tokens`
 * tokens: each token spells at most `longest` bytes, hence characters, plus one separating space; the
 * factor 2 covers normalisation that lengthens text (lowercasing "İ" gives two characters) and a cut
 * through a character and its combining mark. Captions longer than this are cut first.
 */
function textPrefixChars(tokenizer: Tokenizer, tokens: number): number {
  let longest = 1;
  for (const token of tokenizer.get_vocab(false).keys()) {
    const length = token.endsWith("</w>") ? token.length - 4 : token.length;
    if (length > longest) longest = length;
  }
  return 2 * tokens * (longest + 1) + 16;
}
