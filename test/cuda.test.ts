/**
 * The CUDA backend on any machine. Without a GPU: the addon loads and says why it cannot run;
 * cuDNN's host-side descriptor arithmetic agrees with the output shapes the TypeScript layer
 * computes for every convolution and pooling of ResNet-50 and ResNet-20; and the kernels'
 * arithmetic (native/cuda/kernels/math.cuh, run on the CPU through test-only exports) agrees
 * with the CPU backend. The ops themselves on a GPU are covered by the conformance tests
 * (test/ops.test.ts), which run on every available backend.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { backends, setTf32, zeros } from '../lib/index.js';
import { loadBackend } from '../lib/backend/load.js';
import type { Binding, NativeBuffer } from '../lib/backend/binding.js';
import { windowOutput } from '../lib/ops/conv2d.js';
import { Rng, relError } from './helpers.js';

type Pair = [number, number];
type Shape4 = [number, number, number, number];

interface HostChecks {
  hostDescribeConv2d(x: number[], w: number[], stride: Pair, padding: Pair, dilation: Pair, groups: number): number[];
  hostDescribePool2d(x: number[], kernel: Pair, stride: Pair, padding: Pair, mode: 'max' | 'avg'): number[];
  hostSoftmaxCrossEntropy(logits: Float32Array, labels: Int32Array, n: number, k: number, smoothing: number): [number, Float32Array];
  hostSoftmaxCrossEntropyBackward(probs: Float32Array, labels: Int32Array, n: number, k: number, smoothing: number, dloss: number): Float32Array;
  hostSgdStep(p: Float32Array, g: Float32Array, buf: Float32Array | null, lr: number, momentum: number, wd: number,
    nesterov: boolean, first: boolean): [Float32Array, Float32Array | null];
  hostElementwise(op: 'relu' | 'reluBackward' | 'add' | 'addRelu', a: Float32Array, b?: Float32Array): Float32Array;
  hostNccl(): { available: boolean; reason: string; version: number };
}

const addonPath = fileURLToPath(new URL('../build/Release/cudnn_resnet_cuda.node', import.meta.url));
const cuda = backends().find((b) => b.name === 'cuda')!;

// The addon itself, for its test-only exports; null (with the reason) when it cannot be loaded.
const host: { addon: HostChecks | null; reason: string } = (() => {
  if (!existsSync(addonPath)) return { addon: null, reason: 'the CUDA addon was not built' };
  try {
    return { addon: createRequire(import.meta.url)(addonPath) as HostChecks, reason: '' };
  } catch (err) {
    return { addon: null, reason: `the CUDA addon cannot be loaded (${(err as Error).message.split('\n')[0]})` };
  }
})();
if (!host.addon) console.log(`[skip] cuda host-side tests: ${host.reason}`);

describe('cuda availability', () => {
  test('backends() lists cuda with versions, or with the reason it cannot run', () => {
    expect(cuda).toBeDefined();
    if (cuda.available) {
      expect(cuda.versions.cudnn).toMatch(/^9\.\d+\.\d+$/);
      expect(typeof cuda.details.device).toBe('string');
      return;
    }
    console.log(`cuda unavailable: ${cuda.reason}`);
    expect(cuda.reason).toMatch(
      /no CUDA driver \(cudaErrorInsufficientDriver\)|no CUDA device \(cudaErrorNoDevice\)|the NVIDIA driver supports CUDA|compute capability|libcudnn\.so\.9 not found|the CUDA addon was not built|could not be/);
  });

  test.skipIf(cuda.available)('asking for cuda throws the reason; nothing falls back to cpu', () => {
    let err: unknown = null;
    try {
      zeros([2], { backend: 'cuda' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toContain(cuda.reason!.split('\n')[0]!);
    expect((err as { code: string }).code).toBe('ERR_BACKEND_UNAVAILABLE');
    expect(() => setTf32(false)).toThrow(cuda.reason!.split('\n')[0]!);
  });

  test.skipIf(!host.addon || cuda.available)('the addon reports versions and refuses ops with the reason when it cannot run', () => {
    const b = host.addon as unknown as Binding;
    const info = b.info();
    expect(info).toMatchObject({ backend: 'cuda', available: false });
    expect(info.reason).toBe(cuda.reason);
    expect(info.versions.cudaRuntime).toMatch(/^\d+\.\d+$/);
    expect(info.versions.cudnn).toMatch(/^9\.\d+\.\d+$/);
    expect(() => b.fill([2], 0, 'float32')).toThrow(expect.objectContaining({ code: 'ERR_CUDA_UNAVAILABLE', backend: 'cuda' }));
    expect(() => b.setTf32(true)).not.toThrow();
  });
});

describe.skipIf(!host.addon)('NCCL (host side, no GPU needed)', () => {
  test('the collectives open libnccl.so.2 when they are first used, with every function they call, or say why not', () => {
    const n = host.addon!.hostNccl();
    if (n.available) {
      // ncclCommInitRankConfig (non-blocking communicators, so that a peer that never joins is a
      // timeout) came with NCCL 2.14; the version code is major·10000 + minor·100 + patch.
      expect(n.version).toBeGreaterThanOrEqual(21400);
      expect(n.reason).toBe('');
      console.log(`NCCL ${Math.floor(n.version / 10000)}.${Math.floor(n.version / 100) % 100}.${n.version % 100} opens here`);
    } else {
      expect(n.reason).toMatch(/NCCL|libnccl/);
      console.log(`[skip] NCCL: ${n.reason}`);
    }
  });
});

// [input, weight, stride, padding] of every convolution, and [input, kernel, stride, padding] of
// every pooling, of a network.
interface Layers {
  convs: [Shape4, Shape4, number, number][];
  pools: [Shape4, number, number, number, 'max' | 'avg'][];
}

function resnet50Layers(batch: number, size: number): Layers {
  const convs: Layers['convs'] = [];
  const pools: Layers['pools'] = [];
  let h = size;
  const out = (s: number, k: number, stride: number, pad: number) => windowOutput(s, k, stride, pad, 1);
  convs.push([[batch, 3, h, h], [64, 3, 7, 7], 2, 3]);
  h = out(h, 7, 2, 3);
  pools.push([[batch, 64, h, h], 3, 2, 1, 'max']);
  h = out(h, 3, 2, 1);
  let cin = 64;
  for (const [stage, [width, blocks]] of [[64, 3], [128, 4], [256, 6], [512, 3]].entries()) {
    for (let i = 0; i < blocks!; i++) {
      const stride = stage > 0 && i === 0 ? 2 : 1;
      const cout = width! * 4;
      convs.push([[batch, cin, h, h], [width!, cin, 1, 1], 1, 0]);
      convs.push([[batch, width!, h, h], [width!, width!, 3, 3], stride, 1]);
      const ho = out(h, 3, stride, 1);
      convs.push([[batch, width!, ho, ho], [cout, width!, 1, 1], 1, 0]);
      if (i === 0) convs.push([[batch, cin, h, h], [cout, cin, 1, 1], stride, 0]);
      h = ho;
      cin = cout;
    }
  }
  pools.push([[batch, cin, h, h], h, 1, 0, 'avg']);
  // The classifier as the CUDA backend runs it: a 1x1 convolution of [N, 2048, 1, 1].
  convs.push([[batch, cin, 1, 1], [1000, cin, 1, 1], 1, 0]);
  return { convs, pools };
}

function resnet20Layers(batch: number): Layers {
  const convs: Layers['convs'] = [[[batch, 3, 32, 32], [16, 3, 3, 3], 1, 1]];
  let h = 32;
  let cin = 16;
  for (const [stage, cout] of [16, 32, 64].entries()) {
    for (let i = 0; i < 3; i++) {
      const stride = stage > 0 && i === 0 ? 2 : 1;
      const ho = windowOutput(h, 3, stride, 1, 1);
      convs.push([[batch, cin, h, h], [cout, cin, 3, 3], stride, 1]);
      convs.push([[batch, cout, ho, ho], [cout, cout, 3, 3], 1, 1]);
      if (stride !== 1 || cin !== cout) convs.push([[batch, cin, h, h], [cout, cin, 1, 1], stride, 0]);
      h = ho;
      cin = cout;
    }
  }
  return { convs, pools: [[[batch, 64, h, h], h, 1, 0, 'avg']] };
}

describe.skipIf(!host.addon)('cuDNN descriptors (host side, no GPU needed)', () => {
  const nets: [string, Layers, number, number][] = [
    ['ResNet-50, 224x224, batch 64', resnet50Layers(64, 224), 54, 2],
    ['ResNet-20, 32x32, batch 128', resnet20Layers(128), 21, 1],
  ];
  test.each(nets)('%s: every conv and pool output shape matches the TypeScript layer', (_name, layers, nConv, nPool) => {
    const a = host.addon!;
    expect(layers.convs.length).toBe(nConv);
    expect(layers.pools.length).toBe(nPool);
    for (const [x, w, stride, pad] of layers.convs) {
      const ho = windowOutput(x[2], w[2], stride, pad, 1);
      const wo = windowOutput(x[3], w[3], stride, pad, 1);
      expect(a.hostDescribeConv2d(x, w, [stride, stride], [pad, pad], [1, 1], 1), `conv ${x} ${w}`).toEqual([x[0], w[0], ho, wo]);
    }
    for (const [x, k, stride, pad, mode] of layers.pools) {
      const ho = windowOutput(x[2], k, stride, pad, 1);
      expect(a.hostDescribePool2d(x, [k, k], [stride, stride], [pad, pad], mode), `${mode} pool ${x}`).toEqual([x[0], x[1], ho, ho]);
    }
  });

  test('dilated, grouped and asymmetric geometry agree too', () => {
    const a = host.addon!;
    const cases: [Shape4, Shape4, Pair, Pair, Pair, number][] = [
      [[2, 3, 11, 13], [7, 3, 5, 3], [3, 2], [2, 1], [1, 2], 1],
      [[1, 20, 5, 5], [12, 5, 2, 2], [1, 2], [1, 0], [2, 1], 4],
      [[3, 8, 10, 10], [8, 8, 3, 3], [1, 1], [2, 2], [2, 2], 1],
    ];
    for (const [x, w, s, p, d, g] of cases) {
      const expected = [x[0], w[0], windowOutput(x[2], w[2], s[0], p[0], d[0]), windowOutput(x[3], w[3], s[1], p[1], d[1])];
      expect(a.hostDescribeConv2d(x, w, s, p, d, g)).toEqual(expected);
    }
  });

  test('a bad descriptor is a NativeError with cuDNN\'s status as .code', () => {
    expect(() => host.addon!.hostDescribeConv2d([1, 4, 5, 5], [2, 3, 3, 3], [1, 1], [0, 0], [1, 1], 1))
      .toThrow(expect.objectContaining({ code: 'CUDNN_STATUS_BAD_PARAM', backend: 'cuda' }));
  });
});

// The CPU backend may be missing where the GPU is (no oneDNN on a GPU machine): then skipped.
const cpuBinding = loadBackend('cpu').binding;
if (host.addon && !cpuBinding) console.log(`[skip] CUDA kernel arithmetic vs the CPU backend: ${loadBackend('cpu').reason}`);

describe.skipIf(!host.addon || !cpuBinding)('CUDA kernel arithmetic on the CPU vs the CPU backend', () => {
  const cpu = cpuBinding!;
  const rng = new Rng(99);
  const floats = (n: number, scale = 1) => Float32Array.from({ length: n }, () => rng.normal() * scale);
  const run = <T>(f: (b: Binding) => T): T => f(cpu);
  const down = (buf: NativeBuffer) => {
    const v = cpu.downloadSync(buf) as Float32Array;
    cpu.release(buf);
    return v;
  };

  test('relu, reluBackward, add, addRelu', () => {
    const n = 1000;
    const a = floats(n);
    const b = floats(n);
    a[0] = 0;
    const [ba, bb] = [cpu.upload(a, [n]), cpu.upload(b, [n])];
    const y = cpu.relu(ba);
    const cases: [string, Float32Array, Float32Array][] = [
      ['relu', host.addon!.hostElementwise('relu', a), down(cpu.relu(ba))],
      ['add', host.addon!.hostElementwise('add', a, b), down(cpu.add(ba, bb))],
      ['addRelu', host.addon!.hostElementwise('addRelu', a, b), down(cpu.addRelu(ba, bb))],
      ['reluBackward', host.addon!.hostElementwise('reluBackward', cpu.downloadSync(y) as Float32Array, b), down(cpu.reluBackward(y, bb))],
    ];
    // -0 and 0 are the same value here (oneDNN's ReLU computes 0 · x for negative x).
    for (const [name, got, want] of cases) expect(Array.from(got, (v) => v + 0), name).toEqual(Array.from(want, (v) => v + 0));
    for (const t of [ba, bb, y]) cpu.release(t);
  });

  test.each([[0], [0.1]])('softmax cross-entropy forward and backward, label smoothing %f', (smoothing) => {
    for (const [n, k] of [[128, 10], [7, 1000]] as Pair[]) {
      const logits = floats(n * k, 3);
      const labels = Int32Array.from({ length: n }, () => Math.floor(rng.uniform() * k));
      const [loss, probs] = host.addon!.hostSoftmaxCrossEntropy(logits, labels, n, k, smoothing);
      const bl = cpu.upload(logits, [n, k]);
      const by = cpu.upload(labels, [n]);
      const [cl, cp] = run((b) => b.softmaxCrossEntropyForward(bl, by, smoothing));
      expect(relError([loss], down(cl))).toBeLessThanOrEqual(1e-6);
      const cpuProbs = cpu.downloadSync(cp) as Float32Array;
      expect(relError(probs, cpuProbs)).toBeLessThanOrEqual(1e-6);
      const dloss = cpu.upload(Float32Array.of(0.75), []);
      const dx = host.addon!.hostSoftmaxCrossEntropyBackward(cpuProbs, labels, n, k, smoothing, 0.75);
      expect(relError(dx, down(cpu.softmaxCrossEntropyBackward(cp, by, smoothing, dloss)))).toBeLessThanOrEqual(1e-6);
      for (const t of [bl, by, cp, dloss]) cpu.release(t);
    }
  });

  test.each([
    [0, 0, false],
    [0.9, 0, false],
    [0.9, 5e-4, true],
  ] as [number, number, boolean][])('SGD step, momentum %f, weight decay %f, nesterov %s, two steps', (momentum, wd, nesterov) => {
    const n = 777;
    let p: Float32Array = floats(n);
    const bp = cpu.upload(p, [n]);
    let buf: Float32Array | null = momentum ? new Float32Array(n) : null;
    const bbuf = momentum ? cpu.upload(new Float32Array(n), [n]) : null;
    for (const first of [true, false]) {
      const g = floats(n);
      const bg = cpu.upload(g, [n]);
      [p, buf] = host.addon!.hostSgdStep(p, g, buf, 0.1, momentum, wd, nesterov, first);
      cpu.sgdStep([bp], [bg], bbuf ? [bbuf] : [], 0.1, momentum, wd, nesterov, first);
      cpu.release(bg);
    }
    expect(relError(p, cpu.downloadSync(bp) as Float32Array)).toBeLessThanOrEqual(1e-6);
    if (bbuf) expect(relError(buf!, cpu.downloadSync(bbuf) as Float32Array)).toBeLessThanOrEqual(1e-6);
    cpu.release(bp);
    if (bbuf) cpu.release(bbuf);
  });
});
