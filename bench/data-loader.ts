/**
 * How much of the DataLoader's preparation overlaps with training: CIFAR-shaped batches (128 ×
 * 3×32×32, pad-4 crop, flip, normalize) feeding ResNet-20 training steps, with and without
 * prefetching.
 *
 *   node --import tsx bench/data-loader.ts [--threads 2] [--batches 20]
 *
 * Prints, per mode, the time per step, the loader's preparation time per batch and the time the
 * loop waited for a batch. With prefetching, the wait should be near zero: the batch is prepared
 * while the backend's worker runs the previous step.
 */
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({ options: { threads: { type: 'string', default: '2' }, batches: { type: 'string', default: '20' } } });
// OpenMP reads its thread count when the addon loads: set it before importing the library.
process.env.OMP_NUM_THREADS = args.threads;
const batches = Number(args.batches);

const { data, models, ops, optim, tidy } = await import('../lib/index.js');

const BATCH = 128;
const n = BATCH * batches;
const images = new Uint8Array(n * 3 * 32 * 32);
for (let i = 0; i < images.length; i++) images[i] = (i * 2654435761) >>> 24;
const labels = Int32Array.from({ length: n }, (_, i) => i % 10);
const dataset = { images, labels, n, channels: 3, height: 32, width: 32, classes: 10 };

const net = models.cifarResNet({ depth: 20, shortcut: 'B', seed: 1, backend: 'cpu' });
const opt = new optim.SGD(net.parameters(), { lr: 0.05, momentum: 0.9, weightDecay: 5e-4 });

async function run(prefetch: boolean): Promise<{ stepMs: number; prepareMs: number; waitMs: number; uploadMs: number }> {
  const loader = new data.DataLoader(dataset, {
    batchSize: BATCH, seed: 1, prefetch, augment: { padCrop: 4, flip: true },
    normalize: { mean: [0.4914, 0.4822, 0.4465], std: [0.247, 0.2435, 0.2616] },
  });
  const t0 = performance.now();
  for await (const { x, y } of loader) {
    const loss = tidy(() => {
      const l = ops.softmaxCrossEntropy(net.forward(x), y);
      l.backward();
      return l;
    });
    opt.step();
    opt.zeroGrad();
    await loss.item();
    for (const t of [loss, x, y]) t.dispose();
  }
  const s = loader.stats;
  return { stepMs: (performance.now() - t0) / s.batches, prepareMs: s.prepareMs / s.batches, waitMs: s.waitMs / s.batches, uploadMs: s.uploadMs / s.batches };
}

await run(true); // warm-up: primitive creation, allocator
for (const prefetch of [true, false, true, false]) {
  const r = await run(prefetch);
  console.log(`prefetch ${String(prefetch).padEnd(5)}  step ${r.stepMs.toFixed(1)} ms  prepare ${r.prepareMs.toFixed(2)} ms  waited ${r.waitMs.toFixed(2)} ms  upload ${r.uploadMs.toFixed(2)} ms  (per batch)`);
}
net.dispose();
