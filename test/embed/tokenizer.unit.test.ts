/**
 * CLIP tokenization against ids worked out by hand from the test tokenizer.json (fixtures.ts):
 * ids 0-255 are the byte symbols in bytes_to_unicode order ("!" is 0, "a" is 97 - 33 = 64), 256-511
 * the same with "</w>" (a word's last symbol), then the merges in order: "ca" 512, "cat</w>" 513,
 * "do" 514, "don</w>" 515, "th" 516, "the</w>" 517; <|startoftext|> 518, <|endoftext|> 519.
 * The same layout as real CLIP's vocabulary, whose first 512 ids are identical.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { clipStyleTokenizerJson } from "../../src/embed/synthetic.ts";
import { createClipTokenizer } from "../../src/embed/tokenizer.ts";
import { EOT, MERGES, SOT } from "./fixtures.ts";

const tokenizer = createClipTokenizer(clipStyleTokenizerJson(MERGES), {}, 77);

// Byte symbol ids: printable ASCII b -> b - 33; with </w> add 256.
const A_END = 256 + 64; // "a</w>"
const BANG_END = 256 + 0; // "!</w>"
const CAT_END = 513;
const THE_END = 517;

test("captions with punctuation, case, contractions and runs of whitespace", () => {
  // "a" alone is the single symbol a</w>; "cat" merges c+a, then ca+t</w>; "!" is !</w>.
  assert.deepEqual(tokenizer.ids("A cat!"), [SOT, A_END, CAT_END, BANG_END, EOT]);
  // lowercased, whitespace collapsed; "don" merges d+o, do+n</w>; "'t" splits off (CLIP's pattern) as
  // "'" (39 - 33 = 6) and t</w> (256 + 83); "stop" has no merges: s 82, t 83, o 78, p</w> 256 + 79;
  // "the" merges t+h, th+e</w>; "." is .</w> (256 + 13).
  assert.deepEqual(tokenizer.ids("Don't  stop\tthe CAT."), [
    SOT,
    515,
    6,
    256 + 83,
    82,
    83,
    78,
    256 + 79,
    THE_END,
    CAT_END,
    256 + 13,
    EOT,
  ]);
  // Digits are one token each: "2" 256 + 17, "0" 256 + 15, "4" 256 + 19.
  assert.deepEqual(tokenizer.ids("2024"), [SOT, 273, 271, 273, 275, EOT]);
  assert.deepEqual(tokenizer.ids(""), [SOT, EOT]);
  assert.deepEqual(tokenizer.ids("   "), [SOT, EOT]);
});

test("accents: NFC first, then UTF-8 bytes as byte symbols", () => {
  // "é" is U+00E9 = bytes C3 A9: "Ã" (0xC3, id 94 + 12 + (0xC3 - 0xAE) = 127) and "©" (0xA9,
  // id 94 + (0xA9 - 0xA1) = 102, with </w> 358). "ï" is C3 AF: 127 and "¯" (106 + 1 = 107).
  // "café" = ca (512), f (69), Ã, ©</w>; "naïve" = n 77, a 64, Ã, ¯, v 85, e</w> 256 + 68.
  const expected = [SOT, 512, 69, 127, 358, 77, 64, 127, 107, 85, 324, EOT];
  assert.deepEqual(tokenizer.ids("Café naïve"), expected);
  // e + U+0301 (combining acute) composes to é before tokenizing.
  assert.deepEqual(tokenizer.ids("Cafe\u0301 nai\u0308ve"), expected);
});

test("a caption longer than 77 tokens keeps the first 75, then <|endoftext|>, as CLIP truncates", () => {
  const pairs = "the cat ".repeat(50); // 100 tokens
  const ids = tokenizer.ids(pairs);
  const content = Array.from({ length: 75 }, (_, i) => (i % 2 === 0 ? THE_END : CAT_END));
  assert.deepEqual(ids, [SOT, ...content, EOT]);
  assert.equal(ids.length, 77);
  // A huge caption is cut before tokenizing, with the same result.
  assert.deepEqual(tokenizer.ids("the cat ".repeat(20_000)), ids);
  // ... and so is one whose words are far apart: whitespace runs count as one character.
  assert.deepEqual(tokenizer.ids(`a${" ".repeat(100_000)}cat`), [SOT, A_END, CAT_END, EOT]);
});

test("batches are padded to 77 with the mask marking the tokens", () => {
  const { ids, mask } = tokenizer.batch(["A cat!", "the cat ".repeat(50)]);
  assert.equal(ids.length, 2 * 77);
  assert.deepEqual(Array.from(ids.subarray(0, 7), Number), [SOT, A_END, CAT_END, BANG_END, EOT, 0, 0]);
  assert.deepEqual(Array.from(mask.subarray(0, 7), Number), [1, 1, 1, 1, 1, 0, 0]);
  assert.equal(Number(ids[77 + 76]), EOT);
  assert.ok(Array.from(mask.subarray(77), Number).every((m) => m === 1));
  // Padding follows the export's tokenizer: Hugging Face's CLIP pads with <|endoftext|>.
  const hf = createClipTokenizer(clipStyleTokenizerJson(MERGES), { pad_token: "<|endoftext|>" }, 77);
  assert.deepEqual(Array.from(hf.batch(["a"]).ids.subarray(0, 5), Number), [SOT, A_END, EOT, EOT, EOT]);
});

test("a tokenizer.json without CLIP's special tokens is refused", () => {
  const json = clipStyleTokenizerJson(MERGES) as {
    added_tokens: unknown[];
    model: { vocab: Record<string, number> };
  };
  json.added_tokens = [];
  delete json.model.vocab["<|startoftext|>"];
  assert.throws(
    () => createClipTokenizer(json, {}, 77),
    (err: Error & { code?: string }) =>
      err.code === "EMBED_MODEL_INVALID" && /<\|startoftext\|>/.test(err.message),
  );
});
