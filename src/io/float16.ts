/**
 * IEEE half-precision conversion through the engine's own Float16Array (Node 24), which rounds to
 * nearest-even as numpy's astype(float16) does. TypeScript's ES2023 lib does not declare it yet.
 */
interface Float16ArrayLike extends ArrayLike<number> {
  readonly buffer: ArrayBufferLike;
  readonly byteOffset: number;
  readonly byteLength: number;
}
type Float16ArrayConstructor = {
  new (length: number): Float16ArrayLike;
  new (values: ArrayLike<number>): Float16ArrayLike;
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): Float16ArrayLike;
};

function float16Array(): Float16ArrayConstructor {
  const ctor = (globalThis as { Float16Array?: Float16ArrayConstructor }).Float16Array;
  if (ctor === undefined)
    throw new Error("this JavaScript engine has no Float16Array (Node.js 24 or later needed)");
  return ctor;
}

/** Half-precision bit patterns (IEEE binary16, as stored in memory) to float32 values. */
export function float16BitsToFloat32(bits: Uint16Array): Float32Array {
  const halves = new (float16Array())(bits.buffer, bits.byteOffset, bits.length);
  return new Float32Array(halves);
}

/** Float32 values to half-precision bit patterns, rounding to nearest-even (overflow gives +-Infinity). */
export function float32ToFloat16Bits(values: Float32Array): Uint16Array {
  const halves = new (float16Array())(values);
  return new Uint16Array(halves.buffer, halves.byteOffset, values.length);
}
