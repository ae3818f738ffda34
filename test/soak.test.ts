/**
 * Soak: 3,000 training steps in a child process (`node --expose-gc`, so that garbage
 * collection, and with it the FinalizationRegistry backstop, runs when the test says), with
 * tensors freed three ways in turn: by `tidy` scopes (a ResNet module), by `dispose()` (a
 * network written with ops), and not at all (the same network's tensors dropped for the
 * backstop to free). After warm-up, `memory()` must not change at all, and neither may the
 * process's C heap in use or (more loosely) its RSS.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { cpuCase } from './helpers.js';

const root = join(import.meta.dirname, '..');
const dir = mkdtempSync(join(tmpdir(), 'cr-soak-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const STEPS = 3000;
const WARMUP = 1500;

const SCRIPT = `
import { emptyCache, memory, models, ops, optim, randn, sync, tensor, tidy } from ${JSON.stringify(join(root, 'dist', 'index.js'))};
import { loadBackend } from ${JSON.stringify(join(root, 'dist', 'backend', 'load.js'))};
const binding = loadBackend('cpu').binding;
const [steps, warmup] = [Number(process.argv[2]), Number(process.argv[3])];
let warnings = 0;
process.on('warning', (w) => { if (w.code === 'CUDNN_RESNET_LEAK') warnings++; });

const model = models.cifarResNet({ depth: 8, numClasses: 4, inChannels: 2, seed: 1 });
const w1 = randn([8, 2, 3, 3], { seed: 2, std: 0.3, requiresGrad: true });
const fc = randn([4, 8], { seed: 3, std: 0.3, requiresGrad: true });
const optimizer = new optim.SGD([...model.parameters(), w1, fc], { lr: 0.02, momentum: 0.9, weightDecay: 1e-4 });
const labels = tensor(Int32Array.from([0, 1, 2, 3, 0, 1, 2, 3]), [8], { dtype: 'int32' });

/** A small network written with ops; returns every tensor it made, loss last. */
function opsStep(x) {
  const made = [];
  const keep = (t) => (made.push(t), t);
  const h = keep(ops.relu(keep(ops.conv2d(x, w1, { padding: 1 }))));
  const y = keep(ops.addRelu(h, keep(ops.scale(h, 0.5))));
  const loss = keep(ops.softmaxCrossEntropy(keep(ops.linear(keep(ops.flatten(keep(ops.globalAvgPool(y)))), fc)), labels));
  loss.backward();
  return made;
}

const samples = [];
let snapshot = null;
const losses = [];
let previous = null;
for (let step = 0; step < steps; step++) {
  const x = randn([8, 2, 8, 8], { seed: step });
  let loss;
  switch (step % 3) {
    case 0:
      loss = tidy(() => {
        const l = ops.softmaxCrossEntropy(model.forward(x), labels);
        l.backward();
        return l;
      });
      break;
    case 1: {
      const made = opsStep(x);
      loss = made.pop();
      for (const t of made) t.dispose();
      break;
    }
    default:
      // Nothing disposed but the loss: the FinalizationRegistry frees the rest after GC.
      loss = opsStep(x).pop();
  }
  optimizer.step();
  optimizer.zeroGrad();
  x.dispose();
  // Each loss is read one step behind, as train.fit does: the queue holds about two steps.
  if (previous) {
    const value = await previous.item();
    if (step % 100 === 1) losses.push(value);
    previous.dispose();
  }
  previous = loss;
  if (step % 100 === 99) {
    await sync();
    globalThis.gc();
    // FinalizationRegistry callbacks run as tasks after the collection.
    await new Promise((r) => setTimeout(r, 20));
    globalThis.gc();
    await new Promise((r) => setTimeout(r, 20));
    if (step + 1 >= warmup) {
      if (step + 1 === warmup) snapshot = memory().backends.cpu;
      // The caching allocator's idle blocks are returned first: how many it keeps depends on
      // how far JS ran ahead of the worker, not on leaks.
      emptyCache();
      samples.push({ step: step + 1, rss: process.memoryUsage().rss, heap: binding.heapInUse() });
    }
  }
}
await sync();
// Taken like the snapshot: with one step's loss alive.
const end = memory().backends.cpu;
previous.dispose();
process.stdout.write(JSON.stringify({ snapshot, end, samples, warnings, losses }) + '\\n');
`;

// Host memory (RSS, the C heap) is the CPU backend's: the child runs on it.
test.skipIf(!cpuCase.available)(`memory() and RSS are flat over ${STEPS} training steps, whichever way tensors are freed`, () => {
  const script = join(dir, 'soak.mjs');
  writeFileSync(script, SCRIPT);
  const r = spawnSync(process.execPath, ['--expose-gc', script, String(STEPS), String(WARMUP)], {
    encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1', CUDNN_RESNET_BACKEND: 'cpu' }, timeout: 300_000,
  });
  expect(r.status, r.stderr).toBe(0);
  const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as {
    snapshot: Record<string, number>; end: Record<string, number>; samples: { step: number; rss: number; heap: number }[]; warnings: number; losses: number[];
  };
  for (const k of ['tensors', 'buffers', 'bytes', 'pendingOps']) expect(out.end[k], k).toBe(out.snapshot[k]);
  // The backstop freed the dropped tensors and warned once, not once per tensor.
  expect(out.warnings).toBe(1);
  // The C heap in use (glibc's count of bytes malloc handed out and not taken back) is the
  // exact measure: a native leak of even a few hundred bytes per step shows. RSS also moves
  // with memory glibc keeps after free() (its arenas, fragmentation) and with V8's own spaces,
  // so its bound is looser: it catches leaks of 8 KiB a step and more (a leaked activation of
  // this model is tens of KiB). Measured with the V8 heap and the C heap flat, RSS wandered by
  // ±10 MiB over 4,000 steps, up to 1.5 KiB a step over this test's 1,500; a 2 KiB bound failed
  // on that noise alone.
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
  const first = out.samples.slice(0, 4);
  const last = out.samples.slice(-4);
  const heapGrowth = median(last.map((s) => s.heap)) - median(first.map((s) => s.heap));
  const rssGrowth = median(last.map((s) => s.rss)) - median(first.map((s) => s.rss));
  const steps = out.samples.at(-1)!.step - out.samples[0]!.step;
  const mib = (b: number) => (b / 2 ** 20).toFixed(2);
  console.log(`after warm-up (step ${WARMUP}) -> step ${STEPS}: C heap in use ${mib(first[0]!.heap)} -> ${mib(last.at(-1)!.heap)} MiB ` +
    `(${(heapGrowth / steps).toFixed(1)} B/step), RSS ${mib(first[0]!.rss)} -> ${mib(last.at(-1)!.rss)} MiB; ` +
    `memory(): ${JSON.stringify(out.end)}; loss ${out.losses[0]!.toFixed(3)} -> ${out.losses.at(-1)!.toFixed(3)}`);
  if (first[0]!.heap >= 0) expect(heapGrowth / steps).toBeLessThan(64);
  expect(rssGrowth / steps).toBeLessThan(8 * 1024);
  expect(out.losses.at(-1)!).toBeLessThan(out.losses[0]!);
});
