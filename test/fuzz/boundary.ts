/**
 * The boundary fuzzer: calls every public function of the library, every method of its classes
 * and every function of the native addon with generated arguments, most of them wrong, and checks
 * that each call returns or throws an `Error` with a message: never a crash, a non-Error throw, a
 * hang or an unhandled rejection. Meant to run in a child process (test/fuzz.test.ts), so that a
 * native crash is an exit status and not the death of the test runner.
 *
 *   node --import tsx test/fuzz/boundary.ts [--seed N] [--calls N] [--seconds S] [--start I] [--only NAME]
 *
 * Reproducible: call i of a run with seed s is generated from (s, i) alone; `--start i --calls 1`
 * replays it. With FUZZ_TRACE_FD=3 each call is written to fd 3 before it runs (synchronously),
 * so the parent knows which call a crash happened in. The last stdout line is a JSON summary.
 * @module
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
import * as L from '../../lib/index.js';
import { bindingOf } from '../../lib/backend/backends.js';
import type { Binding, NativeBuffer } from '../../lib/backend/binding.js';
import {
  type Arg, type Fixtures, FuzzTrap, Gen, type Schema, anything, arg, bool, callSeed, constant, custom, either, fn, handle, int, junk, nativePair,
  nullable, number, obj, oneOf, opt, pair, resizable, shape, tensor,
} from './gen.js';

type Lib = typeof L;
type AnyFn = (...args: unknown[]) => unknown;

const root = fileURLToPath(new URL('../../', import.meta.url));

// ---------------------------------------------------------------------------------------------
// The world the calls run in: the library, a second copy of it, the addon, a foreign addon
// instance, and small files of every format.

interface World {
  lib: Lib;
  /** The compiled copy (dist/): its Tensor is another class over the same addon. */
  other: Lib | null;
  binding: Binding;
  /** The addon of each usable backend ('cpu', and 'cuda' where a GPU is usable). */
  natives: Record<string, Binding>;
  /** A second instance of the CPU addon (a copy of the .node loaded under another path). */
  foreign: Binding | null;
  dir: string;
  files: Record<'idx' | 'idxGz' | 'labels' | 'safetensors' | 'checkpoint' | 'torch' | 'garbage' | 'empty' | 'fashion' | 'cifar10' | 'cifar100' | 'out', string>;
}

async function makeWorld(): Promise<World> {
  const dir = mkdtempSync(join(tmpdir(), 'cudnn-resnet-fuzz-'));
  process.env.CUDNN_RESNET_DATA = dir;
  const binding = bindingOf('cpu');
  const natives: Record<string, Binding> = Object.fromEntries(L.backends().filter((b) => b.available).map((b) => [b.name, bindingOf(b.name)]));
  let foreign: Binding | null = null;
  try {
    const copy = join(dir, 'foreign.node');
    copyFileSync(join(root, 'build/Release/cudnn_resnet_cpu.node'), copy);
    const m = { exports: {} as Binding };
    process.dlopen(m, copy);
    foreign = m.exports;
  } catch {
    foreign = null;
  }
  const distIndex = join(root, 'dist/index.js');
  const other = existsSync(distIndex) ? ((await import(pathToFileURL(distIndex).href)) as Lib) : null;

  const idx = (dims: number[], fill: (i: number) => number) => {
    const n = dims.reduce((a, b) => a * b, 1);
    const b = Buffer.alloc(4 + 4 * dims.length + n);
    b.writeUInt32BE(0x00000800 + dims.length, 0);
    dims.forEach((d, i) => b.writeUInt32BE(d, 4 + 4 * i));
    for (let i = 0; i < n; i++) b[4 + 4 * dims.length + i] = fill(i);
    return b;
  };
  const files = {
    idx: join(dir, 'images.idx'), idxGz: join(dir, 'images.idx.gz'), labels: join(dir, 'labels.idx'),
    safetensors: join(dir, 'weights.safetensors'), checkpoint: join(dir, 'checkpoint.safetensors'), torch: join(dir, 'weights.pt'),
    garbage: join(dir, 'garbage.bin'), empty: join(dir, 'empty.bin'), fashion: join(dir, 'fashion-mnist'),
    cifar10: join(dir, 'cifar-10-batches-bin'), cifar100: join(dir, 'cifar-100-binary'), out: join(dir, 'out.safetensors'),
  };
  const images = idx([2, 28, 28], (i) => i % 251);
  const labels = idx([2], (i) => i % 10);
  writeFileSync(files.idx, images);
  writeFileSync(files.idxGz, gzipSync(images));
  writeFileSync(files.labels, labels);
  writeFileSync(files.garbage, Buffer.from('not a file of any format this library reads\n'));
  writeFileSync(files.empty, Buffer.alloc(0));
  copyFileSync(join(root, 'test/fixtures/torch/dtypes.pt'), files.torch);
  mkdirSync(files.fashion);
  for (const split of ['train', 't10k']) {
    writeFileSync(join(files.fashion, `${split}-images-idx3-ubyte.gz`), gzipSync(images));
    writeFileSync(join(files.fashion, `${split}-labels-idx1-ubyte`), labels);
  }
  const record = (labelBytes: number[]) => Buffer.concat([Buffer.from(labelBytes), Buffer.alloc(3072, 7)]);
  mkdirSync(files.cifar10);
  for (const f of ['data_batch_1', 'data_batch_2', 'data_batch_3', 'data_batch_4', 'data_batch_5', 'test_batch']) writeFileSync(join(files.cifar10, `${f}.bin`), record([3]));
  mkdirSync(files.cifar100);
  for (const f of ['train', 'test']) writeFileSync(join(files.cifar100, `${f}.bin`), record([4, 41]));
  const w = L.tensor(new Float32Array([1, 2, 3, 4]), [2, 2], { backend: 'cpu' });
  L.saveSafetensorsSync(files.safetensors, { w });
  w.dispose();
  const model = tinyModel(L);
  await L.train.saveCheckpoint(files.checkpoint, { model, state: { epoch: 1 } });
  model.dispose();
  return { lib: L, other, binding, natives, foreign, dir, files };
}

/** Flatten + Linear(16 → 2) on [N, 1, 4, 4] images: the model every training call uses. */
function tinyModel(lib: Lib) {
  return new lib.nn.Sequential(new lib.nn.Flatten(), new lib.nn.Linear(16, 2, { seed: 1, backend: 'cpu' }));
}

// ---------------------------------------------------------------------------------------------
// Fixtures: fresh tensors and handles for each call, disposed after it.

function makeFixtures(w: World): Fixtures {
  const values = (g: Gen, n: number, dtype: 'float32' | 'int32') => {
    if (dtype === 'int32') return new Int32Array(n);
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = g.rng.normal();
    return a;
  };
  const desc = (dtype: string, s: readonly number[], extra = '') => `T(${dtype} [${s.join(', ')}]${extra})`;
  const fx: Fixtures = {
    tensor(g, s, opts = {}) {
      const dtype = opts.dtype ?? 'float32';
      const lib = opts.instance === 'other' && w.other ? w.other : w.lib;
      const backend = opts.backend === 'cuda' && L.backends()[1]?.available ? 'cuda' : 'cpu';
      const n = s.reduce((a, b) => a * b, 1);
      const t = lib.tensor(values(g, n, dtype), [...s], { backend, dtype, requiresGrad: opts.requiresGrad ?? false }) as L.Tensor<L.DType>;
      g.own(t, (x) => x.dispose());
      const extra = (opts.requiresGrad ? ', requiresGrad' : '') + (lib !== w.lib ? ', other library instance' : '') + (backend !== 'cpu' ? `, ${backend}` : '');
      return arg(t, desc(dtype, s, extra));
    },
    computed(g, s) {
      const x = fx.tensor(g, s, { requiresGrad: true }).v as L.Tensor;
      const y = g.own(L.ops.scale(x, 2), (t) => t.dispose());
      return arg(y, desc('float32', s, ', computed by scale'));
    },
    forgedTensor(g, s) {
      const forged = [
        () => arg(Object.create(L.Tensor.prototype), 'Object.create(Tensor.prototype)'),
        () => {
          const h = fx.handle(g, s);
          const t = Object.create(L.Tensor.prototype, { shape: { value: s }, dtype: { value: 'float32' }, backend: { value: 'cpu' }, _buf: { value: h.v, writable: true }, _node: { value: null } });
          return arg(t, `forged Tensor over a live ${h.d}`);
        },
        () => arg(Object.create(L.Tensor.prototype, { shape: { get: () => { throw new FuzzTrap('shape'); } }, _buf: { value: {} } }), 'forged Tensor whose shape throws'),
        () => {
          const t = fx.tensor(g, s).v as L.Tensor;
          const copy = Object.assign(Object.create(L.Tensor.prototype), { shape: t.shape, dtype: t.dtype, backend: t.backend, _buf: t._buf, _node: null });
          return arg(copy, `Object.assign(Object.create(Tensor.prototype), ${desc('float32', s)})`);
        },
        () => {
          const t = fx.tensor(g, s).v as L.Tensor;
          Object.defineProperty(t, 'shape', { value: [...s, 7] });
          return arg(t, `${desc('float32', s)} with its shape property replaced`);
        },
      ];
      return g.pick(forged)();
    },
    handle(g, s, opts = {}) {
      const dtype = opts.dtype ?? 'float32';
      const otherBackend = Object.keys(w.natives).find((k) => k !== g.backend);
      const b = (opts.instance === 'foreign' || (opts.instance === 'other-backend' && !otherBackend)) && w.foreign ? w.foreign
        : opts.instance === 'other-backend' && otherBackend ? w.natives[otherBackend]! : w.natives[g.backend] ?? w.binding;
      const n = s.reduce((a, c) => a * c, 1);
      const h = g.own(b.upload(values(g, n, dtype), [...s]), (x) => b.release(x));
      const whose = b === w.foreign ? ', foreign addon instance' : b !== w.natives[g.backend] ? ', another backend' : '';
      return arg(h, `H(${dtype} [${s.join(', ')}]${whose})`);
    },
    badHandle(g, s) {
      const native = w.natives[g.backend] ?? w.binding;
      const ctor = (native as unknown as { NativeBuffer: { prototype: object } }).NativeBuffer;
      const bad = [
        () => {
          const h = fx.handle(g, s);
          native.release(h.v as NativeBuffer);
          return arg(h.v, `${h.d} (released)`);
        },
        () => arg(Object.create(ctor.prototype), 'Object.create(NativeBuffer.prototype)'),
        () => arg(new Proxy(fx.handle(g, s).v as object, {}), 'Proxy(live handle)'),
        () => arg(new Proxy({}, { getPrototypeOf: () => ctor.prototype }), 'Proxy claiming NativeBuffer.prototype'),
        () => arg({ bytes: 4, released: false }, '{bytes, released}'),
        () => arg(ctor, 'the NativeBuffer class'),
        () => {
          const x = fx.handle(g, [2, 3, 6, 6]).v as NativeBuffer;
          const [y, ws] = native.maxPool2dForward(x, [2, 2], [2, 2], [0, 0]);
          g.own(y, (h) => native.release(h));
          g.own(ws, (h) => native.release(h));
          return arg(g.chance(0.5) ? ws : y, 'a maxPool2dForward output or workspace');
        },
        () => {
          const h = fx.handle(g, s).v as object;
          Object.setPrototypeOf(h, null);
          g.cleanup.push(() => Object.setPrototypeOf(h, ctor.prototype));
          return arg(h, 'a live handle whose prototype was set to null');
        },
      ];
      return g.pick(bad)();
    },
  };
  return fx;
}

// ---------------------------------------------------------------------------------------------
// Targets.

interface TargetOptions {
  /** Share of calls generated with all arguments valid (default 0.1). 0 where a valid call is slow. */
  valid?: number;
  /** The first argument is the receiver of a method: a wrong one fails as any JavaScript method does. */
  receiver?: boolean;
  /** Run inside tidy(), as the documentation says to (a module's forward leaves intermediates). */
  scoped?: boolean;
  /** Internal (underscore or protected): engine errors for wrong arguments are not findings. */
  internal?: boolean;
  /** The backend of the native handles the call's arguments are made of (default 'cpu'). */
  backend?: string;
}

interface Target extends TargetOptions {
  name: string;
  args: Schema[];
  call: AnyFn;
}

/** A method called on the receiver given as the first argument. */
const RECEIVER = Symbol('receiver');
type Method = AnyFn & { [RECEIVER]?: true };

type Add = (name: string, args: Schema[], call: AnyFn, opts?: TargetOptions) => void;

function asMethod(f: AnyFn): Method {
  return Object.assign(f, { [RECEIVER]: true as const });
}

function buildTargets(w: World): Target[] {
  const { lib } = w;
  const T: Target[] = [];
  const add: Add = (name, args, call, opts = {}) => T.push({ name, args, call, receiver: (call as Method)[RECEIVER] === true, internal: /\._|^Tensor\._/.test(name), ...opts });
  const method = (proto: object, name: string) => asMethod((self, ...rest) => Reflect.apply((proto as Record<string, AnyFn>)[name]!, self, rest));
  const setter = (proto: object, name: string) => asMethod((self, v) => Reflect.set(proto, name, v, self));

  // Shapes of the valid calls: small, so that valid calls cost microseconds.
  const X4 = [2, 3, 6, 6];
  const W4 = [4, 3, 3, 3];
  const backends = Object.keys(w.natives);
  const backendS = opt(custom((g) => {
    const be = g.pick(backends);
    return arg(be, `'${be}'`);
  }, [...['cuda', 'tpu', 'CPU', 'cpu:0', ''].filter((b) => !backends.includes(b)).map((b) => () => arg(b, `'${b}'`))]));
  const readPath = (valid: string) => custom(() => arg(valid, `'${valid}'`), [
    () => arg('', "''"), () => arg(join(w.dir, 'missing'), "'<tmp>/missing'"), () => arg(w.dir, "'<tmp>' (a directory)"),
    () => arg(w.files.garbage, "'<tmp>/garbage.bin'"), () => arg(w.files.empty, "'<tmp>/empty.bin'"), () => arg('/dev/zero', "'/dev/zero'"),
    () => arg('a\0b', "'a\\0b'"), () => arg('x'.repeat(5000), "'x'*5000"), () => arg(w.files.safetensors, "'<tmp>/weights.safetensors'"),
    () => arg(w.files.idxGz, "'<tmp>/images.idx.gz'"), () => arg(w.files.labels, "'<tmp>/labels.idx'"), () => arg(new URL('file:///tmp'), 'URL'),
  ]);
  const writePath = custom(() => arg(w.files.out, "'<tmp>/out.safetensors'"), [
    () => arg('', "''"), () => arg(w.dir, "'<tmp>' (a directory)"), () => arg(join(w.dir, 'missing', 'x.safetensors'), "'<tmp>/missing/x'"),
    () => arg(join(w.files.garbage, 'x'), "'<tmp>/garbage.bin/x'"), () => arg('a\0b', "'a\\0b'"),
  ]);
  const dirPath = (valid: string) => custom(() => arg(valid, `'${valid}'`), [
    () => arg('', "''"), () => arg(join(w.dir, 'missing'), "'<tmp>/missing'"), () => arg(w.files.garbage, "'<tmp>/garbage.bin' (a file)"),
    () => arg(w.files.cifar10, "'<tmp>/cifar-10-batches-bin'"), () => arg(w.files.fashion, "'<tmp>/fashion-mnist'"), () => arg('a\0b', "'a\\0b'"),
  ]);
  const datasetS = custom((g) => {
    const n = 4;
    const images = new Uint8Array(n * 16);
    for (let i = 0; i < images.length; i++) images[i] = g.int(256);
    return arg({ images, labels: Int32Array.from([0, 1, 0, 1]), n, channels: 1, height: 4, width: 4, classes: 2 }, 'dataset(4 × 1×4×4)');
  }, [
    () => arg({ images: new Uint8Array(64), labels: Int32Array.from([0, 1, 0, 5]), n: 4, channels: 1, height: 4, width: 4, classes: 2 }, 'dataset with label 5 of 2 classes'),
    () => arg({ images: new Uint8Array(63), labels: new Int32Array(4), n: 4, channels: 1, height: 4, width: 4, classes: 2 }, 'dataset with 63 pixels'),
    () => arg({ images: new Float32Array(64), labels: new Int32Array(4), n: 4, channels: 1, height: 4, width: 4, classes: 2 }, 'dataset of Float32Array images'),
    () => arg({ images: new Uint8Array(64), labels: [0, 1, 0, 1], n: 4, channels: 1, height: 4, width: 4, classes: 2 }, 'dataset of plain-array labels'),
    () => arg({ images: new Uint8Array(64), labels: new Int32Array(4), n: 4, channels: 1, height: 4, width: 4, classes: 2 ** 53 }, 'dataset with 2**53 classes'),
    () => arg({ images: new Uint8Array(64), labels: new Int32Array(4), n: 4, channels: 0, height: 4, width: 16, classes: 2 }, 'dataset with 0 channels'),
    () => arg({ images: new Uint8Array(64), labels: new Int32Array(4), n: 4, channels: 2 ** 31, height: 2 ** 31, width: 4, classes: 2 }, 'dataset with 2**31 channels and rows'),
    () => arg({ images: new Uint8Array(64), labels: new Int32Array(4), n: 4.5, channels: 1, height: 4, width: 4, classes: 2 }, 'dataset with n 4.5'),
  ]);
  const freshDataset = (g: Gen) => datasetS.ok(g).v as L.data.Dataset;
  const moduleS = custom((g) => {
    const kind = g.int(3);
    const m = kind === 0 ? new lib.nn.Conv2d(3, 4, 3, { seed: 1, backend: 'cpu' }) : kind === 1 ? new lib.nn.BatchNorm2d(3, { backend: 'cpu' }) : tinyModel(lib);
    g.own(m, (x) => x.dispose());
    return arg(m, ['Conv2d(3, 4, 3)', 'BatchNorm2d(3)', 'tinyModel'][kind]!);
  }, [
    (g) => {
      const m = new lib.nn.Linear(2, 2, { backend: 'cpu' });
      m.dispose();
      return arg(m, 'Linear(2, 2) (disposed)');
    },
    () => arg({ forward: (x: unknown) => x, train() {}, eval() {}, stateDict: () => ({}) }, 'a module-like object'),
    (g) => {
      if (!w.other) return junk(g);
      const m = new w.other.nn.ReLU();
      return arg(m, 'ReLU of the other library instance');
    },
  ]);
  const tinyModelS = custom((g) => arg(g.own(tinyModel(lib), (m) => m.dispose()), 'tinyModel'), [(g) => moduleS.bad(g)]);
  const loaderS = custom((g) => {
    const ld = new lib.data.DataLoader(freshDataset(g), { batchSize: 2, seed: 1, backend: 'cpu', prefetch: g.chance(0.5) });
    return arg(ld, 'DataLoader(dataset, {batchSize: 2})');
  }, [
    () => arg({ batchesPerEpoch: 1, batches: () => [1, 2] }, 'a source whose batches are not async iterable'),
    () => arg({ batchesPerEpoch: 1, async *batches() { yield { x: 1, y: 2 }; } }, 'a source yielding junk batches'),
    (g) => {
      const x = g.fx.tensor(g, [2, 1, 4, 4]).v;
      const y = g.fx.tensor(g, [2], { dtype: 'int32' }).v as L.Tensor<'int32'>;
      y.dispose();
      return arg({ batchesPerEpoch: 1, async *batches() { yield { x, y }; } }, 'a source yielding a disposed label tensor');
    },
  ]);
  const paramsS = custom((g) => {
    const ps = [g.fx.tensor(g, [3], { requiresGrad: true }).v, g.fx.tensor(g, [2, 2], { requiresGrad: true }).v] as L.Tensor[];
    for (const p of ps) p.grad = lib.ones([...p.shape], { backend: 'cpu' });
    return arg(ps, '[T([3], grad), T([2, 2], grad)]');
  }, [
    (g) => arg([g.fx.tensor(g, [3]).v], '[T([3]) without requiresGrad]'),
    (g) => arg([g.fx.computed(g, [3]).v], '[computed T([3])]'),
    (g) => {
      const p = g.fx.tensor(g, [3], { requiresGrad: true }).v;
      return arg([p, p], '[p, p]');
    },
    (g) => {
      const p = g.fx.tensor(g, [3], { requiresGrad: true }).v as L.Tensor;
      p.dispose();
      return arg([p], '[disposed p]');
    },
    () => arg([], '[]'),
    (g) => {
      const p = g.fx.tensor(g, [3], { requiresGrad: true }).v;
      return arg((function* () { yield p; })(), 'a generator of one parameter');
    },
    (g) => arg(new Set([g.fx.tensor(g, [3], { requiresGrad: true }).v]), 'Set{p}'),
  ]);
  const sgdS = custom((g) => {
    const ps = paramsS.ok(g).v as L.Tensor[];
    const opt = g.own(new lib.optim.SGD(ps, { lr: 0.1, momentum: g.chance(0.5) ? 0.9 : 0 }), (o) => o.dispose());
    return arg(opt, 'SGD(params with grads)');
  }, [() => arg({ step() {}, lr: 0.1 }, 'an optimizer-like object')]);
  const scheduleS = fn(() => arg((step: number) => 0.1 / (1 + step), '(step) => 0.1 / (1 + step)'));
  const rngS = custom(() => arg(new lib.data.Rng(1), 'Rng(1)'), [() => arg({ uniform: () => 0.5 }, 'an Rng-like object')]);

  // --- tensors
  const valuesS = custom((g) => g.pick([
    () => arg(Float32Array.of(1, 2, 3, 4), 'Float32Array [1, 2, 3, 4]'),
    () => arg([1, 2, 3, 4], '[1, 2, 3, 4]'),
    () => arg(Int32Array.of(1, 2, 3, 4), 'Int32Array [1, 2, 3, 4]'),
  ])(), [
    () => arg([1, 'a', 3, 4], "[1, 'a', 3, 4]"), () => arg([1, 2, 3], '[1, 2, 3]'), () => arg(Float64Array.of(1, 2, 3, 4), 'Float64Array(4)'),
    () => arg([1.5, 2, 3, 4], '[1.5, 2, 3, 4]'), () => arg([2 ** 31, 0, 0, 0], '[2**31, 0, 0, 0]'), () => arg(BigInt64Array.of(1n, 2n, 3n, 4n), 'BigInt64Array(4)'),
    () => arg(new Float32Array(new SharedArrayBuffer(16)), 'Float32Array on a SharedArrayBuffer'),
    () => arg(new Float32Array(resizable(16, 64)), 'length-tracking Float32Array on a resizable buffer'),
    () => arg(new Float32Array(new ArrayBuffer(24), 8, 4), 'Float32Array(4) at byte offset 8'),
    () => arg({ length: 4, 0: 1, 1: 2, 2: 3, 3: 4 }, 'array-like object'),
    () => arg(Object.defineProperty([1, 2, 3, 4], 2, { get: () => { throw new FuzzTrap('values[2]'); } }), '[1, 2, <getter throws>, 4]'),
    () => arg(new Array(2 ** 32 - 1), 'new Array(2**32-1) (holes)'),
  ]);
  const shape4 = opt(shape([[4], [2, 2], [1, 4], [1, 1, 2, 2]]));
  add('tensor', [valuesS, shape4, opt(obj({ backend: backendS, requiresGrad: opt(bool()), dtype: opt(oneOf(['float32', 'int32'])) }))], lib.tensor as AnyFn);
  const randOpts = opt(obj({ backend: backendS, requiresGrad: opt(bool()), seed: opt(int([1, -1, 2 ** 32 - 1], [2 ** 32])), std: opt(number([1, 0, 0.5])), mean: opt(number([0, -3])) }));
  const someShape = shape([[2, 3], [4], [1, 1, 1, 1, 1], [2, 3, 4, 5]]);
  add('randn', [someShape, randOpts], lib.randn as AnyFn);
  add('zeros', [someShape, opt(obj({ backend: backendS, requiresGrad: opt(bool()) }))], lib.zeros as AnyFn);
  add('ones', [someShape, opt(obj({ backend: backendS, requiresGrad: opt(bool()) }))], lib.ones as AnyFn);
  add('memory', [], lib.memory as AnyFn);
  add('sync', [backendS], lib.sync as AnyFn);
  add('emptyCache', [backendS], lib.emptyCache as AnyFn);
  const makesTensor = fn(() => arg(() => lib.randn([2], { backend: 'cpu' }), '() => randn([2])'));
  add('tidy', [makesTensor], lib.tidy as AnyFn);
  add('tidy(name)', [oneOf(['step']), makesTensor], lib.tidy as AnyFn);
  add('keep', [tensor([2])], lib.keep as AnyFn);
  add('seed', [int([1, 0, -5])], lib.seed as AnyFn);
  add('noGrad', [makesTensor], lib.noGrad as AnyFn);
  add('isGradEnabled', [], lib.isGradEnabled as AnyFn);
  add('backends', [], lib.backends as AnyFn);
  add('defaultBackend', [], lib.defaultBackend as AnyFn);
  add('setNumThreads', [int([1, 2], [1025]), backendS], lib.setNumThreads as AnyFn);
  add('setTf32', [bool()], lib.setTf32 as AnyFn);

  // --- Tensor's methods and accessors, on valid and wrong receivers
  const P = lib.Tensor.prototype;
  const anyTensor = either(tensor([2, 3]), tensor([2], { dtype: 'int32' }));
  for (const name of ['data', 'dataSync', 'detach', 'dispose', 'toString', '_binding'] as const) add(`Tensor.${name}`, [anyTensor], method(P, name));
  add('Tensor[Symbol.dispose]', [anyTensor], asMethod((self) => Reflect.apply(P[Symbol.dispose], self, [])));
  add('Tensor.item', [either(tensor([1]), tensor([]))], method(P, 'item'));
  const lossS = custom((g) => arg(g.own(L.ops.softmaxCrossEntropy(g.fx.computed(g, [2, 3]).v as L.Tensor, [0, 1]), (t) => t.dispose()), 'loss of computed logits'), []);
  add('Tensor.backward', [either(lossS, tensor([1], { requiresGrad: true })), opt(tensor([]))], method(P, 'backward'));
  add('Tensor.backward(grad)', [custom((g) => g.fx.computed(g, [2, 3]), []), tensor([2, 3])], method(P, 'backward'));
  add('Tensor._share', [anyTensor, oneOf(['op'])], method(P, '_share'));
  add('Tensor._live', [anyTensor, oneOf(['op']), oneOf(['what'])], method(P, '_live'));
  add('Tensor._assign', [tensor([2, 3]), either(tensor([2, 3]), custom(() => arg(new Float32Array(6), 'Float32Array(6)'), [() => arg(new Float32Array(5), 'Float32Array(5)'), () => arg(new Int32Array(6), 'Int32Array(6)')]))], method(P, '_assign'));
  add('Tensor._setComputed', [tensor([2]), anything], method(P, '_setComputed'));
  add('Tensor.requiresGrad=', [anyTensor, bool()], setter(P, 'requiresGrad'));
  add('Tensor.grad=', [tensor([2, 3]), nullable(tensor([2, 3]))], setter(P, 'grad'));
  for (const name of ['size', 'rank', 'isDisposed', 'requiresGrad', 'grad', 'gradFn'] as const) {
    add(`Tensor.${name}`, [anyTensor], asMethod((self) => Reflect.get(P, name, self)));
  }
  // Internal: their callers pass shapes the ops computed, so no shape of 2^32 - 1 holes.
  const wrapShape = custom(() => arg([2, 3], '[2, 3]'), [() => arg([3, 2], '[3, 2]'), () => arg([-1], '[-1]'), () => arg('23', "'23'"), () => arg([], '[]')]);
  add('Tensor._wrap', [handle([2, 3]), wrapShape, backendS, opt(oneOf(['float32', 'int32']))], (buf, s, be, dt) => lib.Tensor._wrap(buf as NativeBuffer, s as number[], be as 'cpu', dt as 'float32'));
  add('Tensor._wrapSaved', [handle([2, 3]), wrapShape, backendS], (buf, s, be) => lib.Tensor._wrapSaved(buf as NativeBuffer, s as number[], be as 'cpu'));

  // --- ops, and their backward passes with gradients of every kind
  const vecC = tensor([3]);
  const bnOpts = obj({ weight: opt(nullable(vecC)), bias: opt(nullable(vecC)), runningMean: opt(nullable(vecC)), runningVar: opt(nullable(vecC)), training: opt(bool()), momentum: opt(number([0.1, 0, 1], [1.5])), eps: opt(number([1e-5], [0])) });
  const convOpts = obj({ stride: opt(pair([1, 2])), padding: opt(pair([0, 1])), dilation: opt(pair([1, 2])), groups: opt(int([1])), bias: opt(nullable(tensor([4]))) });
  const poolOpts = obj({ kernel: pair([2, 3]), stride: opt(pair([1, 2])), padding: opt(pair([0, 1])) });
  const labelsS = either(custom(() => arg([0, 1], '[0, 1]'), [() => arg([0, 3], '[0, 3]'), () => arg([0, -1], '[0, -1]'), () => arg([0.5, 1], '[0.5, 1]'), () => arg(['0', 1], "['0', 1]"), () => arg([0], '[0]')]),
    either(custom(() => arg(Int32Array.of(0, 2), 'Int32Array [0, 2]'), [() => arg(Int32Array.of(0, 9), 'Int32Array [0, 9]'), () => arg(Float32Array.of(0, 1), 'Float32Array [0, 1]')]), tensor([2], { dtype: 'int32' })));
  const ops = lib.ops;
  const opTargets: [string, Schema[], AnyFn, number[]][] = [
    ['relu', [tensor([2, 3])], ops.relu as AnyFn, [2, 3]],
    ['scale', [tensor([2, 3]), number([2, -0.5, 0])], ops.scale as AnyFn, [2, 3]],
    ['add', [tensor([2, 3]), tensor([2, 3])], ops.add as AnyFn, [2, 3]],
    ['addRelu', [tensor([2, 3]), tensor([2, 3])], ops.addRelu as AnyFn, [2, 3]],
    ['batchNorm2d', [tensor(X4), opt(bnOpts)], ops.batchNorm2d as AnyFn, X4],
    ['conv2d', [tensor(X4), tensor(W4), opt(convOpts)], ops.conv2d as AnyFn, [2, 4, 4, 4]],
    ['linear', [tensor([2, 5]), tensor([3, 5]), opt(nullable(tensor([3])))], ops.linear as AnyFn, [2, 3]],
    ['softmaxCrossEntropy', [tensor([2, 3]), labelsS, opt(obj({ labelSmoothing: opt(number([0, 0.1], [1])) }))], ops.softmaxCrossEntropy as AnyFn, []],
    ['maxPool2d', [tensor(X4), poolOpts], ops.maxPool2d as AnyFn, [2, 3, 3, 3]],
    ['avgPool2d', [tensor(X4), poolOpts], ops.avgPool2d as AnyFn, [2, 3, 3, 3]],
    ['globalAvgPool', [tensor(X4)], ops.globalAvgPool as AnyFn, [2, 3, 1, 1]],
    ['flatten', [tensor(X4)], ops.flatten as AnyFn, [2, 108]],
  ];
  for (const [name, args, call, out] of opTargets) {
    add(`ops.${name}`, args, call);
    add(`ops.${name} backward`, [...args, tensor(out)], (...a) => {
      const y = call(...a.slice(0, -1)) as L.Tensor;
      try {
        y.backward(a[a.length - 1] as L.Tensor);
      } finally {
        y.dispose();
      }
    });
  }

  // --- nn
  const blockOpts = obj({ stride: opt(int([1, 2])), shortcut: opt(oneOf(['A', 'B', 'C'])), plain: opt(bool()), survival: opt(number([1, 0.5], [0])), random: opt(fn(() => arg(() => 0.3, '() => 0.3'))), seed: opt(int([1])), backend: backendS });
  const nn = lib.nn;
  add('nn.Conv2d', [int([3, 1]), int([4, 2]), pair([1, 3]), opt(obj({ stride: opt(pair([1, 2])), padding: opt(pair([0, 1])), dilation: opt(pair([1])), groups: opt(int([1])), bias: opt(bool()), seed: opt(int([1])), backend: backendS }))], (...a) => new nn.Conv2d(...(a as ConstructorParameters<typeof nn.Conv2d>)));
  add('nn.BatchNorm2d', [int([3]), opt(obj({ eps: opt(number([1e-5], [0])), momentum: opt(number([0.1], [2])), backend: backendS }))], (...a) => new nn.BatchNorm2d(...(a as ConstructorParameters<typeof nn.BatchNorm2d>)));
  add('nn.Linear', [int([5]), int([3]), opt(obj({ bias: opt(bool()), seed: opt(int([1])), backend: backendS }))], (...a) => new nn.Linear(...(a as ConstructorParameters<typeof nn.Linear>)));
  add('nn.MaxPool2d', [pair([2, 3]), opt(obj({ stride: opt(pair([1, 2])), padding: opt(pair([0, 1])) }))], (...a) => new nn.MaxPool2d(...(a as ConstructorParameters<typeof nn.MaxPool2d>)));
  add('nn.AvgPool2d', [pair([2, 3]), opt(obj({ stride: opt(pair([1, 2])), padding: opt(pair([0, 1])) }))], (...a) => new nn.AvgPool2d(...(a as ConstructorParameters<typeof nn.AvgPool2d>)));
  for (const name of ['ReLU', 'GlobalAvgPool', 'Flatten'] as const) add(`nn.${name}`, [], () => new nn[name]());
  add('nn.Sequential', [moduleS, opt(moduleS)], (...a) => new nn.Sequential(...(a.filter((m) => m !== undefined) as L.nn.Module[])));
  add('nn.PadShortcut', [int([2]), int([4, 2], [1]), int([1, 2]), opt(obj({ backend: backendS }))], (...a) => new nn.PadShortcut(...(a as ConstructorParameters<typeof nn.PadShortcut>)));
  for (const name of ['BasicBlock', 'Bottleneck', 'PreActBlock', 'PreActBottleneck'] as const) {
    add(`nn.${name}`, [int([4, 2]), int([4, 2]), opt(blockOpts)], (...a) => new nn[name](...(a as [number, number, L.nn.BlockOptions])));
    add(`nn.${name}.forward`, [custom((g) => arg(g.own(new nn[name](3, 3, { seed: 1, backend: 'cpu', stride: g.pick([1, 2]) }), (m) => m.dispose()), `${name}(3, 3)`), []), tensor([2, 3, 4, 4])], method(nn[name].prototype, 'forward'), { scoped: true });
  }
  const M = nn.Module.prototype as unknown as Record<string, AnyFn>;
  add('Module.forward', [moduleS, tensor(X4)], asMethod((m, x) => (m as L.nn.Module).forward(x as L.Tensor)), { scoped: true });
  add('Module.train', [moduleS, opt(bool())], method(M, 'train'));
  add('Module.loadStateDict', [moduleS, custom((g) => {
    const m = new nn.Conv2d(3, 4, 3, { backend: 'cpu' });
    g.own(m, (x) => x.dispose());
    return arg(m.stateDict(), 'Conv2d(3, 4, 3).stateDict()');
  }, [
    (g) => arg({ weight: g.fx.tensor(g, [4, 3, 3, 3], { dtype: 'int32' }).v }, '{weight: int32}'),
    (g) => arg({ weight: g.fx.tensor(g, [4, 3, 2, 3]).v, bias: g.fx.tensor(g, [4]).v }, '{weight: wrong shape}'),
    (g) => arg({ weight: g.fx.tensor(g, [4, 3, 3, 3], { instance: 'other' }).v }, '{weight of the other instance}'),
    (g) => arg(Object.defineProperty({}, 'weight', { enumerable: true, get: () => { throw new FuzzTrap('dict.weight'); } }), '{weight: getter throws}'),
    () => arg(JSON.parse('{"__proto__": 1, "weight": 2}'), '{"__proto__": 1, weight: 2}'),
  ]), opt(obj({ strict: opt(bool()) }))], method(M, 'loadStateDict'));
  add('Module.to', [moduleS, oneOf(['cpu', 'cuda'])], method(M, 'to'));
  for (const name of ['eval', 'stateDict', 'dispose', 'namedChildren', 'namedModules', 'namedParameters', 'parameters', 'namedBuffers'] as const) add(`Module.${name}`, [moduleS], method(M, name));
  // Protected, but reachable from JavaScript.
  const prot = { internal: true };
  add('Module.addModule', [moduleS, oneOf(['child', 'a.b', '']), moduleS], method(M, 'addModule'), prot);
  add('Module.addParameter', [moduleS, oneOf(['p', 'weight']), tensor([2])], method(M, 'addParameter'), prot);
  add('Module.addBuffer', [moduleS, oneOf(['buf']), tensor([2]), opt(bool())], method(M, 'addBuffer'), prot);
  add('Module.parameter', [moduleS, oneOf(['weight', 'nope'])], method(M, 'parameter'), prot);
  add('Module.buffer', [moduleS, oneOf(['running_mean', 'nope'])], method(M, 'buffer'), prot);
  add('Sequential.at', [custom((g) => arg(g.own(tinyModel(lib), (m) => m.dispose()), 'tinyModel'), []), int([0, 1, -1], [2, -3])], method(nn.Sequential.prototype, 'at'));

  // --- models: the valid ImageNet networks take seconds to build, so only wrong options for them.
  const models = lib.models;
  const cifarKeys = { numClasses: opt(int([2, 10])), inChannels: opt(int([1, 3])), dropPath: opt(number([0, 0.5], [1])), seed: opt(int([1])), backend: backendS };
  add('models.cifarResNet', [obj({ depth: int([8], [9, 2 ** 35 + 2, 6 * 2 ** 40 + 2]), ...cifarKeys, shortcut: opt(oneOf(['A', 'B'])), plain: opt(bool()) })], models.cifarResNet as AnyFn);
  add('models.preActResNet', [obj({ depth: int([11], [12, 9 * 2 ** 40 + 2]), ...cifarKeys })], models.preActResNet as AnyFn);
  add('models.wideResNet', [obj({ depth: int([10], [11, 6 * 2 ** 40 + 4]), widen: int([1], [2 ** 40]), ...cifarKeys })], models.wideResNet as AnyFn);
  // Options that are wrong for certain, never the junk pool's undefined or {}: anything else may
  // build a network of millions of weights.
  const imagenetWrong: ((g: Gen) => Arg)[] = [
    ...[0, -1, 2.5, Number.NaN, 2 ** 53, 2 ** 40].flatMap((v) => [() => arg({ numClasses: v }, `{numClasses: ${v}}`), () => arg({ inChannels: v }, `{inChannels: ${v}}`)]),
    () => arg({ seed: 2 ** 33 }, '{seed: 2**33}'), () => arg({ backend: 'tpu' }, "{backend: 'tpu'}"), () => arg({ depth: 18 }, '{depth: 18}'),
    () => arg({ numClasses: '10' }, "{numClasses: '10'}"), () => arg(new Map([['numClasses', 10]]), 'Map{numClasses: 10}'), () => arg([10], '[10]'), () => arg('resnet', "'resnet'"),
    () => arg(Object.defineProperty({}, 'numClasses', { enumerable: true, get: () => { throw new FuzzTrap('numClasses'); } }), '{numClasses: getter throws}'),
  ];
  const imagenetBad: Schema = { ok: (g) => g.pick(imagenetWrong)(g), bad: (g) => g.pick(imagenetWrong)(g) };
  for (const name of ['resnet18', 'resnet34', 'resnet50', 'resnet101', 'resnet152'] as const) add(`models.${name}`, [imagenetBad], models[name] as AnyFn, { valid: 0 });
  const resnetConfig = obj({
    block: oneOf(['basic', 'bottleneck', 'preact', 'preactBottleneck']), layers: custom(() => arg([1], '[1]'), [() => arg([], '[]'), () => arg([0], '[0]'), () => arg([2 ** 40], '[2**40]'), () => arg([1, 1], '[1, 1]')]),
    widths: custom(() => arg([2], '[2]'), [() => arg([0], '[0]'), () => arg([2 ** 40], '[2**40]'), () => arg([-2], '[-2]')]), stem: oneOf(['cifar', 'imagenet']),
    stemWidth: opt(int([2], [2 ** 40])), shortcut: opt(oneOf(['A', 'B', 'C'])), plain: opt(bool()), dropPath: opt(number([0, 0.2])), numClasses: opt(int([2], [2 ** 40])), inChannels: opt(int([1])), seed: opt(int([1])), backend: backendS,
  });
  add('models.ResNet', [resnetConfig], (c) => new models.ResNet(c as L.models.ResNetConfig));
  const tinyResNet = custom((g) => arg(g.own(new models.ResNet({ block: 'basic', layers: [1], widths: [2], stem: 'cifar', numClasses: 2, inChannels: 1, seed: 1, backend: 'cpu' }), (m) => m.dispose()), 'tiny ResNet'), []);
  add('ResNet.forward', [tinyResNet, tensor([2, 1, 4, 4])], method(models.ResNet.prototype, 'forward'), { scoped: true });
  add('ResNet.rngState=', [tinyResNet, custom(() => arg([1, 2, 3, 4], '[1, 2, 3, 4]'), [() => arg([1, 2, 3], '[1, 2, 3]'), () => arg([1, 2, 3, Number.NaN], '[1, 2, 3, NaN]'), () => arg([1, 2, 3, Symbol('s')], '[1, 2, 3, Symbol()]'), () => arg([1n, 2, 3, 4], '[1n, 2, 3, 4]')])], setter(models.ResNet.prototype, 'rngState'));
  add('ResNet.rngState', [tinyResNet], asMethod((m) => Reflect.get(models.ResNet.prototype, 'rngState', m)));

  // --- optim
  const sgdOpts = obj({ lr: number([0.1, 0]), momentum: opt(number([0.9, 0])), weightDecay: opt(number([1e-4, 0])), nesterov: opt(bool()) });
  add('optim.SGD', [paramsS, sgdOpts], (p, o) => new lib.optim.SGD(p as L.Tensor[], o as L.optim.SGDOptions));
  const S = lib.optim.SGD.prototype as unknown as Record<string, AnyFn>;
  for (const name of ['step', 'zeroGrad', 'stateDict', 'dispose'] as const) add(`SGD.${name}`, [sgdS], method(S, name));
  add('SGD.lr=', [sgdS, number([0.01, 0])], setter(S, 'lr'));
  add('SGD.loadStateDict', [sgdS, custom((g) => arg({ '0.momentum_buffer': g.fx.tensor(g, [3]).v }, "{'0.momentum_buffer': T([3])}"), [
    (g) => arg({ '5.momentum_buffer': g.fx.tensor(g, [3]).v }, "{'5.momentum_buffer'}"),
    (g) => arg({ '0.momentum_buffer': g.fx.tensor(g, [4]).v }, "{'0.momentum_buffer': T([4])}"),
    (g) => arg({ '0.momentum_buffer': g.fx.tensor(g, [3], { dtype: 'int32' }).v }, "{'0.momentum_buffer': int32}"),
    () => arg({ '00.momentum_buffer': 1 }, "{'00.momentum_buffer': 1}"),
    () => arg({ 'constructor.momentum_buffer': 1 }, "{'constructor.momentum_buffer': 1}"),
  ])], method(S, 'loadStateDict'));

  // --- data
  const data = lib.data;
  add('data.readIdx', [readPath(w.files.idx), opt(obj({ magic: opt(int([0x803], [0x1_0000_0000])) }))], data.readIdx as AnyFn);
  add('data.loadFashionMnist', [opt(obj({ dir: opt(dirPath(w.files.fashion)), split: opt(oneOf(['train', 'test'])) }))], data.loadFashionMnist as AnyFn);
  add('data.loadCifar', [opt(obj({ variant: opt(oneOf([10, 100])), split: opt(oneOf(['train', 'test'])), dir: opt(dirPath(w.files.cifar10)), labels: opt(oneOf(['fine', 'coarse'])) }))], data.loadCifar as AnyFn);
  // Never the network: a wrong dir makes it download, so every call names an address that refuses at once.
  const local = 'http://127.0.0.1:9/cifar-10-binary.tar.gz';
  add('data.downloadCifar', [obj({ variant: opt(oneOf([10, 100])), dir: opt(dirPath(w.files.cifar10)), url: constant(local, 'local url', [() => arg('not a url', "'not a url'"), () => arg('file:///etc/passwd', "'file:///etc/passwd'")]), md5: opt(oneOf(['00'])) })],
    (o) => data.downloadCifar(withUrl(o, local) as L.data.DownloadCifarOptions));
  add('data.subset', [datasetS, int([2, 4], [5])], data.subset as AnyFn);
  const imgs = custom(() => arg(new Float32Array(2 * 3 * 4 * 4), 'Float32Array(96)'), [() => arg(new Float32Array(95), 'Float32Array(95)'), () => arg(new Float64Array(96), 'Float64Array(96)'), () => arg(new Uint8Array(96), 'Uint8Array(96)')]);
  const imgShape = shape([[2, 3, 4, 4]]);
  add('data.randomPadCrop', [imgs, imgShape, int([0, 1, 4], [2 ** 52]), rngS], data.randomPadCrop as AnyFn);
  add('data.randomFlip', [imgs, imgShape, rngS, opt(number([0.5, 0, 1], [1.5]))], data.randomFlip as AnyFn);
  const per3 = custom(() => arg([0.5, 0.5, 0.5], '[0.5, 0.5, 0.5]'), [() => arg([0.5, 0.5], '[0.5, 0.5]'), () => arg([0.5, 0, 0.5], '[0.5, 0, 0.5]'), () => arg([0.5, Number.NaN, 0.5], '[0.5, NaN, 0.5]')]);
  add('data.normalize', [imgs, imgShape, per3, per3], data.normalize as AnyFn);
  const loaderOpts = obj({
    batchSize: int([2, 4, 5], [2 ** 53]), shuffle: opt(bool()), seed: opt(int([1])), augment: opt(obj({ padCrop: opt(int([0, 1], [2 ** 40])), flip: opt(bool()) })),
    normalize: opt(obj({ mean: custom(() => arg([0.5], '[0.5]'), [() => arg([0.5, 0.5], '[0.5, 0.5]')]), std: custom(() => arg([0.25], '[0.25]'), [() => arg([0], '[0]')]) })),
    dropLast: opt(bool()), backend: backendS, prefetch: opt(bool()),
  });
  add('data.DataLoader', [datasetS, loaderOpts], (d, o) => new data.DataLoader(d as L.data.Dataset, o as L.data.DataLoaderOptions));
  const D = data.DataLoader.prototype as unknown as Record<string, AnyFn>;
  add('DataLoader.prepare', [loaderS, int([0, 2 ** 32 - 1]), int([0, 1], [2])], method(D, 'prepare'));
  add('DataLoader.seek', [loaderS, obj({ epoch: int([0, 3]), batch: opt(int([0, 1, 2], [3])) })], method(D, 'seek'));
  add('DataLoader.batches', [loaderS, int([0, 1])], method(D, 'batches'));
  add('DataLoader iteration', [loaderS], asMethod(async (ld) => {
    const it = Reflect.apply(D[Symbol.asyncIterator as unknown as string]!, ld, []) as AsyncIterator<L.data.Batch>;
    for (let r = await it.next(); !r.done; r = await it.next()) {
      r.value.x.dispose();
      r.value.y.dispose();
    }
  }));
  for (const name of ['position', 'stats'] as const) add(`DataLoader.${name}`, [loaderS], asMethod((ld) => Reflect.get(D, name, ld)));
  add('data.Rng', [int([1, -1, 2 ** 32])], (s) => new data.Rng(s as number));
  const R = data.Rng.prototype as unknown as Record<string, AnyFn>;
  for (const name of ['nextUint32', 'uniform', 'normal'] as const) add(`Rng.${name}`, [rngS], method(R, name));
  add('Rng.state=', [rngS, custom(() => arg([1, 2, 3, 4], '[1, 2, 3, 4]'), [() => arg([1, 2, 3, 4, 5, 6], '[1, …, 6]'), () => arg([1, 2, 3, Infinity], '[1, 2, 3, Infinity]'), () => arg([1, 2, 3, Symbol('s')], '[1, 2, 3, Symbol()]')])], setter(R, 'state'));
  add('data.dataRoot', [], data.dataRoot as AnyFn);

  // --- safetensors
  const tensorsS = custom((g) => arg({ a: g.fx.tensor(g, [2, 3]).v, b: g.fx.tensor(g, [2], { dtype: 'int32' }).v }, '{a: T([2, 3]), b: int32 T([2])}'), [
    (g) => arg({ __metadata__: g.fx.tensor(g, [2]).v }, '{__metadata__: T}'),
    (g) => arg({ a: g.fx.tensor(g, [2], { instance: 'other' }).v }, '{a: T of the other instance}'),
    (g) => {
      const t = g.fx.tensor(g, [2]).v as L.Tensor;
      t.dispose();
      return arg({ a: t }, '{a: disposed T}');
    },
    () => arg({ a: 1 }, '{a: 1}'),
    (g) => arg(Object.defineProperty({}, '__proto__', { enumerable: true, value: g.fx.tensor(g, [2]).v }), "{'__proto__' (own): T}"),
    (g) => arg({ ['\ud800']: g.fx.tensor(g, [2]).v }, "{'\\ud800': T}"),
    (g) => arg(new Map([['a', g.fx.tensor(g, [2]).v]]), 'Map{a: T}'),
  ]);
  const metaS = opt(obj({ metadata: opt(custom(() => arg({ format: 'pt' }, "{format: 'pt'}"), [() => arg({ format: 1 }, '{format: 1}'), () => arg({ ['\ud800']: 'x' }, "{'\\ud800': 'x'}"), () => arg([], '[]')])) }));
  add('saveSafetensors', [writePath, tensorsS, metaS], lib.saveSafetensors as AnyFn);
  add('saveSafetensorsSync', [writePath, tensorsS, metaS], lib.saveSafetensorsSync as AnyFn);
  add('loadSafetensors', [readPath(w.files.safetensors), opt(obj({ backend: backendS }))], lib.loadSafetensors as AnyFn);
  add('loadSafetensorsSync', [readPath(w.files.safetensors), opt(obj({ backend: backendS }))], lib.loadSafetensorsSync as AnyFn);
  add('readSafetensorsHeader', [readPath(w.files.safetensors)], lib.readSafetensorsHeader as AnyFn);

  // --- PyTorch checkpoints in, ONNX out
  const keyS = opt(custom(() => arg('state_dict', "'state_dict'"), [() => arg('', "''"), () => arg(7, '7'), () => arg('__proto__', "'__proto__'")]));
  add('loadTorchStateDict', [readPath(w.files.torch), opt(obj({ backend: backendS, key: keyS, stripPrefix: opt(custom(() => arg('module.', "'module.'"), [() => arg('', "''")])) }))], lib.loadTorchStateDict as AnyFn);
  const onnxPath = custom(() => arg(join(w.dir, 'model.onnx'), "'<tmp>/model.onnx'"), [() => arg('', "''"), () => arg(w.dir, "'<tmp>' (a directory)"), () => arg(join(w.files.garbage, 'x'), "'<tmp>/garbage.bin/x'")]);
  const inputShapeS = shape([[1, 3, 8, 8], [2, 1, 4, 4], [1, 3, 2, 2]]);
  add('exportOnnx', [moduleS, onnxPath, obj({ inputShape: inputShapeS, opset: opt(int([13, 17, 22], [12, 23])), dynamicBatch: opt(bool()) })], lib.exportOnnx as AnyFn);

  // --- train
  const tr = lib.train;
  const fitOpts = obj({
    trainData: loaderS, evalData: opt(loaderS), epochs: int([1]), optimizer: custom((g) => arg(g.own(new lib.optim.SGD(tinyModelFor(g).parameters(), { lr: 0.1 }), (o) => o.dispose()), 'SGD(tinyModel)'), [() => arg({ step: 1 }, '{step: 1}')]),
    schedule: opt(scheduleS), labelSmoothing: opt(number([0, 0.1], [1])), startEpoch: opt(int([0, 1], [2])), metricsFile: opt(custom(() => arg(join(w.dir, 'metrics.jsonl'), "'<tmp>/metrics.jsonl'"), [() => arg(join(w.files.garbage, 'm.jsonl'), "'<tmp>/garbage.bin/m.jsonl'")])),
    curvesFile: opt(custom(() => arg(join(w.dir, 'curves.svg'), "'<tmp>/curves.svg'"), [() => arg(w.dir, "'<tmp>'")])), progress: constant(false, 'false'), onStep: opt(fn(() => arg(() => undefined, '() => {}'))),
    onEpoch: opt(fn(() => arg(async () => undefined, 'async () => {}'))), history: opt(custom(() => arg([], '[]'), [() => arg([{ epoch: 'x' }], "[{epoch: 'x'}]")])),
  });
  // fit trains the model its optimizer was built on: one per call, made before the options.
  const modelForCall = new WeakMap<Gen, L.nn.Module>();
  const tinyModelFor = (g: Gen) => {
    let m = modelForCall.get(g);
    if (!m) {
      m = g.own(tinyModel(lib), (x) => x.dispose());
      modelForCall.set(g, m);
    }
    return m;
  };
  add('train.fit', [custom((g) => arg(tinyModelFor(g), 'tinyModel'), [(g) => moduleS.bad(g)]), fitOpts], tr.fit as AnyFn);
  add('train.evaluate', [tinyModelS, loaderS, opt(int([0, 1]))], tr.evaluate as AnyFn);
  const warm = opt(int([0, 3]));
  add('train.stepSchedule', [obj({ lr: number([0.1]), milestones: opt(custom(() => arg([0.5, 0.75], '[0.5, 0.75]'), [() => arg([0.75, 0.5], '[0.75, 0.5]'), () => arg([2], '[2]'), () => arg([0.5, 0.5], '[0.5, 0.5]')])), gamma: opt(number([0.1])), warmupSteps: warm })], tr.stepSchedule as AnyFn);
  add('train.cosineSchedule', [obj({ lr: number([0.1]), minLr: opt(number([0, 0.01], [1])), warmupSteps: warm })], tr.cosineSchedule as AnyFn);
  add('train.constantSchedule', [number([0.1, 0])], tr.constantSchedule as AnyFn);
  add('schedule(step, total)', [either(custom(() => arg(tr.stepSchedule({ lr: 0.1, warmupSteps: 2 }), 'stepSchedule'), []), custom(() => arg(tr.cosineSchedule({ lr: 0.1 }), 'cosineSchedule'), [])), int([0, 5]), int([10, 0])], asMethod((s, step, total) => (s as AnyFn)(step, total)));
  const seriesS = custom((g) => g.pick([
    () => arg([{ name: 'a', points: [[1, 2], [2, 3]] }], "[{name: 'a', points}]"),
    // Errors one ulp apart (100 · 0.07 beside 7): the tick loop used to spin forever on them.
    () => arg([{ name: 'e', points: [[1, 100 * 0.07], [2, 7]], dashed: true }], "[{name: 'e', points: [[1, 7.000000000000001], [2, 7]]}]"),
  ])(), [
    () => arg([{ name: '<b>', points: [[Number.NaN, 1], [Infinity, -Infinity]] }], 'series of non-finite points'), () => arg([{ name: 'a' }], 'series without points'),
    () => arg([{ name: 1, points: [[1, 2]] }], 'series named 1'), () => arg([{ name: 'a', points: [[1e308, -1e308], [-1e308, 1e308]] }], 'series of ±1e308'),
    () => arg([{ name: 'a', points: [[0, 0], [5e-324, 5e-324]] }], 'series spanning 5e-324'),
  ]);
  const chartOpts = obj({ title: oneOf(['t']), xLabel: oneOf(['x']), yLabel: oneOf(['y']), yRange: opt(custom(() => arg([0, 1], '[0, 1]'), [() => arg([1, 1], '[1, 1]'), () => arg([Number.NaN, 1], '[NaN, 1]'), () => arg([0, 1e-320], '[0, 1e-320]')])) });
  add('train.renderChart', [seriesS, chartOpts], tr.renderChart as AnyFn);
  add('train.writeChart', [custom(() => arg(join(w.dir, 'chart.svg'), "'<tmp>/chart.svg'"), [() => arg(w.dir, "'<tmp>'")]), seriesS, chartOpts], tr.writeChart as AnyFn);
  add('train.saveCheckpoint', [writePath, obj({ model: moduleS, optimizer: opt(sgdS), state: custom(() => arg({ epoch: 1 }, '{epoch: 1}'), [() => arg({ epoch: 1, x: 1n }, '{epoch: 1, x: 1n}'), () => { const c: Record<string, unknown> = { epoch: 1 }; c.self = c; return arg(c, 'a cyclic state'); }]) })], tr.saveCheckpoint as AnyFn);
  add('train.loadCheckpoint', [readPath(w.files.checkpoint), obj({ model: tinyModelS, optimizer: opt(sgdS), backend: backendS })], tr.loadCheckpoint as AnyFn);
  add('train.readCheckpointState', [readPath(w.files.checkpoint)], tr.readCheckpointState as AnyFn);
  add('train.NonFiniteLossError', [int([3]), int([0]), number([Number.NaN])], (s, e, l) => new tr.NonFiniteLossError(s as number, e as number, l as number), { internal: true });

  // --- the native addon of every usable backend, with handles of every kind
  for (const be of Object.keys(w.natives)) nativeTargets(w, (name, args, call, opts) => add(be === 'cpu' ? name : name.replace(/^binding\./, `binding(${be}).`), args, call, { ...opts, backend: be }), be);
  // Both addon instances refuse each other's handles.
  if (w.foreign) {
    const f = w.foreign;
    add('foreign.relu', [handle([2, 3])], (h) => f.relu(h as NativeBuffer));
    add('foreign.add', [handle([2, 3]), custom((g) => g.fx.handle(g, [2, 3], { instance: 'foreign' }), [])], (a, c) => f.add(a as NativeBuffer, c as NativeBuffer));
  }
  return T;
}

/** downloadCifar's options with the given address, when they are a plain object that names none. */
function withUrl(o: unknown, url: string): unknown {
  try {
    if (o !== null && typeof o === 'object' && Object.getPrototypeOf(o) === Object.prototype && !Object.hasOwn(o, 'url')) return { ...o, url };
  } catch {
    // A proxy or getter that throws: downloadCifar meets it too.
  }
  return o;
}

function nativeTargets(w: World, add: Add, backend: string): void {
  const native = w.natives[backend]!;
  const b = native as unknown as Record<string, AnyFn>;
  const nat = (name: string, args: Schema[]) => add(`binding.${name}`, args, (...a) => b[name]!(...a));
  const H = handle;
  const i32 = { dtype: 'int32' as const };
  const p = nativePair;
  const uploadValues = custom(() => arg(new Float32Array(6), 'Float32Array(6)'), [
    () => arg(new Int32Array(6), 'Int32Array(6)'), () => arg(new Float64Array(6), 'Float64Array(6)'), () => arg(new Uint8Array(24), 'Uint8Array(24)'),
    () => arg(new Float32Array(5), 'Float32Array(5)'), () => arg(new Float32Array(new SharedArrayBuffer(24)), 'Float32Array on a SharedArrayBuffer'),
    () => arg(new Float32Array(new ArrayBuffer(32), 8, 6), 'Float32Array(6) at byte offset 8'), () => arg(new Float32Array(resizable(24, 48)), 'length-tracking Float32Array'),
    () => {
      const a = new Float32Array(6);
      structuredClone(a.buffer, { transfer: [a.buffer] });
      return arg(a, 'detached Float32Array(6)');
    },
    () => arg([1, 2, 3, 4, 5, 6], '[1, …, 6]'), () => arg(new DataView(new ArrayBuffer(24)), 'DataView(24)'), () => arg(new BigInt64Array(3), 'BigInt64Array(3)'),
  ]);
  nat('upload', [uploadValues, shape([[2, 3], [6], [3, 2]])]);
  nat('fill', [shape([[2, 3], [1]]), number([0, 1, -2], [2 ** 31, 0.5, 1e300]), oneOf(['float32', 'int32'])]);
  for (const name of ['zerosLike', 'download', 'downloadSync', 'release', 'share', 'shapeOf', 'relu']) nat(name, [H([2, 3])]);
  nat('reshape', [H([2, 3]), shape([[6], [3, 2], [1, 6]])]);
  nat('setNumThreads', [int([1, 2], [1025, 2 ** 31])]);
  nat('scale', [H([2, 3]), number([2])]);
  nat('add', [H([2, 3]), H([2, 3])]);
  nat('addRelu', [H([2, 3]), H([2, 3])]);
  nat('reluBackward', [H([2, 3]), H([2, 3])]);
  const geometry = [p([1, 2]), p([0, 1]), p([1, 2]), int([1])];
  const xShape = shape([[2, 3, 6, 6]]);
  nat('conv2dForward', [H([2, 3, 6, 6]), H([4, 3, 3, 3]), nullable(H([4])), ...geometry]);
  nat('conv2dBackwardData', [H([2, 4, 4, 4]), H([4, 3, 3, 3]), xShape, p([1]), p([0]), p([1]), int([1])]);
  nat('conv2dBackwardWeights', [H([2, 3, 6, 6]), H([2, 4, 4, 4]), shape([[4, 3, 3, 3]]), bool(), p([1]), p([0]), p([1]), int([1])]);
  const x4 = H([2, 3, 4, 4]);
  const c = H([3]);
  nat('batchNormForwardTraining', [x4, c, c, nullable(c), nullable(c), number([0.1, 0, 1], [1.5]), number([1e-5], [0, 1e-50])]);
  nat('batchNormForwardInference', [x4, c, c, c, c, number([1e-5], [0])]);
  const saved = custom((g) => {
    const bb = native;
    const x = g.fx.handle(g, [2, 3, 4, 4]).v as NativeBuffer;
    const gamma = g.fx.handle(g, [3]).v as NativeBuffer;
    const [y, s1, s2] = bb.batchNormForwardTraining(x, gamma, gamma, null, null, 0.1, 1e-5);
    for (const h of [y, s1, s2]) g.own(h, (q) => bb.release(q));
    return arg([s1, s2], 'saved statistics of a batchNormForwardTraining');
  }, []);
  add('binding.batchNormBackward', [x4, x4, c, either(saved, custom((g) => arg([g.fx.handle(g, [3]).v, g.fx.badHandle(g, [3]).v], '[H([3]), bad handle]'), [])), number([1e-5])],
    (x, dy, wt, s, eps) => {
      const [s1, s2] = Array.isArray(s) ? s : [s, s];
      return native.batchNormBackward(x as NativeBuffer, dy as NativeBuffer, wt as NativeBuffer, s1 as NativeBuffer, s2 as NativeBuffer, eps as number);
    });
  const X = H([2, 3, 6, 6]);
  nat('maxPool2dForward', [X, p([2, 3]), p([1, 2]), p([0, 1])]);
  nat('avgPool2dForward', [X, p([2, 3]), p([1, 2]), p([0, 1])]);
  nat('avgPool2dBackward', [H([2, 3, 3, 3]), xShape, p([2]), p([2]), p([0])]);
  const workspace = custom((g) => {
    const bb = native;
    const [y, ws] = bb.maxPool2dForward(g.fx.handle(g, [2, 3, 6, 6]).v as NativeBuffer, [2, 2], [2, 2], [0, 0]);
    g.own(y, (q) => bb.release(q));
    g.own(ws, (q) => bb.release(q));
    return arg(ws, 'workspace of maxPool2dForward([2, 3, 6, 6], 2, 2, 0)');
  }, [(g) => g.fx.handle(g, [2, 3, 3, 3]), (g) => g.fx.badHandle(g, [2, 3, 3, 3]), (g) => {
    const bb = native;
    const [y, ws] = bb.maxPool2dForward(g.fx.handle(g, [2, 3, 6, 6]).v as NativeBuffer, [3, 3], [3, 3], [1, 1]);
    g.own(y, (q) => bb.release(q));
    g.own(ws, (q) => bb.release(q));
    return arg(ws, 'workspace of another pooling');
  }]);
  nat('maxPool2dBackward', [H([2, 3, 3, 3]), workspace, xShape, p([2]), p([2]), p([0])]);
  nat('linearForward', [H([2, 5]), H([3, 5]), nullable(H([3]))]);
  nat('linearBackward', [H([2, 5]), H([3, 5]), H([2, 3]), bool()]);
  nat('softmaxCrossEntropyForward', [H([2, 3]), H([2], i32), number([0, 0.1], [1])]);
  nat('softmaxCrossEntropyBackward', [H([2, 3]), H([2], i32), number([0], [1]), H([])]);
  const list = (n: number) => custom((g) => arg(Array.from({ length: n }, () => g.fx.handle(g, [3]).v), `[${n} × H([3])]`), [
    (g) => arg([g.fx.handle(g, [3], i32).v], '[int32 H([3])]'), (g) => arg([g.fx.badHandle(g, [3]).v], '[bad handle]'), (g) => arg([g.fx.handle(g, [4]).v], '[H([4])]'),
    () => arg([, 1], '[<hole>, 1]'), (g) => arg([g.fx.handle(g, [3], { instance: 'foreign' }).v], '[foreign H([3])]'),
  ]);
  add('binding.sgdStep', [list(1), list(1), either(list(1), constant([], '[]')), number([0.1]), number([0.9, 0]), number([0, 1e-4]), bool(), bool()], (ps, gs, ms, ...rest) => {
    // The same parameter handle twice must be refused; pass the params list twice now and then.
    return b.sgdStep!(ps, gs, ms, ...rest);
  });
  add('binding.sgdStep (param twice)', [list(1), number([0.1])], (ps, lr) => {
    const list2 = Array.isArray(ps) ? [...ps, ...ps] : ps;
    return b.sgdStep!(list2, list2, [], lr, 0, 0, false, true);
  });
  const ctor = b.NativeBuffer as unknown as new (...a: unknown[]) => unknown;
  add('new binding.NativeBuffer', [anything], (v) => new ctor(v));
  add('binding.NativeBuffer()', [anything], (v) => (ctor as unknown as AnyFn)(v));
  for (const name of ['bytes', 'released']) {
    add(`NativeBuffer.${name}`, [either(H([2]), custom((g) => g.fx.badHandle(g, [2]), []))], asMethod((h) => Reflect.get((ctor as unknown as { prototype: object }).prototype, name, h)));
  }
}

// ---------------------------------------------------------------------------------------------
// Every export reached: functions and methods without a target above get one of junk arguments.

function autoTargets(w: World, T: Target[]): string[] {
  const have = new Set(T.map((t) => t.name.split(' ')[0]!));
  const missing: string[] = [];
  const junkArgs = [{ ok: junk, bad: junk, optional: true }, { ok: junk, bad: junk, optional: true }, { ok: junk, bad: junk, optional: true }];
  // The receiver of a method without a schema is junk too, always.
  const junkReceiver = [JUNK_RECEIVER, ...junkArgs];
  const visit = (name: string, v: unknown) => {
    if (typeof v !== 'function') return;
    if (!have.has(name) && !have.has(`${name}=`)) {
      missing.push(name);
      // The Tensor constructor is private: the factories are its public face.
      T.push({ name, args: junkArgs, internal: name === 'Tensor', call: (...a) => (isClass(v) ? Reflect.construct(v as new (...x: unknown[]) => unknown, a) : (v as AnyFn)(...a)) });
    }
    const proto = (v as { prototype?: object }).prototype;
    if (!proto || !isClass(v)) return;
    for (const key of Object.getOwnPropertyNames(proto)) {
      if (key === 'constructor') continue;
      const full = `${name.replace(/^(nn|models|optim|data|train)\./, '')}.${key}`;
      if (have.has(full) || have.has(`${full}=`) || have.has(`${name}.${key}`)) continue;
      missing.push(full);
      const d = Object.getOwnPropertyDescriptor(proto, key)!;
      T.push({
        name: full, args: junkReceiver, receiver: true, internal: key === 'afterLoad' || key === 'beforeExport',
        call: (self, ...a) => (d.get || d.set ? (d.set ? Reflect.set(proto, key, a[0], self) : Reflect.get(proto, key, self)) : Reflect.apply(d.value as AnyFn, self, a)),
      });
    }
  };
  for (const [k, v] of Object.entries(w.lib)) {
    if (typeof v === 'function') visit(k, v);
    else if (v && typeof v === 'object' && !Array.isArray(v)) for (const [k2, v2] of Object.entries(v)) visit(`${k}.${k2}`, v2);
  }
  for (const [be, native] of Object.entries(w.natives)) {
    // shutdown() stops the backend for good (load.ts calls it once, on 'exit'): a target of
    // its own would end the run; test/teardown.test.ts covers it.
    for (const [k, v] of Object.entries(native)) if (typeof v === 'function' && k !== 'NativeBuffer' && k !== 'shutdown') visit(be === 'cpu' ? `binding.${k}` : `binding(${be}).${k}`, v);
  }
  return missing;
}

function isClass(v: unknown): boolean {
  return typeof v === 'function' && /^class\b/.test(Function.prototype.toString.call(v));
}

// ---------------------------------------------------------------------------------------------
// Running calls and judging what they did.

/** Messages of errors V8 raises itself: a check the library lacks, reported apart. */
const ENGINE_MESSAGE = /^(Cannot read propert|Cannot read private member|Cannot (set|assign|create|convert|destructure|mix BigInt|use 'in')|.* is not (a function|iterable|a constructor|defined)|Invalid (typed )?array length|Maximum call stack|Reduce of empty array|Array buffer allocation failed|Do not know how to serialize a BigInt|Converting circular structure)/;

export interface Summary {
  seed: number;
  calls: number;
  seconds: number;
  targets: number;
  outcomes: Record<string, number>;
  /** Calls per target name, to see that every function was reached. */
  perTarget: Record<string, number>;
  /** Milliseconds per target, fixtures and checks included. */
  perTargetMs: Record<string, number>;
  /** Functions and methods that got only junk arguments (no schema above). */
  autoTargets: string[];
  /** Errors raised by the engine instead of the library's checks: template → count and an example call. */
  engineErrors: Record<string, { count: number; call: string }>;
  /** Calls after which tensors or native buffers stayed allocated. */
  leaks: { call: string; tensors: number; buffers: number }[];
  failures: { index: number; call: string; kind: string; detail: string }[];
  otherInstance: boolean;
  foreignInstance: boolean;
}

function template(msg: string): string {
  return msg.replace(/\d+(\.\d+)?(e[+-]?\d+)?/g, 'N').replace(/'[^']*'/g, "'…'").slice(0, 160);
}

function disposeDeep(v: unknown, w: World, depth = 0): void {
  if (v === null || typeof v !== 'object' || depth > 2) return;
  try {
    if (v instanceof L.Tensor || (w.other && v instanceof w.other.Tensor)) return (v as L.Tensor).dispose();
    if (v instanceof L.nn.Module || (w.other && v instanceof w.other.nn.Module)) return (v as L.nn.Module).dispose();
    if (v instanceof L.optim.SGD) return v.dispose();
    for (const b of Object.values(w.natives)) {
      if (v instanceof (b as unknown as { NativeBuffer: new () => object }).NativeBuffer) return b.release(v as NativeBuffer);
    }
    if (w.foreign && v instanceof (w.foreign as unknown as { NativeBuffer: new () => object }).NativeBuffer) return w.foreign.release(v as NativeBuffer);
    if (Array.isArray(v)) for (const x of v) disposeDeep(x, w, depth + 1);
    else if (Object.getPrototypeOf(v) === Object.prototype) for (const x of Object.values(v)) disposeDeep(x, w, depth + 1);
  } catch {
    // A forged or half-made object: nothing of ours to free.
  }
}

const TIMEOUT_MS = 15_000;

function withTimeout<T>(p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([p, new Promise<T>((_, reject) => { timer = setTimeout(() => reject(new HangError()), TIMEOUT_MS); })]).finally(() => clearTimeout(timer));
}

class HangError extends Error {}

export interface RunOptions {
  seed: number;
  calls: number;
  seconds: number;
  start: number;
  only: string | null;
  trace: (line: string) => void;
}

export async function run(o: RunOptions): Promise<Summary> {
  const w = await makeWorld();
  // Relative paths among the generated arguments ('cpu', '3') are written into the temporary folder.
  const cwd = process.cwd();
  process.chdir(w.dir);
  const fx = makeFixtures(w);
  const T = buildTargets(w);
  const auto = autoTargets(w, T);
  const targets = o.only ? T.filter((t) => t.name === o.only || t.name.startsWith(`${o.only} `)) : T;
  if (targets.length === 0) throw new Error(`no target named ${o.only}`);
  const summary: Summary = {
    seed: o.seed, calls: 0, seconds: 0, targets: targets.length, outcomes: {}, perTarget: {}, perTargetMs: {}, autoTargets: auto, engineErrors: {}, leaks: [], failures: [],
    otherInstance: w.other !== null, foreignInstance: w.foreign !== null,
  };
  const late: string[] = [];
  process.on('unhandledRejection', (e) => late.push(`unhandled rejection: ${describeThrown(e)}`));
  process.on('uncaughtException', (e) => late.push(`uncaught exception: ${describeThrown(e)}`));
  const count = (k: string) => { summary.outcomes[k] = (summary.outcomes[k] ?? 0) + 1; };
  const threads = L.backends()[0]!.details.maxThreads as number;
  const t0 = performance.now();
  let base = { tensors: L.memory().numTensors, buffers: nativeBuffers(w) };
  for (let i = o.start; i < o.start + o.calls; i++) {
    if (o.seconds > 0 && performance.now() - t0 > o.seconds * 1000) break;
    const g = new Gen(callSeed(o.seed, i), fx);
    const target = targets[g.int(targets.length)]!;
    g.backend = target.backend ?? 'cpu';
    let args: Arg[];
    try {
      args = generate(g, target);
    } catch (err) {
      // Making the arguments (fixtures) failed: a bug of the fuzzer, reported as one.
      summary.failures.push({ index: i, call: target.name, kind: 'generator', detail: describeThrown(err) });
      cleanup(g);
      continue;
    }
    const { valid, receiverBad } = args as Generated;
    const call = `${target.name}(${args.map((a) => a.d).join(', ')})`.slice(0, 600);
    o.trace(`${i}\t${call}\n`);
    summary.perTarget[target.name] = (summary.perTarget[target.name] ?? 0) + 1;
    summary.calls++;
    const started = performance.now();
    let outcome: string;
    try {
      const values = args.map((a) => a.v);
      let r = target.scoped ? L.tidy(() => target.call(...values)) : target.call(...values);
      if (r !== null && typeof r === 'object' && typeof (r as Promise<unknown>).then === 'function' && r instanceof Promise) r = await withTimeout(r);
      disposeDeep(r, w);
      outcome = valid ? 'ok' : 'accepted';
    } catch (err) {
      outcome = judge(err);
      if (outcome === 'engine-error' && (receiverBad || target.internal)) outcome = receiverBad ? 'receiver-error' : 'internal-error';
      if (outcome === 'hang') {
        summary.failures.push({ index: i, call, kind: 'hang', detail: `no result after ${TIMEOUT_MS} ms` });
        break;
      }
      if (outcome === 'engine-error') {
        const key = `${target.name}: ${template((err as Error).message)}`;
        const e = (summary.engineErrors[key] ??= { count: 0, call });
        e.count++;
      }
      if (outcome === 'bad-throw') summary.failures.push({ index: i, call, kind: 'bad-throw', detail: describeThrown(err) });
    }
    count(outcome);
    cleanup(g);
    // Whatever a call made and did not hand back must be freed by now (queued work included).
    const now = { tensors: L.memory().numTensors, buffers: nativeBuffers(w) };
    const tensors = now.tensors - base.tensors;
    const buffers = now.buffers - base.buffers;
    if ((tensors > 0 || buffers > 0) && !receiverBad && !target.internal && summary.leaks.length < 50) summary.leaks.push({ call, tensors, buffers });
    summary.perTargetMs[target.name] = (summary.perTargetMs[target.name] ?? 0) + (performance.now() - started);
    base = now;
    for (const msg of late.splice(0)) summary.failures.push({ index: i, call, kind: 'async', detail: msg });
  }
  L.setNumThreads(threads);
  summary.seconds = Math.round((performance.now() - t0) / 100) / 10;
  process.chdir(cwd);
  rmSync(w.dir, { recursive: true, force: true });
  return summary;
}

function nativeBuffers(w: World): number {
  let n = 0;
  for (const b of Object.values(w.natives)) {
    b.syncBlocking();
    n += b.memory().buffers;
  }
  return n;
}

const JUNK_RECEIVER: Schema = { ok: junk, bad: junk };

/** The arguments of a call, whether they were all meant valid, and whether the receiver was made wrong. */
type Generated = Arg[] & { valid: boolean; receiverBad: boolean };

/** The arguments of one call: all valid, or one or two made wrong, sometimes too few or too many. */
function generate(g: Gen, t: Target): Generated {
  const n = t.args.length;
  const validShare = t.valid ?? 0.1;
  const allValid = n === 0 || g.chance(validShare);
  const wrong = new Set<number>();
  if (!allValid) {
    wrong.add(g.int(n));
    if (n > 1 && g.chance(0.3)) wrong.add(g.int(n));
  }
  let args = t.args.map((s, i) => (wrong.has(i) ? s.bad(g) : s.ok(g)));
  let valid = allValid;
  if (!allValid && validShare > 0 && g.chance(0.1)) {
    // Too few or too many arguments.
    args = g.chance(0.5) ? args.slice(0, g.int(n + 1)) : [...args, junk(g)];
  }
  if (validShare === 0 && allValid) valid = false;
  // Trailing optional arguments left out are still valid.
  while (valid && args.length > 0 && args[args.length - 1]!.v === undefined && t.args[args.length - 1]?.optional) args.pop();
  return Object.assign(args, { valid, receiverBad: t.receiver === true && (wrong.has(0) || args.length === 0 || t.args[0] === JUNK_RECEIVER) });
}

function cleanup(g: Gen): void {
  for (const f of g.cleanup.reverse()) {
    try {
      f();
    } catch {
      // A fixture the call already freed, or broke on purpose.
    }
  }
}

function judge(err: unknown): string {
  if (err instanceof HangError) return 'hang';
  if (err instanceof FuzzTrap) return 'trap';
  if (!(err instanceof Error) || typeof err.message !== 'string' || err.message.trim() === '') return 'bad-throw';
  if (ENGINE_MESSAGE.test(err.message)) return 'engine-error';
  return 'error';
}

function describeThrown(e: unknown): string {
  if (e instanceof Error) return `${e.constructor.name}: ${e.message}\n${(e.stack ?? '').split('\n').slice(1, 6).join('\n')}`;
  try {
    return `non-Error ${typeof e}: ${String(e)}`;
  } catch {
    return `non-Error ${typeof e}`;
  }
}

// ---------------------------------------------------------------------------------------------
// Command line.

function parseArgs(argv: string[]): RunOptions {
  const get = (name: string) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const seed = get('seed') !== undefined ? Number(get('seed')) : Math.floor(Math.random() * 2 ** 31);
  const traceFd = process.env.FUZZ_TRACE_FD ? Number(process.env.FUZZ_TRACE_FD) : null;
  return {
    seed,
    calls: Number(get('calls') ?? 10_000),
    seconds: Number(get('seconds') ?? 0),
    start: Number(get('start') ?? 0),
    only: get('only') ?? null,
    trace: traceFd === null ? () => {} : (line) => writeSync(traceFd, line),
  };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const opts = parseArgs(process.argv.slice(2));
  console.error(`boundary fuzz: seed ${opts.seed}, calls ${opts.start}..${opts.start + opts.calls - 1}${opts.seconds ? `, at most ${opts.seconds} s` : ''}`);
  const summary = await run(opts);
  console.log(JSON.stringify(summary));
  for (const f of summary.failures) console.error(`FAILURE (${f.kind}) at call ${f.index} (replay: --seed ${summary.seed} --start ${f.index} --calls 1):\n  ${f.call}\n  ${f.detail}`);
  // Exit now: after a hang the call that hung is still running and would keep the process alive.
  process.exit(summary.failures.length > 0 ? 1 : 0);
}
