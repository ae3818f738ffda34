/**
 * Modules: naming, initialisation, train/eval, state dicts, backend moves, the residual blocks'
 * shortcuts and gradients, and disposal.
 */
import { describe, expect, test } from 'vitest';
import { type DType, type Tensor, backends, memory, nn, noGrad, optim, randn, sync, tensor, tidy } from '../lib/index.js';
import { defaultCase, relError, values } from './helpers.js';

const names = (m: nn.Module) => m.namedParameters().map(([n]) => n);

function stats(v: ArrayLike<number>): { mean: number; std: number; maxAbs: number } {
  let s = 0;
  let s2 = 0;
  let maxAbs = 0;
  for (let i = 0; i < v.length; i++) {
    const x = v[i] as number;
    s += x;
    s2 += x * x;
    maxAbs = Math.max(maxAbs, Math.abs(x));
  }
  const mean = s / v.length;
  return { mean, std: Math.sqrt(s2 / v.length - mean * mean), maxAbs };
}

describe.skipIf(!defaultCase.available)('layers', () => {
  test('Conv2d: He normal (fan out) weights, PyTorch bias, seeded', () => {
    const a = new nn.Conv2d(32, 64, 3, { seed: 1 });
    const b = new nn.Conv2d(32, 64, 3, { seed: 1 });
    expect(names(a)).toEqual(['weight', 'bias']);
    expect(a.weight.shape).toEqual([64, 32, 3, 3]);
    const w = stats(values(a.weight));
    expect(w.std).toBeCloseTo(Math.sqrt(2 / (64 * 9)), 2);
    expect(Math.abs(w.mean)).toBeLessThan(0.005);
    expect(stats(values(a.bias!)).maxAbs).toBeLessThanOrEqual(1 / Math.sqrt(32 * 9));
    expect(Array.from(values(b.weight))).toEqual(Array.from(values(a.weight)));
    const c = new nn.Conv2d(4, 8, [3, 1], { bias: false, groups: 2, stride: 2 });
    expect(names(c)).toEqual(['weight']);
    expect(c.bias).toBeNull();
    expect(c.weight.shape).toEqual([8, 2, 3, 1]);
    for (const m of [a, b, c]) m.dispose();
  });

  test('Linear: uniform in ±1/√in', () => {
    const l = new nn.Linear(100, 20, { seed: 2 });
    expect(l.weight.shape).toEqual([20, 100]);
    const w = stats(values(l.weight));
    expect(w.maxAbs).toBeLessThanOrEqual(0.1);
    expect(w.std).toBeCloseTo(0.1 / Math.sqrt(3), 2);
    const y = tidy(() => l.forward(randn([3, 100], { seed: 3 })));
    expect(y.shape).toEqual([3, 20]);
    y.dispose();
    l.dispose();
  });

  test('Sequential names its children 0, 1, … and applies them in order', () => {
    const s = new nn.Sequential(new nn.Conv2d(3, 4, 3, { padding: 1, seed: 1 }), new nn.BatchNorm2d(4), new nn.ReLU(), new nn.MaxPool2d(2), new nn.GlobalAvgPool());
    expect(names(s)).toEqual(['0.weight', '0.bias', '1.weight', '1.bias']);
    expect(Object.keys(s.stateDict())).toEqual(['0.weight', '0.bias', '1.weight', '1.bias', '1.running_mean', '1.running_var', '1.num_batches_tracked']);
    expect(s.length).toBe(5);
    expect(s.at(-1)).toBeInstanceOf(nn.GlobalAvgPool);
    const y = tidy(() => s.forward(randn([2, 3, 8, 8], { seed: 1 })));
    expect(y.shape).toEqual([2, 4, 1, 1]);
    y.dispose();
    s.dispose();
  });

  test('argument errors name the layer', () => {
    expect(() => new nn.Conv2d(3, 0, 3)).toThrow(new RangeError('Conv2d: expected outChannels to be an integer >= 1, got 0'));
    expect(() => new nn.Conv2d(3, 4, 3, { groups: 2 })).toThrow(/Conv2d: inChannels \(3\) and outChannels \(4\) must be divisible by groups = 2/);
    expect(() => new nn.Conv2d(3, 4, 3, { bais: false } as never)).toThrow(/Conv2d: unknown option 'bais'/);
    expect(() => new nn.BatchNorm2d(4, { momentum: 2 })).toThrow(RangeError);
    expect(() => new nn.Linear(4, 2, { seed: 1.5 })).toThrow(/Linear: expected seed to be an integer/);
    expect(() => new nn.Sequential({} as never)).toThrow(/Sequential: expected modules\[0\] to be a Module/);
    expect(() => new nn.BasicBlock(16, 32, { shortcut: 'D' } as never)).toThrow(/BasicBlock: expected shortcut to be 'A', 'B' or 'C', got 'D'/);
    expect(() => new nn.BasicBlock(32, 16, { shortcut: 'A', stride: 2 })).toThrow(/shortcut 'A' pads channels and cannot reduce them/);
    expect(() => new nn.BasicBlock(16, 16, { plain: true, survival: 0.5 })).toThrow(/needs a shortcut/);
  });
});

describe.skipIf(!defaultCase.available)('BatchNorm2d and train/eval', () => {
  test('training normalizes with batch statistics and updates the running ones; evaluation uses them and updates nothing', () => {
    const bn = new nn.BatchNorm2d(3, { momentum: 0.5 });
    const seq = new nn.Sequential(bn);
    expect(seq.training && bn.training).toBe(true);
    const x = randn([4, 3, 5, 5], { seed: 1, mean: 2, std: 3 });
    const xv = values(x);
    const y = noGrad(() => seq.forward(x));
    const yv = values(y);
    // Per channel mean and biased variance of the batch, as the reference.
    const mean = [0, 0, 0];
    const varB = [0, 0, 0];
    const per = 4 * 25;
    for (let i = 0; i < xv.length; i++) mean[Math.floor(i / 25) % 3]! += xv[i]! / per;
    for (let i = 0; i < xv.length; i++) varB[Math.floor(i / 25) % 3]! += (xv[i]! - mean[Math.floor(i / 25) % 3]!) ** 2 / per;
    const expected = Float64Array.from(xv, (v, i) => (v - mean[Math.floor(i / 25) % 3]!) / Math.sqrt(varB[Math.floor(i / 25) % 3]! + 1e-5));
    expect(relError(yv, expected)).toBeLessThan(1e-5);
    const rm = mean.map((m) => 0.5 * m);
    const rv = varB.map((v) => 0.5 + 0.5 * v * per / (per - 1));
    expect(relError(values(bn.runningMean), rm)).toBeLessThan(1e-5);
    expect(relError(values(bn.runningVar), rv)).toBeLessThan(1e-5);
    expect(bn.numBatchesTracked).toBe(1);
    expect(Array.from(bn.stateDict().num_batches_tracked!.dataSync())).toEqual([1]);

    expect(seq.eval()).toBe(seq);
    expect(bn.training).toBe(false);
    const z = noGrad(() => seq.forward(x));
    const expectedEval = Float64Array.from(xv, (v, i) => (v - rm[Math.floor(i / 25) % 3]!) / Math.sqrt(rv[Math.floor(i / 25) % 3]! + 1e-5));
    expect(relError(values(z), expectedEval)).toBeLessThan(1e-5);
    expect(relError(values(bn.runningMean), rm)).toBeLessThan(1e-6);
    expect(bn.numBatchesTracked).toBe(1);
    seq.train();
    expect(bn.training).toBe(true);
    for (const t of [x, y, z]) t.dispose();
    seq.dispose();
  });
});

describe.skipIf(!defaultCase.available)('shortcuts', () => {
  test('option A equals the zero-padded strided identity, and holds no parameters or state', () => {
    const blk = new nn.BasicBlock(3, 5, { shortcut: 'A', stride: 2, seed: 1 });
    expect(names(blk)).toEqual(['conv1.weight', 'bn1.weight', 'bn1.bias', 'conv2.weight', 'bn2.weight', 'bn2.bias']);
    expect(Object.keys(blk.stateDict()).some((k) => k.includes('downsample'))).toBe(false);
    expect(blk.namedBuffers().map(([n]) => n)).toContain('downsample.embedding');
    const pad = blk.namedModules().find(([n]) => n === 'downsample')![1] as nn.PadShortcut;
    const x = randn([2, 3, 7, 6], { seed: 2 });
    const y = noGrad(() => pad.forward(x));
    expect(y.shape).toEqual([2, 5, 4, 3]);
    const xv = values(x);
    const expected = new Float64Array(2 * 5 * 4 * 3);
    for (let n = 0; n < 2; n++) for (let c = 0; c < 3; c++) for (let h = 0; h < 4; h++) for (let w = 0; w < 3; w++) {
      expected[((n * 5 + c) * 4 + h) * 3 + w] = xv[((n * 3 + c) * 7 + 2 * h) * 6 + 2 * w]!;
    }
    expect(Array.from(values(y))).toEqual(Array.from(expected));
    for (const t of [x, y]) t.dispose();
    blk.dispose();
  });

  test('options B and C project (1x1 conv + BN) where the shape changes and everywhere; pre-activation projections have no BN', () => {
    const b = new nn.BasicBlock(16, 16, { shortcut: 'B' });
    const b2 = new nn.BasicBlock(16, 32, { shortcut: 'B', stride: 2 });
    const c = new nn.BasicBlock(16, 16, { shortcut: 'C' });
    const p = new nn.PreActBlock(16, 32, { stride: 2 });
    expect(names(b).some((n) => n.startsWith('downsample'))).toBe(false);
    expect(names(b2).filter((n) => n.startsWith('downsample'))).toEqual(['downsample.0.weight', 'downsample.1.weight', 'downsample.1.bias']);
    expect(names(c).filter((n) => n.startsWith('downsample'))).toEqual(['downsample.0.weight', 'downsample.1.weight', 'downsample.1.bias']);
    expect(names(p).filter((n) => n.startsWith('downsample'))).toEqual(['downsample.0.weight']);
    for (const m of [b, b2, c, p]) m.dispose();
  });

  test('a plain block has no shortcut: with its last BN zeroed, the residual block passes relu(x), the plain one 0', () => {
    const res = new nn.BasicBlock(4, 4, { seed: 1 });
    const plain = new nn.BasicBlock(4, 4, { plain: true, seed: 1 });
    expect(plain.namedChildren().map(([n]) => n)).toEqual(['conv1', 'bn1', 'conv2', 'bn2']);
    const zero = tensor(new Float32Array(4), [4]);
    for (const m of [res, plain]) m.loadStateDict({ 'bn2.weight': zero }, { strict: false });
    const x = randn([2, 4, 5, 5], { seed: 3 });
    const [yr, yp] = noGrad(() => tidy(() => [res.forward(x), plain.forward(x)]));
    expect(Array.from(values(yr!))).toEqual(Array.from(values(x), (v) => Math.max(v, 0)));
    expect(values(yp!).every((v) => v === 0)).toBe(true);
    for (const t of [zero, x, yr!, yp!]) t.dispose();
    res.dispose();
    plain.dispose();
  });

  test('a dropped branch (stochastic depth) leaves relu(shortcut(x)); evaluation scales it', () => {
    const blk = new nn.BasicBlock(3, 6, { shortcut: 'A', stride: 2, survival: 1e-9, random: () => 0.5, seed: 1 });
    const x = randn([2, 3, 6, 6], { seed: 2 });
    const [y, s] = noGrad(() => tidy(() => {
      const pad = blk.namedModules().find(([n]) => n === 'downsample')![1];
      return [blk.forward(x), pad.forward(x)];
    }));
    expect(Array.from(values(y!))).toEqual(Array.from(values(s!), (v) => Math.max(v, 0)));
    for (const t of [x, y!, s!]) t.dispose();
    blk.dispose();
  });
});

describe.skipIf(!defaultCase.available)('gradients reach every parameter of every block', () => {
  test.each([
    ['BasicBlock B', () => new nn.BasicBlock(4, 8, { stride: 2, seed: 1 })],
    ['BasicBlock A', () => new nn.BasicBlock(4, 8, { stride: 2, shortcut: 'A', seed: 1 })],
    ['Bottleneck C', () => new nn.Bottleneck(8, 4, { shortcut: 'C', seed: 1 })],
    ['PreActBlock', () => new nn.PreActBlock(4, 8, { stride: 2, seed: 1 })],
    ['PreActBottleneck', () => new nn.PreActBottleneck(8, 2, { seed: 1 })],
    ['plain Bottleneck', () => new nn.Bottleneck(8, 2, { plain: true, seed: 1 })],
  ] as [string, () => nn.Module][])('%s', (_name, build) => {
    const blk = build();
    const inC = (blk as nn.BasicBlock).inChannels;
    const x = randn([2, inC, 6, 6], { seed: 2, requiresGrad: true });
    tidy(() => {
      const y = blk.forward(x);
      y.backward(randn(y.shape, { seed: 3 }));
    });
    expect(x.grad).not.toBeNull();
    for (const [name, p] of blk.namedParameters()) {
      expect(p.grad, name).not.toBeNull();
      expect(values(p.grad!).some((v) => v !== 0), name).toBe(true);
    }
    x.dispose();
    blk.dispose();
  });
});

describe.skipIf(!defaultCase.available)('state dicts', () => {
  const build = (seed: number) => new nn.Sequential(new nn.BasicBlock(3, 8, { stride: 2, seed }), new nn.GlobalAvgPool());

  test('stateDict returns the module’s own tensors; a round trip into a fresh module gives identical outputs', () => {
    const a = build(1);
    const x = randn([2, 3, 8, 8], { seed: 5 });
    noGrad(() => tidy(() => { a.forward(x); a.forward(x); }));
    const sd = a.stateDict();
    expect(sd['0.conv1.weight']).toBe(a.parameters()[0]);
    expect(Array.from(sd['0.bn1.num_batches_tracked']!.dataSync())).toEqual([2]);
    const b = build(2);
    const params = b.parameters();
    const opt = new optim.SGD(params, { lr: 0.1 });
    expect(b.loadStateDict(sd)).toEqual({ missingKeys: [], unexpectedKeys: [] });
    // The module keeps its tensor objects (the optimizer's), with the loaded values.
    expect(b.parameters()).toEqual(params);
    expect(b.parameters().every((p, i) => p === params[i] && p.requiresGrad)).toBe(true);
    const bn = b.namedModules().find(([n]) => n === '0.bn1')![1] as nn.BatchNorm2d;
    expect(bn.numBatchesTracked).toBe(2);
    for (const mode of ['train', 'eval'] as const) {
      a[mode]();
      b[mode]();
      const [ya, yb] = noGrad(() => tidy(() => [a.forward(x), b.forward(x)]));
      expect(Array.from(values(yb!))).toEqual(Array.from(values(ya!)));
      ya!.dispose();
      yb!.dispose();
    }
    // The copy is independent of the source.
    const before = Array.from(values(b.parameters()[0]!));
    a.train();
    tidy(() => {
      const y = a.forward(x);
      y.backward(randn(y.shape, { seed: 6 }));
    });
    new optim.SGD(a.parameters(), { lr: 1 }).step();
    expect(Array.from(values(b.parameters()[0]!))).toEqual(before);
    opt.dispose();
    x.dispose();
    a.dispose();
    b.dispose();
  });

  test('strict loading lists missing and unexpected keys and shape mismatches, and copies nothing', () => {
    const m = build(1);
    const sd = m.stateDict();
    const w0 = Array.from(values(sd['0.conv1.weight'] as Tensor));
    const wrong = randn([8, 3, 2, 2]);
    const extra = randn([3]);
    const conv1 = randn([8, 3, 3, 3], { seed: 9 });
    const dict: Record<string, Tensor<DType>> = { ...sd, '0.conv1.weight': conv1, '0.downsample.0.weight': wrong, 'fc.weight': extra };
    delete dict['0.bn2.bias'];
    let err: Error | null = null;
    try {
      m.loadStateDict(dict);
    } catch (e) {
      err = e as Error;
    }
    expect(err?.message).toContain('Sequential.loadStateDict: error(s) in loading the state dict (nothing was copied)');
    expect(err?.message).toContain('missing key(s): 0.bn2.bias');
    expect(err?.message).toContain('unexpected key(s): fc.weight');
    expect(err?.message).toContain("size mismatch for 0.downsample.0.weight: got shape [8, 3, 2, 2], the module's is [8, 3, 1, 1]");
    expect((err as Error & { code: string }).code).toBe('ERR_STATE_DICT');
    expect(Array.from(values(sd['0.conv1.weight'] as Tensor))).toEqual(w0);
    // Not strict: extra and missing keys are ignored (and reported); shapes must still match.
    delete dict['0.downsample.0.weight'];
    expect(m.loadStateDict(dict, { strict: false })).toEqual({ missingKeys: ['0.bn2.bias', '0.downsample.0.weight'], unexpectedKeys: ['fc.weight'] });
    expect(Array.from(values(sd['0.conv1.weight'] as Tensor))).toEqual(Array.from(values(conv1)));
    // A missing num_batches_tracked is accepted, as PyTorch does for older checkpoints.
    const noCount = Object.fromEntries(Object.entries(m.stateDict()).filter(([k]) => !k.endsWith('num_batches_tracked')));
    expect(m.loadStateDict(noCount)).toEqual({ missingKeys: [], unexpectedKeys: [] });
    expect(() => m.loadStateDict({ ...m.stateDict(), '0.bn1.num_batches_tracked': tensor([1], []) })).toThrow(/dtype mismatch for 0.bn1.num_batches_tracked: got float32, the module's is int32/);
    expect(() => m.loadStateDict([] as never)).toThrow(TypeError);
    expect(() => m.loadStateDict({}, { strict: 1 } as never)).toThrow(/expected strict to be a boolean/);
    for (const t of [wrong, extra, conv1]) t.dispose();
    m.dispose();
  });
});

describe.skipIf(!defaultCase.available)('backends and disposal', () => {
  test('to() its own backend keeps the tensors; an unavailable backend throws its reason and moves nothing', () => {
    const m = new nn.BasicBlock(4, 4, { seed: 1 });
    const params = m.parameters();
    expect(m.to(defaultCase.name)).toBe(m);
    expect(m.parameters()).toEqual(params);
    for (const b of backends().filter((e) => !e.available)) {
      expect(() => m.to(b.name)).toThrow(`backend '${b.name}' is unavailable: ${b.reason}`);
      expect(m.parameters().every((p, i) => p === params[i] && !p.isDisposed)).toBe(true);
    }
    expect(() => m.to('tpu' as never)).toThrow(/BasicBlock.to: backend must be one of/);
    m.dispose();
  });

  test('modules built inside tidy() survive it; dispose() frees every parameter and buffer', async () => {
    await sync();
    const base = memory().numTensors;
    const m = tidy(() => new nn.Bottleneck(8, 4, { stride: 2, seed: 1 }));
    const all = [...m.parameters(), ...m.namedBuffers().map(([, t]) => t)];
    expect(all.every((t) => !t.isDisposed)).toBe(true);
    expect(memory().numTensors - base).toBe(all.length);
    m.dispose();
    m.dispose();
    expect(all.every((t) => t.isDisposed)).toBe(true);
    expect(memory().numTensors).toBe(base);
  });
});
