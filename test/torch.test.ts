/**
 * PyTorch checkpoints in: the files in fixtures/torch/ were written by torch.save
 * (fixtures/torch_checkpoints.py, which also wrote each network's input and PyTorch's logits
 * for it, computed in float64 from the saved float32 weights). The loaded weights must
 * reproduce those logits in the library's float32 forward, with a relative error in the max
 * norm of at most 1e-4, the op tests' float32 tolerance. Where python3 with torch is installed,
 * full-size torchvision-layout ResNet-18 and ResNet-50 files are made and checked the same way.
 * Then the refusals: legacy and TorchScript files, pickled objects other than weights (nothing
 * is executed), corrupt archives and hostile pickles, each with an error naming the problem.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { type DType, type Tensor, loadSafetensors, loadTorchStateDict, memory, models, noGrad, tidy } from '../lib/index.js';
import { ZipReader } from '../lib/io/zip.js';
import { pythonLacks, relError, values } from './helpers.js';
import { writeZip } from './zip-writer.js';

const fixtures = join(import.meta.dirname, 'fixtures', 'torch');
const fixture = (name: string) => join(fixtures, name);
const dir = mkdtempSync(join(tmpdir(), 'cr-torch-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function disposeAll(d: Record<string, Tensor<DType>>): void {
  for (const t of Object.values(d)) t.dispose();
}

/** The network's logits for the fixture's input, next to PyTorch's. */
async function logits(net: models.ResNet, name: string): Promise<{ got: Float64Array; want: Float64Array }> {
  const ref = await loadSafetensors(fixture(`${name}.expected.safetensors`), { backend: 'cpu' });
  try {
    const y = noGrad(() => tidy(() => net.eval().forward(ref.input as Tensor)));
    const got = values(y);
    y.dispose();
    return { got, want: values(ref.logits as Tensor) };
  } finally {
    disposeAll(ref);
  }
}

/** The entries of a torch.save archive, to rebuild it changed. */
async function entriesOf(path: string): Promise<{ name: string; data: Uint8Array }[]> {
  const fh = await open(path, 'r');
  try {
    const zip = await ZipReader.open('test', path, fh);
    const out = [];
    for (const e of zip.entries.values()) out.push({ name: e.name, data: (await zip.read(e)).data });
    return out;
  } finally {
    await fh.close();
  }
}

function write(name: string, bytes: Uint8Array): string {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
}

/** A torch.save-style archive whose data.pkl is `pickle` (bytes of opcodes). */
function pickleFile(name: string, pickle: number[] | Uint8Array, storages: Record<string, Uint8Array> = {}): string {
  return write(name, writeZip([
    { name: 'archive/data.pkl', data: Uint8Array.from(pickle) },
    ...Object.entries(storages).map(([k, data]) => ({ name: `archive/data/${k}`, data })),
  ]));
}

const ascii = (s: string) => [...Buffer.from(s, 'latin1')];
/** Pickle opcodes for a short string and for a global. */
const str = (s: string) => [0x58, ...[s.length, 0, 0, 0], ...ascii(s)];
const global = (module: string, name: string) => [0x63, ...ascii(`${module}\n${name}\n`)];
const PROTO = [0x80, 2];
const STOP = 0x2e;

/** The pickle of {name: tensor} for one float32 tensor of `size` and `stride` at `offset` of storage '0' of `numel` elements. */
function tensorPickle(name: string, size: number[], stride: number[], offset: number, numel: number): number[] {
  const tuple = (xs: number[]) => [0x28, ...xs.flatMap((x) => [0x4a, ...new Uint8Array(Int32Array.of(x).buffer)]), 0x74];
  return [
    ...PROTO, 0x7d, 0x28, ...str(name),
    ...global('torch._utils', '_rebuild_tensor_v2'),
    0x28, 0x28, ...str('storage'), ...global('torch', 'FloatStorage'), ...str('0'), ...str('cpu'), 0x4a, ...new Uint8Array(Int32Array.of(numel).buffer), 0x74, 0x51,
    0x4a, ...new Uint8Array(Int32Array.of(offset).buffer), ...tuple(size), ...tuple(stride), 0x89, ...global('collections', 'OrderedDict'), 0x29, 0x52, 0x74, 0x52,
    0x75, STOP,
  ];
}

const f32 = (...v: number[]) => new Uint8Array(Float32Array.from(v).buffer);

describe('PyTorch state dicts reproduce PyTorch\'s logits', () => {
  test('CIFAR ResNet-20 (option A), torch.save(model.state_dict())', async () => {
    const sd = await loadTorchStateDict(fixture('resnet20.pt'), { backend: 'cpu' });
    const net = models.cifarResNet({ depth: 20, backend: 'cpu' });
    try {
      expect(sd['layer1.0.bn1.num_batches_tracked']!.dtype).toBe('int32');
      expect(net.loadStateDict(sd)).toEqual({ missingKeys: [], unexpectedKeys: [] });
      const { got, want } = await logits(net, 'resnet20');
      expect(got.length).toBe(20);
      expect(relError(got, want)).toBeLessThan(1e-4);
    } finally {
      disposeAll(sd);
      net.dispose();
    }
  });

  test('torchvision\'s ResNet-18 layout and names (narrow widths)', async () => {
    const sd = await loadTorchStateDict(fixture('resnet18-narrow.pt'), { backend: 'cpu' });
    const net = new models.ResNet({ block: 'basic', layers: [2, 2, 2, 2], widths: [4, 8, 16, 32], stem: 'imagenet', numClasses: 10, backend: 'cpu' });
    try {
      expect(Object.keys(sd)).toEqual(Object.keys(net.stateDict()));
      net.loadStateDict(sd);
      const { got, want } = await logits(net, 'resnet18-narrow');
      expect(relError(got, want)).toBeLessThan(1e-4);
    } finally {
      disposeAll(sd);
      net.dispose();
    }
  });

  test('a training checkpoint: the state dict is found under state_dict, DataParallel\'s module. prefix stripped on request', async () => {
    const path = fixture('resnet50-narrow-checkpoint.pt');
    const net = new models.ResNet({ block: 'bottleneck', layers: [3, 4, 6, 3], widths: [2, 4, 8, 16], stem: 'imagenet', numClasses: 10, backend: 'cpu' });
    try {
      const prefixed = await loadTorchStateDict(path, { backend: 'cpu' });
      expect(Object.keys(prefixed)[0]).toBe('module.conv1.weight');
      expect(() => net.loadStateDict(prefixed)).toThrow(/unexpected key\(s\): module\.conv1\.weight/);
      disposeAll(prefixed);
      const sd = await loadTorchStateDict(path, { backend: 'cpu', stripPrefix: 'module.' });
      const viaKey = await loadTorchStateDict(path, { backend: 'cpu', key: 'state_dict', stripPrefix: 'module.' });
      expect(Object.keys(viaKey)).toEqual(Object.keys(sd));
      disposeAll(viaKey);
      net.loadStateDict(sd);
      disposeAll(sd);
      const { got, want } = await logits(net, 'resnet50-narrow-checkpoint');
      expect(relError(got, want)).toBeLessThan(1e-4);
    } finally {
      net.dispose();
    }
    // The optimizer's state is a dict of dicts and lists, not a state dict; a missing key lists the keys there are.
    await expect(loadTorchStateDict(path, { key: 'optimizer' })).rejects.toThrow(/state dict entry 'state' is a dict of \d+ items, not a tensor/);
    await expect(loadTorchStateDict(path, { key: 'model' })).rejects.toThrow(/key 'model' is not in the checkpoint \(its keys: 'epoch', 'arch', 'state_dict', 'best_acc1', 'optimizer'\)/);
    expect(memory().numTensors).toBe(0);
  });
});

const torchMissing = pythonLacks('torch');
if (torchMissing) console.log(`[skip] full-size ResNet-18/50 checkpoints made by torch.save: ${torchMissing} (CI has no torch; the narrow fixtures cover the layouts)`);

describe.skipIf(torchMissing !== null)('full-size torchvision-layout checkpoints made by torch.save now', () => {
  const full = join(dir, 'full');
  test('ResNet-18 and ResNet-50 (45 and 98 MB) reproduce PyTorch\'s logits', async () => {
    execFileSync('python3', [join(import.meta.dirname, 'fixtures', 'torch_checkpoints.py'), full, '--full'], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, OMP_NUM_THREADS: '1' } });
    for (const [name, make] of [['resnet18', models.resnet18], ['resnet50', models.resnet50]] as const) {
      const sd = await loadTorchStateDict(join(full, `${name}.pt`), { backend: 'cpu' });
      const net = make({ backend: 'cpu' });
      try {
        net.loadStateDict(sd);
        const ref = await loadSafetensors(join(full, `${name}.expected.safetensors`), { backend: 'cpu' });
        const y = noGrad(() => tidy(() => net.eval().forward(ref.input as Tensor)));
        const e = relError(values(y), values(ref.logits as Tensor));
        console.log(`${name}.pt: logits relative error ${e.toExponential(2)}`);
        expect(e).toBeLessThan(1e-4);
        y.dispose();
        disposeAll(ref);
      } finally {
        disposeAll(sd);
        net.dispose();
      }
    }
  }, 120_000);
});

describe('what torch.save stores', () => {
  test('views, offsets, strides, expanded and channels-last tensors, storages shared by several tensors: the values PyTorch shows', async () => {
    const sd = await loadTorchStateDict(fixture('views.pt'), { backend: 'cpu' });
    try {
      const names = Object.keys(sd).filter((k) => !k.startsWith('expected/'));
      expect(names).toEqual(['base', 'transposed', 'narrow', 'strided', 'row', 'expanded', 'shared_a', 'shared_b', 'scalar', 'nchw']);
      for (const k of names) {
        const want = sd[`expected/${k}`]!;
        expect(sd[k]!.shape, k).toEqual(want.shape);
        expect(Array.from(sd[k]!.dataSync()), k).toEqual(Array.from(want.dataSync()));
      }
      expect(sd.scalar!.shape).toEqual([]);
    } finally {
      disposeAll(sd);
    }
  });

  test('bfloat16, float16 and float64 load as float32; int64 and int32 as int32', async () => {
    const sd = await loadTorchStateDict(fixture('dtypes.pt'), { backend: 'cpu' });
    try {
      for (const k of ['bfloat16', 'float16', 'float64', 'float32', 'int64', 'int32', 'num_batches_tracked']) {
        const want = sd[`expected/${k}`]!;
        expect(sd[k]!.dtype, k).toBe(want.dtype);
        expect(Array.from(sd[k]!.dataSync()), k).toEqual(Array.from(want.dataSync()));
      }
      expect(Array.from(sd.int64!.dataSync())).toEqual([0, -2, 2 ** 31 - 1, -(2 ** 31)]);
    } finally {
      disposeAll(sd);
    }
  });

  test('keys special to JavaScript objects are plain keys', async () => {
    const sd = await loadTorchStateDict(fixture('proto-keys.pt'), { backend: 'cpu' });
    try {
      expect(Object.keys(sd)).toEqual(['__proto__', 'constructor', 'toString']);
      expect(Object.getPrototypeOf(sd)).toBe(Object.prototype);
      expect(Array.from((Object.getOwnPropertyDescriptor(sd, 'toString')!.value as Tensor).dataSync())).toEqual([2]);
      expect(({} as Record<string, unknown>).toString).toBe(Object.prototype.toString);
    } finally {
      disposeAll(sd);
    }
  });

  test('the same archive deflated, or in ZIP64 form, loads the same', async () => {
    const entries = await entriesOf(fixture('views.pt'));
    const plain = await loadTorchStateDict(fixture('views.pt'), { backend: 'cpu' });
    try {
      for (const options of [{ deflate: true }, { zip64: true }, { deflate: true, zip64: true }]) {
        const sd = await loadTorchStateDict(write('rezipped.pt', writeZip(entries, options)), { backend: 'cpu' });
        expect(Object.keys(sd)).toEqual(Object.keys(plain));
        for (const k of Object.keys(sd)) expect(Array.from(sd[k]!.dataSync())).toEqual(Array.from(plain[k]!.dataSync()));
        disposeAll(sd);
      }
    } finally {
      disposeAll(plain);
    }
  });
});

describe('refused, with an error that says why', () => {
  const refuses = (path: string, message: RegExp, code: string | null = 'ERR_FILE_FORMAT') =>
    expect(loadTorchStateDict(path, { backend: 'cpu' })).rejects.toSatisfy((e: Error & { code?: string }) => {
      expect(e.message).toMatch(message);
      expect(e.message).toContain(path);
      expect(e.code ?? null).toBe(code);
      return true;
    });

  test('the legacy formats and TorchScript archives', async () => {
    await refuses(fixture('legacy.pt'), /legacy checkpoint format \(before 1\.6.*torch\.save\(torch\.load\(path\), new_path\)/);
    const tar = new Uint8Array(1024);
    tar.set(ascii('ustar'), 257);
    await refuses(write('old.tar', tar), /is a tar archive, PyTorch's oldest checkpoint format/);
    await refuses(fixture('torchscript.pt'), /is a TorchScript archive \(torch\.jit\.save\).*torch\.jit\.load\(path\)\.state_dict\(\)/);
    await refuses(write('text.pt', Uint8Array.from(ascii('hello, world'))), /is not a PyTorch checkpoint/);
    await refuses(write('other.zip', writeZip([{ name: 'readme.txt', data: Uint8Array.of(1) }])), /ZIP archive but not a PyTorch checkpoint \(no <name>\/data\.pkl/);
  });

  test('a pickled model or any global outside weights_only\'s allow-list, and nothing is executed', async () => {
    const marker = '/tmp/cudnn-resnet-pickle-ran';
    rmSync(marker, { force: true });
    await refuses(fixture('os-system.pt'), /refused global 'posix\.system': only what torch\.load\(weights_only=True\) allows/);
    expect(existsSync(marker)).toBe(false);
    await refuses(fixture('whole-model.pt'), /refused global 'torch\.nn\.modules\.linear\.Linear'.*torch\.save\(model\.state_dict\(\), path\)/);
    await refuses(pickleFile('eval.pt', [...PROTO, ...global('__builtin__', 'eval'), ...str('1'), 0x85, 0x52, STOP]), /refused global 'builtins\.eval'/);
    // An allowed type is still not a function to call.
    await refuses(pickleFile('dtype-call.pt', [...PROTO, ...global('torch', 'float32'), 0x29, 0x52, STOP]), /torch\.float32 cannot be called/);
    // Only storages may be persistent ids.
    await refuses(pickleFile('persid.pt', [...PROTO, ...str('file'), 0x85, 0x51, STOP]), /persistent id a tuple of 1 is not \('storage'/);
    // Opcodes of later protocols that weights_only does not accept (FRAME), and text opcodes (INT).
    await refuses(pickleFile('frame.pt', [0x80, 4, 0x95, 0, 0, 0, 0, 0, 0, 0, 0, STOP]), /opcode 0x95 is not one that torch\.load\(weights_only=True\) accepts/);
    await refuses(pickleFile('int.pt', [...PROTO, 0x49, ...ascii('1\n'), STOP]), /opcode 0x49/);
  });

  test('hostile pickles: no crash, no hang, an error at the opcode', async () => {
    await refuses(pickleFile('underflow.pt', [...PROTO, 0x61, STOP]), /the stack is empty \(pickle byte 2\)/);
    await refuses(pickleFile('memo.pt', [...PROTO, 0x68, 7, STOP]), /memo entry 7 was never stored/);
    await refuses(pickleFile('nostop.pt', [...PROTO, 0x4e]), /ends without a STOP/);
    await refuses(pickleFile('long.pt', [...PROTO, 0x58, 0xff, 0xff, 0xff, 0x7f, STOP]), /BINUNICODE string needs 2147483647 bytes, but the pickle ends after 1/);
    // A list that contains itself, as the whole pickle: refused without walking it.
    await refuses(pickleFile('cycle.pt', [...PROTO, 0x5d, 0x71, 0, 0x68, 0, 0x61, STOP]), /holds a list of 1, not a dict of tensors/);
    await refuses(pickleFile('mark.pt', [...PROTO, 0x74, STOP]), /no MARK to pop to/);
  });

  test('tensors that do not fit their storage, storages that are missing or of another size, expanded views beyond the budget', async () => {
    await refuses(pickleFile('past.pt', tensorPickle('w', [2, 3], [3, 1], 1, 6), { 0: f32(1, 2, 3, 4, 5, 6) }), /tensor 'w' \(size \[2, 3\], stride \[3, 1\], offset 1\) reads past the end of its storage '0' \(24 bytes\)/);
    await refuses(pickleFile('nostorage.pt', tensorPickle('w', [2], [1], 0, 2)), /storage '0' of tensor 'w' is not in the archive/);
    await refuses(pickleFile('size.pt', tensorPickle('w', [2], [1], 0, 2), { 0: f32(1, 2, 3) }), /storage '0' holds 12 bytes, but tensor 'w' says 2 float32 elements \(8 bytes\)/);
    const ok = await loadTorchStateDict(pickleFile('expand.pt', tensorPickle('w', [3, 4], [0, 1], 0, 4), { 0: f32(1, 2, 3, 4) }), { backend: 'cpu' });
    expect(Array.from(ok.w!.dataSync())).toEqual([1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4]);
    disposeAll(ok);
    await refuses(pickleFile('huge.pt', tensorPickle('w', [1 << 20, 1 << 10], [0, 0], 0, 1), { 0: f32(7) }), /views hold 1073741824 elements, more than 4 per byte/, null);
    await refuses(fixture('int64-overflow.pt'), /tensor 'n' \(int64\) holds 1099511627776 at element 0, outside the int32 range/, null);
    await refuses(fixture('uint8.pt'), /tensor 'mask' is uint8, which this library cannot load/, null);
    expect(memory().numTensors).toBe(0);
  });

  test('truncated and corrupted archives', async () => {
    const bytes = readFileSync(fixture('resnet20.pt'));
    await refuses(write('cut.pt', bytes.subarray(0, bytes.length >> 1)), /not a ZIP archive \(no end-of-central-directory record/);
    const flipped = Uint8Array.from(bytes);
    flipped[bytes.length >> 1] ^= 0x10;
    await refuses(write('flipped.pt', flipped), /entry 'resnet20\/data\/\d+': CRC-32 mismatch/);
  });

  test('arguments', async () => {
    // Argument errors throw at the call, before any file is opened.
    expect(() => loadTorchStateDict(42 as never)).toThrow(TypeError);
    expect(() => loadTorchStateDict(fixture('resnet20.pt'), { device: 'cpu' } as never)).toThrow(/unknown option 'device'/);
    expect(() => loadTorchStateDict(fixture('resnet20.pt'), { key: '' })).toThrow(/expected key to be a non-empty string/);
    expect(() => loadTorchStateDict(fixture('resnet20.pt'), { stripPrefix: 7 as never })).toThrow(/expected stripPrefix to be a non-empty string, got 7/);
    expect(() => loadTorchStateDict(fixture('resnet20.pt'), { backend: 'tpu' as never })).toThrow(TypeError);
    await expect(loadTorchStateDict(join(dir, 'missing.pt'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('cudnn-resnet convert', () => {
  const bin = join(import.meta.dirname, '..', 'bin', 'cudnn-resnet.js');
  const cli = (args: string[]) => {
    try {
      return { code: 0, out: execFileSync(process.execPath, [bin, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }) };
    } catch (e) {
      const err = e as { status: number; stderr: string };
      return { code: err.status, out: err.stderr };
    }
  };

  test('writes the state dict as safetensors, with the same tensors', async () => {
    const out = join(dir, 'checkpoint.safetensors');
    const r = cli(['convert', fixture('resnet50-narrow-checkpoint.pt'), out, '--strip-prefix', 'module.']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/checkpoint\.safetensors: 320 tensors, [\d,]+ values/);
    const [a, b] = [await loadSafetensors(out, { backend: 'cpu' }), await loadTorchStateDict(fixture('resnet50-narrow-checkpoint.pt'), { backend: 'cpu', stripPrefix: 'module.' })];
    try {
      expect(Object.keys(a).sort()).toEqual(Object.keys(b).sort());
      for (const k of Object.keys(b)) expect(Array.from(a[k]!.dataSync()), k).toEqual(Array.from(b[k]!.dataSync()));
    } finally {
      disposeAll(a);
      disposeAll(b);
    }
  });

  test('errors: missing arguments (status 2), a refused file (status 1)', () => {
    expect(cli(['convert', fixture('resnet20.pt')])).toMatchObject({ code: 2, out: expect.stringMatching(/convert: expected IN\.pth OUT\.safetensors/) });
    expect(cli(['convert', fixture('os-system.pt'), join(dir, 'x.safetensors')])).toMatchObject({ code: 1, out: expect.stringMatching(/refused global 'posix\.system'/) });
    expect(cli(['convert', fixture('resnet50-narrow-checkpoint.pt'), join(dir, 'x.safetensors'), '--key', 'nope'])).toMatchObject({ code: 1, out: expect.stringMatching(/key 'nope' is not in the checkpoint/) });
    expect(existsSync(join(dir, 'x.safetensors'))).toBe(false);
  });
});
