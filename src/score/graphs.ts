/**
 * The scoring engine's ONNX graphs, built in TypeScript with onnx-proto and handed to onnxruntime as
 * bytes. Every dimension is symbolic, so one session serves any batch size, block size, D or M.
 * Tensors are float32, except a float16 target's rows (`maxAbsDotHalfGraph`, widened inside the graph).
 * docs/scoring.md describes each graph and why it is shaped that way.
 */
import onnxProto, { type onnx as OnnxTypes } from "onnx-proto";

const { onnx } = onnxProto;

type GraphProto = OnnxTypes.IGraphProto;
type NodeProto = OnnxTypes.INodeProto;
type AttributeProto = OnnxTypes.IAttributeProto;
type TensorProto = OnnxTypes.ITensorProto;
type ValueInfoProto = OnnxTypes.IValueInfoProto;

/** ONNX opset of every graph: 17 keeps ReduceMax/Min's axes an attribute and ReduceSum's an input. */
export const OPSET = 17;
const IR_VERSION = 8;
const FLOAT = onnx.TensorProto.DataType.FLOAT;
const INT64 = onnx.TensorProto.DataType.INT64;
const FLOAT16 = onnx.TensorProto.DataType.FLOAT16;

type Dim = number | string;

const attr = {
  int: (value: number): AttributeProto => ({ type: onnx.AttributeProto.AttributeType.INT, i: value }),
  ints: (values: number[]): AttributeProto => ({
    type: onnx.AttributeProto.AttributeType.INTS,
    ints: values,
  }),
  tensor: (t: TensorProto): AttributeProto => ({ type: onnx.AttributeProto.AttributeType.TENSOR, t }),
};

function valueInfo(name: string, dims: Dim[], elemType: number = FLOAT): ValueInfoProto {
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

/**
 * A small graph builder. Value names are generated (`prefix` + a counter), so callers wire nodes by the
 * names `op` returns.
 */
function graphBuilder(prefix: string) {
  const nodes: NodeProto[] = [];
  const initializers: TensorProto[] = [];
  let counter = 0;
  const fresh = (): string => `${prefix}${counter++}`;
  return {
    /** Adds a single-output node and returns its output's name. */
    op(opType: string, inputs: string[], attributes: Record<string, AttributeProto> = {}): string {
      const output = fresh();
      nodes.push({
        name: `${opType}_${output}`,
        opType,
        input: inputs,
        output: [output],
        attribute: Object.entries(attributes).map(([name, a]) => ({ ...a, name })),
      });
      return output;
    },
    /** Renames a computed value to a graph output name (an Identity node). */
    alias(from: string, to: string): void {
      nodes.push({ name: `Identity_${to}`, opType: "Identity", input: [from], output: [to] });
    },
    int64s(values: number[]): string {
      const name = fresh();
      initializers.push({ name, dataType: INT64, dims: [values.length], int64Data: values });
      return name;
    },
    build(name: string, inputs: ValueInfoProto[], outputs: ValueInfoProto[]): GraphProto {
      return { name, node: nodes, initializer: initializers, input: inputs, output: outputs };
    },
  };
}

type Builder = ReturnType<typeof graphBuilder>;

function encodeModel(graph: GraphProto): Uint8Array {
  return onnx.ModelProto.encode({
    irVersion: IR_VERSION,
    opsetImport: [{ domain: "", version: OPSET }],
    producerName: "clipsieve",
    graph,
  }).finish();
}

/** log(sum(exp(z))) along `axis` of a 2-D tensor, shifted by that axis's own max: exact, never overflows. */
function maxShiftedLogSumExp(g: Builder, z: string, axis: 0 | 1): string {
  const max = g.op("ReduceMax", [z], { axes: attr.ints([axis]), keepdims: attr.int(1) });
  const sum = g.op("ReduceSum", [g.op("Exp", [g.op("Sub", [z, max])]), g.int64s([axis])], {
    keepdims: attr.int(1),
  });
  return g.op("Squeeze", [g.op("Add", [g.op("Log", [sum]), max]), g.int64s([axis])]);
}

/** A [1, rows] tensor of ones for a [rows, cols] tensor `x`: column sums as one matrix-vector product. */
function onesRowFor(g: Builder, x: string): string {
  const rows = g.op("Slice", [g.op("Shape", [x]), g.int64s([0]), g.int64s([1])]);
  const shape = g.op("Concat", [g.int64s([1]), rows], { axis: attr.int(0) });
  return g.op("ConstantOfShape", [shape], {
    value: attr.tensor({ dataType: FLOAT, dims: [1], floatData: [1] }),
  });
}

const S_CLIP_LOSS_BLOCK_INPUTS = [
  valueInfo("image", ["r", "D"]),
  valueInfo("text", ["b", "D"]),
  valueInfo("inv_tau", []),
];

/**
 * One row block of a contrastive batch for s-CLIPLoss, fast path: one shift c for the whole batch.
 *
 * Inputs: `image` [r, D] (rows s..s+r of the gathered batch), `text` [b, D] (the whole batch),
 * `inv_tau` [] (1 / tau), `neg_shift` [1] (-c), `col_sum_in` [b] (the column sums of the earlier blocks
 * of the batch; zeros for the first block).
 * Outputs: `row_sum` [r] = sum_j exp(Z_ij - c) and `col_sum_out` [1, b] = `col_sum_in` + sum_i exp(Z_ij - c),
 * where Z = (image / tau) · text^T.
 *
 * Z is built once and read once: the Gemm adds -c as it writes Z, one Exp, row sums by ReduceSum and
 * column sums as ones · E (a matrix-vector product, faster than ReduceSum over axis 0), accumulated
 * into `col_sum_in` by the same Gemm. The caller checks that no sum overflowed or underflowed and
 * otherwise falls back to `sClipLossExactBlockGraph` (docs/scoring.md, "Numerics").
 */
export function sClipLossFastBlockGraph(): Uint8Array {
  const g = graphBuilder("s");
  const scaled = g.op("Mul", ["image", "inv_tau"]);
  const e = g.op("Exp", [g.op("Gemm", [scaled, "text", "neg_shift"], { transB: attr.int(1) })]);
  g.alias(g.op("ReduceSum", [e, g.int64s([1])], { keepdims: attr.int(0) }), "row_sum");
  g.alias(g.op("Gemm", [onesRowFor(g, e), e, "col_sum_in"]), "col_sum_out");
  return encodeModel(
    g.build(
      "s_clip_loss_fast_block",
      [...S_CLIP_LOSS_BLOCK_INPUTS, valueInfo("neg_shift", [1]), valueInfo("col_sum_in", ["b"])],
      [valueInfo("row_sum", ["r"]), valueInfo("col_sum_out", [1, "b"])],
    ),
  );
}

/**
 * One row block of a contrastive batch for s-CLIPLoss, exact path: every row and every column of Z is
 * shifted by its own max, so nothing overflows or underflows whatever tau and the data.
 *
 * Inputs as the fast graph, but `col_lse_in` [b]: the column logsumexp of the earlier blocks
 * (-Infinity for the first block). Outputs: `row_lse` [r] = logsumexp_j Z_ij and `col_lse_out` [b] =
 * logaddexp(`col_lse_in`, logsumexp_i Z_ij).
 */
export function sClipLossExactBlockGraph(): Uint8Array {
  const g = graphBuilder("x");
  const z = g.op("Gemm", [g.op("Mul", ["image", "inv_tau"]), "text"], { transB: attr.int(1) });
  const colLse = maxShiftedLogSumExp(g, z, 0);
  // logaddexp with the earlier blocks, shifted by the larger of the two (finite: colLse is).
  const m = g.op("Max", ["col_lse_in", colLse]);
  const merged = g.op("Add", [
    m,
    g.op("Log", [
      g.op("Add", [g.op("Exp", [g.op("Sub", ["col_lse_in", m])]), g.op("Exp", [g.op("Sub", [colLse, m])])]),
    ]),
  ]);
  g.alias(maxShiftedLogSumExp(g, z, 1), "row_lse");
  g.alias(merged, "col_lse_out");
  return encodeModel(
    g.build(
      "s_clip_loss_exact_block",
      [...S_CLIP_LOSS_BLOCK_INPUTS, valueInfo("col_lse_in", ["b"])],
      [valueInfo("row_lse", ["r"]), valueInfo("col_lse_out", ["b"])],
    ),
  );
}

/** `dot` [r] = row-wise <a_i, b_i> of `a`, `b` [r, D]: CLIPScore S_ii without the b x b matrix. */
export function rowDotGraph(): Uint8Array {
  const g = graphBuilder("d");
  g.alias(g.op("ReduceSum", [g.op("Mul", ["a", "b"]), g.int64s([1])], { keepdims: attr.int(0) }), "dot");
  return encodeModel(
    g.build("row_dot", [valueInfo("a", ["r", "D"]), valueInfo("b", ["r", "D"])], [valueInfo("dot", ["r"])]),
  );
}

/**
 * `norm` [r] = sqrt(f_i^T G f_i) for `image` [r, D] and a D x D `gram` (NormSim_2 when G = T^T T).
 * Relu clamps the tiny negative values rounding can give for a vector orthogonal to every target.
 */
export function gramNormGraph(): Uint8Array {
  const g = graphBuilder("q");
  const projected = g.op("MatMul", ["image", "gram"]);
  const quad = g.op("ReduceSum", [g.op("Mul", [projected, "image"]), g.int64s([1])], {
    keepdims: attr.int(0),
  });
  g.alias(g.op("Sqrt", [g.op("Relu", [quad])]), "norm");
  return encodeModel(
    g.build(
      "gram_norm",
      [valueInfo("image", ["r", "D"]), valueInfo("gram", ["D", "D"])],
      [valueInfo("norm", ["r"])],
    ),
  );
}

/**
 * One target block of NormSim_inf: `acc_out` [r] = max(`acc_in`, max_m |<f_i, t_m>|) over the block's
 * `target` rows [m, D]. max|y| is taken as max(max y, -min y): two reads of the block, no Abs copy.
 * `half`: the target rows are float16, widened to float32 inside onnxruntime (one vectorised Cast, F16C
 * where the CPU has it), so memory holds half the bytes and every product is still float32 arithmetic.
 */
export function maxAbsDotGraph(half = false): Uint8Array {
  const g = graphBuilder(half ? "h" : "m");
  const target = half ? g.op("Cast", ["target"], { to: attr.int(FLOAT) }) : "target";
  const y = g.op("Gemm", ["image", target], { transB: attr.int(1) });
  const high = g.op("ReduceMax", [y], { axes: attr.ints([1]), keepdims: attr.int(0) });
  const low = g.op("ReduceMin", [y], { axes: attr.ints([1]), keepdims: attr.int(0) });
  g.alias(g.op("Max", ["acc_in", high, g.op("Neg", [low])]), "acc_out");
  return encodeModel(
    g.build(
      half ? "max_abs_dot_half" : "max_abs_dot",
      [
        valueInfo("image", ["r", "D"]),
        valueInfo("target", ["m", "D"], half ? FLOAT16 : FLOAT),
        valueInfo("acc_in", ["r"]),
      ],
      [valueInfo("acc_out", ["r"])],
    ),
  );
}

/** `dot` [r, m] = `a` [r, D] · `b` [m, D]^T: a query block against every cluster centre. */
export function dotGraph(): Uint8Array {
  const g = graphBuilder("d");
  g.alias(g.op("Gemm", ["a", "b"], { transB: attr.int(1) }), "dot");
  return encodeModel(
    g.build("dot", [valueInfo("a", ["r", "D"]), valueInfo("b", ["m", "D"])], [valueInfo("dot", ["r", "m"])]),
  );
}

/**
 * The nearest centre of each row, for k-means and the dedup step's search (`half` / `halfCentres`: the
 * rows / centres are float16, widened in the graph): `best` [r] = max_m <rows_i, centres_m> and
 * `index` [r] its argmax, the first on ties (as float32: exact for up to 2^24 centres, and every
 * output stays float32).
 */
export function nearestGraph(half = false, halfCentres = false): Uint8Array {
  const g = graphBuilder("n");
  const rows = half ? g.op("Cast", ["rows"], { to: attr.int(FLOAT) }) : "rows";
  const centres = halfCentres ? g.op("Cast", ["centres"], { to: attr.int(FLOAT) }) : "centres";
  const y = g.op("Gemm", [rows, centres], { transB: attr.int(1) });
  g.alias(g.op("ReduceMax", [y], { axes: attr.ints([1]), keepdims: attr.int(0) }), "best");
  const arg = g.op("ArgMax", [y], { axis: attr.int(1), keepdims: attr.int(0) });
  g.alias(g.op("Cast", [arg], { to: attr.int(FLOAT) }), "index");
  return encodeModel(
    g.build(
      half ? "nearest_half" : halfCentres ? "nearest_in_half" : "nearest",
      [
        valueInfo("rows", ["r", "D"], half ? FLOAT16 : FLOAT),
        valueInfo("centres", ["m", "D"], halfCentres ? FLOAT16 : FLOAT),
      ],
      [valueInfo("best", ["r"]), valueInfo("index", ["r"])],
    ),
  );
}

/** One row block of a Gram matrix: `acc_out` = `acc_in` + rows^T rows, for `rows` [m, D]. */
export function gramAccumulateGraph(): Uint8Array {
  const g = graphBuilder("t");
  g.alias(g.op("Gemm", ["rows", "rows", "acc_in"], { transA: attr.int(1) }), "acc_out");
  return encodeModel(
    g.build(
      "gram_accumulate",
      [valueInfo("rows", ["m", "D"]), valueInfo("acc_in", ["D", "D"])],
      [valueInfo("acc_out", ["D", "D"])],
    ),
  );
}

/**
 * `corner` [1, 1] = (`a` [m, k] · `b` [k, n])[0, 0]: the benchmark's measure of onnxruntime's MatMul
 * peak. The whole product is computed; only its first value is returned, so the time is the
 * product's, not that of copying an m x n result into JavaScript.
 */
export function matMulGraph(): Uint8Array {
  const g = graphBuilder("p");
  const product = g.op("MatMul", ["a", "b"]);
  g.alias(g.op("Slice", [product, g.int64s([0, 0]), g.int64s([1, 1])]), "corner");
  return encodeModel(
    g.build(
      "mat_mul",
      [valueInfo("a", ["m", "k"]), valueInfo("b", ["k", "n"])],
      [valueInfo("corner", [1, 1])],
    ),
  );
}
