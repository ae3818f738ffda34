import { describe, expect, test } from 'vitest';
import { Tensor, backends, keep, noGrad, ones, randn, seed, tensor, tidy, zeros } from '../lib/index.js';
import { defaultCase, defaultMemory } from './helpers.js';

describe.skipIf(!defaultCase.available)('tensor creation and readback', () => {
  test('tensor() round-trips values and shapes', async () => {
    const values = Float32Array.from({ length: 24 }, (_, i) => Math.sin(i) * 3);
    const t = tensor(values, [2, 3, 4]);
    expect(t.shape).toEqual([2, 3, 4]);
    expect(t.dtype).toBe('float32');
    expect(t.backend).toBe(defaultCase.name);
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

describe.skipIf(!defaultCase.available)('memory management', () => {
  test('dispose frees, twice is harmless, use after dispose throws', () => {
    const before = defaultMemory();
    const t = randn([64, 64]);
    expect(defaultMemory().tensors).toBe(before.tensors + 1);
    t.dispose();
    t.dispose();
    expect(t.isDisposed).toBe(true);
    expect(defaultMemory().tensors).toBe(before.tensors);
    expect(() => t.dataSync()).toThrow(/disposed/);
    expect(() => t.data()).rejects.toThrow(/disposed/);
  });

  test('tidy disposes intermediates, keeps returned and kept tensors', () => {
    const before = defaultMemory().tensors;
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
    expect(defaultMemory().tensors).toBe(before + 2);
    kept!.dispose();
    result.out[0]!.dispose();
    expect(defaultMemory().tensors).toBe(before);
  });

  test('tidy disposes everything when fn throws, and refuses async functions', async () => {
    const before = defaultMemory().tensors;
    expect(() => tidy(() => {
      zeros([3]);
      throw new Error('boom');
    })).toThrow('boom');
    expect(defaultMemory().tensors).toBe(before);
    expect(() => tidy((async () => zeros([2])) as never)).toThrow(/synchronous/);
    await new Promise((r) => setTimeout(r, 0));
    expect(defaultMemory().tensors).toBe(before);
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
  test('cpu and cuda are listed, each with its library versions where it loads, and with the reason where it cannot run', () => {
    const list = backends();
    expect(list.slice(0, 2).map((b) => b.name)).toEqual(['cpu', 'cuda']);
    const [cpu, cuda] = list as [(typeof list)[0], (typeof list)[0]];
    if (cpu.available) expect(cpu.versions.onednn).toMatch(/^\d+\.\d+\.\d+$/);
    if (cuda.available) expect(cuda.versions.cudnn).toMatch(/^9\.\d+\.\d+$/);
    for (const b of list.filter((e) => !e.available)) {
      expect(b.reason).toMatch(/\S{10}/);
      expect(() => zeros([2], { backend: b.name })).toThrow(b.reason!.split('\n')[0]!);
    }
  });

  test.skipIf(!defaultCase.available)('noGrad turns recording off and back on', () => {
    const x = randn([3], { requiresGrad: true });
    noGrad(() => {
      expect(x.requiresGrad).toBe(true);
    });
    x.dispose();
  });
});
