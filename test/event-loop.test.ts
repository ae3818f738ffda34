/**
 * Ops return at once and run on the backend's worker; only readback waits, and it waits
 * without blocking Node's event loop.
 */
import { expect, test } from 'vitest';
import { memory, ops, randn, tidy } from '../lib/index.js';

test('a long queue of CPU ops does not block timers', async () => {
  const x = randn([32, 16, 32, 32], { seed: 1 });
  const w = randn([16, 16, 3, 3], { seed: 2, std: 0.1 });
  const y = tidy(() => {
    let h = x;
    for (let i = 0; i < 60; i++) h = ops.relu(ops.conv2d(h, w, { padding: 1 }));
    return h;
  });
  // Everything was only enqueued: the worker is still busy with it.
  const pending = memory().backends.cpu!.pendingOps;
  expect(pending).toBeGreaterThan(0);

  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  const values = await y.data();
  clearInterval(timer);
  console.log(`${pending} ops pending after enqueue; ${ticks} timer ticks while awaiting data()`);
  expect(ticks).toBeGreaterThan(0);
  expect(values.length).toBe(32 * 16 * 32 * 32);
  expect(values.every(Number.isFinite)).toBe(true);
  x.dispose();
  w.dispose();
  y.dispose();
});
