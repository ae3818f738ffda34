/**
 * The ResNet family: parameter counts and names against the papers and torchvision, output
 * shapes, stochastic depth, memory, and (where python3 with torch is installed) logits and
 * gradients against the same networks written in PyTorch.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { type DType, type Tensor, memory, models, nn, noGrad, randn, sync, tensor, tidy } from '../lib/index.js';
import { defaultCase, relError, values } from './helpers.js';

const count = (m: nn.Module) => m.parameters().reduce((a, t) => a + t.size, 0);

describe.skipIf(!defaultCase.available)('parameter counts match the papers and torchvision', () => {
  test.each([
    ['resnet18', () => models.resnet18(), 11_689_512],
    ['resnet34', () => models.resnet34(), 21_797_672],
    ['resnet50', () => models.resnet50(), 25_557_032],
    ['resnet101', () => models.resnet101(), 44_549_160],
    ['resnet152', () => models.resnet152(), 60_192_808],
    ['CIFAR ResNet-20 option A', () => models.cifarResNet({ depth: 20 }), 269_722],
    ['CIFAR ResNet-20 option B', () => models.cifarResNet({ depth: 20, shortcut: 'B' }), 272_474],
    ['CIFAR plain-20', () => models.cifarResNet({ depth: 20, plain: true }), 269_722],
    ['CIFAR ResNet-110 option A', () => models.cifarResNet({ depth: 110 }), 1_727_962],
    ['WRN-28-10', () => models.wideResNet({ depth: 28, widen: 10 }), 36_479_194],
    ['pre-activation ResNet-164', () => models.preActResNet({ depth: 164 }), 1_703_258],
  ] as [string, () => models.ResNet, number][])('%s', (_name, build, expected) => {
    const m = build();
    expect(count(m)).toBe(expected);
    m.dispose();
  });
});

describe.skipIf(!defaultCase.available)('torchvision layout and names', () => {
  test('resnet18', () => {
    const m = models.resnet18({ numClasses: 10 });
    const sd = m.stateDict();
    const keys = Object.keys(sd);
    expect(keys.slice(0, 6)).toEqual(['conv1.weight', 'bn1.weight', 'bn1.bias', 'bn1.running_mean', 'bn1.running_var', 'bn1.num_batches_tracked']);
    expect(keys).toContain('layer1.0.conv1.weight');
    expect(keys).toContain('layer2.0.downsample.0.weight');
    expect(keys).toContain('layer2.0.downsample.1.running_var');
    expect(keys).not.toContain('layer1.0.downsample.0.weight');
    expect(keys.slice(-2)).toEqual(['fc.weight', 'fc.bias']);
    // torchvision's resnet18 state dict has 122 entries: 62 parameters, 60 buffers.
    expect(keys.length).toBe(122);
    expect(m.namedParameters().length).toBe(62);
    expect(sd['conv1.weight']!.shape).toEqual([64, 3, 7, 7]);
    expect(sd['fc.weight']!.shape).toEqual([10, 512]);
    expect(sd['bn1.num_batches_tracked']!.shape).toEqual([]);
    expect(sd['bn1.num_batches_tracked']!.dtype).toBe('int32');
    expect(m.namedChildren().map(([n]) => n)).toEqual(['conv1', 'bn1', 'relu', 'maxpool', 'layer1', 'layer2', 'layer3', 'layer4', 'avgpool', 'fc']);
    m.dispose();
  });

  test('resnet50 (v1.5: stride on the 3x3)', () => {
    const m = models.resnet50();
    const sd = m.stateDict();
    expect(Object.keys(sd).length).toBe(320);
    expect(sd['layer1.0.conv3.weight']!.shape).toEqual([256, 64, 1, 1]);
    expect(sd['layer1.0.downsample.0.weight']!.shape).toEqual([256, 64, 1, 1]);
    expect(sd['layer2.0.conv2.weight']!.shape).toEqual([128, 128, 3, 3]);
    expect(sd['layer4.2.bn3.running_mean']!.shape).toEqual([2048]);
    expect(sd['fc.weight']!.shape).toEqual([1000, 2048]);
    const blk = m.namedModules().find(([n]) => n === 'layer2.0')![1] as nn.Bottleneck;
    expect(blk).toBeInstanceOf(nn.Bottleneck);
    const conv2 = m.namedModules().find(([n]) => n === 'layer2.0.conv2')![1] as nn.Conv2d;
    const conv1 = m.namedModules().find(([n]) => n === 'layer2.0.conv1')![1] as nn.Conv2d;
    expect(conv2.stride).toEqual([2, 2]);
    expect(conv1.stride).toEqual([1, 1]);
    m.dispose();
  });

  test('pre-activation and wide ResNets end with BN + ReLU; option A leaves no shortcut state', () => {
    const pre = models.preActResNet({ depth: 11 });
    expect(pre.namedChildren().map(([n]) => n)).toEqual(['conv1', 'layer1', 'layer2', 'layer3', 'bn', 'relu', 'avgpool', 'fc']);
    expect(Object.keys(pre.stateDict())).toContain('layer1.0.downsample.0.weight');
    pre.dispose();
    const a = models.cifarResNet({ depth: 20 });
    expect(Object.keys(a.stateDict()).some((k) => k.includes('downsample'))).toBe(false);
    expect(a.namedBuffers().map(([n]) => n)).toContain('layer2.0.downsample.embedding');
    a.dispose();
  });
});

describe.skipIf(!defaultCase.available)('forward', () => {
  test('output shapes', () => {
    const cases: [models.ResNet, number[], number[]][] = [
      [models.resnet18({ seed: 1 }), [1, 3, 64, 64], [1, 1000]],
      [models.cifarResNet({ depth: 20, seed: 2 }), [2, 3, 32, 32], [2, 10]],
      [models.cifarResNet({ depth: 8, inChannels: 1, numClasses: 7, seed: 3 }), [2, 1, 28, 28], [2, 7]],
      [models.preActResNet({ depth: 11, seed: 4 }), [2, 3, 16, 16], [2, 10]],
      [models.wideResNet({ depth: 10, widen: 2, seed: 5 }), [2, 3, 16, 16], [2, 10]],
    ];
    for (const [m, inShape, outShape] of cases) {
      const y = noGrad(() => tidy(() => m.eval().forward(randn(inShape, { seed: 6 }))));
      expect(y.shape).toEqual(outShape);
      expect(values(y).every(Number.isFinite)).toBe(true);
      y.dispose();
      m.dispose();
    }
  });

  test('wrong inputs are refused with the expected shape', () => {
    const m = models.cifarResNet({ depth: 8, seed: 1 });
    const x = randn([2, 1, 8, 8]);
    expect(() => m.forward(x)).toThrow(new RangeError('ResNet.forward: expected input of shape [N, C, H, W] with C = 3, got [2, 1, 8, 8]'));
    expect(() => models.cifarResNet({ depth: 21 })).toThrow(/cifarResNet: expected depth = 6n \+ 2 \(e.g. 20\), got 21/);
    expect(() => models.preActResNet({ depth: 21 })).toThrow(/depth = 9n \+ 2/);
    expect(() => models.wideResNet({ depth: 28 } as never)).toThrow(/wideResNet: expected widen to be an integer/);
    expect(() => models.resnet18({ classes: 10 } as never)).toThrow(/resnet18: unknown option 'classes'/);
    expect(() => models.cifarResNet({ depth: 20, plain: true, dropPath: 0.5 })).toThrow(/needs shortcuts/);
    expect(() => new models.ResNet({ block: 'wide' } as never)).toThrow(/expected block to be one of/);
    x.dispose();
    m.dispose();
  });

  test('same seed, same weights; another seed, others', () => {
    const a = models.cifarResNet({ depth: 8, seed: 11 });
    const b = models.cifarResNet({ depth: 8, seed: 11 });
    const c = models.cifarResNet({ depth: 8, seed: 12 });
    const w = (m: models.ResNet) => Array.from(m.stateDict()['layer2.0.conv1.weight']!.dataSync() as Float32Array);
    expect(w(a)).toEqual(w(b));
    expect(w(a)).not.toEqual(w(c));
    for (const m of [a, b, c]) m.dispose();
  });
});

describe.skipIf(!defaultCase.available)('stochastic depth', () => {
  test('training draws are reproducible with a seed, and blocks are dropped', () => {
    const run = (seed: number) => {
      const m = models.cifarResNet({ depth: 14, dropPath: 0.8, seed });
      const x = randn([2, 3, 8, 8], { seed: 1 });
      const outs = noGrad(() => Array.from({ length: 6 }, () => tidy(() => Array.from(m.forward(x).dataSync()))));
      m.dispose();
      x.dispose();
      return outs;
    };
    const a = run(5);
    expect(run(5)).toEqual(a);
    // Without drops every training forward of one input gives the same logits.
    expect(new Set(a.map((o) => o.join(','))).size).toBeGreaterThan(1);
  });

  test('evaluation output equals the network with each branch scaled by its survival probability', () => {
    const dropPath = 0.5;
    const m = models.cifarResNet({ depth: 14, dropPath, seed: 3 }).eval();
    const ref = models.cifarResNet({ depth: 14, seed: 3 }).eval();
    // Block l of L: p_l = 1 − l/L·dropPath. Scaling bn2's γ and β by p_l scales the branch exactly.
    const sd = m.stateDict();
    const scaled: Record<string, Tensor<DType>> = { ...sd };
    const blocks = m.namedModules().filter(([, mod]) => mod instanceof nn.BasicBlock) as [string, nn.BasicBlock][];
    expect(blocks.length).toBe(6);
    blocks.forEach(([name, blk], i) => {
      const p = 1 - ((i + 1) / blocks.length) * dropPath;
      expect(blk.survival).toBeCloseTo(p, 12);
      for (const k of ['weight', 'bias']) {
        const key = `${name}.bn2.${k}`;
        scaled[key] = tensor(Float32Array.from(sd[key]!.dataSync() as Float32Array, (v) => v * p), sd[key]!.shape);
      }
    });
    ref.loadStateDict(scaled);
    const x = randn([2, 3, 8, 8], { seed: 4 });
    const [y, r] = noGrad(() => tidy(() => [m.forward(x), ref.forward(x)]));
    expect(relError(values(y!), values(r!))).toBeLessThan(1e-5);
    for (const [k, t] of Object.entries(scaled)) if (sd[k] !== t) t.dispose();
    for (const t of [x, y!, r!]) t.dispose();
    m.dispose();
    ref.dispose();
  });
});

describe.skipIf(!defaultCase.available)('memory', () => {
  test('a training step in tidy() leaves only the gradients; dispose() frees everything', async () => {
    await sync();
    const base = memory();
    const m = models.cifarResNet({ depth: 8, seed: 1 });
    const created = memory();
    const nTensors = m.parameters().length + m.namedBuffers().length;
    expect(created.numTensors - base.numTensors).toBe(nTensors);
    const x = randn([2, 3, 8, 8], { seed: 2 });
    tidy(() => {
      const y = m.forward(x);
      y.backward(randn(y.shape, { seed: 3 }));
    });
    await sync();
    expect(memory().numTensors - created.numTensors).toBe(1 + m.parameters().length);
    expect(m.parameters().every((p) => p.grad !== null)).toBe(true);
    x.dispose();
    m.dispose();
    await sync();
    const end = memory();
    expect(end.numTensors).toBe(base.numTensors);
    expect(end.backends[defaultCase.name]!.buffers).toBe(base.backends[defaultCase.name]!.buffers);
  });
});

function hasTorch(): string | null {
  try {
    execFileSync('python3', ['-c', 'import torch'], { stdio: 'ignore' });
    return null;
  } catch {
    return 'python3 with torch is not available';
  }
}

const torchMissing = hasTorch();
if (torchMissing) console.log(`[skip] PyTorch comparison: ${torchMissing}`);

describe.skipIf(torchMissing !== null || !defaultCase.available)('against PyTorch (float64 reference)', () => {
  interface Entry { name: string; shape: number[]; dtype: DType; offset: number }
  let ref: Map<string, Float32Array | Int32Array> | undefined;
  const shapes = new Map<string, number[]>();

  function load(): void {
    if (ref) return;
    const dir = mkdtempSync(join(tmpdir(), 'cudnn-resnet-torch-'));
    try {
      // One thread: this process's OpenMP workers and PyTorch's would contend for two cores.
      execFileSync('python3', [join(import.meta.dirname, 'fixtures', 'torch_resnets.py'), dir], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, OMP_NUM_THREADS: '1' } });
      const manifest = JSON.parse(readFileSync(join(dir, 'ref.json'), 'utf8')) as { entries: Entry[] };
      const bin = readFileSync(join(dir, 'ref.bin'));
      ref = new Map();
      for (const e of manifest.entries) {
        const n = e.shape.reduce((a, b) => a * b, 1);
        const bytes = bin.buffer.slice(bin.byteOffset + e.offset, bin.byteOffset + e.offset + 4 * n);
        ref.set(e.name, e.dtype === 'int32' ? new Int32Array(bytes) : new Float32Array(bytes));
        shapes.set(e.name, e.shape);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  const get = (name: string) => {
    const v = ref?.get(name);
    if (!v) throw new Error(`no reference value ${name}`);
    return v;
  };

  test.each([
    ['resnet20B', () => models.cifarResNet({ depth: 20, shortcut: 'B' })],
    ['resnet18', () => models.resnet18()],
  ] as [string, () => models.ResNet][])('%s: logits (eval, train), input and parameter gradients, running statistics', (key, build) => {
    load();
    const m = build();
    const dict: Record<string, Tensor<DType>> = {};
    for (const name of Object.keys(m.stateDict())) {
      const full = `${key}/state/${name}`;
      dict[name] = tensor(get(full), shapes.get(full)!);
    }
    expect(m.loadStateDict(dict)).toEqual({ missingKeys: [], unexpectedKeys: [] });
    for (const t of Object.values(dict)) t.dispose();
    const x = tensor(get(`${key}/x`), shapes.get(`${key}/x`)!, { requiresGrad: true });
    const check = (what: string, actual: ArrayLike<number>, expected: ArrayLike<number>) => {
      const e = relError(actual, expected);
      expect(e, `${key} ${what}: relative error ${e.toExponential(2)}`).toBeLessThanOrEqual(1e-4);
      return e;
    };
    const errors: Record<string, number> = {};
    m.eval();
    const yEval = noGrad(() => tidy(() => m.forward(x)));
    errors.evalLogits = check('eval logits', values(yEval), get(`${key}/eval_logits`));
    m.train();
    const y = tidy(() => m.forward(x));
    errors.trainLogits = check('train logits', values(y), get(`${key}/train_logits`));
    const dy = tensor(get(`${key}/dy`), y.shape);
    y.backward(dy);
    errors.dx = check('input gradient', values(x.grad!), get(`${key}/train_dx`));
    let worstGrad = 0;
    for (const [name, p] of m.namedParameters()) worstGrad = Math.max(worstGrad, check(`grad of ${name}`, values(p.grad!), get(`${key}/grad/${name}`)));
    errors.paramGrads = worstGrad;
    let worstStat = 0;
    for (const [name, b] of Object.entries(m.stateDict())) {
      if (!name.includes('running_') && !name.endsWith('num_batches_tracked')) continue;
      const expected = get(`${key}/after/${name}`);
      if (b.dtype === 'int32') expect(Array.from(b.dataSync())).toEqual(Array.from(expected));
      else worstStat = Math.max(worstStat, check(`buffer ${name}`, values(b as Tensor), expected));
    }
    errors.runningStats = worstStat;
    console.log(`${key} vs PyTorch (max relative error):`, Object.fromEntries(Object.entries(errors).map(([k, v]) => [k, v.toExponential(2)])));
    for (const t of [x, yEval, y, dy]) t.dispose();
    m.dispose();
  });
});
