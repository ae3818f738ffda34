/**
 * Finite-difference gradient checking in float64. Central differences have error O(h²) from
 * truncation plus O(ε·|f|/h) from rounding; with h = 1e-6 both stay near 1e-9 for the O(1)
 * functions the tests use, far below any real indexing or formula mistake.
 * @module
 */

/** ∂f/∂x by central differences, one coordinate at a time. `x` is left as it was given. */
export function numericalGradient(f: (x: Float64Array) => number, x: Float64Array, h = 1e-6): Float64Array {
  const probe = x.slice();
  const grad = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const original = probe[i]!;
    probe[i] = original + h;
    const plus = f(probe);
    probe[i] = original - h;
    const minus = f(probe);
    probe[i] = original;
    grad[i] = (plus - minus) / (2 * h);
  }
  return grad;
}

export interface GradientComparison {
  maxAbsError: number;
  /** max over i of |a - n| / max(|a|, |n|, floor). */
  maxRelError: number;
  /** Where maxRelError occurs, to point at the wrong element when a check fails. */
  worstIndex: number;
}

/**
 * Compares two gradients element by element. `floor` keeps near-zero entries from turning
 * rounding noise into a large relative error.
 */
export function compareGradients(analytic: ArrayLike<number>, numerical: ArrayLike<number>,
  floor = 1e-3): GradientComparison {
  if (analytic.length !== numerical.length) {
    throw new RangeError(`compareGradients: lengths ${analytic.length} and ${numerical.length} differ`);
  }
  let maxAbsError = 0;
  let maxRelError = 0;
  let worstIndex = -1;
  for (let i = 0; i < analytic.length; i++) {
    const a = analytic[i]!;
    const n = numerical[i]!;
    const absError = Math.abs(a - n);
    // NaN fails every comparison, so it is caught explicitly rather than silently passing.
    const relError = Number.isNaN(absError) ? Infinity : absError / Math.max(Math.abs(a), Math.abs(n), floor);
    maxAbsError = Math.max(maxAbsError, absError);
    if (relError > maxRelError || worstIndex < 0) {
      maxRelError = relError;
      worstIndex = i;
    }
  }
  return { maxAbsError, maxRelError, worstIndex };
}

/** Numerical gradient of `f` at `x`, compared against `analytic`. */
export function checkGradient(f: (x: Float64Array) => number, x: Float64Array, analytic: ArrayLike<number>,
  options: { h?: number; floor?: number } = {}): GradientComparison {
  return compareGradients(analytic, numericalGradient(f, x, options.h), options.floor);
}

/** Σ a·b: the scalar loss sum(y·r) whose gradient with respect to y is r. */
export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new RangeError(`dot: lengths ${a.length} and ${b.length} differ`);
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += a[i]! * b[i]!;
  return sum;
}
