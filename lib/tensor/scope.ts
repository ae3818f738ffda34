/**
 * Explicit memory management: `tidy` scopes, `keep`, and the live-tensor accounting behind
 * `memory()`. A `FinalizationRegistry` frees what was forgotten, and warns, as a backstop only.
 * @module
 */

import { isTensor } from './is-tensor.js';
import type { DType, Tensor } from './tensor.js';

type AnyTensor = Tensor<DType>;

const scopes: Set<AnyTensor>[] = [];

/** Registers a new tensor with the innermost `tidy` scope, if any. @internal */
export function track(t: AnyTensor): void {
  scopes[scopes.length - 1]?.add(t);
}

/** Removes a tensor from every open scope: it outlives them. @internal */
export function untrack(t: AnyTensor): void {
  for (const s of scopes) s.delete(t);
}

/**
 * Runs `fn` and disposes every tensor created during it, except those it returns (found in a
 * returned tensor, array or plain object, at any depth) and those passed to `keep`. Returned
 * tensors belong to the enclosing scope. `fn` must be synchronous: tensors created after an
 * `await` would escape the scope.
 */
export function tidy<T>(fn: () => T): T;
export function tidy<T>(name: string, fn: () => T): T;
export function tidy<T>(a: string | (() => T), b?: () => T): T {
  const fn = typeof a === 'function' ? a : b;
  if (typeof fn !== 'function') throw new TypeError('tidy: expected a function');
  const scope = new Set<AnyTensor>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (err) {
    scopes.pop();
    for (const t of scope) t.dispose();
    throw err;
  }
  scopes.pop();
  if (result instanceof Promise) {
    for (const t of scope) t.dispose();
    throw new TypeError('tidy: fn must be synchronous (it returned a Promise); await outside tidy() instead');
  }
  const escaping = new Set<AnyTensor>();
  collect(result, escaping, new Set());
  for (const t of scope) {
    if (escaping.has(t)) track(t);
    else t.dispose();
  }
  return result;
}

function collect(value: unknown, out: Set<AnyTensor>, seen: Set<unknown>): void {
  if (value === null || typeof value !== 'object' || seen.has(value)) return;
  seen.add(value);
  if (isTensor(value)) {
    out.add(value);
    return;
  }
  if (Array.isArray(value)) {
    for (const v of value) collect(v, out, seen);
  } else if (value instanceof Map) {
    for (const v of value.values()) collect(v, out, seen);
  } else if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value)) collect(v, out, seen);
  }
}

/** Keeps a tensor alive past the `tidy` scopes it was created in. Returns it. */
export function keep<T extends Tensor<DType>>(t: T): T {
  if (!isTensor(t)) throw new TypeError('keep: expected a Tensor');
  untrack(t);
  return t;
}
