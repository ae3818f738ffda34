/**
 * The world the boundary fuzzer's calls run in: the library, a second copy of it (dist/), the
 * addon of each usable backend, a foreign instance of the CPU addon, small files of every format
 * the library reads; and the fixtures that make fresh tensors and handles for each call.
 * @module
 */
import { type AddressInfo, createServer } from 'node:net';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
import * as L from '../../lib/index.js';
import { bindingOf } from '../../lib/backend/load.js';
import type { Binding, NativeBuffer } from '../../lib/backend/binding.js';
import { type FixtureDType, type Fixtures, FuzzTrap, type Gen, arg } from './gen.js';

export type Lib = typeof L;

const root = fileURLToPath(new URL('../../', import.meta.url));

export interface World {
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

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer().once('error', reject).listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

export async function makeWorld(): Promise<World> {
  const dir = mkdtempSync(join(tmpdir(), 'cudnn-resnet-fuzz-'));
  process.env.CUDNN_RESNET_DATA = dir;
  // distributed.init() with torchrun's defaults forms a group of one process: its rendezvous
  // goes on a free port of this host, not on PyTorch's 29500, which other jobs may hold.
  for (const v of ['RANK', 'WORLD_SIZE', 'LOCAL_RANK']) delete process.env[v];
  process.env.MASTER_ADDR = '127.0.0.1';
  process.env.MASTER_PORT = String(await freePort());
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
export function tinyModel(lib: Lib) {
  return new lib.nn.Sequential(new lib.nn.Flatten(), new lib.nn.Linear(16, 2, { seed: 1, backend: 'cpu' }));
}

// ---------------------------------------------------------------------------------------------
// Fixtures: fresh tensors and handles for each call, disposed after it.

// The cuda backend refuses half precision until its mixed-precision path exists: its fixtures
// are float32 instead, so that making them cannot fail.
function makeable(dtype: FixtureDType, backend: string): FixtureDType {
  return dtype === 'bfloat16' && backend === 'cuda' ? 'float32' : dtype;
}

export function makeFixtures(w: World): Fixtures {
  const values = (g: Gen, n: number, dtype: FixtureDType) => {
    if (dtype === 'int32') return new Int32Array(n);
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = g.rng.normal();
    return a;
  };
  const desc = (dtype: string, s: readonly number[], extra = '') => `T(${dtype} [${s.join(', ')}]${extra})`;
  const fx: Fixtures = {
    tensor(g, s, opts = {}) {
      const lib = opts.instance === 'other' && w.other ? w.other : w.lib;
      const backend = opts.backend === 'cuda' && L.backends()[1]?.available ? 'cuda' : 'cpu';
      const dtype = makeable(opts.dtype ?? 'float32', backend);
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
      const otherBackend = Object.keys(w.natives).find((k) => k !== g.backend);
      const b = (opts.instance === 'foreign' || (opts.instance === 'other-backend' && !otherBackend)) && w.foreign ? w.foreign
        : opts.instance === 'other-backend' && otherBackend ? w.natives[otherBackend]! : w.natives[g.backend] ?? w.binding;
      const dtype = makeable(opts.dtype ?? 'float32', b === w.natives.cuda ? 'cuda' : 'cpu');
      const n = s.reduce((a, c) => a * c, 1);
      const h = g.own(b.upload(values(g, n, dtype), [...s], dtype), (x) => b.release(x));
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
