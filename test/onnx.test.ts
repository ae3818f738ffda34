/**
 * ONNX export, checked by a client nobody here wrote: each exported network runs in
 * onnxruntime-node (CPU) and its logits must match the library's evaluation forward with a
 * relative error in the max norm of at most 1e-5, at batch 1 and 7, with random inputs and
 * batch-norm statistics drawn away from their defaults. Both compute in float32 from the same
 * weights; what differs is the order of the sums (oneDNN's and MLAS's convolutions), a few
 * float32 roundings per layer. Where python3 can import onnx, its checker validates the files
 * too.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { afterAll, describe, expect, test } from 'vitest';
import { type Tensor, exportOnnx, memory, models, nn, noGrad, tensor, tidy, train } from '../lib/index.js';
import { DEFAULTS, buildModel } from '../lib/cli/run.js';
import { Rng, pythonLacks, relError } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'cr-onnx-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Batch-norm parameters and running statistics away from 1 and 0, so that evaluation mode is exercised. */
function randomizeBatchNorm(net: nn.Module, seed: number): void {
  const rng = new Rng(seed);
  const u = (n: number, lo: number, hi: number) => tensor(Float32Array.from({ length: n }, () => lo + (hi - lo) * rng.uniform()), [n], { backend: 'cpu' });
  const dict: Record<string, Tensor> = {};
  for (const [name, m] of net.namedModules()) {
    if (!(m instanceof nn.BatchNorm2d)) continue;
    const c = m.numFeatures;
    dict[`${name}.weight`] = u(c, 0.5, 1.5);
    dict[`${name}.bias`] = u(c, -0.2, 0.2);
    dict[`${name}.running_mean`] = u(c, -0.2, 0.2);
    dict[`${name}.running_var`] = u(c, 0.5, 1.5);
  }
  net.loadStateDict(dict, { strict: false });
  for (const t of Object.values(dict)) t.dispose();
}

function input(shape: number[], seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.normal());
}

/** The library's evaluation logits and onnxruntime's for the same input. */
async function compare(net: nn.Module, session: ort.InferenceSession, shape: number[], seed: number): Promise<number> {
  const x = input(shape, seed);
  const xt = tensor(x, shape, { backend: 'cpu' });
  const y = noGrad(() => tidy(() => net.eval().forward(xt)));
  const mine = y.dataSync();
  xt.dispose();
  y.dispose();
  const out = await session.run({ input: new ort.Tensor('float32', x, shape) });
  const theirs = out.output!;
  expect(theirs.dims).toEqual(y.shape);
  return relError(mine, theirs.data as Float32Array);
}

/** Field `field`'s length-delimited payloads in a protocol-buffer message (enough to read names back). */
function fields(buf: Uint8Array, field: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let p = 0;
  const varint = () => {
    let v = 0;
    for (let s = 1; ; s *= 128) {
      const b = buf[p++]!;
      v += (b & 0x7f) * s;
      if (b < 0x80) return v;
    }
  };
  while (p < buf.length) {
    const key = varint();
    const wire = key % 8;
    if (wire === 0) varint();
    else if (wire === 5) p += 4;
    else if (wire === 1) p += 8;
    else {
      const len = varint();
      if (Math.floor(key / 8) === field) out.push(buf.subarray(p, p + len));
      p += len;
    }
  }
  return out;
}
const text = (b: Uint8Array) => new TextDecoder().decode(b);

const onnxCheckerMissing = pythonLacks('onnx');
if (onnxCheckerMissing) console.log(`[skip] onnx.checker on the exported files: ${onnxCheckerMissing}`);

interface Case {
  name: string;
  make: () => nn.Module;
  shape: [number, number, number];
}

const cases: Case[] = [
  { name: 'CIFAR ResNet-20, option A', make: () => models.cifarResNet({ depth: 20, seed: 1, backend: 'cpu' }), shape: [3, 32, 32] },
  { name: 'CIFAR ResNet-20, option B', make: () => models.cifarResNet({ depth: 20, shortcut: 'B', seed: 2, backend: 'cpu' }), shape: [3, 32, 32] },
  { name: 'plain CIFAR net (20 layers)', make: () => models.cifarResNet({ depth: 20, plain: true, seed: 3, backend: 'cpu' }), shape: [3, 32, 32] },
  { name: 'ResNet-20 with stochastic depth (evaluation scales the branches)', make: () => models.cifarResNet({ depth: 20, dropPath: 0.5, seed: 4, backend: 'cpu' }), shape: [3, 32, 32] },
  { name: 'pre-activation ResNet-20 (bottlenecks, 9n+2)', make: () => models.preActResNet({ depth: 20, seed: 5, backend: 'cpu' }), shape: [3, 32, 32] },
  {
    name: 'pre-activation basic blocks with option A and stochastic depth',
    make: () => new models.ResNet({ block: 'preact', layers: [2, 2, 2], widths: [16, 32, 64], stem: 'cifar', shortcut: 'A', dropPath: 0.3, numClasses: 10, seed: 6, backend: 'cpu' }),
    shape: [3, 32, 32],
  },
  { name: 'WRN-10-2', make: () => models.wideResNet({ depth: 10, widen: 2, seed: 7, backend: 'cpu' }), shape: [3, 32, 32] },
  { name: 'ResNet-18', make: () => models.resnet18({ seed: 8, backend: 'cpu' }), shape: [3, 64, 64] },
  { name: 'ResNet-50', make: () => models.resnet50({ seed: 9, backend: 'cpu' }), shape: [3, 64, 64] },
  {
    name: 'an nn.Sequential of the layers (grouped, dilated and biased convolutions, both poolings, a layer used twice)',
    make: () => {
      const twice = new nn.Conv2d(16, 16, 3, { padding: 1, seed: 4, backend: 'cpu' });
      return new nn.Sequential(
        new nn.Conv2d(3, 8, 3, { padding: 1, seed: 1, backend: 'cpu' }), new nn.BatchNorm2d(8, { backend: 'cpu' }), new nn.ReLU(),
        new nn.MaxPool2d(3, { stride: 2, padding: 1 }), new nn.AvgPool2d(3, { stride: 1, padding: 1 }),
        new nn.Conv2d(8, 16, 3, { groups: 4, dilation: 2, padding: 2, stride: 2, bias: true, seed: 2, backend: 'cpu' }),
        twice, new nn.ReLU(), twice,
        new nn.GlobalAvgPool(), new nn.Flatten(), new nn.Linear(16, 5, { seed: 3, backend: 'cpu' }),
      );
    },
    shape: [3, 17, 15],
  },
];

describe('exported models run in onnxruntime-node with the library\'s logits', () => {
  test.each(cases.map((c, i) => [c.name, i] as const))('%s', async (_name, i) => {
    const c = cases[i]!;
    const net = c.make();
    const file = join(dir, `model-${i}.onnx`);
    try {
      randomizeBatchNorm(net, 100 + i);
      await exportOnnx(net, file, { inputShape: [1, ...c.shape] });
      const session = await ort.InferenceSession.create(file);
      try {
        expect(session.inputNames).toEqual(['input']);
        expect(session.outputNames).toEqual(['output']);
        for (const batch of [1, 7]) {
          const e = await compare(net, session, [batch, ...c.shape], 1000 * i + batch);
          console.log(`${c.name}, batch ${batch}: relative error ${e.toExponential(2)}`);
          expect(e).toBeLessThanOrEqual(1e-5);
        }
      } finally {
        await session.release();
      }
      // Initializers are the state dict's tensors by name (num_batches_tracked is not needed);
      // constants of the export itself (Slice and Pad sizes, survival factors) are named after their module.
      const graph = fields(readFileSync(file), 7)[0]!;
      const names = fields(graph, 5).map((t) => text(fields(t, 8)[0]!));
      const state = Object.keys(net.stateDict()).filter((k) => !k.endsWith('num_batches_tracked'));
      expect(names.filter((n) => state.includes(n))).toEqual(state);
      expect(names.filter((n) => !state.includes(n)).every((n) => /\.(starts|ends|axes|steps|pads|survival)$/.test(n))).toBe(true);
      if (!onnxCheckerMissing) execFileSync('python3', ['-c', 'import onnx, sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)', file]);
    } finally {
      net.dispose();
    }
    expect(memory().numTensors).toBe(0);
  }, 60_000);
});

describe('options and refusals', () => {
  test('opsets 13 and 21; a static batch is declared as such', async () => {
    const net = models.cifarResNet({ depth: 8, seed: 11, backend: 'cpu' });
    try {
      randomizeBatchNorm(net, 11);
      for (const opset of [13, 21]) {
        const file = join(dir, `opset-${opset}.onnx`);
        await exportOnnx(net, file, { inputShape: [2, 3, 32, 32], opset });
        const session = await ort.InferenceSession.create(file);
        expect(await compare(net, session, [2, 3, 32, 32], opset)).toBeLessThanOrEqual(1e-5);
        await session.release();
      }
      const file = join(dir, 'static.onnx');
      await exportOnnx(net, file, { inputShape: [2, 3, 32, 32], dynamicBatch: false });
      const session = await ort.InferenceSession.create(file);
      expect(await compare(net, session, [2, 3, 32, 32], 5)).toBeLessThanOrEqual(1e-5);
      await expect(session.run({ input: new ort.Tensor('float32', input([3, 3, 32, 32], 1), [3, 3, 32, 32]) })).rejects.toThrow(/input.*[Dd]imension|Got invalid dimensions/);
      await session.release();
    } finally {
      net.dispose();
    }
  });

  test('a module the exporter does not know is an error naming it; so is a subclass that overrides forward', () => {
    class Doubler extends nn.Module {
      forward(x: Tensor): Tensor {
        return x;
      }
    }
    class Reversed extends nn.Sequential {}
    const conv = () => new nn.Conv2d(3, 4, 1, { backend: 'cpu' });
    const a = new nn.Sequential(conv(), new Doubler());
    const b = new Reversed(conv());
    try {
      expect(() => exportOnnx(a, join(dir, 'x.onnx'), { inputShape: [1, 3, 8, 8] })).toThrow(/no ONNX export for '1' \(Doubler\); modules that export: Conv2d, BatchNorm2d/);
      expect(() => exportOnnx(b, join(dir, 'x.onnx'), { inputShape: [1, 3, 8, 8] })).toThrow(/no ONNX export for the model \(Reversed\)/);
    } finally {
      a.dispose();
      b.dispose();
    }
  });

  test('shapes that do not fit, and arguments, are refused at the call', () => {
    const net = models.cifarResNet({ depth: 8, backend: 'cpu' });
    const file = join(dir, 'y.onnx');
    try {
      expect(() => exportOnnx(net, file, { inputShape: [1, 1, 32, 32] })).toThrow(/conv1 \(Conv2d\): expects input \[N, 3, H, W\], the graph has \[1, 1, 32, 32\] there/);
      expect(() => exportOnnx(new nn.Sequential(new nn.Linear(4, 2, { backend: 'cpu' })), file, { inputShape: [1, 4, 1, 1] })).toThrow(/expects input \[N, 4\].*a Flatten before it/);
      expect(() => exportOnnx(new nn.Sequential(), file, { inputShape: [1, 4, 1, 1] })).toThrow(/computes nothing/);
      expect(() => exportOnnx({} as never, file, { inputShape: [1, 3, 32, 32] })).toThrow(/expected model to be an nn.Module/);
      expect(() => exportOnnx(net, file, undefined as never)).toThrow(/inputShape/);
      expect(() => exportOnnx(net, file, { inputShape: [3, 32, 32] as never })).toThrow(/expected inputShape to be \[N, C, H, W\]/);
      expect(() => exportOnnx(net, file, { inputShape: [1, 3, 32, 32], opset: 9 })).toThrow(RangeError);
      expect(() => exportOnnx(net, file, { inputShape: [1, 3, 32, 32], dynamicBatch: 'yes' as never })).toThrow(TypeError);
      expect(() => exportOnnx(net, '', { inputShape: [1, 3, 32, 32] })).toThrow(TypeError);
    } finally {
      net.dispose();
    }
  });
});

describe('cudnn-resnet export', () => {
  test('a training checkpoint becomes an ONNX model with the checkpoint\'s weights', async () => {
    const options = { ...DEFAULTS, depth: 8, dataset: 'fashion-mnist' as const, out: dir };
    const net = buildModel(options, 1, 10);
    const checkpoint = join(dir, 'checkpoint.safetensors');
    const file = join(dir, 'cli.onnx');
    try {
      randomizeBatchNorm(net, 21);
      await train.saveCheckpoint(checkpoint, { model: net, state: { epoch: 3, options } });
      const bin = join(import.meta.dirname, '..', 'bin', 'cudnn-resnet.js');
      const out = execFileSync(process.execPath, [bin, 'export', '--checkpoint', checkpoint, '--onnx', file], { encoding: 'utf8' });
      expect(out).toContain(`${file}: resnet-8 (epoch 3 of ${checkpoint}), input [batch, 1, 28, 28], 10 classes`);
      const session = await ort.InferenceSession.create(file);
      expect(await compare(net, session, [5, 1, 28, 28], 21)).toBeLessThanOrEqual(1e-5);
      await session.release();
      const missing = (() => {
        try {
          execFileSync(process.execPath, [bin, 'export', '--checkpoint', checkpoint], { encoding: 'utf8', stdio: 'pipe' });
          return null;
        } catch (e) {
          return e as { status: number; stderr: string };
        }
      })();
      expect(missing?.status).toBe(2);
      expect(missing!.stderr).toContain('export: --checkpoint FILE and --onnx FILE are required');
    } finally {
      net.dispose();
    }
  });
});
