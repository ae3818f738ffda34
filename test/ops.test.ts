/**
 * Conformance: every op, forward and backward, against the float64 references in
 * test/reference/ops64.ts (whose gradients are themselves checked against finite differences),
 * on every available backend, on random shapes and values. Tolerance: relative error
 * (‖a − r‖∞ / ‖r‖∞) ≤ 1e-4, and 5e-3 for convolutions where TF32 is on (derived below). Inputs
 * also arrive through a convolution, so that the ops see the backend's blocked layouts as they do
 * in a network.
 */
import { describe, expect, test } from 'vitest';
import { type BackendName, type Tensor, ops, optim, tensor, tidy } from '../lib/index.js';
import { bindingOf } from '../lib/backend/load.js';
import * as ref from './reference/ops64.js';
import { type Shape4 } from './reference/ops64.js';
import { Rng, backendCases, random, relError, values } from './helpers.js';

const TOL = 1e-4;

// Convolutions on a backend with TF32 on (CUDA: CUDNN_RESNET_TF32=1; the test configuration turns
// it off) round each input to 11 significant bits, unit roundoff u = 2^-11 ≈ 4.9e-4: a product of
// two rounded inputs is off by up to 2u, and over a sum of K products of random sign the errors
// grow like the sum itself, about as √K, so the error relative to the output's maximum stays near
// 2u ≈ 1e-3. 5e-3 leaves room for the tails of the longer backward sums (dw sums over N·H·W).
// FFT and Winograd algorithms, which cuDNN may also pick, round differently again: the conformance
// run on a GPU logs each convolution's algorithm (CUDNN_RESNET_CONV_LOG) to explain a result near
// either tolerance.
const TF32_TOL = 5e-3;
const convTolerance = (backend: BackendName) => (bindingOf(backend).info().tf32 === true ? TF32_TOL : TOL);

function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string, tol = TOL): void {
  const e = relError(actual, expected);
  expect(e, `${what}: relative error ${e.toExponential(2)}`).toBeLessThanOrEqual(tol);
}

const product = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

describe.each(backendCases)('$name backend', ({ name: backend, available }) => {
  describe.skipIf(!available)('ops', () => {
    const rng = new Rng(1234);

    // [N, C, H, W], [O, kH, kW], stride, padding, dilation, groups, bias
    const convCases: [Shape4, [number, number, number], [number, number], [number, number], [number, number], number, boolean][] = [
      [[2, 3, 9, 9], [4, 3, 3], [1, 1], [1, 1], [1, 1], 1, false],
      [[1, 4, 7, 5], [6, 3, 3], [2, 2], [0, 0], [1, 1], 2, true],
      [[3, 8, 10, 10], [8, 3, 3], [1, 1], [2, 2], [2, 2], 1, false],
      [[2, 16, 8, 8], [32, 1, 1], [2, 2], [0, 0], [1, 1], 1, false],
      [[1, 5, 6, 7], [5, 3, 3], [1, 1], [1, 1], [1, 1], 5, true],
      [[4, 16, 16, 16], [16, 3, 3], [1, 1], [1, 1], [1, 1], 1, false],
      [[2, 3, 11, 13], [7, 5, 3], [3, 2], [2, 1], [1, 2], 1, true],
      [[1, 20, 5, 5], [12, 2, 2], [1, 2], [1, 0], [2, 1], 4, false],
    ];

    test.each(convCases)('conv2d %j w %j stride %j padding %j dilation %j groups %i bias %s', (xs, [O, kH, kW], stride, padding, dilation, groups, withBias) => {
      const wShape: Shape4 = [O, xs[1] / groups, kH, kW];
      const x = random(rng, xs, backend, { requiresGrad: true });
      const w = random(rng, wShape, backend, { requiresGrad: true, scale: 0.5 });
      const b = withBias ? random(rng, [O], backend, { requiresGrad: true }) : null;
      const params = { stride, padding, dilation, groups };
      const y = ops.conv2d(x.t, w.t, { ...params, bias: b?.t ?? null });
      const r = ref.conv2dForward(x.v, xs, w.v, wShape, b?.v ?? null, params);
      expect(y.shape).toEqual(r.shape);
      const tol = convTolerance(backend);
      expectClose(values(y), r.y, 'y', tol);
      const dy = random(rng, r.shape, backend);
      y.backward(dy.t);
      const g = ref.conv2dBackward(x.v, xs, w.v, wShape, dy.v, params, withBias);
      expectClose(values(x.t.grad!), g.dx, 'dx', tol);
      expectClose(values(w.t.grad!), g.dw, 'dw', tol);
      if (b) expectClose(values(b.t.grad!), g.db!, 'dbias');
      for (const t of [x.t, w.t, b?.t, y, dy.t]) t?.dispose();
    });

    // Runs `op` on an input that went through a 3x3 convolution (blocked layout on oneDNN),
    // returning the conv's output values so the reference can start from them.
    function throughConv(shape: Shape4): { t: Tensor; v: Float64Array; leaf: Tensor } {
      const x = random(rng, shape, backend, { requiresGrad: true });
      const w = random(rng, [shape[1], shape[1], 1, 1], backend, { scale: 0.7 });
      const y = ops.conv2d(x.t, w.t);
      const v = values(y);
      w.t.dispose();
      return { t: y, v, leaf: x.t };
    }

    test.each([
      [[4, 3, 5, 5], false],
      [[1, 16, 3, 3], true],
      [[8, 20, 4, 4], true],
      [[2, 32, 7, 1], false],
    ] as [Shape4, boolean][])('batchNorm2d training %j (input from conv: %s)', (shape, fromConv) => {
      const C = shape[1];
      const src = fromConv ? throughConv(shape) : (() => { const r = random(rng, shape, backend, { requiresGrad: true }); return { t: r.t, v: r.v, leaf: r.t }; })();
      const gamma = random(rng, [C], backend, { requiresGrad: true });
      const beta = random(rng, [C], backend, { requiresGrad: true });
      const rm = random(rng, [C], backend, { scale: 0.1 });
      const rv = tensor(Float32Array.from({ length: C }, (_, i) => 0.5 + i / C), [C], { backend });
      const rvV = values(rv);
      const y = ops.batchNorm2d(src.t, { weight: gamma.t, bias: beta.t, runningMean: rm.t, runningVar: rv, training: true, momentum: 0.2, eps: 1e-3 });
      const r = ref.batchNorm2dTrainForward(src.v, shape, gamma.v, beta.v, 1e-3);
      expectClose(values(y), r.y, 'y');
      const n = shape[0] * shape[2] * shape[3];
      const stats = ref.runningStatsUpdate(rm.v, rvV, r.mean, r.var, n, 0.2);
      expectClose(values(rm.t), stats.runningMean, 'running mean');
      expectClose(values(rv), stats.runningVar, 'running var');
      const dy = random(rng, shape, backend);
      y.backward(dy.t);
      const g = ref.batchNorm2dTrainBackward(src.v, shape, gamma.v, dy.v, 1e-3);
      expectClose(values(gamma.t.grad!), g.dweight, 'dweight');
      expectClose(values(beta.t.grad!), g.dbias, 'dbias');
      if (!fromConv) expectClose(values(src.leaf.grad!), g.dx, 'dx');
      for (const t of [src.t, src.leaf, gamma.t, beta.t, rm.t, rv, y, dy.t]) t.dispose();
    });

    test('batchNorm2d gradient reaches the input through a convolution', () => {
      const shape: Shape4 = [3, 8, 4, 4];
      const x = random(rng, shape, backend, { requiresGrad: true });
      const w = random(rng, [8, 8, 1, 1], backend, { scale: 0.5 });
      const y = ops.batchNorm2d(ops.conv2d(x.t, w.t), { training: true });
      const dy = random(rng, shape, backend);
      y.backward(dy.t);
      const conv = ref.conv2dForward(x.v, shape, w.v, [8, 8, 1, 1], null, { stride: [1, 1], padding: [0, 0], dilation: [1, 1], groups: 1 });
      const ones = new Float64Array(8).fill(1);
      const gBn = ref.batchNorm2dTrainBackward(conv.y, shape, ones, dy.v, 1e-5);
      const gConv = ref.conv2dBackward(x.v, shape, w.v, [8, 8, 1, 1], gBn.dx, { stride: [1, 1], padding: [0, 0], dilation: [1, 1], groups: 1 }, false);
      expectClose(values(x.t.grad!), gConv.dx, 'dx');
      for (const t of [x.t, w.t, y, dy.t]) t.dispose();
    });

    test('batchNorm2d evaluation uses the running statistics', () => {
      const shape: Shape4 = [2, 16, 5, 3];
      const src = throughConv(shape);
      const gamma = random(rng, [16], backend);
      const beta = random(rng, [16], backend);
      const rm = random(rng, [16], backend, { scale: 0.3 });
      const rv = tensor(Float32Array.from({ length: 16 }, (_, i) => 0.3 + i / 8), [16], { backend });
      const y = tidy(() => ops.batchNorm2d(src.t.detach(), { weight: gamma.t, bias: beta.t, runningMean: rm.t, runningVar: rv }));
      expectClose(values(y), ref.batchNorm2dEval(src.v, shape, gamma.v, beta.v, rm.v, values(rv), 1e-5), 'y');
      for (const t of [src.t, src.leaf, gamma.t, beta.t, rm.t, rv, y]) t.dispose();
    });

    test.each([[[2, 16, 5, 5]], [[3, 7]], [[1, 3, 4, 4]], [[6]]])('relu, add, addRelu on %j', (shape) => {
      const a = random(rng, shape, backend, { requiresGrad: true });
      const b = random(rng, shape, backend, { requiresGrad: true });
      const dy = random(rng, shape, backend);
      const r = ops.relu(a.t);
      expectClose(values(r), ref.relu(a.v), 'relu');
      r.backward(dy.t);
      expectClose(values(a.t.grad!), ref.reluBackward(a.v, dy.v), 'relu dx');
      a.t.grad = null;
      const s = ops.add(a.t, b.t);
      expectClose(values(s), ref.add(a.v, b.v), 'add');
      s.backward(dy.t);
      expectClose(values(a.t.grad!), dy.v, 'add da');
      expectClose(values(b.t.grad!), dy.v, 'add db');
      a.t.grad = null;
      b.t.grad = null;
      const f = ops.addRelu(a.t, b.t);
      expectClose(values(f), ref.addRelu(a.v, b.v), 'addRelu');
      f.backward(dy.t);
      const g = ref.addReluBackward(a.v, b.v, dy.v);
      expectClose(values(a.t.grad!), g.da, 'addRelu da');
      expectClose(values(b.t.grad!), g.db, 'addRelu db');
      for (const t of [a.t, b.t, dy.t, r, s, f]) t.dispose();
    });

    test('scale forward and backward', () => {
      const shape: Shape4 = [2, 16, 3, 3];
      const src = throughConv(shape);
      const y = ops.scale(src.t, -0.37);
      expectClose(values(y), src.v.map((v) => -0.37 * v), 'y');
      const x = random(rng, [5, 3], backend, { requiresGrad: true });
      const dy = random(rng, [5, 3], backend);
      const z = ops.scale(x.t, 2.5);
      z.backward(dy.t);
      expectClose(values(x.t.grad!), dy.v.map((v) => 2.5 * v), 'dx');
      for (const t of [src.t, src.leaf, y, x.t, dy.t, z]) t.dispose();
    });

    test('add and addRelu of a blocked and a plain tensor', () => {
      const shape: Shape4 = [2, 16, 4, 4];
      const src = throughConv(shape);
      const p = random(rng, shape, backend);
      const s = ops.add(src.t, p.t);
      const f = ops.addRelu(p.t, src.t);
      expectClose(values(s), ref.add(src.v, p.v), 'add');
      expectClose(values(f), ref.addRelu(p.v, src.v), 'addRelu');
      for (const t of [src.t, src.leaf, p.t, s, f]) t.dispose();
    });

    const poolCases: [Shape4, [number, number], [number, number], [number, number]][] = [
      [[2, 3, 8, 8], [2, 2], [2, 2], [0, 0]],
      [[1, 16, 9, 7], [3, 3], [2, 2], [1, 1]],
      [[3, 5, 6, 5], [3, 2], [1, 2], [1, 0]],
      [[2, 20, 7, 7], [3, 3], [1, 1], [1, 1]],
    ];

    test.each(poolCases)('maxPool2d and avgPool2d %j kernel %j stride %j padding %j', (shape, kernel, stride, padding) => {
      for (const fromConv of [false, true]) {
        const src = fromConv ? throughConv(shape) : (() => { const r = random(rng, shape, backend, { requiresGrad: true }); return { t: r.t, v: r.v, leaf: r.t }; })();
        const params = { kernel, stride, padding };
        const m = ops.maxPool2d(src.t, params);
        const rm = ref.maxPool2dForward(src.v, shape, params);
        expect(m.shape).toEqual(rm.shape);
        expectClose(values(m), rm.y, 'max y');
        const a = ops.avgPool2d(src.t, params);
        const ra = ref.avgPool2dForward(src.v, shape, params);
        expectClose(values(a), ra.y, 'avg y');
        if (!fromConv) {
          const dy = random(rng, rm.shape, backend);
          m.backward(dy.t);
          expectClose(values(src.leaf.grad!), ref.maxPool2dBackward(src.v, shape, dy.v, params), 'max dx');
          src.leaf.grad = null;
          a.backward(dy.t);
          expectClose(values(src.leaf.grad!), ref.avgPool2dBackward(shape, dy.v, params), 'avg dx');
          dy.t.dispose();
        }
        for (const t of [src.t, src.leaf, m, a]) t.dispose();
      }
    });

    // Post-ReLU activations (the ResNet stem's max pooling) are full of exact ties. PyTorch sends
    // each output's gradient to one input, the first maximum of the window; a library that split
    // it or gave it to every tied input would differ here.
    test.each([
      [[2, 3, 7, 7], [3, 3], [2, 2], [1, 1]],
      [[1, 4, 6, 6], [2, 2], [2, 2], [0, 0]],
    ] as [Shape4, [number, number], [number, number], [number, number]][])('maxPool2d backward with tied maxima %j kernel %j stride %j padding %j', (shape, kernel, stride, padding) => {
      const n = shape.reduce((a, b) => a * b, 1);
      const v = Float64Array.from({ length: n }, () => Math.floor(rng.uniform() * 3));
      const x = tensor(Float32Array.from(v), shape, { backend, requiresGrad: true });
      const params = { kernel, stride, padding };
      const m = ops.maxPool2d(x, params);
      const rm = ref.maxPool2dForward(v, shape, params);
      expectClose(values(m), rm.y, 'max y');
      const dy = random(rng, rm.shape, backend);
      m.backward(dy.t);
      expectClose(values(x.grad!), ref.maxPool2dBackward(v, shape, dy.v, params), 'max dx with ties');
      for (const t of [x, m, dy.t]) t.dispose();
    });

    test('globalAvgPool and flatten', () => {
      const shape: Shape4 = [3, 16, 5, 6];
      const x = random(rng, shape, backend, { requiresGrad: true });
      const g = ops.globalAvgPool(x.t);
      expect(g.shape).toEqual([3, 16, 1, 1]);
      const rg = ref.globalAvgPoolForward(x.v, shape);
      expectClose(values(g), rg.y, 'gap');
      const f = ops.flatten(g);
      expect(f.shape).toEqual([3, 16]);
      const df = random(rng, [3, 16], backend);
      f.backward(df.t);
      expectClose(values(x.t.grad!), ref.globalAvgPoolBackward(shape, df.v), 'gap dx');
      const flat = ops.flatten(x.t);
      expect(flat.shape).toEqual([3, 16 * 30]);
      expectClose(values(flat), x.v, 'flatten');
      for (const t of [x.t, g, f, df.t, flat]) t.dispose();
    });

    test.each([[5, 7, 3, true], [1, 64, 10, true], [9, 4, 6, false]] as [number, number, number, boolean][])('linear [%i, %i] -> %i (bias %s)', (N, inF, outF, withBias) => {
      const x = random(rng, [N, inF], backend, { requiresGrad: true });
      const w = random(rng, [outF, inF], backend, { requiresGrad: true });
      const b = withBias ? random(rng, [outF], backend, { requiresGrad: true }) : null;
      const y = ops.linear(x.t, w.t, b?.t);
      const r = ref.linearForward(x.v, [N, inF], w.v, [outF, inF], b?.v ?? null);
      expectClose(values(y), r.y, 'y');
      const dy = random(rng, [N, outF], backend);
      y.backward(dy.t);
      const g = ref.linearBackward(x.v, [N, inF], w.v, [outF, inF], dy.v, withBias);
      expectClose(values(x.t.grad!), g.dx, 'dx');
      expectClose(values(w.t.grad!), g.dw, 'dw');
      if (b) expectClose(values(b.t.grad!), g.db!, 'db');
      for (const t of [x.t, w.t, b?.t, y, dy.t]) t?.dispose();
    });

    test.each([[4, 10, 0], [1, 3, 0.1], [7, 5, 0.3]])('softmaxCrossEntropy [%i, %i] smoothing %f', async (N, K, eps) => {
      const logits = random(rng, [N, K], backend, { requiresGrad: true, scale: 3 });
      const labels = Int32Array.from({ length: N }, (_, i) => (i * 7 + 3) % K);
      for (const form of ['array', 'tensor'] as const) {
        const lab = form === 'array' ? Array.from(labels) : tensor(labels, [N], { backend });
        const loss = ops.softmaxCrossEntropy(logits.t, lab, { labelSmoothing: eps });
        const r = ref.softmaxCrossEntropy(logits.v, [N, K], labels, eps);
        expect(loss.shape).toEqual([]);
        expectClose([await loss.item()], [r.loss], 'loss');
        loss.backward();
        expectClose(values(logits.t.grad!), r.dlogits, 'dlogits');
        logits.t.grad = null;
        loss.dispose();
        if (typeof lab === 'object' && 'dispose' in lab) lab.dispose();
      }
      logits.t.dispose();
    });

    test.each([
      { lr: 0.1, momentum: 0, weightDecay: 0, nesterov: false },
      { lr: 0.05, momentum: 0.9, weightDecay: 1e-2, nesterov: false },
      { lr: 0.02, momentum: 0.8, weightDecay: 0, nesterov: true },
    ])('SGD %j over 4 steps', (options) => {
      const shapes = [[4, 3, 3, 3], [7], [5, 6]];
      const params = shapes.map((s) => random(rng, s, backend, { requiresGrad: true }));
      const opt = new optim.SGD(params.map((p) => p.t), options);
      const gradsPerStep: Float64Array[][] = [];
      for (let step = 0; step < 4; step++) {
        const grads = shapes.map((s) => random(rng, s, backend));
        params.forEach((p, i) => { p.t.grad = grads[i]!.t; });
        gradsPerStep.push(grads.map((g) => g.v));
        opt.step();
      }
      const r = ref.sgdReference(params.map((p) => p.v), gradsPerStep, options);
      params.forEach((p, i) => expectClose(values(p.t), r.params[i]!, `param ${i}`, 1e-5));
      opt.dispose();
      for (const p of params) p.t.dispose();
    });

    test('autograd through a residual block matches the float64 chain rule', () => {
      // x -> conv(w1) -> bn -> relu -> conv(w2) -> bn -> addRelu(·, x) -> gap -> flatten -> linear -> CE
      const xs: Shape4 = [4, 8, 6, 6];
      const C = 8;
      const p3 = { stride: [1, 1] as const, padding: [1, 1] as const, dilation: [1, 1] as const, groups: 1 };
      const x = random(rng, xs, backend, { requiresGrad: true });
      const w1 = random(rng, [C, C, 3, 3], backend, { requiresGrad: true, scale: 0.3 });
      const w2 = random(rng, [C, C, 3, 3], backend, { requiresGrad: true, scale: 0.3 });
      const g1 = random(rng, [C], backend, { requiresGrad: true });
      const b1 = random(rng, [C], backend, { requiresGrad: true });
      const g2 = random(rng, [C], backend, { requiresGrad: true });
      const b2 = random(rng, [C], backend, { requiresGrad: true });
      const fc = random(rng, [5, C], backend, { requiresGrad: true });
      const fb = random(rng, [5], backend, { requiresGrad: true });
      const labels = [0, 4, 2, 1];
      const loss = tidy(() => {
        const h1 = ops.relu(ops.batchNorm2d(ops.conv2d(x.t, w1.t, { padding: 1 }), { weight: g1.t, bias: b1.t, training: true }));
        const h2 = ops.batchNorm2d(ops.conv2d(h1, w2.t, { padding: 1 }), { weight: g2.t, bias: b2.t, training: true });
        const out = ops.addRelu(h2, x.t);
        const l = ops.softmaxCrossEntropy(ops.linear(ops.flatten(ops.globalAvgPool(out)), fc.t, fb.t), labels, { labelSmoothing: 0.1 });
        l.backward();
        return l;
      });
      // The same in float64.
      const c1 = ref.conv2dForward(x.v, xs, w1.v, [C, C, 3, 3], null, p3);
      const n1 = ref.batchNorm2dTrainForward(c1.y, xs, g1.v, b1.v, 1e-5);
      const h1 = ref.relu(n1.y);
      const c2 = ref.conv2dForward(h1, xs, w2.v, [C, C, 3, 3], null, p3);
      const n2 = ref.batchNorm2dTrainForward(c2.y, xs, g2.v, b2.v, 1e-5);
      const out = ref.addRelu(n2.y, x.v);
      const gap = ref.globalAvgPoolForward(out, xs);
      const flat = ref.flatten(gap.y, gap.shape);
      const logits = ref.linearForward(flat.y, flat.shape, fc.v, [5, C], fb.v);
      const ce = ref.softmaxCrossEntropy(logits.y, logits.shape, Int32Array.from(labels), 0.1);
      expectClose([loss.dataSync()[0]!], [ce.loss], 'loss');
      const dLin = ref.linearBackward(flat.y, flat.shape, fc.v, [5, C], ce.dlogits, true);
      const dOut = ref.globalAvgPoolBackward(xs, dLin.dx);
      const dAdd = ref.addReluBackward(n2.y, x.v, dOut);
      const dN2 = ref.batchNorm2dTrainBackward(c2.y, xs, g2.v, dAdd.da, 1e-5);
      const dC2 = ref.conv2dBackward(h1, xs, w2.v, [C, C, 3, 3], dN2.dx, p3, false);
      const dH1 = ref.reluBackward(n1.y, dC2.dx);
      const dN1 = ref.batchNorm2dTrainBackward(c1.y, xs, g1.v, dH1, 1e-5);
      const dC1 = ref.conv2dBackward(x.v, xs, w1.v, [C, C, 3, 3], dN1.dx, p3, false);
      const dx = dC1.dx.map((v, i) => v + dAdd.db[i]!);
      expectClose(values(fc.t.grad!), dLin.dw, 'fc.weight');
      expectClose(values(fb.t.grad!), dLin.db!, 'fc.bias');
      expectClose(values(g2.t.grad!), dN2.dweight, 'bn2.weight');
      expectClose(values(b2.t.grad!), dN2.dbias, 'bn2.bias');
      expectClose(values(w2.t.grad!), dC2.dw, 'conv2.weight');
      expectClose(values(g1.t.grad!), dN1.dweight, 'bn1.weight');
      expectClose(values(w1.t.grad!), dC1.dw, 'conv1.weight');
      expectClose(values(x.t.grad!), dx, 'input (both paths)');
      for (const t of [x.t, w1.t, w2.t, g1.t, b1.t, g2.t, b2.t, fc.t, fb.t, loss]) t.dispose();
    });
  });
});
