/**
 * Argument checks for tensors: a live tensor of ours with the right dtype and rank, and tensors
 * on one backend. The checks of other values are in `util/check.ts`.
 * @internal
 * @module
 */
import { isTensor } from './is-tensor.js';
import { type DType, type FloatDType, Tensor, isFloatDType } from './tensor.js';
import { shapeStr, show } from '../util/check.js';

/**
 * Names the two ways a value can look like a tensor without being one of ours: a structured
 * clone (postMessage, structuredClone copy a tensor's fields but not its memory, which belongs
 * to the thread that made it) and a tensor of another copy of this library.
 */
function foreignTensor(value: unknown): string | null {
  if (value === null || typeof value !== 'object' || !('shape' in value) || !('backend' in value) || !('_buf' in value)) return null;
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto === Object.prototype) {
    return 'a copy of a Tensor (postMessage and structuredClone copy its fields, not its memory, which stays with ' +
      'the thread that made it): send `await t.data()` and `t.shape` instead, and call tensor() on the other side';
  }
  // Another copy's class has the same name but is not this one (objects forged from this
  // Tensor.prototype, and proxies of tensors, are just not tensors).
  if (proto !== Tensor.prototype && (value as { constructor?: { name?: unknown } }).constructor?.name === 'Tensor') {
    return 'a Tensor of another copy of cudnn-resnet (two versions of the package are loaded); use one copy';
  }
  return null;
}

/** A live tensor of the given dtype (and rank), or a TypeError/RangeError/Error naming the op. */
export function checkTensor(op: string, name: string, value: unknown, opts: { dtype?: DType; rank?: number; layout?: string } = {}): Tensor<DType> {
  const t = checkLive(op, name, value);
  const dtype = opts.dtype ?? 'float32';
  if (t.dtype !== dtype) throw new TypeError(`${op}: expected ${name} to be ${dtype}, got ${t.dtype}`);
  return checkRank(op, name, t, opts);
}

/** A live tensor of a floating dtype (float32, bfloat16 or float16), and of the given rank. */
export function checkFloat(op: string, name: string, value: unknown, opts: { rank?: number; layout?: string } = {}): Tensor {
  const t = checkLive(op, name, value);
  if (!isFloatDType(t.dtype)) throw new TypeError(`${op}: expected ${name} to be float32, bfloat16 or float16, got ${t.dtype}`);
  return checkRank(op, name, t, opts) as Tensor;
}

function checkLive(op: string, name: string, value: unknown): Tensor<DType> {
  if (!isTensor(value)) {
    throw new TypeError(`${op}: expected ${name} to be a Tensor, got ${foreignTensor(value) ?? show(value)}`);
  }
  if (value.isDisposed) throw new Error(`${op}: ${name} (shape ${shapeStr(value.shape)}) is disposed`);
  return value;
}

function checkRank(op: string, name: string, t: Tensor<DType>, opts: { rank?: number; layout?: string }): Tensor<DType> {
  if (opts.rank !== undefined && t.rank !== opts.rank) {
    const layout = opts.layout ?? `rank ${opts.rank}`;
    throw new RangeError(`${op}: expected ${name} of shape ${layout}, got ${shapeStr(t.shape)}`);
  }
  return t;
}

/** The floating tensors an op combines share one dtype (an op does not convert; `amp.autocast` or `cast` does). */
export function checkSameDType(op: string, tensors: Record<string, Tensor | null | undefined>): FloatDType {
  let first: [string, Tensor] | null = null;
  for (const [name, t] of Object.entries(tensors)) {
    if (!t) continue;
    if (!first) first = [name, t];
    else if (t.dtype !== first[1].dtype) {
      throw new TypeError(`${op}: expected tensors of one dtype, got ${first[0]} ${first[1].dtype} and ${name} ${t.dtype}; ` +
        'cast them (t.cast(dtype)) or run the op inside amp.autocast()');
    }
  }
  return first ? first[1].dtype : 'float32';
}

/** All tensors on one backend. */
export function checkSameBackend(op: string, tensors: Record<string, Tensor<DType> | null | undefined>): void {
  let first: [string, Tensor<DType>] | null = null;
  for (const [name, t] of Object.entries(tensors)) {
    if (!t) continue;
    if (!first) first = [name, t];
    else if (t.backend !== first[1].backend) {
      throw new Error(`${op}: tensors are on different backends (${first[0]} on ${first[1].backend}, ${name} on ${t.backend}); move them to one backend first`);
    }
  }
}
