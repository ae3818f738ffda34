/**
 * The boundary fuzzer's targets in the native addon of every usable backend (internal, but
 * reachable from JavaScript), with handles of every kind, and a foreign instance of the CPU
 * addon, which must refuse the other's handles.
 * @module
 */
import type { NativeBuffer } from '../../lib/backend/binding.js';
import { type Add, type AnyFn, asMethod } from './target.js';
import { type Schema, anything, arg, bool, constant, custom, either, handle, int, nativePair, nullable, number, oneOf, opt, resizable, shape } from './gen.js';
import type { World } from './world.js';

export function nativeTargets(w: World, add: Add, backend: string): void {
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
  nat('upload', [uploadValues, shape([[2, 3], [6], [3, 2]]), opt(oneOf(['float32', 'bfloat16', 'float16']))]);
  nat('fill', [shape([[2, 3], [1]]), number([0, 1, -2], [2 ** 31, 0.5, 1e300]), oneOf(['float32', 'int32', 'bfloat16', 'float16'])]);
  nat('cast', [H([2, 3]), oneOf(['bfloat16', 'float16', 'float32'])]);
  nat('countNonFinite', [custom((g) => arg([g.fx.handle(g, [2, 3]).v, g.fx.handle(g, [3], { dtype: 'bfloat16' }).v], '[H([2, 3]), H(bfloat16 [3])]'), [
    (g) => arg([g.fx.handle(g, [3], i32).v], '[int32 H([3])]'), (g) => arg([g.fx.badHandle(g, [3]).v], '[bad handle]'), () => arg([, 1], '[<hole>, 1]'),
  ])]);
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
  const tail = [nullable(x4), bool()];
  nat('batchNormForwardTraining', [x4, c, c, nullable(c), nullable(c), number([0.1, 0, 1], [1.5]), number([1e-5], [0, 1e-50]), ...tail]);
  nat('batchNormForwardInference', [x4, c, c, c, c, number([1e-5], [0]), ...tail]);
  // The saved state of a training forward with a random tail, and the tail it had.
  const saved = custom((g) => {
    const bb = native;
    const x = g.fx.handle(g, [2, 3, 4, 4]).v as NativeBuffer;
    const gamma = g.fx.handle(g, [3]).v as NativeBuffer;
    const relu = g.chance(0.5);
    const residual = g.chance(0.5) ? g.fx.handle(g, [2, 3, 4, 4]).v as NativeBuffer : null;
    const [y, s1, s2, s3] = bb.batchNormForwardTraining(x, gamma, gamma, null, null, 0.1, 1e-5, residual, relu);
    for (const h of [y, s1, s2, s3]) if (h) g.own(h, (q) => bb.release(q));
    return arg({ y, s1, s2, s3, residual: residual !== null, relu }, `saved state of a batchNormForwardTraining (residual ${residual !== null}, relu ${relu})`);
  }, [(g) => arg({ y: null, s1: g.fx.handle(g, [3]).v, s2: g.fx.badHandle(g, [3]).v, s3: null, residual: false, relu: true }, '{relu, no output, bad handle}'),
    (g) => arg({ y: g.fx.handle(g, [2, 3, 4, 4]).v, s1: g.fx.handle(g, [3]).v, s2: g.fx.handle(g, [3]).v, s3: g.fx.handle(g, [3]).v, residual: false, relu: true },
      '{relu, a tail state that is no ReLU mask}')]);
  add('binding.batchNormBackward', [x4, x4, c, saved, number([1e-5]), bool()], (x, dy, wt, st, eps, flip) => {
    const s = (st ?? {}) as { y: NativeBuffer | null; s1: NativeBuffer; s2: NativeBuffer; s3: NativeBuffer | null; residual: boolean; relu: boolean };
    // Now and then the backward of another tail than the forward's.
    const relu = flip ? !s.relu : s.relu;
    return native.batchNormBackward(x as NativeBuffer, s.y, dy as NativeBuffer, wt as NativeBuffer, s.s1, s.s2, s.s3, eps as number, s.residual, relu);
  });
  // Synchronized batch norm's local parts (valid handles make them run: they need no group).
  nat('syncBatchNormStats', [x4]);
  nat('syncBatchNormGather', [H([2, 3, 3]), nullable(c), nullable(c), number([0.1, 0, 1], [1.5, -1])]);
  nat('syncBatchNormBackwardReduce', [x4, x4, c, c, number([1e-5], [0, 1e-50])]);
  nat('syncBatchNormBackwardElemt', [x4, x4, c, c, c, c, c, c, number([1e-5], [0])]);
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
  add('binding.sgdStep', [list(1), list(1), either(list(1), constant([], '[]')), number([0.1]), number([0.9, 0]), number([0, 1e-4]), bool(), bool(),
    opt(nullable(H([1])))], (ps, gs, ms, ...rest) => {
    // The same parameter handle twice must be refused; pass the params list twice now and then.
    return b.sgdStep!(ps, gs, ms, ...rest);
  });
  add('binding.sgdStep (param twice)', [list(1), number([0.1])], (ps, lr) => {
    const list2 = Array.isArray(ps) ? [...ps, ...ps] : ps;
    return b.sgdStep!(list2, list2, [], lr, 0, 0, false, true);
  });
  // Captured steps: ids that name no graph, and a capture of nothing, ended and released (the CPU
  // refuses it).
  nat('copyInto', [H([2, 3]), H([2, 3])]);
  for (const name of ['graphLaunch', 'graphRelease', 'graphStatus']) nat(name, [int([1, 2], [0, -1, 2 ** 53])]);
  nat('captureAbort', []);
  add('binding.captureBegin, captureEnd', [], () => {
    const id = b.captureBegin!() as number;
    try {
      return b.captureEnd!();
    } finally {
      b.graphRelease!(id);
    }
  });
  // Collectives: groupPrepare gets only ranks out of range (a valid one would listen for peers
  // that never come). The collectives meet no group, or the group of one that
  // distributed.init() forms (lib-targets.ts): a start nobody waits for must still free
  // everything once it has run.
  const badRank = custom(() => arg(-1, '-1'), [() => arg(5, '5'), () => arg('0', "'0'"), () => arg(Number.NaN, 'NaN'), () => arg(2 ** 53, '2^53')]);
  nat('groupPrepare', [badRank, int([2], [0, 70000]), int([1000], [0, 2 ** 32]), oneOf(['127.0.0.1', ''])]);
  nat('groupConnect', [custom(() => arg([], '[]'), [() => arg([new Uint8Array(3)], '[Uint8Array(3)]'), () => arg([new Float32Array(2)], '[Float32Array(2)]')])]);
  nat('groupDestroy', []);
  nat('groupAbort', [oneOf(['a peer left', ''])]);
  nat('allReduce', [list(1), oneOf(['sum', 'mean', 'max', 'min'])]);
  nat('broadcast', [list(1), int([0, 1], [-1, 70000])]);
  nat('allGather', [H([2, 3])]);
  nat('barrier', []);
  nat('collectiveWait', [int([0, 7], [-1])]);
  const ctor = b.NativeBuffer as unknown as new (...a: unknown[]) => unknown;
  add('new binding.NativeBuffer', [anything], (v) => new ctor(v));
  add('binding.NativeBuffer()', [anything], (v) => (ctor as unknown as AnyFn)(v));
  for (const name of ['bytes', 'released']) {
    add(`NativeBuffer.${name}`, [either(H([2]), custom((g) => g.fx.badHandle(g, [2]), []))], asMethod((h) => Reflect.get((ctor as unknown as { prototype: object }).prototype, name, h)));
  }
}

/** Both addon instances refuse each other's handles. */
export function foreignTargets(w: World, add: Add): void {
  if (!w.foreign) return;
  const f = w.foreign;
  add('foreign.relu', [handle([2, 3])], (h) => f.relu(h as NativeBuffer));
  add('foreign.add', [handle([2, 3]), custom((g) => g.fx.handle(g, [2, 3], { instance: 'foreign' }), [])], (a, c) => f.add(a as NativeBuffer, c as NativeBuffer));
}
