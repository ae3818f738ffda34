/**
 * What the file readers share once a file is parsed: the element types they convert into the
 * library's two dtypes (float32 and int32 load as they are; float16, bfloat16 and float64 load
 * converted to float32; int64, PyTorch's `num_batches_tracked`, loads as int32 when every value
 * fits), the limits of the library's tensors, and making the tensors, all or none. The library
 * assumes a little-endian host, the byte order of both formats.
 * @internal
 * @module
 */
import type { BackendName } from '../backend/backends.js';
import { MAX_ELEMENTS, setOwn, shapeStr } from '../util/check.js';
import { tensor } from '../tensor/create.js';
import type { DType, Tensor } from '../tensor/tensor.js';

/** Element types, by PyTorch's names, and their size in bytes. @internal */
export const ELEMENT_BYTES = { float32: 4, int32: 4, int64: 8, float16: 2, bfloat16: 2, float64: 8 } as const;

/** An element type a file may hold. @internal */
export type ElementType = keyof typeof ELEMENT_BYTES;

/** True for an element type the readers convert. @internal */
export function isElementType(name: string): name is ElementType {
  return Object.hasOwn(ELEMENT_BYTES, name);
}

/** float16 bits to a float32 value. */
function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac === 0 ? sign * Infinity : Number.NaN;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/**
 * `n` elements of type `type` from `bytes`, which must be a fresh allocation (offset 0, so that
 * typed views are aligned), as float32 or int32. `overflow(i, v)` makes the error for an int64
 * element `i` outside the int32 range. @internal
 */
export function decodeElements(type: ElementType, bytes: Uint8Array, n: number, overflow: (i: number, v: bigint) => Error): Float32Array | Int32Array {
  const buf = bytes.buffer;
  switch (type) {
    case 'float32':
      return new Float32Array(buf, 0, n);
    case 'int32':
      return new Int32Array(buf, 0, n);
    case 'float64':
      return Float32Array.from(new Float64Array(buf, 0, n));
    case 'bfloat16': {
      const src = new Uint16Array(buf, 0, n);
      const out = new Uint32Array(n);
      for (let i = 0; i < n; i++) out[i] = src[i]! << 16;
      return new Float32Array(out.buffer);
    }
    case 'float16': {
      const src = new Uint16Array(buf, 0, n);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = halfToFloat(src[i]!);
      return out;
    }
    case 'int64': {
      const src = new BigInt64Array(buf, 0, n);
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const v = src[i]!;
        if (v < -2147483648n || v > 2147483647n) throw overflow(i, v);
        out[i] = Number(v);
      }
      return out;
    }
  }
}

/**
 * Refuses, before any tensor is made, a tensor the library cannot hold: rank above 5, no
 * elements, or more elements than a tensor may have. @internal
 */
export function checkHoldable(op: string, path: string, name: string, shape: readonly number[]): void {
  const n = shape.reduce((a, b) => a * b, 1);
  const why = shape.length > 5 ? `rank ${shape.length} (above 5)` : n === 0 ? 'no elements' : n > MAX_ELEMENTS ? `${n} elements` : null;
  if (why !== null) throw new RangeError(`${op}: ${path}: tensor '${name}' of shape ${shapeStr(shape)} has ${why}, which tensors of this library cannot hold`);
}

/** Tensors of the decoded values, by name, on `backend`: all of them, or none (and the error). @internal */
export function makeTensors(entries: readonly { name: string; shape: readonly number[]; values: Float32Array | Int32Array }[], backend: BackendName): Record<string, Tensor<DType>> {
  const out: Record<string, Tensor<DType>> = {};
  try {
    for (const e of entries) {
      setOwn(out, e.name, tensor(e.values, e.shape, { backend, dtype: e.values instanceof Int32Array ? 'int32' : 'float32' }) as Tensor<DType>);
    }
  } catch (err) {
    for (const t of Object.values(out)) t.dispose();
    throw err;
  }
  return out;
}
