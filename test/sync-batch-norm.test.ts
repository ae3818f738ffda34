/**
 * Synchronized batch norm's local parts, in one process: a batch split into "ranks" of unequal
 * sizes goes through syncBatchNormStats, the combination (syncBatchNormGather, given the
 * statistics stacked as an all-gather would), the inference batch norm, and the backward's
 * reduce and element-wise parts, with the sums added as an all-reduce would; the results must be
 * those of batch norm over the whole batch (float64 references, relative error ≤ 1e-4 as in
 * ops.test.ts). The collectives between the parts, and the equivalence of 2 ranks × B/2 with
 * 1 process × B, are in distributed.test.ts.
 *
 * One channel has a mean 10⁴ times its spread: the variance of the sums' difference
 * (Σx² / n − mean²) keeps no correct digit there in float32, the two passes and Chan's
 * combination keep all of them.
 */
import { describe, expect, test } from 'vitest';
import { models, nn, ops, randn, tidy } from '../lib/index.js';
import type { NativeBuffer } from '../lib/backend/binding.js';
import { bindingOf } from '../lib/backend/load.js';
import * as ref from './reference/ops64.js';
import type { Shape4 } from './reference/ops64.js';
import { Rng, relError } from './helpers.js';

const b = bindingOf('cpu');
const TOL = 1e-4;

function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  const e = relError(actual, expected);
  expect(e, `${what}: relative error ${e.toExponential(2)}`).toBeLessThanOrEqual(TOL);
}

const read = (h: NativeBuffer) => Float64Array.from(b.downloadSync(h) as Float32Array);

/** Random values of `shape`, channel c offset by offsets[c]. */
function activations(rng: Rng, shape: Shape4, offsets: number[]): Float32Array {
  const hw = shape[2] * shape[3];
  return Float32Array.from({ length: shape[0] * shape[1] * hw }, (_, i) => offsets[Math.floor(i / hw) % shape[1]]! + rng.normal());
}

describe('synchronized batch norm, local parts (cpu)', () => {
  test.each([
    ['plain NCHW', [3, 2], 5, 4, 3, false],
    ['blocked, from a convolution', [2, 1, 3], 20, 5, 5, true],
  ] as [string, number[], number, number, number, boolean][])('%s: ranks of %j images reproduce batch norm over the whole batch', (_, sizes, C, H, W, fromConv) => {
    const rng = new Rng(42 + C);
    const eps = 1e-3;
    const momentum = 0.2;
    // Channel 1 has mean 1000 and spread 0.1 (after a 1x1 identity-like convolution too).
    const offsets = Array.from({ length: C }, (_, c) => (c === 1 ? 1000 : rng.normal()));
    const spread = Array.from({ length: C }, (_, c) => (c === 1 ? 0.1 : 1));
    const owned: NativeBuffer[] = [];
    const keep = <T extends NativeBuffer>(h: T): T => (owned.push(h), h);
    const xs = sizes.map((n) => {
      const shape: Shape4 = [n, C, H, W];
      const v = activations(rng, shape, offsets).map((x, i) => {
        const c = Math.floor(i / (H * W)) % C;
        return offsets[c]! + (x - offsets[c]!) * spread[c]!;
      });
      const plain = keep(b.upload(v, [...shape]));
      if (!fromConv) return plain;
      // A 1x1 convolution by the identity: same values, in the convolution's blocked layout.
      const eye = Float32Array.from({ length: C * C }, (_, i) => (i % (C + 1) === 0 ? 1 : 0));
      return keep(b.conv2dForward(plain, keep(b.upload(eye, [C, C, 1, 1])), null, [1, 1], [0, 0], [1, 1], 1));
    });
    const N = sizes.reduce((a, n) => a + n, 0);
    const shape: Shape4 = [N, C, H, W];
    const full = Float64Array.from(xs.flatMap((x) => [...read(x)]));

    const stats = xs.map((x) => keep(b.syncBatchNormStats(x)));
    const gathered = keep(b.upload(Float32Array.from(stats.flatMap((s) => [...read(s)])), [sizes.length, 3, C]));
    const rm0 = Float32Array.from({ length: C }, () => rng.normal());
    const rv0 = Float32Array.from({ length: C }, () => 1 + Math.abs(rng.normal()));
    const rm = keep(b.upload(rm0, [C]));
    const rv = keep(b.upload(rv0, [C]));
    const [mean, variance, count] = b.syncBatchNormGather(gathered, rm, rv, momentum).map(keep) as [NativeBuffer, NativeBuffer, NativeBuffer];
    const want = ref.batchStatistics(full, shape);
    expectClose(read(mean), want.mean, 'mean');
    expectClose(read(variance), want.var, 'variance');
    expect([...read(count)]).toEqual(Array(C).fill(N * H * W));
    const running = ref.runningStatsUpdate(Float64Array.from(rm0), Float64Array.from(rv0), want.mean, want.var, N * H * W, momentum);
    expectClose(read(rm), running.runningMean, 'running mean');
    expectClose(read(rv), running.runningVar, 'running variance');

    const gamma = Float64Array.from({ length: C }, () => rng.normal());
    const beta = Float64Array.from({ length: C }, () => rng.normal());
    const g = keep(b.upload(Float32Array.from(gamma), [C]));
    const be = keep(b.upload(Float32Array.from(beta), [C]));
    const ys = xs.map((x) => keep(b.batchNormForwardInference(x, g, be, mean, variance, eps, null, false)));
    const forward = ref.batchNorm2dTrainForward(full, shape, gamma, beta, eps);
    expectClose(Float64Array.from(ys.flatMap((y) => [...read(y)])), forward.y, 'y');

    const dys = sizes.map((n) => keep(b.upload(activations(rng, [n, C, H, W], Array(C).fill(0)), [n, C, H, W])));
    const sums = xs.map((x, r) => b.syncBatchNormBackwardReduce(x, dys[r]!, mean, variance, eps).map(keep) as [NativeBuffer, NativeBuffer]);
    const total = (k: 0 | 1) => Float64Array.from({ length: C }, (_, c) => sums.reduce((a, s) => a + read(s[k])[c]!, 0));
    const [sumDy, sumDyXhat] = [total(0), total(1)];
    const dyFull = Float64Array.from(dys.flatMap((d) => [...read(d)]));
    const backward = ref.batchNorm2dTrainBackward(full, shape, gamma, dyFull, eps);
    expectClose(sumDy, backward.dbias, 'Σ dy (the bias gradient)');
    expectClose(sumDyXhat, backward.dweight, 'Σ dy·x̂ (the weight gradient)');
    const totDy = keep(b.upload(Float32Array.from(sumDy), [C]));
    const totDyXhat = keep(b.upload(Float32Array.from(sumDyXhat), [C]));
    const dxs = xs.map((x, r) => keep(b.syncBatchNormBackwardElemt(x, dys[r]!, mean, variance, g, totDy, totDyXhat, count, eps)));
    expectClose(Float64Array.from(dxs.flatMap((d) => [...read(d)])), backward.dx, 'dx');
    // dx in the blocked layout feeds a convolution: its padding channels must be zeros (the
    // test allocator fills fresh memory with NaN, which a convolution would spread).
    const w = Float32Array.from({ length: 3 * C }, () => rng.normal());
    const wb = keep(b.upload(w, [3, C, 1, 1]));
    for (const dx of dxs) {
      const conv = read(keep(b.conv2dForward(dx, wb, null, [1, 1], [0, 0], [1, 1], 1)));
      const dims = b.shapeOf(dx) as unknown as Shape4;
      expectClose(conv, ref.conv2dForward(read(dx), dims, Float64Array.from(w), [3, C, 1, 1], null, { stride: [1, 1], padding: [0, 0], dilation: [1, 1], groups: 1 }).y, 'convolution of dx');
    }
    for (const h of owned) b.release(h);
  });

  test('arguments are checked before anything is queued', () => {
    const x = b.fill([2, 3, 4, 4], 1, 'float32');
    const v3 = b.fill([3], 1, 'float32');
    const v4 = b.fill([4], 1, 'float32');
    expect(() => b.syncBatchNormStats(v3)).toThrow(/syncBatchNormStats: expected a 4-D input \(input \[3\]\)/);
    const half = b.fill([2, 3, 4, 4], 1, 'bfloat16');
    expect(() => b.syncBatchNormStats(half)).toThrow(/syncBatchNormStats: expected a float32 input, got bfloat16 \(input \[2, 3, 4, 4\]\)/);
    expect(() => b.syncBatchNormGather(x, null, null, 0.1)).toThrow(/expected float32 gathered statistics \[W, 3, C\]/);
    const gathered = b.fill([2, 3, 3], 1, 'float32');
    expect(() => b.syncBatchNormGather(gathered, v4, null, 0.1)).toThrow(/running mean must be float32 \[3\], got float32 \[4\]/);
    expect(() => b.syncBatchNormGather(gathered, null, null, 2)).toThrow(/momentum must be in \[0, 1\]/);
    expect(() => b.syncBatchNormBackwardReduce(x, v3, v3, v3, 1e-5)).toThrow(/syncBatchNormBackwardReduce: gradient of shape \[3\] does not match the input/);
    expect(() => b.syncBatchNormBackwardReduce(x, x, v4, v3, 1e-5)).toThrow(/mean must be float32 \[3\]/);
    expect(() => b.syncBatchNormBackwardElemt(x, x, v3, v3, v3, v3, v3, v3, 0)).toThrow(/eps must be positive/);
    expect(() => b.syncBatchNormBackwardElemt(x, x, v3, v3, v3, v3, v3, v4, 1e-5)).toThrow(/count must be float32 \[3\]/);
    for (const h of [x, half, v3, v4, gathered]) b.release(h);
  });

  test('convertSyncBatchNorm switches every BatchNorm2d in place; without a process group the layers compute as before', async () => {
    const plain = models.cifarResNet({ depth: 8, seed: 5, numClasses: 4 });
    const synced = models.cifarResNet({ depth: 8, seed: 5, numClasses: 4 });
    expect(nn.convertSyncBatchNorm(synced)).toBe(synced);
    const bns = synced.namedModules().filter(([, m]) => m instanceof nn.BatchNorm2d);
    expect(bns.length).toBeGreaterThan(3);
    expect(bns.every(([, m]) => (m as nn.BatchNorm2d).synchronized)).toBe(true);
    expect(plain.namedModules().some(([, m]) => m instanceof nn.BatchNorm2d && m.synchronized)).toBe(false);
    expect(Object.keys(synced.stateDict())).toEqual(Object.keys(plain.stateDict()));
    const x = randn([4, 3, 8, 8], { seed: 6 });
    const [a, c] = [plain, synced].map((m) => tidy(() => ops.softmaxCrossEntropy(m.forward(x), [0, 1, 2, 3])));
    expect(await c!.item()).toBe(await a!.item());
    expect(() => nn.convertSyncBatchNorm({} as never)).toThrow(TypeError);
    for (const t of [x, a!, c!]) t.dispose();
    plain.dispose();
    synced.dispose();
  });
});
