/**
 * Ops return at once and run on the backend's worker; only readback waits, and it waits
 * without blocking Node's event loop.
 */
import { expect, test } from 'vitest';
import { type Tensor, ops, randn, tidy } from '../lib/index.js';
import { defaultCase, defaultMemory } from './helpers.js';

test.skipIf(!defaultCase.available)('a long queue of ops does not block timers', async () => {
  // Much arithmetic per byte of output, so that enqueueing (which allocates the output) is far
  // cheaper than running: on a GPU, convolutions large enough that the chain below is hundreds of
  // milliseconds of its work however fast it is.
  const gpu = defaultCase.name !== 'cpu';
  const x = randn(gpu ? [32, 64, 64, 64] : [8, 64, 16, 16], { seed: 1 });
  const w = randn([64, 64, 3, 3], { seed: 2, std: 0.05 });
  // Enqueue until the worker is well behind (how far depends on this machine's speed): the
  // calls return while the work is still queued. Each link is disposed once the next is queued,
  // which is safe while queued work still reads it, and keeps the memory of a long chain flat.
  let y: Tensor = x;
  for (let i = 0; i < 2000 && defaultMemory().pendingOps < 100; i++) {
    const h = y;
    y = tidy(() => ops.relu(ops.conv2d(h, w, { padding: 1 })));
    if (h !== x) h.dispose();
  }
  // The CPU's work waits in the queue; a GPU's worker launches ops as fast as JavaScript enqueues
  // them, and their work waits on the stream instead, where the queue does not see it.
  const pending = defaultMemory().pendingOps;
  if (!gpu) expect(pending).toBeGreaterThan(0);

  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  const values = await y.data();
  clearInterval(timer);
  console.log(`${pending} ops pending after enqueue; ${ticks} timer ticks while awaiting data()`);
  expect(ticks).toBeGreaterThan(0);
  expect(values.length).toBe(x.size);
  expect(values.every(Number.isFinite)).toBe(true);
  x.dispose();
  w.dispose();
  y.dispose();
});
