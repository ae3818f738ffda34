/**
 * The boundary fuzzer's targets in the library: every export of lib/index.ts, the methods and
 * accessors of its classes (with valid receivers and wrong ones) and the internals JavaScript
 * can reach (`Tensor._wrap`, `_share`, `_assign`, the protected `Module` methods). One function
 * per part of the library, called in a fixed order: call i of a seed picks the i-th target.
 * @module
 */
import { join } from 'node:path';
import * as L from '../../lib/index.js';
import type { NativeBuffer } from '../../lib/backend/binding.js';
import {
  type Arg, FuzzTrap, type Gen, type Schema, anything, arg, bool, constant, custom, either, fn, handle, int, junk,
  nullable, number, obj, oneOf, opt, pair, resizable, shape, tensor,
} from './gen.js';
import { type Add, type AnyFn, asMethod, method, setter } from './target.js';
import { type World, tinyModel } from './world.js';

// Shapes of the valid calls: small, so that valid calls cost microseconds.
const X4 = [2, 3, 6, 6];
const W4 = [4, 3, 3, 3];

/** Every target in the library. */
export function libTargets(w: World, add: Add): void {
  const s = commonSchemas(w);
  tensorTargets(w, s, add);
  opTargets(w, add);
  nnTargets(w, s, add);
  modelTargets(w, s, add);
  optimTargets(w, s, add);
  dataTargets(w, s, add);
  safetensorsTargets(w, s, add);
  interopTargets(w, s, add);
  trainTargets(w, s, add);
  distributedTargets(w, s, add);
}

/**
 * The process group and its collectives. A valid init forms a group of one process (rendezvous
 * on the world's free MASTER_PORT; so does init() with every argument dropped, from torchrun's
 * defaults): collectives then run for real, and a group of one never waits for a peer. Without
 * a group every collective must fail at once.
 */
function distributedTargets(w: World, s: Common, add: Add): void {
  const d = w.lib.distributed;
  add('distributed.init', [custom(() => arg({ worldSize: 1, timeoutMs: 10_000 }, '{ worldSize: 1, timeoutMs: 10000 }'), [
    () => arg({ rank: 3, worldSize: 2 }, '{ rank: 3, worldSize: 2 }'),
    () => arg({ backend: 'mpi' }, "{ backend: 'mpi' }"), () => arg({ masterAddr: 'a b' }, "{ masterAddr: 'a b' }"),
    () => arg({ masterPort: 70000 }, '{ masterPort: 70000 }'), () => arg({ timeoutMs: 0 }, '{ timeoutMs: 0 }'), () => arg({ worldSize: 0 }, '{ worldSize: 0 }'),
    () => arg([], '[]'), () => arg({ rank: 1 }, '{ rank: 1 }'),
  ])], d.init as AnyFn);
  for (const name of ['destroy', 'isInitialized', 'rank', 'worldSize', 'backend', 'barrier'] as const) add(`distributed.${name}`, [], d[name] as AnyFn);
  add('distributed.allReduce', [tensor([2, 3]), opt(obj({ op: opt(oneOf(['sum', 'mean', 'max'])) }))], d.allReduce as AnyFn);
  add('distributed.broadcast', [tensor([2, 3]), opt(obj({ root: opt(int([0, 1], [-1])) }))], d.broadcast as AnyFn);
  add('distributed.allGather', [tensor([2, 3])], d.allGather as AnyFn);
  add('nn.DistributedDataParallel', [s.moduleS, opt(obj({ bucketMB: opt(number([25, 0.5], [0, -1])) }))], (m, o) => new w.lib.nn.DistributedDataParallel(m as never, o as never));
  add('nn.convertSyncBatchNorm', [s.moduleS], w.lib.nn.convertSyncBatchNorm as AnyFn);
}

/** Arguments that several parts of the library take: backends, paths, datasets, modules, loaders, parameters, optimizers. */
function commonSchemas(w: World) {
  const { lib } = w;
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
  return { backendS, readPath, writePath, dirPath, datasetS, moduleS, tinyModelS, loaderS, paramsS, sgdS };
}

type Common = ReturnType<typeof commonSchemas>;

/** The tensor constructors and scopes, and `Tensor`'s methods and accessors on valid and wrong receivers. */
function tensorTargets(w: World, s: Common, add: Add): void {
  const { lib } = w;
  const { backendS } = s;
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
  add('Tensor._wrapUntracked', [handle([2, 3]), wrapShape, backendS], (buf, s, be) => lib.Tensor._wrapUntracked(buf as NativeBuffer, s as number[], be as 'cpu'));
  add('Tensor._wrapLike', [tensor([2, 3]), handle([2, 3])], method(P, '_wrapLike'));
}

/** The ops, and their backward passes with gradients of every kind. */
function opTargets(w: World, add: Add): void {
  const { lib } = w;
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
}

/** The layers, blocks and `Module`'s methods, the protected ones too. */
function nnTargets(w: World, s: Common, add: Add): void {
  const { lib } = w;
  const { backendS, moduleS } = s;
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
}

/** The models: the valid ImageNet networks take seconds to build, so only wrong options for them. */
function modelTargets(w: World, s: Common, add: Add): void {
  const { lib } = w;
  const { backendS } = s;
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
}

/** `SGD` and its methods. */
function optimTargets(w: World, s: Common, add: Add): void {
  const { lib } = w;
  const { paramsS, sgdS } = s;
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
}

/** The readers, transforms, `DataLoader` and `Rng`. */
function dataTargets(w: World, s: Common, add: Add): void {
  const { lib } = w;
  const { backendS, readPath, dirPath, datasetS, loaderS } = s;
  const rngS = custom(() => arg(new lib.data.Rng(1), 'Rng(1)'), [() => arg({ uniform: () => 0.5 }, 'an Rng-like object')]);
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
}

/** The safetensors reader and writer. */
function safetensorsTargets(w: World, s: Common, add: Add): void {
  const { lib } = w;
  const { backendS, readPath, writePath } = s;
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

}

/** PyTorch checkpoints in, ONNX out. */
function interopTargets(w: World, s: Common, add: Add): void {
  const { lib } = w;
  const { backendS, readPath, moduleS } = s;
  const keyS = opt(custom(() => arg('state_dict', "'state_dict'"), [() => arg('', "''"), () => arg(7, '7'), () => arg('__proto__', "'__proto__'")]));
  add('loadTorchStateDict', [readPath(w.files.torch), opt(obj({ backend: backendS, key: keyS, stripPrefix: opt(custom(() => arg('module.', "'module.'"), [() => arg('', "''")])) }))], lib.loadTorchStateDict as AnyFn);
  const onnxPath = custom(() => arg(join(w.dir, 'model.onnx'), "'<tmp>/model.onnx'"), [() => arg('', "''"), () => arg(w.dir, "'<tmp>' (a directory)"), () => arg(join(w.files.garbage, 'x'), "'<tmp>/garbage.bin/x'")]);
  const inputShapeS = shape([[1, 3, 8, 8], [2, 1, 4, 4], [1, 3, 2, 2]]);
  add('exportOnnx', [moduleS, onnxPath, obj({ inputShape: inputShapeS, opset: opt(int([13, 17, 22], [12, 23])), dynamicBatch: opt(bool()) })], lib.exportOnnx as AnyFn);
}

/** The training loop, schedules, charts and checkpoints. */
function trainTargets(w: World, s: Common, add: Add): void {
  const { lib } = w;
  const { backendS, readPath, writePath, moduleS, tinyModelS, loaderS, sgdS } = s;
  const scheduleS = fn(() => arg((step: number) => 0.1 / (1 + step), '(step) => 0.1 / (1 + step)'));
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
