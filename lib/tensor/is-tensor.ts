/**
 * Which objects are tensors of this copy of the library.
 *
 * The brand lives apart from the `Tensor` class so that the modules the class itself needs (the
 * argument checks, the `tidy` scopes) can recognise a tensor without importing it, which would
 * be an import cycle.
 * @internal
 * @module
 */
import type { DType, Tensor } from './tensor.js';

const tensors = new WeakSet<object>();

/** Brands a tensor the `Tensor` constructor made. @internal */
export function markTensor(t: Tensor<DType>): void {
  tensors.add(t);
}

/**
 * True for tensors of this module instance, made by its constructor: not for tensors of another
 * copy of the library, nor for objects that only inherit from `Tensor.prototype`, nor for proxies.
 */
export function isTensor(v: unknown): v is Tensor<DType> {
  return typeof v === 'object' && v !== null && tensors.has(v);
}
