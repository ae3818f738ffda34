/**
 * Conformance of batch norm's fused tails, relu(bn(x)), relu(bn(x) + residual) and bn(x) +
 * residual, on every available backend, against the float64 composition of the reference ops
 * (test/reference/ops64.ts: batchNorm2dTailForward / Backward, checked there against finite
 * differences). Inputs come plain and through a convolution, in layouts whose channel blocks are
 * padded (C = 20 in blocks of 16), of several statistics chunks (a spatial size beyond one
 * chunk), and with a mean far from zero, where a one-pass variance would cancel. Tolerance as
 * in ops.test.ts: relative error in the max norm ≤ 1e-4.
 */
import { describe, expect, test } from 'vitest';
import { type Tensor, models, nn, noGrad, ops, profile, sync, tensor, tidy } from '../lib/index.js';
import * as ref from './reference/ops64.js';
import { type Shape4 } from './reference/ops64.js';
import { Rng, backendCases, random, relError, values } from './helpers.js';

const TOL = 1e-4;

function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string, tol = TOL): void {
  const e = relError(actual, expected);
  expect(e, `${what}: relative error ${e.toExponential(2)}`).toBeLessThanOrEqual(tol);
}

const conv1x1 = (C: number) => ({ stride: [1, 1] as [number, number], padding: [0, 0] as [number, number], dilation: [1, 1] as [number, number], groups: 1, C });

type Tail = 'relu' | 'residual+relu' | 'residual';

describe.each(backendCases)('$name backend', ({ name: backend, available }) => {
  describe.skipIf(!available)('batchNorm2d with a fused tail', () => {
    const rng = new Rng(4321);

    /**
     * x (and the residual) through a 1x1 convolution when `fromConv`: the values the reference
     * starts from, the tensors, and the leaf whose gradient checks dx through the convolution.
     */
    function source(shape: Shape4, fromConv: boolean, offset = 0) {
      const C = shape[1];
      const leaf = random(rng, shape, backend, { requiresGrad: true });
      if (offset !== 0) {
        const shifted = leaf.v.map((v) => v * 0.01 + offset);
        leaf.t.dispose();
        const t = tensor(Float32Array.from(shifted), shape, { backend, requiresGrad: true });
        return { t, v: Float64Array.from(t.dataSync()), leaf: t, leafV: Float64Array.from(t.dataSync()), w: null };
      }
      if (!fromConv) return { t: leaf.t, v: leaf.v, leaf: leaf.t, leafV: leaf.v, w: null };
      const w = random(rng, [C, C, 1, 1], backend, { scale: 0.7 });
      const t = ops.conv2d(leaf.t, w.t);
      const v = ref.conv2dForward(leaf.v, shape, w.v, [C, C, 1, 1], null, conv1x1(C)).y;
      return { t, v, leaf: leaf.t, leafV: leaf.v, w };
    }

    const cases: [Shape4, boolean, Tail][] = [
      [[4, 3, 5, 5], false, 'residual+relu'],
      [[2, 8, 6, 6], true, 'residual+relu'],
      [[2, 20, 4, 4], true, 'residual+relu'],
      [[2, 20, 4, 4], true, 'relu'],
      [[3, 16, 5, 5], true, 'residual'],
      [[1, 16, 40, 40], true, 'residual+relu'],
      [[1, 2, 130, 130], false, 'residual+relu'],
      [[2, 16, 7, 7], false, 'relu'],
    ];

    test.each(cases)('training %j (through a convolution: %s), tail %s', (shape, fromConv, tailKind) => {
      const C = shape[1];
      const x = source(shape, fromConv);
      const z = tailKind === 'relu' ? null : source(shape, fromConv && C !== 16);
      const relu = tailKind !== 'residual';
      const gamma = random(rng, [C], backend, { requiresGrad: true });
      const beta = random(rng, [C], backend, { requiresGrad: true });
      const rm = random(rng, [C], backend, { scale: 0.1 });
      const rv = tensor(Float32Array.from({ length: C }, (_, i) => 0.5 + i / C), [C], { backend });
      const rvV = values(rv);
      const y = ops.batchNorm2d(x.t, { weight: gamma.t, bias: beta.t, runningMean: rm.t, runningVar: rv, training: true, momentum: 0.2, eps: 1e-3,
        residual: z?.t ?? null, relu });
      const tail = { residual: z?.v ?? null, relu };
      const r = ref.batchNorm2dTailForward(x.v, shape, gamma.v, beta.v, 1e-3, tail);
      expect(y.dtype).toBe('float32');
      expectClose(values(y), r.y, 'y');
      const stats = ref.runningStatsUpdate(rm.v, rvV, r.mean, r.var, shape[0] * shape[2] * shape[3], 0.2);
      expectClose(values(rm.t), stats.runningMean, 'running mean');
      expectClose(values(rv), stats.runningVar, 'running var');
      const dy = random(rng, shape, backend);
      y.backward(dy.t);
      const g = ref.batchNorm2dTailBackward(x.v, shape, gamma.v, beta.v, dy.v, 1e-3, tail);
      expectClose(values(gamma.t.grad!), g.dweight, 'dweight');
      expectClose(values(beta.t.grad!), g.dbias, 'dbias');
      const throughConv = (s: typeof x, d: Float64Array) =>
        (s.w ? ref.conv2dBackward(s.leafV, shape, s.w.v, [C, C, 1, 1], d, conv1x1(C), false).dx : d);
      expectClose(values(x.leaf.grad!), throughConv(x, g.dx), 'dx');
      if (z) expectClose(values(z.leaf.grad!), throughConv(z, g.dresidual!), 'dresidual');
      for (const t of [x.t, x.leaf, x.w?.t, z?.t, z?.leaf, z?.w?.t, gamma.t, beta.t, rm.t, rv, y, dy.t]) t?.dispose();
    });

    test.each(['relu', 'residual+relu'] as Tail[])('evaluation with the running statistics, tail %s', (tailKind) => {
      const shape: Shape4 = [2, 20, 5, 3];
      const x = source(shape, true);
      const z = tailKind === 'relu' ? null : source(shape, false);
      const gamma = random(rng, [20], backend);
      const beta = random(rng, [20], backend);
      const rm = random(rng, [20], backend, { scale: 0.3 });
      const rv = tensor(Float32Array.from({ length: 20 }, (_, i) => 0.3 + i / 8), [20], { backend });
      const y = noGrad(() => tidy(() => ops.batchNorm2d(x.t, { weight: gamma.t, bias: beta.t, runningMean: rm.t, runningVar: rv, residual: z?.t ?? null, relu: true })));
      const bn = ref.batchNorm2dEval(x.v, shape, gamma.v, beta.v, rm.v, values(rv), 1e-5);
      expectClose(values(y), ref.relu(z ? ref.add(bn, z.v) : bn), 'y');
      for (const t of [x.t, x.leaf, x.w?.t, z?.t, gamma.t, beta.t, rm.t, rv, y]) t?.dispose();
    });

    // Values 1000 ± 0.01: E[x²] − E[x]² in float32 would lose every digit of the variance
    // (1e6 − 1e6 at an ulp of 0.06), and a float32 mean is off by up to half its ulp, 3e-5, which
    // is 3e-3 of the spread. The residual kernels keep the mean in double and subtract it as two
    // floats: what is left is a few float32 roundings of the normalized values, ~1e-6 of them.
    // The ReLU-only tail is oneDNN's, with oneDNN's float32 statistics: it must be exactly as
    // accurate as oneDNN's unfused batch norm.
    test('statistics of values far from zero keep their precision', () => {
      const shape: Shape4 = [4, 16, 9, 9];
      const x = source(shape, false, 1000);
      const z = source(shape, false);
      const ones = new Float64Array(16).fill(1);
      const zeros = new Float64Array(16);
      const check = (tail: { residual: typeof z | null; relu: boolean }) => tidy(() => {
        const y = ops.batchNorm2d(x.t, { training: true, residual: tail.residual?.t ?? null, relu: tail.relu });
        const r = ref.batchNorm2dTailForward(x.v, shape, ones, zeros, 1e-5, { residual: tail.residual?.v ?? null, relu: tail.relu });
        return relError(values(y), r.y);
      });
      expect(check({ residual: z, relu: true })).toBeLessThanOrEqual(1e-5);
      expect(check({ residual: z, relu: false })).toBeLessThanOrEqual(1e-5);
      const unfused = tidy(() => relError(values(ops.relu(ops.batchNorm2d(x.t, { training: true }))),
        ref.relu(ref.batchNorm2dTrainForward(x.v, shape, ones, zeros, 1e-5).y)));
      expect(check({ residual: null, relu: true })).toBeLessThanOrEqual(unfused);
      for (const t of [x.t, z.t]) t.dispose();
    });

    test('a tail with a residual of another shape or dtype is refused', () => {
      const x = random(rng, [2, 4, 3, 3], backend);
      const z = random(rng, [2, 4, 3, 2], backend);
      expect(() => ops.batchNorm2d(x.t, { training: true, residual: z.t })).toThrow(/residual of the input's shape/);
      expect(() => ops.batchNorm2d(x.t, { training: true, relu: 1 as never })).toThrow(/relu to be a boolean/);
      const zh = tidy(() => random(rng, [2, 4, 3, 3], backend).t.cast('bfloat16'));
      expect(() => ops.batchNorm2d(x.t, { training: true, residual: zh, relu: true })).toThrow(/one dtype/);
      zh.dispose();
      for (const t of [x.t, z.t]) t.dispose();
    });

    // Half precision, C % 4 == 0: on cuda, cuDNN's fused BN_ADD_ACTIVATION (NHWC); on the CPU,
    // the residual kernels. The residual puts every pre-activation at least 0.25 from the ReLU's
    // kink (z = target − bn(x), computed in float64), so both sides take the same mask: the
    // residual's gradient dy·mask is then exact on both, and the rest differs only by where each
    // rounds to the half type (u) and float32 sums in another order.
    test.each(['bfloat16', 'float16'] as const)('%s: relu(bn(x) + z) equals its composition, forward and backward', (dtype) => {
      const u = dtype === 'bfloat16' ? 2 ** -8 : 2 ** -11;
      const shape: Shape4 = [2, 8, 6, 6];
      const n = 2 * 8 * 36;
      const half = (v: ArrayLike<number>) => tensor(Float32Array.from(v), shape, { backend, dtype, requiresGrad: true });
      const x = half(random(rng, shape, backend).v);
      const gamma = random(rng, [8], backend, { requiresGrad: true });
      const beta = random(rng, [8], backend, { requiresGrad: true });
      const bn = ref.batchNorm2dTrainForward(values(x), shape, gamma.v, beta.v, 1e-5).y;
      const target = Array.from({ length: n }, (_, i) => (i % 3 === 0 ? -1 : 1) * (0.25 + ((i * 37) % 11) / 10));
      const z = half(target.map((t, i) => t - bn[i]!));
      const dy = tensor(Float32Array.from(random(rng, shape, backend).v), shape, { backend, dtype });
      const run = (fused: boolean) => tidy(() => {
        const opts = { weight: gamma.t, bias: beta.t, training: true };
        const y = fused ? ops.batchNorm2d(x, { ...opts, residual: z, relu: true }) : ops.relu(ops.add(ops.batchNorm2d(x, opts), z));
        y.backward(dy);
        const out = [y, x.grad!, z.grad!, gamma.t.grad!, beta.t.grad!].map(values);
        for (const p of [x, z, gamma.t, beta.t]) p.grad = null;
        return out;
      });
      const [yf, dxf, dzf, dgf, dbf] = run(true);
      const [yc, dxc, dzc, dgc, dbc] = run(false);
      expectClose(yf!, yc!, 'y', 4 * u);
      expect(Array.from(dzf!), 'dz').toEqual(Array.from(dzc!));
      expectClose(dxf!, dxc!, 'dx', 4 * u);
      expectClose(dgf!, dgc!, 'dweight', 1e-3);
      expectClose(dbf!, dbc!, 'dbias', 1e-3);
      for (const t of [x, z, gamma.t, beta.t, dy]) t.dispose();
    });

    test('a residual network runs its ReLUs and residual sums inside batch norm, with the same results', async () => {
      const net = models.cifarResNet({ depth: 8, shortcut: 'B', seed: 3, backend });
      const x = random(rng, [4, 3, 8, 8], backend);
      const p = await profile(async () => {
        tidy(() => ops.softmaxCrossEntropy(net.forward(x.t), [0, 1, 2, 3]).backward());
        await sync(backend);
      }, { backend });
      const calls = (op: string) => p.ops.find((o) => o.op === op)?.calls ?? 0;
      // One ReLU after the stem, two per block; every one fused, forward and backward.
      expect(calls('relu') + calls('addRelu')).toBe(0);
      expect(calls('batchNormForwardTraining')).toBe(net.namedModules().filter(([, m]) => m instanceof nn.BatchNorm2d).length);
      // Evaluation: the fused block equals the unfused ops on the same parameters.
      net.eval();
      const block = net.namedModules().find(([, m]) => m instanceof nn.BasicBlock)![1];
      const h = random(rng, [2, 16, 8, 8], backend);
      const fused = noGrad(() => tidy(() => block.forward(h.t)));
      const params = Object.fromEntries(Object.entries(block.stateDict()));
      const bn = (t: Tensor, k: string) => ops.batchNorm2d(t, { weight: params[`${k}.weight`] as Tensor, bias: params[`${k}.bias`] as Tensor,
        runningMean: params[`${k}.running_mean`] as Tensor, runningVar: params[`${k}.running_var`] as Tensor });
      const unfused = noGrad(() => tidy(() => {
        const a = ops.relu(bn(ops.conv2d(h.t, params['conv1.weight'] as Tensor, { padding: 1 }), 'bn1'));
        return ops.addRelu(bn(ops.conv2d(a, params['conv2.weight'] as Tensor, { padding: 1 }), 'bn2'), h.t);
      }));
      expectClose(values(fused), values(unfused), 'block output', 1e-6);
      for (const t of [x.t, h.t, fused, unfused]) t.dispose();
      net.dispose();
    });
  });
});
