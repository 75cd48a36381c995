/**
 * Model folders made here, for the tests and the benchmark (no model can be downloaded): encoders with
 * the same inputs and outputs as the real exports, and a CLIP-style tokenizer.json.
 *
 * - `linearImageEncoder` / `bagOfTokensTextEncoder`: one matrix product each, with weights the caller
 *   gives, so a test can compute the expected embedding itself.
 * - `vitImageEncoder` / `transformerTextEncoder`: CLIP's architecture (patch convolution, class token,
 *   pre-LayerNorm transformer blocks with QuickGELU, causal text attention pooled at the end token,
 *   projections) with seeded random weights. At the `VIT_B32` / `TEXT_B32` shapes they do the same
 *   work as OpenAI CLIP ViT-B/32's towers, which is what the benchmark needs; their outputs mean nothing.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import onnxProto, { type onnx as OnnxTypes } from "onnx-proto";

const { onnx } = onnxProto;
const FLOAT = onnx.TensorProto.DataType.FLOAT;
const INT64 = onnx.TensorProto.DataType.INT64;
const OPSET = 17;

type Dim = number | string;

export interface VitShape {
  imageSize: number;
  patch: number;
  width: number;
  layers: number;
  heads: number;
  mlp: number;
  dim: number;
}

export interface TextTransformerShape {
  vocab: number;
  contextLength: number;
  width: number;
  layers: number;
  heads: number;
  mlp: number;
  dim: number;
}

/** OpenAI CLIP ViT-B/32's image tower: 224 px, 32 px patches, width 768, 12 layers, 12 heads, D 512. */
export const VIT_B32: VitShape = {
  imageSize: 224,
  patch: 32,
  width: 768,
  layers: 12,
  heads: 12,
  mlp: 3072,
  dim: 512,
};
/** OpenAI CLIP ViT-B/32's text tower: 49408 tokens, 77 positions, width 512, 12 layers, 8 heads, D 512. */
export const TEXT_B32: TextTransformerShape = {
  vocab: 49408,
  contextLength: 77,
  width: 512,
  layers: 12,
  heads: 8,
  mlp: 2048,
  dim: 512,
};

/** Multiply-adds per image / per caption of these towers (matrix products only; the rest is noise). */
export function vitMacs(s: VitShape): number {
  const tokens = (s.imageSize / s.patch) ** 2 + 1;
  const patchEmbed = (tokens - 1) * 3 * s.patch * s.patch * s.width;
  const perLayer = tokens * (4 * s.width * s.width + 2 * s.width * s.mlp) + 2 * tokens * tokens * s.width;
  return patchEmbed + s.layers * perLayer + s.width * s.dim;
}

export function textMacs(s: TextTransformerShape): number {
  const n = s.contextLength;
  const perLayer = n * (4 * s.width * s.width + 2 * s.width * s.mlp) + 2 * n * n * s.width;
  return s.layers * perLayer + s.width * s.dim;
}

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function valueInfo(name: string, elemType: number, dims: Dim[]): OnnxTypes.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType,
        shape: { dim: dims.map((d) => (typeof d === "number" ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

const attr = {
  int: (i: number): OnnxTypes.IAttributeProto => ({ type: onnx.AttributeProto.AttributeType.INT, i }),
  ints: (ints: number[]): OnnxTypes.IAttributeProto => ({
    type: onnx.AttributeProto.AttributeType.INTS,
    ints,
  }),
  float: (f: number): OnnxTypes.IAttributeProto => ({ type: onnx.AttributeProto.AttributeType.FLOAT, f }),
};

function graphBuilder(seed = 1) {
  const nodes: OnnxTypes.INodeProto[] = [];
  const initializers: OnnxTypes.ITensorProto[] = [];
  const rand = mulberry32(seed);
  let counter = 0;
  const fresh = () => `v${counter++}`;
  const floats = (dims: number[], data: Float32Array): string => {
    const name = fresh();
    initializers.push({
      name,
      dataType: FLOAT,
      dims,
      rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    });
    return name;
  };
  const g = {
    op(
      opType: string,
      inputs: string[],
      attributes: Record<string, OnnxTypes.IAttributeProto> = {},
      outputs = 1,
    ) {
      const names = Array.from({ length: outputs }, fresh);
      nodes.push({
        opType,
        input: inputs,
        output: names,
        attribute: Object.entries(attributes).map(([name, a]) => ({ ...a, name })),
      });
      return names;
    },
    one(
      opType: string,
      inputs: string[],
      attributes: Record<string, OnnxTypes.IAttributeProto> = {},
    ): string {
      return g.op(opType, inputs, attributes)[0];
    },
    floats,
    /** Uniform weights with variance 1 / fanIn, so activations keep their scale through the layers. */
    random(dims: number[], fanIn: number): string {
      const data = new Float32Array(dims.reduce((a, b) => a * b, 1));
      const a = Math.sqrt(3 / fanIn);
      for (let i = 0; i < data.length; i++) data[i] = (2 * rand() - 1) * a;
      return floats(dims, data);
    },
    filled(dims: number[], value: number): string {
      return floats(dims, new Float32Array(dims.reduce((a, b) => a * b, 1)).fill(value));
    },
    int64s(values: number[], dims = [values.length]): string {
      const name = fresh();
      initializers.push({ name, dataType: INT64, dims, int64Data: values });
      return name;
    },
    alias(from: string, to: string) {
      nodes.push({ opType: "Identity", input: [from], output: [to] });
    },
    encode(
      name: string,
      inputs: OnnxTypes.IValueInfoProto[],
      outputs: OnnxTypes.IValueInfoProto[],
    ): Uint8Array {
      return onnx.ModelProto.encode({
        irVersion: 8,
        opsetImport: [{ domain: "", version: OPSET }],
        producerName: "clipsieve-synthetic",
        graph: { name, node: nodes, initializer: initializers, input: inputs, output: outputs },
      }).finish();
    },
  };
  return g;
}

type Builder = ReturnType<typeof graphBuilder>;

/** `pixel_values` [N, 3, S, S] -> `image_embeds` [N, D] = flatten(pixels) · W, W [3·S·S, D] row-major. */
export function linearImageEncoder(size: number, dim: number, weights: Float32Array): Uint8Array {
  if (weights.length !== 3 * size * size * dim) throw new Error("weights must be 3*S*S x D");
  const g = graphBuilder();
  const flat = g.one("Flatten", ["pixel_values"], { axis: attr.int(1) });
  g.alias(g.one("MatMul", [flat, g.floats([3 * size * size, dim], weights)]), "image_embeds");
  return g.encode(
    "linear_image_encoder",
    [valueInfo("pixel_values", FLOAT, ["batch", 3, size, size])],
    [valueInfo("image_embeds", FLOAT, ["batch", dim])],
  );
}

/**
 * `input_ids` [N, L] (+ `attention_mask` [N, L]) -> `text_embeds` [N, D] = sum over positions of
 * table[id] (times the mask when there is one). `extraOutput` adds `last_hidden_state` [N, L, D], as the
 * Hugging Face exports have, to check that the stage picks its output by name.
 */
export function bagOfTokensTextEncoder(
  table: Float32Array,
  vocab: number,
  dim: number,
  contextLength: number,
  opts: { mask: boolean; extraOutput?: boolean },
): Uint8Array {
  if (table.length !== vocab * dim) throw new Error("table must be vocab x D");
  const g = graphBuilder();
  let rows = g.one("Gather", [g.floats([vocab, dim], table), "input_ids"]);
  if (opts.mask) {
    const m = g.one("Cast", ["attention_mask"], { to: attr.int(FLOAT) });
    rows = g.one("Mul", [rows, g.one("Unsqueeze", [m, g.int64s([2])])]);
  }
  g.alias(g.one("ReduceSum", [rows, g.int64s([1])], { keepdims: attr.int(0) }), "text_embeds");
  const inputs = [valueInfo("input_ids", INT64, ["batch", contextLength])];
  if (opts.mask) inputs.push(valueInfo("attention_mask", INT64, ["batch", contextLength]));
  const outputs = [valueInfo("text_embeds", FLOAT, ["batch", dim])];
  if (opts.extraOutput) {
    g.alias(rows, "last_hidden_state");
    outputs.unshift(valueInfo("last_hidden_state", FLOAT, ["batch", contextLength, dim]));
  }
  return g.encode("bag_of_tokens_text_encoder", inputs, outputs);
}

function layerNorm(g: Builder, x: string, width: number): string {
  return g.one("LayerNormalization", [x, g.filled([width], 1), g.filled([width], 0)], {
    axis: attr.int(-1),
    epsilon: attr.float(1e-5),
  });
}

function linear(g: Builder, x: string, from: number, to: number): string {
  return g.one("Add", [g.one("MatMul", [x, g.random([from, to], from)]), g.filled([to], 0)]);
}

/** One pre-LayerNorm residual block, as in CLIP: x + attn(ln1(x)), then + mlp(ln2(x)) with QuickGELU. */
function block(g: Builder, x: string, width: number, heads: number, mlp: number, mask?: string): string {
  const dh = width / heads;
  const qkv = linear(g, layerNorm(g, x, width), width, 3 * width);
  const [q, k, v] = g.op("Split", [qkv, g.int64s([width, width, width])], { axis: attr.int(2) }, 3);
  const split = (t: string, perm: number[]) =>
    g.one("Transpose", [g.one("Reshape", [t, g.int64s([0, 0, heads, dh])])], { perm: attr.ints(perm) });
  let scores = g.one("Mul", [
    g.one("MatMul", [split(q, [0, 2, 1, 3]), split(k, [0, 2, 3, 1])]),
    g.filled([], 1 / Math.sqrt(dh)),
  ]);
  if (mask) scores = g.one("Add", [scores, mask]);
  const attended = g.one("MatMul", [
    g.one("Softmax", [scores], { axis: attr.int(-1) }),
    split(v, [0, 2, 1, 3]),
  ]);
  const merged = g.one("Reshape", [
    g.one("Transpose", [attended], { perm: attr.ints([0, 2, 1, 3]) }),
    g.int64s([0, 0, width]),
  ]);
  const x1 = g.one("Add", [x, linear(g, merged, width, width)]);
  const h = linear(g, layerNorm(g, x1, width), width, mlp);
  const gelu = g.one("Mul", [h, g.one("Sigmoid", [g.one("Mul", [h, g.filled([], 1.702)])])]);
  return g.one("Add", [x1, linear(g, gelu, mlp, width)]);
}

/** CLIP's vision transformer: `pixel_values` [N, 3, S, S] -> `image_embeds` [N, D]. */
export function vitImageEncoder(s: VitShape, seed = 1): Uint8Array {
  const g = graphBuilder(seed);
  const grid = s.imageSize / s.patch;
  const patches = g.one(
    "Conv",
    ["pixel_values", g.random([s.width, 3, s.patch, s.patch], 3 * s.patch * s.patch)],
    {
      kernel_shape: attr.ints([s.patch, s.patch]),
      strides: attr.ints([s.patch, s.patch]),
    },
  );
  const tokens = g.one("Transpose", [g.one("Reshape", [patches, g.int64s([0, s.width, -1])])], {
    perm: attr.ints([0, 2, 1]),
  });
  const batch = g.one("Slice", [g.one("Shape", ["pixel_values"]), g.int64s([0]), g.int64s([1])]);
  const clsShape = g.one("Concat", [batch, g.int64s([1, s.width])], { axis: attr.int(0) });
  const cls = g.one("Expand", [g.random([1, 1, s.width], s.width), clsShape]);
  let x = g.one("Add", [
    g.one("Concat", [cls, tokens], { axis: attr.int(1) }),
    g.random([grid * grid + 1, s.width], s.width),
  ]);
  x = layerNorm(g, x, s.width);
  for (let l = 0; l < s.layers; l++) x = block(g, x, s.width, s.heads, s.mlp);
  const pooled = layerNorm(g, g.one("Gather", [x, g.int64s([0], [])], { axis: attr.int(1) }), s.width);
  g.alias(g.one("MatMul", [pooled, g.random([s.width, s.dim], s.width)]), "image_embeds");
  return g.encode(
    "vit_image_encoder",
    [valueInfo("pixel_values", FLOAT, ["batch", 3, s.imageSize, s.imageSize])],
    [valueInfo("image_embeds", FLOAT, ["batch", s.dim])],
  );
}

/**
 * CLIP's text transformer: `input_ids` [N, L] and `attention_mask` [N, L] -> `text_embeds` [N, D],
 * causal attention, features taken at the highest token id (`<|endoftext|>`), as CLIP pools.
 */
export function transformerTextEncoder(s: TextTransformerShape, seed = 2): Uint8Array {
  const g = graphBuilder(seed);
  const L = s.contextLength;
  const causal = new Float32Array(L * L);
  for (let i = 0; i < L; i++) for (let j = i + 1; j < L; j++) causal[i * L + j] = -1e9;
  const padding = g.one("Reshape", [
    g.one("Mul", [
      g.one("Sub", [g.filled([], 1), g.one("Cast", ["attention_mask"], { to: attr.int(FLOAT) })]),
      g.filled([], -1e9),
    ]),
    g.int64s([0, 1, 1, L]),
  ]);
  const mask = g.one("Add", [g.floats([L, L], causal), padding]);
  let x = g.one("Add", [
    g.one("Gather", [g.random([s.vocab, s.width], s.width), "input_ids"]),
    g.random([L, s.width], s.width),
  ]);
  for (let l = 0; l < s.layers; l++) x = block(g, x, s.width, s.heads, s.mlp, mask);
  x = layerNorm(g, x, s.width);
  const end = g.one("ArgMax", [g.one("Cast", ["input_ids"], { to: attr.int(FLOAT) })], {
    axis: attr.int(1),
    keepdims: attr.int(1),
  });
  const pooled = g.one("GatherND", [x, end], { batch_dims: attr.int(1) });
  g.alias(g.one("MatMul", [pooled, g.random([s.width, s.dim], s.width)]), "text_embeds");
  return g.encode(
    "transformer_text_encoder",
    [valueInfo("input_ids", INT64, ["batch", L]), valueInfo("attention_mask", INT64, ["batch", L])],
    [valueInfo("text_embeds", FLOAT, ["batch", s.dim])],
  );
}

/**
 * The 256 byte-level symbols in GPT-2 / CLIP order (bytes_to_unicode): printable Latin-1 bytes stand
 * for themselves, the others for U+0100 onwards. Index = token id of the byte in CLIP's vocabulary.
 */
export function byteLevelAlphabet(): { byte: number; symbol: string }[] {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const out = printable.map((b) => ({ byte: b, symbol: String.fromCodePoint(b) }));
  let n = 0;
  for (let b = 0; b < 256; b++)
    if (!printable.includes(b)) out.push({ byte: b, symbol: String.fromCodePoint(256 + n++) });
  return out;
}

/** The regex CLIP's tokenizer.json splits words with (OpenAI's `pat`, case-insensitive by lowercasing first). */
export const CLIP_SPLIT_PATTERN =
  "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+";

/**
 * A tokenizer.json laid out as Hugging Face's CLIPTokenizerFast writes it: ids 0-255 the byte symbols,
 * 256-511 the same with `</w>`, then one id per merge in order, then `<|startoftext|>`, `<|endoftext|>`.
 * Real CLIP has 48894 merges (ids up to 49405, then 49406 and 49407); this one has the merges given.
 */
export function clipStyleTokenizerJson(merges: [string, string][]): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  const alphabet = byteLevelAlphabet().map((a) => a.symbol);
  for (const s of alphabet) vocab[s] = Object.keys(vocab).length;
  for (const s of alphabet) vocab[`${s}</w>`] = Object.keys(vocab).length;
  for (const [a, b] of merges) {
    const merged = a + b;
    if (vocab[merged] === undefined) vocab[merged] = Object.keys(vocab).length;
  }
  const start = Object.keys(vocab).length;
  const special = (id: number, content: string) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: true,
    special: true,
  });
  vocab["<|startoftext|>"] = start;
  vocab["<|endoftext|>"] = start + 1;
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [special(start, "<|startoftext|>"), special(start + 1, "<|endoftext|>")],
    normalizer: {
      type: "Sequence",
      normalizers: [
        { type: "NFC" },
        { type: "Replace", pattern: { Regex: "\\s+" }, content: " " },
        { type: "Lowercase" },
      ],
    },
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        { type: "Split", pattern: { Regex: CLIP_SPLIT_PATTERN }, behavior: "Removed", invert: true },
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: {
      type: "RobertaProcessing",
      sep: ["<|endoftext|>", start + 1],
      cls: ["<|startoftext|>", start],
      trim_offsets: false,
      add_prefix_space: false,
    },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: "<|endoftext|>",
      continuing_subword_prefix: "",
      end_of_word_suffix: "</w>",
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges: merges.map(([a, b]) => `${a} ${b}`),
    },
  };
}

export interface SyntheticModelFiles {
  imageEncoder: Uint8Array;
  textEncoder: Uint8Array;
  tokenizerJson: Record<string, unknown>;
  tokenizerConfig?: Record<string, unknown>;
  model: string;
  dim: number;
  /** Image size; crop = size. */
  size: number;
  contextLength?: number;
  imageFile?: string;
  textFile?: string;
  extra?: Record<string, unknown>;
}

/** Write a model folder in the layout docs/embed.md describes. */
export function writeModelFolder(dir: string, f: SyntheticModelFiles): void {
  const imageFile = f.imageFile ?? "vision_model.onnx";
  const textFile = f.textFile ?? "text_model.onnx";
  for (const file of [imageFile, textFile]) mkdirSync(join(dir, file, ".."), { recursive: true });
  writeFileSync(join(dir, imageFile), f.imageEncoder);
  writeFileSync(join(dir, textFile), f.textEncoder);
  writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(f.tokenizerJson));
  if (f.tokenizerConfig) writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(f.tokenizerConfig));
  writeFileSync(
    join(dir, "preprocessor_config.json"),
    JSON.stringify({
      crop_size: { height: f.size, width: f.size },
      do_center_crop: true,
      do_convert_rgb: true,
      do_normalize: true,
      do_rescale: true,
      do_resize: true,
      image_mean: [0.48145466, 0.4578275, 0.40821073],
      image_std: [0.26862954, 0.26130258, 0.27577711],
      resample: 3,
      rescale_factor: 1 / 255,
      size: { shortest_edge: f.size },
    }),
  );
  writeFileSync(
    join(dir, "clipsieve.json"),
    JSON.stringify({ model: f.model, dim: f.dim, contextLength: f.contextLength ?? 77, ...f.extra }),
  );
}
