/**
 * Gradient checks: for every op, the gradient autograd computes against central finite
 * differences of the library's own float32 forward op, on every available backend. Where
 * test/ops.test.ts holds forward and backward each to a float64 reference, this ties backward to
 * the forward that actually runs, so a backward that disagrees with it (a padding, dilation or
 * grouping convention, a statistic saved from the wrong place) fails even if a reference shares
 * the mistake.
 *
 * The objective is L = Σ y·r for a fixed random r (for softmaxCrossEntropy, the loss itself),
 * summed in float64 from the float32 output. Inputs lie on a grid of 2⁻¹² and the step is
 * h = 2⁻⁷ ≈ 8e-3, so x ± h is exact in float32 and the difference quotient divides by the step
 * that was really taken.
 *
 * Error budget, which sets the tolerances. The pass criterion is the max-norm relative error
 * ‖analytic − numerical‖∞ / ‖numerical‖∞ (ε = 2⁻²⁴ ≈ 6e-8, the float32 rounding unit).
 * - Truncation: none for ops linear in each input (conv2d, linear, the pools, add, flatten) or
 *   piecewise linear with every input kept more than 2h from a kink (relu, addRelu, maxPool2d);
 *   O(h²) for batch norm and softmax cross-entropy, but there rounding dominates (the error
 *   halves when h doubles).
 * - Rounding of the forward: outputs the perturbed element does not reach are recomputed bit
 *   for bit and cancel in L(x+h) − L(x−h); the ones it reaches carry a few ε|y| each, which the
 *   quotient divides by 2h. Hence four tiers (TOL below):
 *   exact: relu, add, addRelu, maxPool2d and flatten copy or add grid values, which float32
 *     holds exactly, so the differences are exact; only the analytic gradient rounds, where
 *     overlapping windows sum a few float32 terms: a few ε.
 *   linear: conv2d and linear, gradients of size O(1), a dozen outputs reached: ~ε·12/h ≈ 1e-4
 *     at worst, ~1e-6 typically, as the rounding errors differ in sign.
 *   mean: avgPool2d and globalAvgPool have gradient entries r/k but output rounding ε|y| that
 *     is not divided by k, so the relative error grows like k·ε/h: ≈ 1e-4 at worst for k = 12.
 *   nonlinear: batch norm moves every output of a channel with each input; the cross-entropy's
 *     whole rounding (a few ulps of a loss near 1.5) lands on gradient entries of size ≤ 1/N.
 *     Both ≈ 1e-4.
 * Each tolerance is 8 to 20 times the largest error seen over 25 random seeds on the CPU
 * backend (noted at each test), and orders of magnitude under what a real mistake (a wrong
 * index, scale, or missing term) produces, as the wrong-gradient test shows.
 */
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { type BackendName, type Tensor, memory, ops, sync, tensor, tidy } from '../lib/index.js';
import { dot, numericalGradient } from './reference/gradcheck.js';
import { randomArray } from './reference/random.js';
import { Rng, backendCases, random, relError, values } from './helpers.js';

/** 2⁻⁷ ≈ 8e-3, a power of two: x ± H is exact in float32 for every x on the grid (|x| < 2¹¹). */
const H = 2 ** -7;
/** The input grid: coarse enough that x ± H needs no rounding, fine enough to look random. */
const GRID = 2 ** 12;

/** The four tiers of the error budget in the header. */
const TOL = { exact: 1e-6, linear: 1e-4, mean: 3e-4, nonlinear: 1e-3 };

const onGrid = (v: number): number => Math.round(v * GRID) / GRID;

/** n values of N(0, scale²) on the grid (|v| ≥ 2⁻¹² since randomArray keeps |z| ≥ 1e-3). */
function draw(rng: Rng, n: number, scale = 1): Float64Array {
  return randomArray(n, rng, scale).map(onGrid);
}

/** Pushes values at least `gap` from zero, the kink of relu, so that x ± H stays on one side. */
function awayFromZero(v: Float64Array, gap = 0.1): Float64Array {
  return v.map((x) => (Math.abs(x) < gap ? onGrid(x + Math.sign(x) * gap) : x));
}

/**
 * Distinct values with spacing 1/16 > 2H in random order: the maximum of every pooling window
 * is unique and stays the maximum under a ±H step, so max pooling is differentiable there.
 */
function distinct(rng: Rng, n: number): Float64Array {
  const v = Float64Array.from({ length: n }, (_, i) => (i - n / 2) / 16);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.randInt(0, i);
    [v[i], v[j]] = [v[j]!, v[i]!];
  }
  return v;
}

interface Input {
  name: string;
  shape: number[];
  v: Float64Array;
}

interface Checked {
  name: string;
  analytic: Float64Array;
  numerical: Float64Array;
}

/**
 * Analytic gradients of L with respect to every input, from one backward pass, and the
 * central differences of L, each from two fresh forward passes on rebuilt inputs (so that no
 * state, such as a cached layout, carries over from the backward pass). With `loss`, the op's
 * output is a scalar loss and L is that loss: backward() gets no seed gradient.
 */
function gradCheck(backend: BackendName, rng: Rng, inputs: Input[], forward: (xs: Tensor[]) => Tensor,
  options: { loss?: boolean } = {}): Checked[] {
  const leaves = inputs.map((i) => tensor(Float32Array.from(i.v), i.shape, { backend, requiresGrad: true }));
  const { grads, r } = tidy(() => {
    const y = forward(leaves);
    let seed: Float64Array;
    if (options.loss) {
      seed = Float64Array.of(1);
      y.backward();
    } else {
      const dy = random(rng, y.shape, backend);
      seed = dy.v;
      y.backward(dy.t);
    }
    return { grads: leaves.map((l) => values(l.grad!)), r: seed };
  });
  for (const l of leaves) l.dispose();

  const objective = (vs: Float64Array[]): number => tidy(() => {
    const xs = vs.map((v, k) => tensor(Float32Array.from(v), inputs[k]!.shape, { backend }));
    return dot(values(forward(xs)), r);
  });
  return inputs.map((input, k) => ({
    name: input.name,
    analytic: grads[k]!,
    numerical: numericalGradient((x) => objective(inputs.map((other, j) => (j === k ? x : other.v))), input.v, H),
  }));
}

/** GRADCHECK_REPORT=1 prints every error, to re-derive the tolerances on another machine. */
function expectGradients(op: string, checked: Checked[], tol: number): void {
  for (const c of checked) {
    const e = relError(c.analytic, c.numerical);
    if (process.env.GRADCHECK_REPORT) console.log(`[gradcheck] ${op} d${c.name}: ${e.toExponential(2)} (tol ${tol.toExponential(0)})`);
    expect(e, `${op} d${c.name}: relative error ${e.toExponential(2)} > ${tol}`).toBeLessThanOrEqual(tol);
  }
}

const product = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

describe.each(backendCases)('$name backend', ({ name: backend, available }) => {
  describe.skipIf(!available)('gradients against finite differences of the float32 forward', () => {
    const rng = new Rng(20240607);
    let before = { tensors: 0, buffers: 0 };

    const counts = () => {
      const m = memory().backends[backend];
      return { tensors: m?.tensors ?? 0, buffers: m?.buffers ?? 0 };
    };
    // Buffers are freed once the queued ops that use them have run, hence the sync() first.
    beforeEach(async () => {
      await sync(backend);
      before = counts();
    });
    // A gradient check runs hundreds of forward passes; any one that leaked would show here.
    afterEach(async () => {
      await sync(backend);
      expect(counts()).toEqual(before);
    });

    const conv = {
      x: [1, 4, 5, 5],
      w: [6, 2, 3, 3],
      // Padding 2 with dilation 2 puts border taps on the padding; stride 2 skips inputs in the
      // forward that the backward must still route gradient to, or leave at zero.
      options: { stride: 2, padding: 2, dilation: 2, groups: 2 },
    };
    const convInputs = (): Input[] => [
      { name: 'x', shape: conv.x, v: draw(rng, product(conv.x)) },
      { name: 'weight', shape: conv.w, v: draw(rng, product(conv.w), 0.5) },
      { name: 'bias', shape: [6], v: draw(rng, 6) },
    ];
    const convForward = ([x, w, b]: Tensor[]) => ops.conv2d(x!, w!, { ...conv.options, bias: b! });

    // Observed ≤ 6e-6.
    test('conv2d stride 2, padding 2, dilation 2, groups 2, bias', () => {
      expectGradients('conv2d', gradCheck(backend, rng, convInputs(), convForward), TOL.linear);
    });

    test('a wrong gradient fails the same check', () => {
      const [dx, ...rest] = gradCheck(backend, rng, convInputs(), convForward);
      // 10% too large, as a missing normalization or a doubled term would make it.
      const wrong = dx!.analytic.map((g) => g * 1.1);
      const e = relError(wrong, dx!.numerical);
      expect(e).toBeGreaterThan(0.05);
      expect(e).toBeGreaterThan(TOL.linear);
      // The rest of the check still passes: the comparison singled out the wrong gradient.
      expectGradients('conv2d', rest, TOL.linear);
      // The tolerance is tight enough that a 3e-4 scale error, 3× the tolerance, is also rejected.
      expect(relError(dx!.analytic.map((g) => g * (1 + 3e-4)), dx!.numerical)).toBeGreaterThan(TOL.linear);
    });

    // Observed ≤ 6e-5.
    test('batchNorm2d training: dx, dweight, dbias', () => {
      const shape = [2, 3, 3, 3];
      const inputs: Input[] = [
        { name: 'x', shape, v: draw(rng, product(shape)) },
        { name: 'weight', shape: [3], v: draw(rng, 3) },
        { name: 'bias', shape: [3], v: draw(rng, 3) },
      ];
      // No running statistics: the objective has to be the same function at every evaluation,
      // and running statistics would be updated by each one.
      const checked = gradCheck(backend, rng, inputs, ([x, w, b]) => ops.batchNorm2d(x!, { weight: w!, bias: b!, training: true }));
      expectGradients('batchNorm2d', checked, TOL.nonlinear);
    });

    test('relu', () => {
      const shape = [2, 3, 4, 4];
      const inputs: Input[] = [{ name: 'x', shape, v: awayFromZero(draw(rng, product(shape))) }];
      expectGradients('relu', gradCheck(backend, rng, inputs, ([x]) => ops.relu(x!)), TOL.exact);
    });

    test('add and addRelu', () => {
      const shape = [2, 3, 2, 2];
      const a = draw(rng, product(shape));
      const b = draw(rng, product(shape));
      expectGradients('add', gradCheck(backend, rng, [{ name: 'a', shape, v: a }, { name: 'b', shape, v: b }],
        ([p, q]) => ops.add(p!, q!)), TOL.exact);
      // addRelu's kink is at a + b = 0, so it is b that moves: a + b ends up at least 0.2 from it,
      // and a ± H or b ± H moves the sum by less than that.
      const bAway = b.map((q, i) => {
        const s = a[i]! + q;
        return Math.abs(s) < 0.1 ? onGrid(q + (s < 0 ? -0.2 : 0.2)) : q;
      });
      expectGradients('addRelu', gradCheck(backend, rng, [{ name: 'a', shape, v: a }, { name: 'b', shape, v: bAway }],
        ([p, q]) => ops.addRelu(p!, q!)), TOL.exact);
    });

    // Observed ≤ 6e-8: the overlapping windows' float32 sums in the analytic gradient.
    test('maxPool2d with overlapping windows and padding', () => {
      const shape = [1, 2, 5, 5];
      const inputs: Input[] = [{ name: 'x', shape, v: distinct(rng, product(shape)) }];
      expectGradients('maxPool2d', gradCheck(backend, rng, inputs,
        ([x]) => ops.maxPool2d(x!, { kernel: 3, stride: 2, padding: 1 })), TOL.exact);
    });

    // Observed ≤ 1e-5.
    test('avgPool2d with overlapping windows and padding', () => {
      const shape = [1, 2, 5, 6];
      const inputs: Input[] = [{ name: 'x', shape, v: draw(rng, product(shape)) }];
      expectGradients('avgPool2d', gradCheck(backend, rng, inputs,
        ([x]) => ops.avgPool2d(x!, { kernel: [3, 2], stride: [2, 1], padding: 1 })), TOL.mean);
    });

    // Observed ≤ 3e-5.
    test('globalAvgPool', () => {
      const shape = [2, 3, 3, 4];
      const inputs: Input[] = [{ name: 'x', shape, v: draw(rng, product(shape)) }];
      expectGradients('globalAvgPool', gradCheck(backend, rng, inputs, ([x]) => ops.globalAvgPool(x!)), TOL.mean);
    });

    test('flatten', () => {
      const shape = [2, 3, 2, 2];
      const inputs: Input[] = [{ name: 'x', shape, v: draw(rng, product(shape)) }];
      expectGradients('flatten', gradCheck(backend, rng, inputs, ([x]) => ops.flatten(x!)), TOL.exact);
    });

    // Observed ≤ 7e-6.
    test('linear with bias', () => {
      const inputs: Input[] = [
        { name: 'x', shape: [3, 5], v: draw(rng, 15) },
        { name: 'weight', shape: [4, 5], v: draw(rng, 20, 0.5) },
        { name: 'bias', shape: [4], v: draw(rng, 4) },
      ];
      expectGradients('linear', gradCheck(backend, rng, inputs, ([x, w, b]) => ops.linear(x!, w!, b!)), TOL.linear);
    });

    // Observed ≤ 1.3e-4.
    test.each([0, 0.1])('softmaxCrossEntropy, label smoothing %f', (labelSmoothing) => {
      const [N, K] = [4, 5];
      const labels = [3, 0, 4, 1];
      const inputs: Input[] = [{ name: 'logits', shape: [N, K], v: draw(rng, N * K, 2) }];
      const checked = gradCheck(backend, rng, inputs,
        ([logits]) => ops.softmaxCrossEntropy(logits!, labels, { labelSmoothing }), { loss: true });
      expectGradients(`softmaxCrossEntropy(ε = ${labelSmoothing})`, checked, TOL.nonlinear);
    });
  });
});
