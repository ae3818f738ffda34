/**
 * The CUDA backend on any machine. Without a GPU: the addon loads and says why it cannot run,
 * finds cuDNN in python3's wheel when the loader does not, and serves 'cuda:N' as instances of
 * its own; the plans the ops build (conv2d.cc, pool2d.cc, batch_norm.cc, from the front end's
 * geometry) hold what cuDNN should be told, read back from cuDNN, for every convolution and
 * pooling of ResNet-50 and ResNet-20; the convolution's algorithm choice walks its candidates as
 * PyTorch does; and the kernels' per-thread code, run on the CPU over the grid their launch would
 * have (test-only exports, native/cuda/host_checks.cc), agrees with the float64 references, so
 * that indexing, launch sizes, the SGD chunks and the softmax reduction are checked too. None of
 * this needs the CPU addon, which a GPU machine may lack. With a GPU: readbacks, uploads and sync
 * points through the asynchronous paths. The ops themselves on a GPU are covered by the
 * conformance tests (test/ops.test.ts), which run on every available backend.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, test } from 'vitest';
import { backends, ops, setTf32, tensor, zeros } from '../lib/index.js';
import { bindingOf, loadBackend } from '../lib/backend/load.js';
import type { Binding } from '../lib/backend/binding.js';
import { windowOutput } from '../lib/ops/conv2d.js';
import { fromBFloat16Bits, fromFloat16Bits, toBFloat16Bits, toFloat16Bits } from '../lib/tensor/half.js';
import * as ref from './reference/ops64.js';
import type { Shape4 } from './reference/ops64.js';
import { Rng, relError } from './helpers.js';

type Pair = [number, number];
type Dtype = 'float32' | 'bfloat16' | 'float16';
const HALF = ['bfloat16', 'float16'] as const;

interface ConvPlan {
  y: number[];
  cudnnY: number[];
  x: string;
  yDesc: string;
  bias: string;
  w: string;
  padding: number[];
  stride: number[];
  dilation: number[];
  crossCorrelation: boolean;
  computeFloat: boolean;
  groups: number;
  math: string;
}

interface PoolPlan {
  y: number[];
  cudnnY: number[];
  yDesc: string;
  mode: string;
  propagateNan: boolean;
  kernel: number[];
  padding: number[];
  stride: number[];
}

type WalkResult = { tried: number[]; chosen?: number; logged?: number | null; code?: string; message?: string };

interface HostChecks {
  hostConvPlan(x: readonly number[], w: readonly number[], stride: Pair, padding: Pair, dilation: Pair, groups: number, tf32: boolean,
    dtype?: Dtype): ConvPlan;
  hostPoolPlan(x: readonly number[], kernel: Pair, stride: Pair, padding: Pair, mode: 'max' | 'avg', dtype?: Dtype): PoolPlan;
  hostBatchNormPlan(x: readonly number[]): string;
  hostBatchNormTail(x: readonly number[], dtype: Dtype, relu: boolean, residual: boolean):
    { x: string; stats: string; fused: boolean; computes: Dtype; ops: string; activation: string };
  hostConvert(values: Float32Array, shape: readonly number[], dtype: Dtype, toShape: readonly number[]):
    { physical: Float32Array; reshaped: Float32Array; plain: Float32Array };
  hostConvCandidates(ranked: [number, boolean, number, string][], tf32: boolean, fallback: number): [number, string][];
  hostConvWalk(candidates: number, calls: number[][]): WalkResult[];
  hostElementwise(op: 'relu' | 'reluBackward' | 'add' | 'addRelu', a: Float32Array, b?: Float32Array | null, dtype?: Dtype): Float32Array;
  hostSoftmaxCrossEntropy(logits: Float32Array, labels: Int32Array, n: number, k: number, smoothing: number): [number, Float32Array];
  hostSoftmaxCrossEntropyBackward(probs: Float32Array, labels: Int32Array, n: number, k: number, smoothing: number, dloss: number): Float32Array;
  hostSgdStep(params: Float32Array[], grads: Float32Array[], bufs: Float32Array[] | null, lr: number, momentum: number, wd: number,
    nesterov: boolean, first: boolean): { params: Float32Array[]; bufs: Float32Array[] | null; launches: Pair[] };
  hostPoolBackward(mode: 'max' | 'avg', x: Float32Array | null, dy: Float32Array, xShape: readonly number[], kernel: Pair, stride: Pair,
    padding: Pair, dtype?: Dtype): Float32Array;
  hostNccl(): { available: boolean; reason: string; version: number };
  hostCaptureLedger(events: string[]): string[];
}

const root = fileURLToPath(new URL('../', import.meta.url));
const addonPath = join(root, 'build/Release/cudnn_resnet_cuda.node');
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
if (!cuda.available) console.log(`[skip] cuda tests that need a GPU: ${cuda.reason}`);
const a = () => host.addon!;

describe('cuda availability', () => {
  test('backends() lists cuda with versions, or with the reason it cannot run', () => {
    expect(cuda).toBeDefined();
    if (cuda.available) {
      expect(cuda.versions.cudnn).toMatch(/^9\.\d+\.\d+$/);
      expect(typeof cuda.details.device).toBe('string');
      expect(cuda.details.cudnnLibrary).toMatch(/libcudnn\.so\.9$/);
      return;
    }
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

  test.skipIf(!host.addon || cuda.available)('the addon reports versions and the cuDNN it loaded, and refuses ops with the reason', () => {
    const b = host.addon as unknown as Binding;
    const info = b.info();
    expect(info).toMatchObject({ backend: 'cuda', available: false, deviceIndex: 0 });
    expect(info.reason).toBe(cuda.reason);
    expect(info.versions.cudaRuntime).toMatch(/^\d+\.\d+$/);
    expect(info.versions.cudnn).toMatch(/^9\.\d+\.\d+$/);
    expect(info.cudnnLibrary).toMatch(/\/libcudnn\.so\.9$/);
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

describe.skipIf(!host.addon)("a captured step's memory bookkeeping (capture_ledger.h, host side)", () => {
  test('frees wait for the end of a capture; the buffers a capture touched are kept once each, with its failure', () => {
    expect(a().hostCaptureLedger([
      'free a', 'begin', 'free b', 'keep x', 'keep y', 'keep x', 'free c', 'fail conv2d: refused', 'fail later', 'end', 'free d',
      'begin', 'end',
    ])).toEqual([
      'freed a',
      'end deferred=b,c kept=x,y failure=conv2d: refused',
      'freed d',
      'end deferred= kept= failure=',
    ]);
    expect(() => a().hostCaptureLedger(['launch'])).toThrow("hostCaptureLedger: unknown event 'launch'");
  });
});

// A copy of the addon whose RUNPATH names no folder, as on a machine other than the one that
// built it: loaded by the library in a child process, with LD_LIBRARY_PATH unset.
describe.skipIf(!host.addon)('finding cuDNN where the loader does not', () => {
  const cudnnDir = dirname(String((host.addon as unknown as Binding | null)?.info().cudnnLibrary ?? ''));
  const bytes = host.addon ? readFileSync(addonPath) : Buffer.alloc(0);
  const at = bytes.indexOf(Buffer.from(cudnnDir));
  const dir = mkdtempSync(join(tmpdir(), 'cudnn-resnet-runpath-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const canScrub = at >= 0 && cudnnDir.length > 10 && existsSync(join(root, 'dist/backend/load.js'));
  if (!canScrub) console.log(`[skip] cuDNN search: the addon's RUNPATH does not name ${cudnnDir} (built with CUDNN_ROOT?) or dist/ is not built`);

  const loadIn = (env: NodeJS.ProcessEnv) => {
    const script = `import(${JSON.stringify(join(root, 'dist/backend/load.js'))}).then((m) => {
      const { info, reason } = m.loadBackend('cuda');
      console.log(JSON.stringify({ reason, library: info ? info.cudnnLibrary : null }));
    })`;
    const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env, CUDNN_RESNET_ADDON_DIR: dir };
    delete childEnv.LD_LIBRARY_PATH;
    const r = spawnSync(process.execPath, ['-e', script], { env: childEnv, encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    return JSON.parse(r.stdout.trim().split('\n').pop()!) as { reason: string | null; library: string | null };
  };

  test.skipIf(!canScrub)("loads libcudnn.so.9 from python3's nvidia-cudnn wheel, and says which it loaded", () => {
    const scrubbed = Buffer.from(bytes);
    scrubbed.write('/nonexistent/'.padEnd(cudnnDir.length, 'x'), at, 'latin1');
    writeFileSync(join(dir, 'cudnn_resnet_cuda.node'), scrubbed);
    const found = loadIn({});
    expect(found.reason ?? '').not.toMatch(/libcudnn/);
    expect(found.library).toBe(join(cudnnDir, 'libcudnn.so.9'));
    const missing = loadIn({ CUDNN_RESNET_PYTHON: 'false' });
    expect(missing.reason).toMatch(/^libcudnn\.so\.9 not found \(needed by cudnn_resnet_cuda\.node; .*not in python3's nvidia-cudnn wheel or torch either/);
  });
});

describe('devices', () => {
  test("'cuda:N' names GPU N; 'cuda:0' is 'cuda'; anything else is refused", () => {
    for (const bad of ['cuda:64', 'cuda:01', 'cuda:-1', 'cuda:', 'gpu', 'CUDA']) {
      expect(() => zeros([1], { backend: bad as never }), bad).toThrow(new TypeError(`zeros: backend must be one of 'cpu', 'cuda', 'cuda:N' (N a GPU index), got '${bad}'`));
    }
    if (cuda.available) {
      const t = zeros([2], { backend: 'cuda:0' });
      expect(t.backend).toBe('cuda');
      t.dispose();
    } else {
      expect(() => zeros([1], { backend: 'cuda:0' })).toThrow(`backend 'cuda' is unavailable: ${cuda.reason}`);
    }
  });

  test.skipIf(!host.addon)("'cuda:1' is an instance of its own, bound to GPU 1 before its first op", () => {
    const one = loadBackend('cuda:1');
    expect(one.info).toMatchObject({ backend: 'cuda', deviceIndex: 1 });
    const count = cuda.details.deviceCount as number | undefined;
    if (count !== undefined && count > 1) {
      expect(one.reason).toBeNull();
      expect(backends().map((b) => b.name)).toContain('cuda:1');
    } else {
      expect(one.reason).toMatch(count === 1 ? /^no CUDA device 1: the driver sees 1 GPU/ : /./);
      expect(() => zeros([1], { backend: 'cuda:1' })).toThrow(`backend 'cuda:1' is unavailable: ${one.reason}`);
      expect(backends().map((b) => b.name)).not.toContain('cuda:1');
    }
  });

  test.skipIf(!host.addon)('useDevice checks its index; the CPU backend has device 0 only', () => {
    const b = host.addon as unknown as Binding;
    expect(() => b.useDevice(64)).toThrow(new RangeError('useDevice: expected a device index in [0, 64), got 64'));
    expect(() => b.useDevice(-1)).toThrow(RangeError);
    expect(() => b.useDevice('1' as never)).toThrow(TypeError);
    const cpu = loadBackend('cpu').binding;
    if (!cpu) return;
    expect(() => cpu.useDevice(0)).not.toThrow();
    expect(() => cpu.useDevice(1)).toThrow(new RangeError('useDevice: the cpu backend has one device, 0; got 1'));
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

// "[N, C, H, W] strides [...] float" of a packed NCHW float32 tensor.
const packed = (s: readonly number[]) => `[${s.join(', ')}] strides [${[s[1]! * s[2]! * s[3]!, s[2]! * s[3]!, s[3]!, 1].join(', ')}] float`;
// A channels-last descriptor of logical NCHW dims: the layout of 4-D half-precision buffers.
const cudnnType = (dtype: 'bfloat16' | 'float16') => (dtype === 'float16' ? 'half' : dtype);
const channelsLast = (s: readonly number[], dtype: 'bfloat16' | 'float16') =>
  `[${s.join(', ')}] strides [${[s[1]! * s[2]! * s[3]!, 1, s[3]! * s[1]!, s[1]!].join(', ')}] ${cudnnType(dtype)}`;

describe.skipIf(!host.addon)("the ops' cuDNN plans (host side, no GPU needed)", () => {
  const nets: [string, Layers, number, number][] = [
    ['ResNet-50, 224x224, batch 64', resnet50Layers(64, 224), 54, 2],
    ['ResNet-20, 32x32, batch 128', resnet20Layers(128), 21, 1],
  ];
  test.each(nets)('%s: every conv and pool plan matches the TypeScript layer and tells cuDNN what the op means', (_name, layers, nConv, nPool) => {
    expect(layers.convs.length).toBe(nConv);
    expect(layers.pools.length).toBe(nPool);
    for (const [x, w, stride, pad] of layers.convs) {
      const y = [x[0], w[0], windowOutput(x[2], w[2], stride, pad, 1), windowOutput(x[3], w[3], stride, pad, 1)];
      for (const tf32 of [false, true]) {
        const p = a().hostConvPlan(x, w, [stride, stride], [pad, pad], [1, 1], 1, tf32);
        expect(p, `conv ${x} ${w} tf32 ${tf32}`).toEqual({
          y, cudnnY: y, x: packed(x), yDesc: packed(y), bias: packed([1, w[0], 1, 1]), w: `[${w.join(', ')}] NCHW float`,
          padding: [pad, pad], stride: [stride, stride], dilation: [1, 1], crossCorrelation: true, computeFloat: true, groups: 1,
          math: tf32 ? 'default' : 'FMA',
        });
      }
      // Half precision: NHWC activations, OHWI weights, float accumulation, tensor cores whatever TF32 says.
      for (const dtype of HALF) {
        expect(a().hostConvPlan(x, w, [stride, stride], [pad, pad], [1, 1], 1, false, dtype), `conv ${x} ${w} ${dtype}`).toEqual({
          y, cudnnY: y, x: channelsLast(x, dtype), yDesc: channelsLast(y, dtype), bias: channelsLast([1, w[0], 1, 1], dtype),
          w: `[${w.join(', ')}] NHWC ${cudnnType(dtype)}`, padding: [pad, pad], stride: [stride, stride], dilation: [1, 1],
          crossCorrelation: true, computeFloat: true, groups: 1, math: 'tensor-op',
        });
      }
    }
    for (const [x, k, stride, pad, mode] of layers.pools) {
      const y = [x[0], x[1], windowOutput(x[2], k, stride, pad, 1), windowOutput(x[3], k, stride, pad, 1)];
      const common = {
        y, cudnnY: y, mode: mode === 'max' ? 'max-deterministic' : 'average-count-include-padding',
        propagateNan: true, kernel: [k, k], padding: [pad, pad], stride: [stride, stride],
      };
      expect(a().hostPoolPlan(x, [k, k], [stride, stride], [pad, pad], mode), `${mode} pool ${x}`)
        .toEqual({ ...common, xDesc: packed(x), yDesc: packed(y) });
      for (const dtype of HALF) {
        expect(a().hostPoolPlan(x, [k, k], [stride, stride], [pad, pad], mode, dtype), `${mode} pool ${x} ${dtype}`)
          .toEqual({ ...common, xDesc: channelsLast(x, dtype), yDesc: channelsLast(y, dtype) });
      }
    }
    // Every batch norm of these networks has C % 4 == 0: in float16 each ReLU tail runs fused on
    // cuDNN, NHWC with float32 statistics; bfloat16 runs cuDNN's float32 batch norm on float32
    // copies (batch_norm.cc says why); float32 and tails without a ReLU compose.
    for (const [x, w] of layers.convs) {
      const y = [x[0], w[0], x[2], x[3]];
      for (const dtype of HALF) {
        const fused = dtype === 'float16';
        expect(a().hostBatchNormTail(y, dtype, true, true), `bn ${y} ${dtype}`).toEqual({
          x: channelsLast(y, dtype), stats: packed([1, w[0], 1, 1]), fused, computes: fused ? 'float16' : 'float32',
          ops: 'bn-add-activation', activation: 'relu',
        });
        expect(a().hostBatchNormTail(y, dtype, false, false).fused).toBe(false);
      }
      expect(a().hostBatchNormTail(y, 'float32', true, false)).toMatchObject({ x: packed(y), fused: false, computes: 'float32', ops: 'bn-activation' });
    }
  });

  test('the fused batch-norm tail wants float16 and C % 4 == 0; other channel counts and bfloat16 compose', () => {
    for (const [c, fused] of [[3, false], [4, true], [6, false], [20, true], [2050, false]] as const) {
      for (const dtype of HALF) {
        expect(a().hostBatchNormTail([2, c, 3, 3], dtype, true, false).fused, `C = ${c} ${dtype}`).toBe(fused && dtype === 'float16');
      }
    }
  });

  test('dilated, grouped and asymmetric geometry agree too; batch norm derives [1, C, 1, 1] statistics', () => {
    const cases: [Shape4, Shape4, Pair, Pair, Pair, number][] = [
      [[2, 3, 11, 13], [7, 3, 5, 3], [3, 2], [2, 1], [1, 2], 1],
      [[1, 20, 5, 5], [12, 5, 2, 2], [1, 2], [1, 0], [2, 1], 4],
      [[3, 8, 10, 10], [8, 8, 3, 3], [1, 1], [2, 2], [2, 2], 1],
    ];
    for (const [x, w, s, p, d, g] of cases) {
      const y = [x[0], w[0], windowOutput(x[2], w[2], s[0], p[0], d[0]), windowOutput(x[3], w[3], s[1], p[1], d[1])];
      expect(a().hostConvPlan(x, w, s, p, d, g, false)).toMatchObject({ y, cudnnY: y, stride: s, padding: p, dilation: d, groups: g });
    }
    expect(a().hostPoolPlan([3, 5, 6, 5], [3, 2], [1, 2], [1, 0], 'max')).toMatchObject({ y: [3, 5, 6, 2], cudnnY: [3, 5, 6, 2] });
    expect(a().hostBatchNormPlan([8, 16, 5, 7])).toBe(packed([1, 16, 1, 1]));
  });

  test("the plans take the front end's geometry, whose checks refuse what cuDNN would", () => {
    expect(() => a().hostConvPlan([1, 4, 5, 5], [2, 3, 3, 3], [1, 1], [0, 0], [1, 1], 1, false))
      .toThrow(new RangeError('conv2d: channels do not match groups = 1 (input [1, 4, 5, 5], weight [2, 3, 3, 3])'));
    expect(() => a().hostPoolPlan([1, 4, 5, 5], [3, 3], [1, 1], [2, 2], 'avg')).toThrow(/padding must be between 0 and half the kernel/);
  });
});

describe.skipIf(!host.addon)("the convolution's choice of algorithm (conv2d.cc, against a simulated cuDNN)", () => {
  const GiB = 2 ** 30;
  test('candidates: runnable and within the workspace cap, best first, FMA math without TF32, the fallback last', () => {
    const ranked: [number, boolean, number, string][] = [
      [1, true, 4096, 'tensor-op'], [6, false, 0, 'default'], [5, true, 2 * GiB, 'default'], [1, true, 8, 'FMA'], [2, true, 0, 'default'],
    ];
    expect(a().hostConvCandidates(ranked, false, 0)).toEqual([[1, 'FMA'], [2, 'FMA'], [0, 'FMA']]);
    expect(a().hostConvCandidates(ranked, true, 0)).toEqual([[1, 'tensor-op'], [1, 'FMA'], [2, 'default'], [0, 'default']]);
    // The fallback is not repeated when the ranking has it (with any math type).
    expect(a().hostConvCandidates([[0, true, 0, 'tensor-op'], [1, true, 0, 'tensor-op']], true, 0)).toEqual([[0, 'tensor-op'], [1, 'tensor-op']]);
    expect(a().hostConvCandidates([], false, 0)).toEqual([[0, 'FMA']]);
  });

  test('TF32 is the most precision given up: a ranked down-conversion to FP16/BF16 runs as tensor-op math, once', () => {
    const ranked: [number, boolean, number, string][] = [
      [1, true, 0, 'tensor-op-conversion'], [1, true, 0, 'tensor-op'], [2, true, 0, 'tensor-op-conversion'], [0, true, 0, 'FMA'],
    ];
    expect(a().hostConvCandidates(ranked, true, 0)).toEqual([[1, 'tensor-op'], [2, 'tensor-op'], [0, 'FMA']]);
    expect(a().hostConvCandidates(ranked, false, 0)).toEqual([[1, 'FMA'], [2, 'FMA'], [0, 'FMA']]);
  });

  test('each call starts from the candidate that ran last and goes round the list; the first failure is reported when none runs', () => {
    const r = a().hostConvWalk(4, [[], [], [0], [0, 1], [1, 2], [0, 1, 2, 3], [3]]);
    expect(r.map((c) => c.tried)).toEqual([[0], [0], [0, 1], [1, 2], [2, 3], [3, 0, 1, 2], [3, 0]]);
    expect(r.map((c) => c.chosen)).toEqual([0, 0, 1, 2, 3, undefined, 0]);
    // Logged when the choice is first made or changes, not on every call.
    expect(r.map((c) => c.logged)).toEqual([0, null, 1, 2, 3, undefined, 0]);
    expect(r[5]).toMatchObject({ code: 'CUDNN_STATUS_NOT_SUPPORTED' });
    expect(r[5]!.message).toBe('hostConvWalk: no cuDNN algorithm ran this convolution (candidate 3: not supported; candidate 0: not supported; ' +
      'candidate 1: not supported; candidate 2: not supported)');
  });
});

describe.skipIf(!host.addon)("the kernels' per-thread code over their launch grids, on the CPU, vs float64 references", () => {
  const rng = new Rng(99);
  const floats = (n: number, scale = 1) => Float32Array.from({ length: n }, () => rng.normal() * scale);
  const f64 = (v: Float32Array) => Float64Array.from(v);
  // The values a half-precision buffer holds, by the library's host conversions.
  const rounded = (v: Float32Array, dtype: 'bfloat16' | 'float16') => Float64Array.from(v, (e) =>
    (dtype === 'bfloat16' ? fromBFloat16Bits(toBFloat16Bits(e)) : fromFloat16Bits(toFloat16Bits(e))));

  test('relu, reluBackward, add, addRelu; every index exactly once, past the 65535-block cap too', () => {
    const n = 1000;
    const x = floats(n);
    const y = floats(n);
    x[0] = 0;
    x[1] = Number.NaN;
    const same = (got: Float32Array, want: Float64Array, what: string) =>
      expect(Array.from(got, (v) => v + 0), what).toEqual(Array.from(Float32Array.from(want), (v) => v + 0));
    same(a().hostElementwise('relu', x), Float64Array.from(x, (v) => (v > 0 || Number.isNaN(v) ? v : 0)), 'relu');
    same(a().hostElementwise('add', x, y), ref.add(f64(x), f64(y)), 'add');
    same(a().hostElementwise('addRelu', x.subarray(2), y.subarray(2)), ref.addRelu(f64(x.subarray(2)), f64(y.subarray(2))), 'addRelu');
    same(a().hostElementwise('reluBackward', x.subarray(2), y.subarray(2)), ref.reluBackward(f64(x.subarray(2)), f64(y.subarray(2))), 'reluBackward');
    // Blocks() caps the grid at 65535 blocks of 256: beyond that every thread takes a second index.
    const big = 65535 * 256 + 777;
    const v = new Float32Array(big);
    for (let i = 0; i < big; i++) v[i] = (i % 7) - 3;
    const r = a().hostElementwise('relu', v);
    let wrong = 0;
    for (let i = 0; i < big; i++) if (r[i] !== Math.max(v[i]!, 0)) wrong++;
    expect(wrong).toBe(0);
  });

  // Half precision: each operand widened exactly, the arithmetic in float32, one rounding to
  // nearest even at the store (native/common/half.h, as the library's host conversions).
  test.each(HALF)('relu, reluBackward, add, addRelu in %s: float arithmetic, one rounding', (dtype) => {
    const n = 3000;
    const x = floats(n, 100);
    const y = floats(n, 0.01);
    x[0] = Number.NaN;
    const xh = rounded(x, dtype);
    const yh = rounded(y, dtype);
    const store = (v: number) => rounded(Float32Array.of(Math.fround(v)), dtype)[0]!;
    const want = {
      relu: Array.from(xh, (v) => (v > 0 || Number.isNaN(v) ? v : 0)),
      reluBackward: Array.from(xh, (v, i) => (v > 0 ? yh[i]! : 0)),
      add: Array.from(xh, (v, i) => store(v + yh[i]!)),
      addRelu: Array.from(xh, (v, i) => Math.max(store(v + yh[i]!), 0)),
    };
    for (const op of ['relu', 'reluBackward', 'add', 'addRelu'] as const) {
      const got = a().hostElementwise(op, x, op === 'relu' ? null : y, dtype);
      const expected = want[op];
      expect(Number.isNaN(got[0]), `${op} NaN`).toBe(op !== 'reluBackward');
      expect(Array.from(got.subarray(1), (v) => v + 0), op).toEqual(expected.slice(1).map((v) => v + 0));
    }
  });

  test.each([[0], [0.1]])('softmax cross-entropy, label smoothing %f: rows strided over the block, then its tree sum', (smoothing) => {
    for (const [n, k] of [[128, 10], [1000, 10], [7, 1000]] as Pair[]) {
      const logits = floats(n * k, 3);
      const labels = Int32Array.from({ length: n }, () => Math.floor(rng.uniform() * k));
      const want = ref.softmaxCrossEntropy(f64(logits), [n, k], labels, smoothing);
      const [loss, probs] = a().hostSoftmaxCrossEntropy(logits, labels, n, k, smoothing);
      expect(relError([loss], [want.loss]), `loss n ${n} k ${k}`).toBeLessThanOrEqual(1e-6);
      // probs = softmax = dlogits·N + q
      const wantProbs = want.dlogits.map((d, i) => d * n + (i % k === labels[Math.floor(i / k)] ? 1 - smoothing : 0) + smoothing / k);
      expect(relError(probs, wantProbs), `probs n ${n} k ${k}`).toBeLessThanOrEqual(1e-6);
      const dx = a().hostSoftmaxCrossEntropyBackward(probs, labels, n, k, smoothing, 0.75);
      expect(relError(dx, want.dlogits.map((d) => d * 0.75)), `dlogits n ${n} k ${k}`).toBeLessThanOrEqual(1e-5);
    }
    const bad = Int32Array.of(0, 3);
    expect(() => a().hostSoftmaxCrossEntropy(floats(6), bad, 2, 3, 0)).toThrow(/label 3 at row 1 out of range/);
    expect(() => a().hostSoftmaxCrossEntropyBackward(floats(6), bad, 2, 3, 0, 1)).toThrow(/label 3 at row 1 out of range/);
  });

  // A ResNet-50's 161 parameters: four launches of up to 48 tensors, most of them small; one
  // tensor past 1024 blocks of 256 makes its threads stride.
  test.each([
    [0, 0, false],
    [0.9, 0, false],
    [0.9, 5e-4, true],
  ] as [number, number, boolean][])('SGD over 161 tensors in chunks, momentum %f, weight decay %f, nesterov %s, two steps', (momentum, weightDecay, nesterov) => {
    const sizes = Array.from({ length: 161 }, (_, i) => (i === 100 ? 300_000 : 1 + Math.floor(rng.uniform() * 3000)));
    const p0 = sizes.map((n) => floats(n));
    const grads = [0, 1].map(() => sizes.map((n) => floats(n)));
    let params: Float32Array[] = p0;
    let bufs: Float32Array[] | null = momentum ? sizes.map((n) => new Float32Array(n)) : null;
    let launches: Pair[] = [];
    for (const step of [0, 1]) {
      ({ params, bufs, launches } = a().hostSgdStep(params, grads[step]!, bufs, 0.1, momentum, weightDecay, nesterov, step === 0));
    }
    const blocks = (n: number) => Math.min(Math.ceil(n / 256), 1024);
    const chunkBlocks = [0, 48, 96, 144].map((s) => blocks(Math.max(...sizes.slice(s, s + 48))));
    expect(launches).toEqual([[48, chunkBlocks[0]], [48, chunkBlocks[1]], [48, 1024], [17, chunkBlocks[3]]]);
    const want = ref.sgdReference(p0.map(f64), grads.map((g) => g.map(f64)), { lr: 0.1, momentum, weightDecay, nesterov });
    params.forEach((p, i) => expect(relError(p, want.params[i]!), `param ${i}`).toBeLessThanOrEqual(1e-5));
    if (momentum) bufs!.forEach((b, i) => expect(relError(b, want.momentumBuffers![i]!), `buffer ${i}`).toBeLessThanOrEqual(1e-5));
    else expect(bufs).toBeNull();
  });

  // The ResNet stem's 3x3/2 max pooling, an asymmetric one, one without overlap, and inputs full
  // of exact ties (post-ReLU activations): the gradient goes to each window's first maximum.
  test.each([
    [[2, 3, 9, 9], [3, 3], [2, 2], [1, 1], false],
    [[3, 5, 6, 5], [3, 2], [1, 2], [1, 0], false],
    [[1, 4, 6, 6], [2, 2], [2, 2], [0, 0], true],
    [[2, 3, 7, 7], [3, 3], [2, 2], [1, 1], true],
  ] as [Shape4, Pair, Pair, Pair, boolean][])('pooling backwards %j kernel %j stride %j padding %j, ties %s', (shape, kernel, stride, padding, ties) => {
    const n = shape.reduce((p, q) => p * q, 1);
    const x = ties ? Float32Array.from({ length: n }, () => Math.floor(rng.uniform() * 3)) : floats(n);
    const params = { kernel, stride, padding };
    const yShape = ref.maxPool2dForward(f64(x), shape, params).shape;
    const dy = floats(yShape.reduce((p, q) => p * q, 1));
    const max = a().hostPoolBackward('max', x, dy, shape, kernel, stride, padding);
    expect(relError(max, ref.maxPool2dBackward(f64(x), shape, f64(dy), params))).toBeLessThanOrEqual(1e-6);
    const avg = a().hostPoolBackward('avg', null, dy, shape, kernel, stride, padding);
    expect(relError(avg, ref.avgPool2dBackward(shape, f64(dy), params))).toBeLessThanOrEqual(1e-6);
    // Half precision, channels-last: against the reference on the values the buffers hold, each
    // element within its own rounding (u·|r|) and float accumulation of a few terms.
    for (const dtype of HALF) {
      const u = dtype === 'bfloat16' ? 2 ** -8 : 2 ** -11;
      const xh = rounded(x, dtype);
      const dyh = rounded(dy, dtype);
      const within = (got: Float32Array, want: Float64Array, what: string) => {
        const scale = Math.max(...want.map(Math.abs));
        for (let i = 0; i < want.length; i++) {
          expect(Math.abs(got[i]! - want[i]!), `${what} ${dtype} element ${i}`).toBeLessThanOrEqual(u * Math.abs(want[i]!) + 1e-6 * scale);
        }
      };
      within(a().hostPoolBackward('max', x, dy, shape, kernel, stride, padding, dtype), ref.maxPool2dBackward(xh, shape, dyh, params), 'max');
      within(a().hostPoolBackward('avg', null, dy, shape, kernel, stride, padding, dtype), ref.avgPool2dBackward(shape, dyh, params), 'avg');
    }
  });

  // The one conversion kernel behind uploads, readbacks, reshapes and casts (kernels::Convert).
  test.each(HALF)('%s buffers: 4-D ones are channels-last in memory, everything else plain; reshapes and readbacks keep row-major order', (dtype) => {
    const cases: [number[], number[]][] = [
      [[2, 3, 4, 5], [2, 3, 4, 5]],
      [[2, 3, 4, 5], [6, 20]],
      [[4, 6, 1, 1], [4, 6]],
      [[24, 5], [3, 2, 4, 5]],
      [[2, 3, 4, 5], [5, 4, 3, 2]],
      [[7, 11], [77]],
    ];
    for (const [shape, to] of cases) {
      const n = shape.reduce((p, q) => p * q, 1);
      const v = floats(n, 10);
      const want = rounded(v, dtype);
      const r = a().hostConvert(v, shape, dtype, to);
      const layoutOf = (s: number[]) => (s.length === 4 ? (i: number) => {
        const [, C, H, W] = s as unknown as Shape4;
        const b = Math.floor(i / (C * H * W));
        const c = Math.floor(i / (H * W)) % C;
        const hw = i % (H * W);
        return ((b * H * W) + hw) * C + c;
      } : (i: number) => i);
      for (const [physical, s] of [[r.physical, shape], [r.reshaped, to]] as const) {
        const at = layoutOf(s);
        const got = Float64Array.from({ length: n }, (_, i) => physical[at(i)]!);
        expect(Array.from(got), `${shape} -> ${to}: ${s} in memory`).toEqual(Array.from(want));
      }
      expect(Array.from(r.plain), `${shape} -> ${to} read back`).toEqual(Array.from(want));
    }
  });
});

// On a GPU: the asynchronous paths of uploads (pinned staging on the copy stream) and sync
// points (events waited for off the worker).
describe.skipIf(!cuda.available)('uploads and readbacks on the GPU', () => {
  test('uploads snapshot the array, reuse pinned buffers, and arrive before the ops that read them', async () => {
    const rng = new Rng(7);
    const pending: [Promise<Float32Array>, Float32Array][] = [];
    for (let i = 0; i < 64; i++) {
      const v = Float32Array.from({ length: 4099 }, () => rng.normal());
      const want = Float32Array.from(v, (e) => Math.max(e, 0));
      const t = tensor(v, [4099], { backend: 'cuda' });
      v.fill(Number.NaN);
      const r = ops.relu(t);
      pending.push([r.data() as Promise<Float32Array>, want]);
      t.dispose();
      r.dispose();
    }
    for (const [p, want] of pending) expect(Array.from(await p)).toEqual(Array.from(want));
  });

  test('a bad label fails the next sync point with the op, once; sync, syncBlocking and downloadSync agree', async () => {
    const b = bindingOf('cuda');
    const logits = b.upload(Float32Array.of(1, 2, 3, 4, 5, 6), [2, 3]);
    const labels = b.upload(Int32Array.of(0, 7), [2]);
    const [loss, probs] = b.softmaxCrossEntropyForward(logits, labels, 0);
    await expect(b.download(loss)).rejects.toMatchObject({ code: 'ERR_LABEL_OUT_OF_RANGE', op: 'softmaxCrossEntropy [2, 3] [2]' });
    await expect(b.sync()).resolves.toBeUndefined();
    expect(() => b.syncBlocking()).not.toThrow();
    expect(Array.from(b.downloadSync(logits))).toEqual([1, 2, 3, 4, 5, 6]);
    for (const h of [logits, labels, loss, probs]) b.release(h);
  });

  // The fused tail's saved3 holds cuDNN's reserve space for one shape and tail: a backward of
  // another one is refused at the call, before cuDNN would read a reserve of the wrong size.
  test.each(HALF)('%s: saved3 of a fused batch-norm tail is refused for another shape or tail', (dtype) => {
    const b = bindingOf('cuda');
    const x = b.upload(new Float32Array(2 * 8 * 3 * 3).fill(1), [2, 8, 3, 3], dtype);
    const other = b.upload(new Float32Array(2 * 8 * 3 * 4).fill(1), [2, 8, 3, 4], dtype);
    const gamma = b.fill([8], 1, 'float32');
    const beta = b.fill([8], 0, 'float32');
    const [y, s1, s2, s3] = b.batchNormForwardTraining(x, gamma, beta, null, null, 0.1, 1e-5, null, true);
    expect(s3).not.toBeNull();
    expect(() => b.batchNormBackward(other, other, other, gamma, s1, s2, s3, 1e-5, false, true))
      .toThrow(/saved3 does not come from a training forward of input \[2, 8, 3, 4\]/);
    expect(() => b.batchNormBackward(x, y, x, gamma, s1, s2, s3, 1e-5, true, true)).toThrow(/residual yes, relu yes/);
    const grads = b.batchNormBackward(x, y, y, gamma, s1, s2, s3, 1e-5, false, true);
    expect(Array.from(b.downloadSync(grads[0]))).toEqual(new Array(2 * 8 * 9).fill(0));
    for (const h of [x, other, gamma, beta, y, s1, s2, s3!, ...grads.filter((g) => g !== null)]) b.release(h!);
  });
});

// A GPU machine has the driver but maybe no CUDA runtime library on the loader's path: the
// runtime is linked in, and only cuDNN is looked for at load time.
describe.skipIf(!host.addon)('build', () => {
  test('the CUDA runtime is static; cuDNN is the one CUDA library loaded at run time', () => {
    const nm = spawnSync('nm', ['--version']);
    if (nm.status !== 0) return;
    const undefinedSymbols = execFileSync('nm', ['-D', '--undefined-only', addonPath], { encoding: 'utf8' });
    // The runtime is static (no cudart symbol is left for the loader); cuDNN is dynamic.
    expect(undefinedSymbols).not.toMatch(/\bcuda[A-Z]\w+/);
    expect(undefinedSymbols).toMatch(/\bcudnnCreate\b/);
  });
});
