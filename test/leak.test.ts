/**
 * A training loop scoped with tidy() leaks nothing: tensors, native buffers and bytes are flat
 * over 1,000 iterations, including the autograd graph of a step and the optimizer's state.
 */
import { expect, test } from 'vitest';
import { memory, ops, optim, randn, ones, zeros, sync, tidy } from '../lib/index.js';
import { defaultCase, defaultMemory } from './helpers.js';

test.skipIf(!defaultCase.available)('memory() is flat over 1,000 training steps', async () => {
  const x = randn([4, 3, 8, 8], { seed: 1 });
  const labels = [0, 1, 2, 1];
  const w1 = randn([8, 3, 3, 3], { seed: 2, std: 0.3, requiresGrad: true });
  const gamma = ones([8], { requiresGrad: true });
  const beta = zeros([8], { requiresGrad: true });
  const runningMean = zeros([8]);
  const runningVar = ones([8]);
  const fcW = randn([3, 8], { seed: 3, std: 0.3, requiresGrad: true });
  const fcB = zeros([3], { requiresGrad: true });
  const params = [w1, gamma, beta, fcW, fcB];
  const opt = new optim.SGD(params, { lr: 0.05, momentum: 0.9, weightDecay: 1e-4 });

  const step = () => {
    const loss = tidy(() => {
      const h = ops.relu(ops.batchNorm2d(ops.conv2d(x, w1, { padding: 1 }), { weight: gamma, bias: beta, runningMean, runningVar, training: true }));
      const pooled = ops.maxPool2d(h, { kernel: 2 });
      const y = ops.addRelu(pooled, pooled);
      const l = ops.softmaxCrossEntropy(ops.linear(ops.flatten(ops.globalAvgPool(y)), fcW, fcB), labels, { labelSmoothing: 0.1 });
      l.backward();
      return l;
    });
    opt.step();
    opt.zeroGrad();
    return loss;
  };

  let first = 0;
  let last = 0;
  let snapshot: ReturnType<typeof memory> | null = null;
  for (let i = 0; i < 1000; i++) {
    const loss = step();
    if (i === 0) first = await loss.item();
    if (i === 999) last = await loss.item();
    loss.dispose();
    if (i === 9) {
      await sync();
      snapshot = memory();
    }
  }
  await sync();
  const end = memory();
  expect(end.backends[defaultCase.name]!.tensors).toBe(snapshot!.backends[defaultCase.name]!.tensors);
  expect(end.backends[defaultCase.name]!.buffers).toBe(snapshot!.backends[defaultCase.name]!.buffers);
  expect(end.backends[defaultCase.name]!.bytes).toBe(snapshot!.backends[defaultCase.name]!.bytes);
  // And it trained: the loss went down.
  expect(last).toBeLessThan(first);
  opt.dispose();
  for (const t of [x, ...params, runningMean, runningVar]) t.dispose();
  await sync();
  console.log(`loss ${first.toFixed(4)} -> ${last.toFixed(4)}; live after cleanup:`, defaultMemory());
});

test.skipIf(!defaultCase.available)('a forward pass whose output is disposed without backward() frees its graph', async () => {
  const before = defaultMemory();
  const w = randn([4, 3, 3, 3], { requiresGrad: true });
  const x = randn([2, 3, 6, 6]);
  for (let i = 0; i < 50; i++) {
    const c = ops.conv2d(x, w, { padding: 1 });
    const y = ops.relu(c);
    const z = ops.globalAvgPool(y);
    // The graph saved c's input and y's output; disposing every tensor frees all of it.
    for (const t of [c, y, z]) t.dispose();
    tidy(() => {
      ops.maxPool2d(ops.relu(ops.conv2d(x, w)), { kernel: 2 });
    });
  }
  w.dispose();
  x.dispose();
  await sync();
  const after = defaultMemory();
  expect(after.tensors).toBe(before.tensors);
  expect(after.buffers).toBe(before.buffers);
});
