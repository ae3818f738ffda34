import { describe, expect, test } from 'vitest';
import { Tensor, backends, keep, memory, noGrad, ones, randn, seed, tensor, tidy, zeros } from '../lib/index.js';

describe('tensor creation and readback', () => {
  test('tensor() round-trips values and shapes', async () => {
    const values = Float32Array.from({ length: 24 }, (_, i) => Math.sin(i) * 3);
    const t = tensor(values, [2, 3, 4]);
    expect(t.shape).toEqual([2, 3, 4]);
    expect(t.dtype).toBe('float32');
    expect(t.backend).toBe('cpu');
    expect(t.size).toBe(24);
    expect(Array.from(await t.data())).toEqual(Array.from(values));
    expect(Array.from(t.dataSync())).toEqual(Array.from(values));
    t.dispose();
  });

  test('plain arrays, scalars and int32', async () => {
    const s = tensor([2.5], []);
    expect(s.shape).toEqual([]);
    expect(await s.item()).toBe(2.5);
    const i = tensor(Int32Array.from([3, -1, 7]));
    expect(i.dtype).toBe('int32');
    const d: Int32Array = await i.data();
    expect(Array.from(d)).toEqual([3, -1, 7]);
    const j = tensor([1, 2], [2], { dtype: 'int32' });
    expect(j.dataSync()).toBeInstanceOf(Int32Array);
    for (const t of [s, i, j]) t.dispose();
  });

  test('zeros, ones and seeded randn', async () => {
    const z = zeros([3, 5]);
    const o = ones([3, 5]);
    expect(Array.from(await z.data())).toEqual(new Array(15).fill(0));
    expect(Array.from(await o.data())).toEqual(new Array(15).fill(1));
    const a = randn([1000], { seed: 7 });
    const b = randn([1000], { seed: 7 });
    const c = randn([1000], { seed: 8 });
    const av = await a.data();
    expect(Array.from(av)).toEqual(Array.from(await b.data()));
    expect(Array.from(av)).not.toEqual(Array.from(await c.data()));
    const mean = av.reduce((s, v) => s + v, 0) / av.length;
    const variance = av.reduce((s, v) => s + (v - mean) ** 2, 0) / av.length;
    expect(Math.abs(mean)).toBeLessThan(0.1);
    expect(Math.abs(variance - 1)).toBeLessThan(0.15);
    seed(3);
    const d1 = randn([4]).dataSync();
    seed(3);
    expect(Array.from(randn([4]).dataSync())).toEqual(Array.from(d1));
    for (const t of [z, o, a, b, c]) t.dispose();
  });

  test('two readbacks in flight resolve with their own values', async () => {
    const a = tensor([1, 2, 3]);
    const b = tensor([4, 5, 6]);
    const [da, db] = await Promise.all([a.data(), b.data()]);
    expect(Array.from(da)).toEqual([1, 2, 3]);
    expect(Array.from(db)).toEqual([4, 5, 6]);
    a.dispose();
    b.dispose();
  });
});

describe('memory management', () => {
  test('dispose frees, twice is harmless, use after dispose throws', () => {
    const before = memory().backends.cpu!;
    const t = randn([64, 64]);
    expect(memory().backends.cpu!.tensors).toBe(before.tensors + 1);
    t.dispose();
    t.dispose();
    expect(t.isDisposed).toBe(true);
    expect(memory().backends.cpu!.tensors).toBe(before.tensors);
    expect(() => t.dataSync()).toThrow(/disposed/);
    expect(() => t.data()).rejects.toThrow(/disposed/);
  });

  test('tidy disposes intermediates, keeps returned and kept tensors', () => {
    const before = memory().backends.cpu!.tensors;
    let inner: Tensor | null = null;
    let kept: Tensor | null = null;
    const result = tidy(() => {
      inner = zeros([4]);
      kept = keep(ones([4]));
      return { out: [ones([2])] };
    });
    expect(inner!.isDisposed).toBe(true);
    expect(kept!.isDisposed).toBe(false);
    expect(result.out[0]!.isDisposed).toBe(false);
    expect(memory().backends.cpu!.tensors).toBe(before + 2);
    kept!.dispose();
    result.out[0]!.dispose();
    expect(memory().backends.cpu!.tensors).toBe(before);
  });

  test('tidy disposes everything when fn throws, and refuses async functions', async () => {
    const before = memory().backends.cpu!.tensors;
    expect(() => tidy(() => {
      zeros([3]);
      throw new Error('boom');
    })).toThrow('boom');
    expect(memory().backends.cpu!.tensors).toBe(before);
    expect(() => tidy((async () => zeros([2])) as never)).toThrow(/synchronous/);
    await new Promise((r) => setTimeout(r, 0));
    expect(memory().backends.cpu!.tensors).toBe(before);
  });

  test('nested tidy hands returned tensors to the outer scope', () => {
    let escaped: Tensor | null = null;
    tidy(() => {
      escaped = tidy(() => ones([2]));
      expect(escaped.isDisposed).toBe(false);
    });
    expect(escaped!.isDisposed).toBe(true);
  });

  test('Symbol.dispose frees a tensor at the end of a using-like scope', () => {
    const t = ones([2]);
    t[Symbol.dispose]();
    expect(t.isDisposed).toBe(true);
  });
});

describe('backends', () => {
  test('cpu is available with versions; cuda is listed with a reason when unavailable', () => {
    const list = backends();
    const cpu = list.find((b) => b.name === 'cpu')!;
    expect(cpu.available).toBe(true);
    expect(cpu.versions.onednn).toMatch(/^\d+\.\d+\.\d+$/);
    const cuda = list.find((b) => b.name === 'cuda')!;
    expect(cuda).toBeDefined();
    if (!cuda.available) {
      // Whichever part is missing (addon not built, driver, device, cuDNN), the reason names it.
      expect(cuda.reason).toMatch(/CUDA|cuDNN/);
      console.log(`cuda unavailable: ${cuda.reason}`);
      expect(() => zeros([2], { backend: 'cuda' })).toThrow(cuda.reason!.split('\n')[0]!);
    }
  });

  test('noGrad turns recording off and back on', () => {
    const x = randn([3], { requiresGrad: true });
    noGrad(() => {
      expect(x.requiresGrad).toBe(true);
    });
    x.dispose();
  });
});
