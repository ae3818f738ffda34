/**
 * Automatic mixed precision, PyTorch's policy (`torch.autocast`): inside `autocast`,
 * convolutions and linear layers cast their floating inputs to bfloat16 or float16 and compute
 * in it; batch norm keeps float32 statistics and parameters whatever its input's type; the loss
 * and its softmax are computed in float32; element-wise ops of two inputs of different types
 * promote to the wider one. Parameters stay float32 (the master weights), so their gradients
 * arrive in float32 through the casts' backward, and the optimizer is unchanged.
 *
 * A parameter's cast is made once per region: the first convolution that uses a weight casts it,
 * later uses in the same `autocast` call reuse that copy, and the copies are freed when the
 * outermost region ends (the autograd graph keeps what its backward needs).
 * @module
 */
import { isGradEnabled } from '../autograd/grad-mode.js';
import { keep } from '../tensor/scope.js';
import { FLOAT_DTYPES, type FloatDType, type Tensor } from '../tensor/tensor.js';
import { checkBool, checkOptions, show } from '../util/check.js';

/** The reduced-precision types autocast computes in. */
export type HalfDType = 'bfloat16' | 'float16';

/** Options of `autocast`. */
export interface AutocastOptions {
  /** The type convolutions and linear layers compute in (default `'bfloat16'`). */
  dtype?: HalfDType;
  /** False runs `fn` with autocast off, also inside an enclosing region (default true). */
  enabled?: boolean;
}

// The innermost region's type (null: a region with enabled: false); empty outside autocast.
const regions: (HalfDType | null)[] = [];
// Casts of parameters made in the current outermost region, by parameter, then by target type
// and whether the graph was recorded.
const cache = new Map<Tensor, Map<string, Tensor>>();

/**
 * Runs `fn` with autocast: convolutions and linear layers inside compute in `dtype` (see the
 * module's description). Returns what `fn` returns. `fn` must be synchronous; regions nest, the
 * innermost one deciding. Call `backward()` inside or after it: gradients flow to float32
 * parameters either way.
 */
export function autocast<T>(options: AutocastOptions | undefined, fn: () => T): T {
  const op = 'amp.autocast';
  const opts = checkOptions(op, options, ['dtype', 'enabled']);
  const dtype = opts.dtype ?? 'bfloat16';
  if (dtype !== 'bfloat16' && dtype !== 'float16') {
    throw new TypeError(`${op}: expected dtype to be 'bfloat16' or 'float16', got ${show(dtype)}`);
  }
  const enabled = opts.enabled === undefined ? true : checkBool(op, 'enabled', opts.enabled);
  if (typeof fn !== 'function') throw new TypeError(`${op}: expected a function, got ${show(fn)}`);
  regions.push(enabled ? dtype : null);
  try {
    const result = fn();
    if (result instanceof Promise) throw new TypeError(`${op}: fn must be synchronous (it returned a Promise)`);
    return result;
  } finally {
    regions.pop();
    if (regions.length === 0) {
      for (const casts of cache.values()) for (const t of casts.values()) t.dispose();
      cache.clear();
    }
  }
}

/** The type convolutions and linear layers compute in here, or null outside autocast. */
export function autocastDType(): HalfDType | null {
  return regions.at(-1) ?? null;
}

/**
 * How an op's floating inputs are cast: `'lower'` to the autocast type (convolution, linear),
 * `'float32'` always (the loss), `'promote'` to the widest of them under autocast (element-wise
 * ops of two tensors).
 * @internal
 */
export type CastPolicy = 'lower' | 'float32' | 'promote';

/**
 * Runs `fn` on `inputs` cast as `policy` says, and disposes the casts it made once `fn` has
 * returned (the op's autograd node keeps what its backward needs). Inputs already of the
 * target type, and null ones, are passed as they are.
 * @internal
 */
export function withCasts<T>(policy: CastPolicy, inputs: readonly (Tensor | null)[], fn: (cast: (Tensor | null)[]) => T): T {
  const target = targetOf(policy, inputs);
  if (target === null || inputs.every((t) => t === null || t.dtype === target)) return fn([...inputs]);
  const made: Tensor[] = [];
  try {
    const cast = inputs.map((t) => {
      if (t === null || t.dtype === target) return t;
      if (policy === 'lower' && t.requiresGrad && t.gradFn === null) return cachedCast(t, target);
      const c = t.cast(target);
      made.push(c);
      return c;
    });
    return fn(cast);
  } finally {
    for (const t of made) t.dispose();
  }
}

function targetOf(policy: CastPolicy, inputs: readonly (Tensor | null)[]): FloatDType | null {
  if (policy === 'float32') return 'float32';
  const dtype = autocastDType();
  if (dtype === null) return null;
  if (policy === 'lower') return dtype;
  const present = inputs.filter((t): t is Tensor => t !== null).map((t) => t.dtype);
  return FLOAT_DTYPES.find((d) => present.includes(d)) ?? null;
}

function cachedCast(param: Tensor, target: FloatDType): Tensor {
  const key = `${target}/${isGradEnabled()}`;
  let casts = cache.get(param);
  if (!casts) {
    casts = new Map();
    cache.set(param, casts);
  }
  let c = casts.get(key);
  if (!c || c.isDisposed) {
    // Kept out of every tidy scope: the region, not the scope it was made in, decides its life.
    c = keep(param.cast(target));
    casts.set(key, c);
  }
  return c;
}
