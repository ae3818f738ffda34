/**
 * profile(): the backend's worker records each op's calls and time by op name while a function
 * runs, and nothing outside it. Op names and counts are checked against a known graph; times
 * only for consistency (no thresholds: the machine is shared).
 */
import { describe, expect, test } from 'vitest';
import { ops, profile, randn, tidy } from '../lib/index.js';
import { backendCases } from './helpers.js';

// Work the backend may do besides the graph's ops: weight layout changes, readback, constants.
const BOOKKEEPING = new Set(['reorder', 'reshape', 'sync', 'fill', 'zerosLike', 'upload']);

describe.each(backendCases)('profile on $name', ({ name: backend, available }) => {
  test.skipIf(!available)('counts the ops of a conv → relu graph and its backward', async () => {
    const x = randn([2, 3, 8, 8], { seed: 1, backend });
    const w = randn([4, 3, 3, 3], { seed: 2, std: 0.2, backend, requiresGrad: true });
    const dy = randn([2, 4, 8, 8], { seed: 3, backend });
    const p = await profile(() => {
      tidy(() => ops.relu(ops.conv2d(x, w, { padding: 1 })).backward(dy));
    }, { backend });

    const calls = Object.fromEntries(p.ops.map((o) => [o.op, o.calls]));
    // The graph: forward conv2d and relu; backward reluBackward and the weight gradient only
    // (x does not require grad, so no conv2dBackwardData).
    expect(calls).toMatchObject({ conv2d: 1, relu: 1, reluBackward: 1, conv2dBackwardWeights: 1 });
    expect(calls.conv2dBackwardData).toBeUndefined();
    for (const op of Object.keys(calls)) {
      if (!['conv2d', 'relu', 'reluBackward', 'conv2dBackwardWeights'].includes(op)) expect(BOOKKEEPING).toContain(op);
    }

    expect(p.backend).toBe(backend);
    for (const o of p.ops) expect(o.totalMs).toBeGreaterThanOrEqual(0);
    const sum = p.ops.reduce((s, o) => s + o.totalMs, 0);
    expect(p.busyMs).toBeCloseTo(sum, 6);
    expect(p.wallMs).toBeGreaterThanOrEqual(p.busyMs);
    expect(p.idleMs).toBeCloseTo(p.wallMs - p.busyMs, 6);
    // Sorted by time, the most first.
    for (let i = 1; i < p.ops.length; i++) expect(p.ops[i - 1]!.totalMs).toBeGreaterThanOrEqual(p.ops[i]!.totalMs);
    for (const t of [x, w, dy]) t.dispose();
  });

  test.skipIf(!available)('records nothing outside profile(), and starts from zero each time', async () => {
    const x = randn([2, 3, 8, 8], { seed: 1, backend });
    const w = randn([4, 3, 3, 3], { seed: 2, backend });
    const first = await profile(() => tidy(() => { ops.conv2d(x, w); }), { backend });
    expect(first.ops.find((o) => o.op === 'conv2d')?.calls).toBe(1);
    // Work between two profiles is not counted by the second.
    tidy(() => { ops.relu(ops.conv2d(x, w)); });
    const empty = await profile(() => {}, { backend });
    expect(empty.ops.filter((o) => !BOOKKEEPING.has(o.op))).toEqual([]);
    const again = await profile(() => tidy(() => { ops.relu(x); ops.relu(x); }), { backend });
    expect(again.ops.find((o) => o.op === 'relu')?.calls).toBe(2);
    expect(again.ops.find((o) => o.op === 'conv2d')).toBeUndefined();
    x.dispose();
    w.dispose();
  });

  test.skipIf(!available)('one profile at a time per backend; a throwing fn still stops it', async () => {
    let inner: Promise<unknown> | undefined;
    await profile(async () => {
      inner = profile(() => {}, { backend });
      await expect(inner).rejects.toThrow(`profile: backend '${backend}' is already being profiled`);
    }, { backend });
    await expect(profile(() => { throw new Error('boom'); }, { backend })).rejects.toThrow('boom');
    const after = await profile(() => {}, { backend });
    expect(after.wallMs).toBeGreaterThanOrEqual(0);
  });
});

test('profile checks its arguments', async () => {
  await expect(profile(42 as unknown as () => void)).rejects.toThrow(TypeError);
  await expect(profile(() => {}, { backend: 'tpu' as 'cpu' })).rejects.toThrow("profile: backend must be one of 'cpu', 'cuda', 'cuda:N' (N a GPU index), got 'tpu'");
  await expect(profile(() => {}, { device: 'cpu' } as unknown as { backend: 'cpu' })).rejects.toThrow("profile: unknown option 'device'");
});
