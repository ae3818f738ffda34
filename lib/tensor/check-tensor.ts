/**
 * Argument checks for tensors: a live tensor of ours with the right dtype and rank, and tensors
 * on one backend. The checks of other values are in `util/check.ts`.
 * @internal
 * @module
 */
import { isTensor } from './is-tensor.js';
import { type DType, Tensor } from './tensor.js';
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
  if (!isTensor(value)) {
    throw new TypeError(`${op}: expected ${name} to be a Tensor, got ${foreignTensor(value) ?? show(value)}`);
  }
  if (value.isDisposed) throw new Error(`${op}: ${name} (shape ${shapeStr(value.shape)}) is disposed`);
  const dtype = opts.dtype ?? 'float32';
  if (value.dtype !== dtype) throw new TypeError(`${op}: expected ${name} to be ${dtype}, got ${value.dtype}`);
  if (opts.rank !== undefined && value.rank !== opts.rank) {
    const layout = opts.layout ?? `rank ${opts.rank}`;
    throw new RangeError(`${op}: expected ${name} of shape ${layout}, got ${shapeStr(value.shape)}`);
  }
  return value;
}

export function checkFloat(op: string, name: string, value: unknown, opts: { rank?: number; layout?: string } = {}): Tensor {
  return checkTensor(op, name, value, opts) as Tensor;
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
