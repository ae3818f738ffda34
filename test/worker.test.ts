/**
 * The addon is context-aware: each worker_thread that loads it gets its own queue and state,
 * and two threads can train at once. A tensor sent to another thread is refused there with a
 * clear error, and readbacks resolve in the order they were asked for.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterAll, expect, test } from 'vitest';
import { defaultCase } from './helpers.js';

const root = join(import.meta.dirname, '..');
// Inside the package, so that the worker's `import 'cudnn-resnet'` resolves to this package.
const dir = mkdtempSync(join(root, 'test', '.worker-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const script = join(dir, 'train.mjs');
writeFileSync(script, `
import { parentPort, workerData } from 'node:worker_threads';
import { ops, optim, randn, tidy, memory } from 'cudnn-resnet';
const w = randn([4, 3, 3, 3], { seed: workerData.seed, std: 0.3, requiresGrad: true });
const fc = randn([2, 4], { seed: workerData.seed + 1, std: 0.3, requiresGrad: true });
const x = randn([8, 3, 6, 6], { seed: 7 });
const labels = [0, 1, 0, 1, 0, 1, 0, 1];
const opt = new optim.SGD([w, fc], { lr: 0.1, momentum: 0.9 });
const losses = [];
for (let i = 0; i < 30; i++) {
  const loss = tidy(() => {
    const l = ops.softmaxCrossEntropy(ops.linear(ops.flatten(ops.globalAvgPool(ops.relu(ops.conv2d(x, w, { padding: 1 })))), fc), labels);
    l.backward();
    return l;
  });
  opt.step();
  opt.zeroGrad();
  losses.push(await loss.item());
  loss.dispose();
}
parentPort.postMessage({ losses, tensors: memory().numTensors });
`);

function run(seed: number): Promise<{ losses: number[]; tensors: number }> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(script, { workerData: { seed } });
    worker.once('message', resolve);
    worker.once('error', reject);
    worker.once('exit', (code) => { if (code !== 0) reject(new Error(`worker exited with ${code}`)); });
  });
}

test.skipIf(!defaultCase.available)('two worker threads train at once, each with its own tensors', async () => {
  const [a, b] = await Promise.all([run(1), run(2)]);
  for (const r of [a, b]) {
    expect(r.losses.length).toBe(30);
    expect(r.losses.at(-1)!).toBeLessThan(r.losses[0]!);
    expect(r.tensors).toBe(3);
  }
  // Different seeds, different runs: the workers did not share state.
  expect(a.losses[0]).not.toBe(b.losses[0]);
  // The same seed again reproduces the first run exactly.
  const again = await run(1);
  expect(again.losses).toEqual(a.losses);
});

test.skipIf(!defaultCase.available)('a tensor posted to another thread arrives as a copy of its fields, which ops refuse with a clear error', async () => {
  const receiver = join(dir, 'receive.mjs');
  writeFileSync(receiver, `
import { parentPort } from 'node:worker_threads';
import { ops } from 'cudnn-resnet';
parentPort.once('message', (t) => {
  try {
    ops.relu(t);
    parentPort.postMessage('no error');
  } catch (err) {
    parentPort.postMessage(err.constructor.name + ': ' + err.message);
  }
});
`);
  const { randn } = await import('../lib/index.js');
  const t = randn([2, 3], { seed: 1 });
  const worker = new Worker(receiver);
  const reply = new Promise<string>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  worker.postMessage(t);
  const message = await reply;
  await worker.terminate();
  expect(message).toMatch(/^TypeError: relu: expected input to be a Tensor, got a copy of a Tensor \(postMessage and structuredClone copy its fields, not its memory/);
  // The original is untouched and still usable here.
  expect((await t.data()).length).toBe(6);
  t.dispose();
});

test.skipIf(!defaultCase.available)('readbacks in flight resolve in the order they were asked for', async () => {
  const { ops, randn } = await import('../lib/index.js');
  const big = randn([32, 16, 64, 64], { seed: 2 });
  const w = randn([16, 16, 3, 3], { seed: 3 });
  const order: number[] = [];
  // A slow readback (behind a large convolution) first, then small ones: each waits its turn.
  const tensors = [ops.conv2d(big, w, { padding: 1 }), ...Array.from({ length: 8 }, (_, i) => randn([4], { seed: 10 + i }))];
  await Promise.all(tensors.map((t, i) => t.data().then(() => order.push(i))));
  expect(order).toEqual(tensors.map((_, i) => i));
  for (const t of [big, w, ...tensors]) t.dispose();
});
