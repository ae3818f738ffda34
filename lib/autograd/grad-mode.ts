/**
 * Whether ops record the graph for `backward()`.
 * @module
 */

let enabled = true;

/** True unless inside `noGrad`. */
export function isGradEnabled(): boolean {
  return enabled;
}

/**
 * Runs `fn` without recording the autograd graph (evaluation, inference, parameter updates):
 * no op inside saves tensors for a backward pass. `fn` must be synchronous.
 */
export function noGrad<T>(fn: () => T): T {
  if (typeof fn !== 'function') throw new TypeError('noGrad: expected a function');
  const prev = enabled;
  enabled = false;
  try {
    const result = fn();
    if (result instanceof Promise) {
      throw new TypeError('noGrad: fn must be synchronous (it returned a Promise)');
    }
    return result;
  } finally {
    enabled = prev;
  }
}
