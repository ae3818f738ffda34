import { describe, expect, it } from 'vitest';
import { checkGradient, compareGradients, dot, numericalGradient } from './gradcheck.js';
import {
  add, addRelu, addReluBackward, avgPool2dBackward, avgPool2dForward, batchNorm2dEval, batchNorm2dTailBackward, batchNorm2dTailForward,
  batchNorm2dTrainBackward, batchNorm2dTrainForward, conv2dBackward, conv2dForward, flatten, globalAvgPoolBackward, globalAvgPoolForward,
  linearBackward, linearForward, maxPool2dBackward, maxPool2dForward, outputSize, relu, reluBackward,
  runningStatsUpdate, sgdReference, softmaxCrossEntropy,
  type Conv2dParams, type Pool2dParams, type Shape2, type Shape4,
} from './ops64.js';
import { Rng, randomArray } from './random.js';

/** Central differences in float64 agree to ~1e-9; a real bug is off by far more than this. */
const GRAD_TOLERANCE = 1e-6;

function expectGradient(f: (x: Float64Array) => number, x: Float64Array, analytic: ArrayLike<number>): void {
  const { maxRelError, worstIndex } = checkGradient(f, x, analytic);
  expect(maxRelError, `worst element ${worstIndex}`).toBeLessThan(GRAD_TOLERANCE);
}

function size(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tolerance = 1e-12): void {
  expect(actual.length).toBe(expected.length);
  expect(compareGradients(actual, expected, 1).maxRelError).toBeLessThan(tolerance);
}

/** Values pushed at least `margin` away from zero, so that a finite-difference step never crosses a ReLU kink. */
function awayFromZero(values: Float64Array, margin = 0.1): Float64Array {
  return values.map((v) => Math.sign(v) * (Math.abs(v) + margin));
}

describe('random', () => {
  it('is reproducible from its seed', () => {
    expect(randomArray(8, new Rng(7))).toEqual(randomArray(8, new Rng(7)));
    expect(randomArray(8, new Rng(7))).not.toEqual(randomArray(8, new Rng(8)));
  });

  it('draws plausible uniforms, normals and integers', () => {
    const rng = new Rng(1);
    const uniforms = Array.from({ length: 10000 }, () => rng.uniform());
    expect(Math.min(...uniforms)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...uniforms)).toBeLessThan(1);
    expect(uniforms.reduce((a, b) => a + b) / uniforms.length).toBeCloseTo(0.5, 1);

    const normals = randomArray(10000, rng, 2);
    const mean = normals.reduce((a, b) => a + b) / normals.length;
    const variance = normals.reduce((a, b) => a + (b - mean) ** 2, 0) / normals.length;
    expect(mean).toBeCloseTo(0, 1);
    expect(Math.sqrt(variance)).toBeCloseTo(2, 1);
    expect(normals.every((v) => v !== 0)).toBe(true);

    const ints = new Set(Array.from({ length: 1000 }, () => rng.randInt(-2, 3)));
    expect([...ints].sort((a, b) => a - b)).toEqual([-2, -1, 0, 1, 2, 3]);
  });
});

describe('gradcheck', () => {
  it('differentiates a known function and flags a wrong gradient', () => {
    const x = Float64Array.of(0.5, -1.5, 2);
    const f = (v: Float64Array) => v[0]! ** 3 + Math.sin(v[1]!) * v[2]!;
    const exact = [3 * 0.25, Math.cos(-1.5) * 2, Math.sin(-1.5)];
    expectClose(numericalGradient(f, x), exact, 1e-8);
    expect(checkGradient(f, x, [exact[0]!, exact[1]! * 1.01, exact[2]!]).worstIndex).toBe(1);
    expect(x).toEqual(Float64Array.of(0.5, -1.5, 2));
  });
});

describe('conv2d', () => {
  interface ConvCase { name: string; x: Shape4; w: Shape4; params: Conv2dParams; bias: boolean }
  type PairArg = number | [number, number];
  const pair = (v: PairArg): [number, number] => (typeof v === 'number' ? [v, v] : v);
  const conv = (stride: PairArg, padding: PairArg, dilation: PairArg = 1, groups = 1): Conv2dParams =>
    ({ stride: pair(stride), padding: pair(padding), dilation: pair(dilation), groups });
  const cases: ConvCase[] = [
    { name: '3x3 same padding', x: [2, 3, 5, 6], w: [4, 3, 3, 3], params: conv(1, 1), bias: true },
    { name: '3x3 stride 2, odd size, no bias', x: [2, 2, 7, 5], w: [3, 2, 3, 3], params: conv(2, 1), bias: false },
    { name: 'dilation 2', x: [1, 2, 7, 7], w: [2, 2, 3, 3], params: conv(1, 2, 2), bias: true },
    { name: 'dilation [2,1], stride [1,2], 2x3 kernel', x: [2, 2, 6, 7], w: [3, 2, 2, 3], params: conv([1, 2], [1, 1], [2, 1]),
      bias: false },
    { name: 'groups 2, 3x2 kernel, stride [2,1], padding [1,0]', x: [2, 4, 6, 5], w: [6, 2, 3, 2],
      params: conv([2, 1], [1, 0], 1, 2), bias: true },
    { name: 'depthwise, stride 2 and dilation 2', x: [1, 3, 8, 7], w: [3, 1, 3, 3], params: conv(2, 1, 2, 3), bias: false },
    { name: '1x1 projection stride 2, batch 1', x: [1, 3, 5, 5], w: [4, 3, 1, 1], params: conv(2, 0), bias: false },
    { name: '5x5 kernel wider than the input, padding 2', x: [1, 1, 4, 3], w: [2, 1, 5, 5],
      params: conv(1, 2), bias: true },
  ];

  for (const c of cases) {
    it(`backward matches finite differences: ${c.name}`, () => {
      const rng = new Rng(11);
      const x = randomArray(size(c.x), rng);
      const w = randomArray(size(c.w), rng);
      const b = c.bias ? randomArray(c.w[0], rng) : null;
      const { y, shape } = conv2dForward(x, c.x, w, c.w, b, c.params);
      expect(y.length).toBe(size(shape));
      const r = randomArray(y.length, rng);
      const grads = conv2dBackward(x, c.x, w, c.w, r, c.params, c.bias);
      expectGradient((xp) => dot(conv2dForward(xp, c.x, w, c.w, b, c.params).y, r), x, grads.dx);
      expectGradient((wp) => dot(conv2dForward(x, c.x, wp, c.w, b, c.params).y, r), w, grads.dw);
      if (b === null) {
        expect(grads.db).toBeNull();
      } else {
        expectGradient((bp) => dot(conv2dForward(x, c.x, w, c.w, bp, c.params).y, r), b, grads.db!);
      }
    });
  }

  it('computes the PyTorch output size', () => {
    expect(outputSize(32, 3, 1, 1)).toBe(32);
    expect(outputSize(32, 3, 2, 1)).toBe(16);
    expect(outputSize(32, 1, 2, 0)).toBe(16);
    expect(outputSize(7, 3, 2, 1, 2)).toBe(3);
    expect(() => conv2dForward(new Float64Array(4), [1, 1, 2, 2], new Float64Array(9), [1, 1, 3, 3], null, conv(1, 0)))
      .toThrow(RangeError);
  });

  it('sums a 2x2 window by hand', () => {
    const x = Float64Array.from({ length: 9 }, (_, i) => i + 1);
    const { y, shape } = conv2dForward(x, [1, 1, 3, 3], Float64Array.of(1, 1, 1, 1), [1, 1, 2, 2],
      Float64Array.of(0.5), conv(1, 0));
    expect(shape).toEqual([1, 1, 2, 2]);
    expect([...y]).toEqual([12.5, 16.5, 24.5, 28.5]);
  });

  it('pads with zeros and steps by the stride', () => {
    const x = Float64Array.from({ length: 9 }, (_, i) => i + 1);
    const { y, shape } = conv2dForward(x, [1, 1, 3, 3], new Float64Array(9).fill(1), [1, 1, 3, 3], null, conv(2, 1));
    expect(shape).toEqual([1, 1, 2, 2]);
    // Corner windows see 2x2 of the input: 1+2+4+5, 2+3+5+6, 4+5+7+8, 5+6+8+9.
    expect([...y]).toEqual([12, 16, 24, 28]);
  });

  it('spreads the kernel taps by the dilation, per axis', () => {
    const x = Float64Array.from({ length: 9 }, (_, i) => i + 1);
    const { y, shape } = conv2dForward(x, [1, 1, 3, 3], Float64Array.of(1, 1, 1, 1), [1, 1, 2, 2], null, conv(1, 0, [2, 1]));
    expect(shape).toEqual([1, 1, 1, 2]);
    // Rows 0 and 2, adjacent columns: 1+2+7+8 and 2+3+8+9.
    expect([...y]).toEqual([18, 22]);
  });

  it('as a 1x1 convolution is a matrix product over channels', () => {
    const rng = new Rng(3);
    const [n, c, h, w, o] = [2, 3, 4, 5, 4];
    const x = randomArray(n * c * h * w, rng);
    const weight = randomArray(o * c, rng);
    const bias = randomArray(o, rng);
    const { y } = conv2dForward(x, [n, c, h, w], weight, [o, c, 1, 1], bias, conv(1, 0));
    // Rows of pixels (NHWC) times weightᵀ, then back to NCHW.
    const pixels = Float64Array.from({ length: n * h * w * c }, (_, i) => {
      const [pixel, channel] = [Math.floor(i / c), i % c];
      const [image, spatial] = [Math.floor(pixel / (h * w)), pixel % (h * w)];
      return x[(image * c + channel) * h * w + spatial]!;
    });
    const rows = linearForward(pixels, [n * h * w, c], weight, [o, c], bias).y;
    const expected = Float64Array.from({ length: n * o * h * w }, (_, i) => {
      const [image, channel, spatial] = [Math.floor(i / (o * h * w)), Math.floor(i / (h * w)) % o, i % (h * w)];
      return rows[(image * h * w + spatial) * o + channel]!;
    });
    expectClose(y, expected);
  });

  it('with groups equals separate convolutions on the channel halves', () => {
    const rng = new Rng(5);
    const x = randomArray(1 * 4 * 5 * 5, rng);
    const w = randomArray(6 * 2 * 3 * 3, rng);
    const grouped = conv2dForward(x, [1, 4, 5, 5], w, [6, 2, 3, 3], null, conv(1, 1, 1, 2)).y;
    const half = (a: Float64Array, i: number) => a.slice(i * a.length / 2, (i + 1) * a.length / 2);
    const separate = [0, 1].map((g) => conv2dForward(half(x, g), [1, 2, 5, 5], half(w, g), [3, 2, 3, 3], null,
      conv(1, 1)).y);
    expectClose(grouped, Float64Array.from([...separate[0]!, ...separate[1]!]));
  });
});

describe('batch norm', () => {
  const shapes: Shape4[] = [[2, 3, 4, 5], [1, 2, 3, 3], [4, 1, 1, 1]];
  for (const shape of shapes) {
    it(`training backward matches finite differences for [${shape.join(', ')}]`, () => {
      const rng = new Rng(13);
      const c = shape[1];
      const x = randomArray(size(shape), rng, 2);
      const weight = randomArray(c, rng);
      const bias = randomArray(c, rng);
      const r = randomArray(x.length, rng);
      const eps = 1e-5;
      const grads = batchNorm2dTrainBackward(x, shape, weight, r, eps);
      expectGradient((xp) => dot(batchNorm2dTrainForward(xp, shape, weight, bias, eps).y, r), x, grads.dx);
      expectGradient((wp) => dot(batchNorm2dTrainForward(x, shape, wp, bias, eps).y, r), weight, grads.dweight);
      expectGradient((bp) => dot(batchNorm2dTrainForward(x, shape, weight, bp, eps).y, r), bias, grads.dbias);
    });
  }

  it('the fused tails relu(bn(x) + residual): backward matches finite differences', () => {
    const rng = new Rng(19);
    const shape: Shape4 = [2, 3, 3, 2];
    const x = randomArray(size(shape), rng, 2);
    const weight = randomArray(3, rng);
    const bias = randomArray(3, rng);
    const z = randomArray(x.length, rng);
    const r = randomArray(x.length, rng);
    // Kept off the ReLU's kink, where the function is not differentiable.
    const pre = batchNorm2dTailForward(x, shape, weight, bias, 1e-5, { residual: z, relu: false }).y;
    const zAway: Float64Array = z.map((v, i) => (Math.abs(pre[i]!) < 0.05 ? v + 0.1 * Math.sign(pre[i]!) : v));
    for (const tail of [{ residual: zAway, relu: true }, { residual: zAway, relu: false }, { residual: null, relu: true }]) {
      const g = batchNorm2dTailBackward(x, shape, weight, bias, r, 1e-5, tail);
      const L = (xp: Float64Array, wp = weight, bp = bias, zp: Float64Array | null = tail.residual) =>
        dot(batchNorm2dTailForward(xp, shape, wp, bp, 1e-5, { residual: zp, relu: tail.relu }).y, r);
      expectGradient((xp) => L(xp), x, g.dx);
      expectGradient((wp) => L(x, wp), weight, g.dweight);
      expectGradient((bp) => L(x, weight, bp), bias, g.dbias);
      if (tail.residual) expectGradient((zp) => L(x, weight, bias, zp), tail.residual, g.dresidual!);
      else expect(g.dresidual).toBeNull();
    }
  });

  it('normalizes each channel to zero mean and unit variance before the affine map', () => {
    const rng = new Rng(17);
    const shape: Shape4 = [3, 2, 4, 4];
    const x = randomArray(size(shape), rng, 3).map((v, i) => v + (Math.floor(i / 16) % 2) * 10);
    const { y, mean, var: variance } = batchNorm2dTrainForward(x, shape, Float64Array.of(1, 1), Float64Array.of(0, 0), 0);
    expect(mean[1]! - mean[0]!).toBeGreaterThan(5);
    const stats = batchNorm2dTrainForward(y, shape, Float64Array.of(1, 1), Float64Array.of(0, 0), 0);
    expectClose(stats.mean, [0, 0], 1e-12);
    expectClose(stats.var, [1, 1], 1e-12);
    // Eval mode with the batch's own statistics reproduces training mode.
    expectClose(batchNorm2dEval(x, shape, Float64Array.of(1, 1), Float64Array.of(0, 0), mean, variance, 0), y);
  });

  it('applies weight and bias per channel in eval mode', () => {
    const y = batchNorm2dEval(Float64Array.of(3, 3, 5, 5), [1, 2, 1, 2], Float64Array.of(2, -1), Float64Array.of(1, 0.5),
      Float64Array.of(1, 1), Float64Array.of(4, 16), 0);
    expect([...y]).toEqual([3, 3, -0.5, -0.5]);
  });

  it('updates running statistics with the unbiased variance', () => {
    const { runningMean, runningVar } = runningStatsUpdate(Float64Array.of(0, 1), Float64Array.of(1, 1),
      Float64Array.of(2, 3), Float64Array.of(3, 6), 4, 0.1);
    expectClose(runningMean, [0.2, 1.2]);
    // Unbiased: 3·4/3 = 4 and 6·4/3 = 8.
    expectClose(runningVar, [0.9 + 0.4, 0.9 + 0.8]);
  });
});

describe('relu and residual add', () => {
  it('relu backward matches finite differences and masks by x > 0', () => {
    const rng = new Rng(19);
    const x = awayFromZero(randomArray(40, rng));
    const r = randomArray(40, rng);
    const dx = reluBackward(x, r);
    expectGradient((xp) => dot(relu(xp), r), x, dx);
    expect([...relu(Float64Array.of(-1, 0, 2))]).toEqual([0, 0, 2]);
    expect([...reluBackward(Float64Array.of(-1, 0, 2), Float64Array.of(5, 5, 5))]).toEqual([0, 0, 5]);
  });

  it('addRelu is relu(a + b) and sends the masked gradient to both inputs', () => {
    const rng = new Rng(23);
    const a = randomArray(40, rng);
    const sum = awayFromZero(randomArray(40, rng));
    const b = sum.map((s, i) => s - a[i]!);
    const r = randomArray(40, rng);
    expectClose(addRelu(a, b), relu(add(a, b)));
    const { da, db } = addReluBackward(a, b, r);
    expectGradient((ap) => dot(addRelu(ap, b), r), a, da);
    expectGradient((bp) => dot(addRelu(a, bp), r), b, db);
    expect([...add(Float64Array.of(1, 2), Float64Array.of(3, -4))]).toEqual([4, -2]);
  });
});

describe('pooling', () => {
  const pool = (k: number, s: number, p: number): Pool2dParams => ({ kernel: [k, k], stride: [s, s], padding: [p, p] });
  const cases: { name: string; shape: Shape4; params: Pool2dParams }[] = [
    { name: '2x2 stride 2', shape: [2, 2, 4, 6], params: pool(2, 2, 0) },
    { name: '3x3 stride 2 padding 1, odd size', shape: [1, 3, 7, 5], params: pool(3, 2, 1) },
    { name: 'overlapping 3x3 stride 1 padding 1', shape: [2, 1, 4, 4], params: pool(3, 1, 1) },
    { name: '3x2 kernel, stride [1,2], padding [1,0]', shape: [1, 2, 5, 6], params: { kernel: [3, 2], stride: [1, 2], padding: [1, 0] } },
  ];

  for (const c of cases) {
    it(`max pool backward matches finite differences: ${c.name}`, () => {
      const rng = new Rng(29);
      // Distinct values 0.05 apart in random order: every window has one clear maximum, far from a tie.
      const ranks = randomArray(size(c.shape), rng);
      const order = [...ranks.keys()].sort((i, j) => ranks[i]! - ranks[j]!);
      const x = new Float64Array(ranks.length);
      order.forEach((xi, rank) => { x[xi] = (rank - ranks.length / 2) * 0.05; });
      const { y, shape } = maxPool2dForward(x, c.shape, c.params);
      const r = randomArray(size(shape), rng);
      expectGradient((xp) => dot(maxPool2dForward(xp, c.shape, c.params).y, r), x, maxPool2dBackward(x, c.shape, r, c.params));
      expect(y.length).toBe(r.length);
    });

    it(`avg pool backward matches finite differences: ${c.name}`, () => {
      const rng = new Rng(31);
      const x = randomArray(size(c.shape), rng);
      const { shape } = avgPool2dForward(x, c.shape, c.params);
      const r = randomArray(size(shape), rng);
      expectGradient((xp) => dot(avgPool2dForward(xp, c.shape, c.params).y, r), x, avgPool2dBackward(c.shape, r, c.params));
    });
  }

  it('max pool treats padding as -inf, not 0', () => {
    const x = Float64Array.of(-1, -2, -3, -4);
    const { y, shape } = maxPool2dForward(x, [1, 1, 2, 2], pool(2, 1, 1));
    expect(shape).toEqual([1, 1, 3, 3]);
    expect([...y]).toEqual([-1, -1, -2, -1, -1, -2, -3, -3, -4]);
  });

  it('applies per-axis padding to the right axis', () => {
    const x = Float64Array.of(1, 2, 3, 4, 5, 6);
    const { y, shape } = maxPool2dForward(x, [1, 1, 2, 3], { kernel: [2, 2], stride: [1, 1], padding: [1, 0] });
    expect(shape).toEqual([1, 1, 3, 2]);
    expect([...y]).toEqual([2, 3, 5, 6, 5, 6]);
  });

  it('max pool sends a tie to the first maximum in row-major window order', () => {
    const x = Float64Array.of(1, 5, 5, 5);
    const dx = maxPool2dBackward(x, [1, 1, 2, 2], Float64Array.of(1), pool(2, 2, 0));
    expect([...dx]).toEqual([0, 1, 0, 0]);
    // Overlapping padded windows over a constant: each picks its first in-bounds element (as PyTorch does).
    const constant = maxPool2dBackward(new Float64Array(9).fill(3), [1, 1, 3, 3], new Float64Array(9).fill(1), pool(3, 1, 1));
    expect([...constant]).toEqual([4, 2, 0, 2, 1, 0, 0, 0, 0]);
  });

  it('max pool propagates NaN like PyTorch', () => {
    const { y } = maxPool2dForward(Float64Array.of(1, NaN, 3, 2), [1, 1, 2, 2], pool(2, 2, 0));
    expect(Number.isNaN(y[0])).toBe(true);
  });

  it('avg pool of a constant is constant, with padding counted in the divisor', () => {
    const x = new Float64Array(16).fill(3);
    expect([...avgPool2dForward(x, [1, 1, 4, 4], pool(2, 2, 0)).y]).toEqual([3, 3, 3, 3]);
    const padded = avgPool2dForward(x, [1, 1, 4, 4], pool(3, 2, 1));
    expect(padded.shape).toEqual([1, 1, 2, 2]);
    // The top-left window covers 2x2 real values out of 9; the others 2x3, 3x2, 3x3.
    expectClose(padded.y, [3 * 4 / 9, 3 * 6 / 9, 3 * 6 / 9, 3]);
  });

  it('rejects padding above half the kernel', () => {
    expect(() => maxPool2dForward(new Float64Array(16), [1, 1, 4, 4], pool(2, 1, 2))).toThrow(RangeError);
  });

  it('global average pool is the plane mean, and its backward matches finite differences', () => {
    const rng = new Rng(37);
    const shape: Shape4 = [2, 3, 3, 5];
    const x = randomArray(size(shape), rng);
    const { y, shape: outShape } = globalAvgPoolForward(x, shape);
    expect(outShape).toEqual([2, 3, 1, 1]);
    expectClose(y, avgPool2dForward(x, shape, { kernel: [3, 5], stride: [1, 1], padding: [0, 0] }).y);
    const r = randomArray(y.length, rng);
    expectGradient((xp) => dot(globalAvgPoolForward(xp, shape).y, r), x, globalAvgPoolBackward(shape, r));
  });

  it('flatten keeps the values and merges C, H, W', () => {
    const x = Float64Array.of(1, 2, 3, 4, 5, 6, 7, 8);
    const { y, shape } = flatten(x, [2, 2, 2, 1]);
    expect(shape).toEqual([2, 4]);
    expect(y).toEqual(x);
    expect(y).not.toBe(x);
  });
});

describe('linear', () => {
  for (const withBias of [true, false]) {
    it(`backward matches finite differences (bias: ${withBias})`, () => {
      const rng = new Rng(41);
      const xShape: Shape2 = [3, 5];
      const wShape: Shape2 = [4, 5];
      const x = randomArray(size(xShape), rng);
      const w = randomArray(size(wShape), rng);
      const b = withBias ? randomArray(4, rng) : null;
      const r = randomArray(3 * 4, rng);
      const grads = linearBackward(x, xShape, w, wShape, r, withBias);
      expectGradient((xp) => dot(linearForward(xp, xShape, w, wShape, b).y, r), x, grads.dx);
      expectGradient((wp) => dot(linearForward(x, xShape, wp, wShape, b).y, r), w, grads.dw);
      if (b === null) {
        expect(grads.db).toBeNull();
      } else {
        expectGradient((bp) => dot(linearForward(x, xShape, w, wShape, bp).y, r), b, grads.db!);
      }
    });
  }

  it('computes x·wᵀ + b by hand', () => {
    const { y, shape } = linearForward(Float64Array.of(1, 2), [1, 2], Float64Array.of(1, 0, 3, -1), [2, 2],
      Float64Array.of(10, 20));
    expect(shape).toEqual([1, 2]);
    expect([...y]).toEqual([11, 21]);
  });
});

describe('softmax cross-entropy', () => {
  for (const smoothing of [0, 0.1]) {
    it(`gradient matches finite differences (label smoothing ${smoothing})`, () => {
      const rng = new Rng(43);
      const shape: Shape2 = [4, 5];
      const logits = randomArray(20, rng, 3);
      const labels = Int32Array.of(0, 4, 2, 2);
      const { dlogits } = softmaxCrossEntropy(logits, shape, labels, smoothing);
      expectGradient((lp) => softmaxCrossEntropy(lp, shape, labels, smoothing).loss, logits, dlogits);
      for (let i = 0; i < 4; i++) {
        expect(dlogits.subarray(i * 5, i * 5 + 5).reduce((a, b) => a + b)).toBeCloseTo(0, 14);
      }
    });
  }

  it('is log K for equal logits, and matches the smoothed formula by hand', () => {
    const k = 10;
    expect(softmaxCrossEntropy(new Float64Array(2 * k).fill(7), [2, k], Int32Array.of(3, 9)).loss).toBeCloseTo(Math.log(k), 14);
    // Logits [0, ln 3]: softmax [1/4, 3/4]; label 0 with ε = 0.2 targets q = [0.9, 0.1].
    const { loss } = softmaxCrossEntropy(Float64Array.of(0, Math.log(3)), [1, 2], Int32Array.of(0), 0.2);
    expect(loss).toBeCloseTo(-(0.9 * Math.log(0.25) + 0.1 * Math.log(0.75)), 14);
  });

  it('stays finite for large logits', () => {
    const { loss, dlogits } = softmaxCrossEntropy(Float64Array.of(1000, -1000), [1, 2], Int32Array.of(1));
    expect(loss).toBeCloseTo(2000, 10);
    expect([...dlogits]).toEqual([1, -1]);
  });
});

describe('sgd', () => {
  const p0 = [Float64Array.of(1, -2), Float64Array.of(0.5)];
  const grads = [
    [Float64Array.of(0.1, 0.2), Float64Array.of(-1)],
    [Float64Array.of(0.3, -0.1), Float64Array.of(2)],
    [Float64Array.of(-0.2, 0.4), Float64Array.of(0.5)],
  ];

  it('without momentum is p -= lr·(g + wd·p)', () => {
    const { params, momentumBuffers } = sgdReference([Float64Array.of(2)], [[Float64Array.of(1)]],
      { lr: 0.1, momentum: 0, weightDecay: 0.5, nesterov: false });
    expectClose(params[0]!, [2 - 0.1 * (1 + 0.5 * 2)]);
    expect(momentumBuffers).toBeNull();
  });

  it('follows torch.optim.SGD by hand for two steps of one scalar', () => {
    const opts = { lr: 0.1, momentum: 0.9, weightDecay: 0.01, nesterov: false };
    const { params, momentumBuffers } = sgdReference([Float64Array.of(1)], [[Float64Array.of(1)], [Float64Array.of(2)]], opts);
    // Step 1: d = 1 + 0.01 = 1.01, buf = 1.01, p = 1 - 0.101 = 0.899.
    // Step 2: d = 2 + 0.00899 = 2.00899, buf = 0.909 + 2.00899 = 2.91799, p = 0.899 - 0.291799.
    expectClose(momentumBuffers![0]!, [2.91799]);
    expectClose(params[0]!, [0.899 - 0.291799]);

    const nesterov = sgdReference([Float64Array.of(1)], [[Float64Array.of(1)], [Float64Array.of(2)]], { ...opts, nesterov: true });
    // Step 1: p = 1 - 0.1·(1.01 + 0.9·1.01) = 0.8081. Step 2: d = 2.008081, buf = 0.909 + 2.008081 = 2.917081.
    expectClose(nesterov.momentumBuffers![0]!, [2.917081]);
    expectClose(nesterov.params[0]!, [0.8081 - 0.1 * (2.008081 + 0.9 * 2.917081)]);
  });

  it('updates every parameter independently and leaves its inputs alone', () => {
    const opts = { lr: 0.05, momentum: 0.9, weightDecay: 1e-4, nesterov: false };
    const together = sgdReference(p0, grads, opts);
    const alone = sgdReference([p0[1]!], grads.map((step) => [step[1]!]), opts);
    expectClose(together.params[1]!, alone.params[0]!);
    expect([...p0[0]!]).toEqual([1, -2]);
    expect(() => sgdReference(p0, [[grads[0]![0]!]], opts)).toThrow(RangeError);
  });
});
