/**
 * safetensors: round trips, the exact bytes of the format (a file made by hand, and Python's
 * safetensors package both ways when it is installed), and refusal of every kind of corrupt file
 * with the file and the byte offset in the message.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { type DType, type Tensor, loadSafetensors, loadSafetensorsSync, memory, readSafetensorsHeader, saveSafetensors, saveSafetensorsSync, tensor } from '../lib/index.js';
import { defaultCase } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'cr-safetensors-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let fileNo = 0;

/** A safetensors file from a header (object or raw JSON text) and a data buffer, padded like the reference writer. */
function build(header: object | string | Buffer, data: Uint8Array | number[] = [], { pad = true } = {}): string {
  let json = Buffer.isBuffer(header) ? header : Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  if (pad && json.length % 8) json = Buffer.concat([json, Buffer.alloc(8 - (json.length % 8), 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const path = join(dir, `f${fileNo++}.safetensors`);
  writeFileSync(path, Buffer.concat([len, json, Buffer.from(data instanceof Uint8Array ? data : Uint8Array.from(data))]));
  return path;
}

function bytesOf(a: Float32Array | Int32Array | BigInt64Array | Uint16Array | Float64Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function disposeAll(d: Record<string, Tensor<DType>>): void {
  for (const t of Object.values(d)) t.dispose();
}

describe.skipIf(!defaultCase.available)('round trip', () => {
  test('float32, int32 and scalar tensors with metadata, async and sync', async () => {
    const before = memory().numTensors;
    const w = tensor(Float32Array.from({ length: 24 }, (_, i) => Math.sin(i)), [2, 3, 2, 2]);
    const idx = tensor(Int32Array.from([7, -3, 2147483647]));
    const s = tensor([2.5], []);
    const path = join(dir, 'round.safetensors');
    await saveSafetensors(path, { 'layer1.0.conv1.weight': w, 'labels': idx, 'bn1.momentum': s }, { metadata: { format: 'pt', epoch: '3' } });
    const back = await loadSafetensors(path, { backend: defaultCase.name });
    expect(Object.keys(back).sort()).toEqual(['bn1.momentum', 'labels', 'layer1.0.conv1.weight']);
    expect(back['layer1.0.conv1.weight']!.shape).toEqual([2, 3, 2, 2]);
    expect(Array.from(await back['layer1.0.conv1.weight']!.data())).toEqual(Array.from(w.dataSync()));
    expect(back.labels!.dtype).toBe('int32');
    expect(Array.from(await back.labels!.data())).toEqual([7, -3, 2147483647]);
    expect(back['bn1.momentum']!.shape).toEqual([]);
    expect(await back['bn1.momentum']!.item()).toBe(2.5);
    const header = await readSafetensorsHeader(path);
    expect(header.metadata).toEqual({ epoch: '3', format: 'pt' });
    expect(header.tensors.labels).toEqual({ dtype: 'I32', shape: [3], dataOffsets: [100, 112] });

    saveSafetensorsSync(path, { w });
    const sync = loadSafetensorsSync(path);
    expect(Object.keys(sync)).toEqual(['w']);
    expect(Array.from(sync.w!.dataSync())).toEqual(Array.from(w.dataSync()));
    // The atomic write leaves no temporary file behind.
    expect(readdirSync(dir).filter((f) => f.includes('round'))).toEqual(['round.safetensors']);
    disposeAll(back);
    disposeAll(sync);
    for (const t of [w, idx, s]) t.dispose();
    expect(memory().numTensors).toBe(before);
  });

  test('the writer lays out bytes as the reference implementation does', async () => {
    // float32 before int32, each sorted by name; metadata first; spaces to an 8-byte boundary.
    const b = tensor(Float32Array.from([1, 2]));
    const a = tensor(Float32Array.from([3]), [1, 1]);
    const z = tensor(Int32Array.from([5]));
    const path = join(dir, 'layout.safetensors');
    await saveSafetensors(path, { z, b, a }, { metadata: { k: 'v' } });
    const json =
      '{"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[1,1],"data_offsets":[0,4]},' +
      '"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]},"z":{"dtype":"I32","shape":[1],"data_offsets":[12,16]}}';
    const padded = json + ' '.repeat((8 - (json.length % 8)) % 8);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(padded.length));
    const expected = Buffer.concat([len, Buffer.from(padded), bytesOf(Float32Array.from([3, 1, 2])), bytesOf(Int32Array.from([5]))]);
    expect(readFileSync(path).equals(expected)).toBe(true);
    for (const t of [a, b, z]) t.dispose();
  });

  test('overwrites atomically, and a failed save leaves the old file and no temporary one', async () => {
    const path = join(dir, 'atomic.safetensors');
    const t = tensor([1, 2, 3]);
    await saveSafetensors(path, { t });
    const old = readFileSync(path);
    await expect(saveSafetensors(join(dir, 'missing-dir', 'x.safetensors'), { t })).rejects.toThrow(/ENOENT/);
    const gone = tensor([4]);
    gone.dispose();
    expect(() => saveSafetensors(path, { t, gone })).toThrow(/saveSafetensors: tensors\['gone'\] \(shape \[1\]\) is disposed/);
    expect(readFileSync(path).equals(old)).toBe(true);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    t.dispose();
  });
});

describe.skipIf(!defaultCase.available)('reading a file made by hand', () => {
  test('F32, I32, unpadded header, any key order', async () => {
    const data = Buffer.concat([bytesOf(Int32Array.from([1, -2])), bytesOf(Float32Array.from([0.5, -1.5, 3, 4]))]);
    const path = build('{"b":{"dtype":"I32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[8,24]}}', data, { pad: false });
    const d = await loadSafetensors(path);
    expect(d.a!.shape).toEqual([2, 2]);
    expect(Array.from(d.a!.dataSync())).toEqual([0.5, -1.5, 3, 4]);
    expect(d.b!.dtype).toBe('int32');
    expect(Array.from(d.b!.dataSync())).toEqual([1, -2]);
    disposeAll(d);
  });

  test('I64 num_batches_tracked loads as int32; values beyond int32 are a RangeError', async () => {
    const path = build({ 'bn1.num_batches_tracked': { dtype: 'I64', shape: [], data_offsets: [0, 8] } }, bytesOf(BigInt64Array.from([1173n])));
    const d = await loadSafetensors(path);
    expect(d['bn1.num_batches_tracked']!.dtype).toBe('int32');
    expect(d['bn1.num_batches_tracked']!.shape).toEqual([]);
    expect(await d['bn1.num_batches_tracked']!.item()).toBe(1173);
    disposeAll(d);
    const big = build({ n: { dtype: 'I64', shape: [2], data_offsets: [0, 16] } }, bytesOf(BigInt64Array.from([0n, 3000000000n])));
    const before = memory().numTensors;
    await expect(loadSafetensors(big)).rejects.toThrow(RangeError);
    await expect(loadSafetensors(big)).rejects.toThrow(/tensor 'n' \(I64\) holds 3000000000 at element 1 \(byte offset \d+\), outside the int32 range/);
    expect(memory().numTensors).toBe(before);
  });

  test('F16, BF16 and F64 load converted to float32', async () => {
    // F16: 1, -2, 0.5, 65504 (largest), 2^-24 (smallest subnormal), +inf; BF16: 1, -3.5.
    const half = Uint16Array.from([0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001, 0x7c00]);
    const bf = Uint16Array.from([0x3f80, 0xc060]);
    const f64 = Float64Array.from([0.1, -1e10]);
    const data = Buffer.concat([bytesOf(half), bytesOf(bf), bytesOf(f64)]);
    const path = build({ h: { dtype: 'F16', shape: [6], data_offsets: [0, 12] }, b: { dtype: 'BF16', shape: [2], data_offsets: [12, 16] }, d: { dtype: 'F64', shape: [2], data_offsets: [16, 32] } }, data);
    const d = loadSafetensorsSync(path);
    expect(Array.from(d.h!.dataSync())).toEqual([1, -2, 0.5, 65504, 2 ** -24, Infinity]);
    expect(Array.from(d.b!.dataSync())).toEqual([1, -3.5]);
    expect(Array.from(d.d!.dataSync())).toEqual([Math.fround(0.1), -1e10]);
    disposeAll(d);
  });
});

describe('corrupt and truncated files are refused with the file and the offset', () => {
  const f32 = (n: number) => bytesOf(new Float32Array(n));
  const cases: [string, () => string, RegExp][] = [
    ['shorter than the length field', () => { const p = join(dir, 'tiny.safetensors'); writeFileSync(p, Buffer.from([1, 2, 3])); return p; }, /3 bytes, too short for the 8-byte header length \(at byte offset 0\)/],
    ['header length beyond the file', () => { const p = build({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, f32(1)); const b = readFileSync(p); b.writeBigUInt64LE(1000n); writeFileSync(p, b); return p; }, /header length 1000 runs past the end of the file \(\d+ bytes; truncated or not a safetensors file\) \(at byte offset 0\)/],
    ['header length of 2^64 - 1', () => { const p = build({}); const b = readFileSync(p); b.writeBigUInt64LE(2n ** 64n - 1n); writeFileSync(p, b); return p; }, /header length 18446744073709551615 runs past the end/],
    ['invalid JSON', () => build('{"a": {"dtype": "F32",, }}'), /header is not valid JSON .* \(at byte offset 3\d\)/],
    ['a header that is not an object', () => build('[1, 2]'), /header is not a JSON object \(at byte offset 8\)/],
    ['invalid UTF-8', () => build(Buffer.from([0x7b, 0xff, 0x7d])), /header is not valid UTF-8 \(at byte offset 8\)/],
    ['unknown dtype', () => build({ a: { dtype: 'Q7', shape: [1], data_offsets: [0, 4] } }, f32(1)), /tensor 'a': unknown or unsupported dtype 'Q7' \(supported: F32, I32, I64, F16, BF16, F64\) \(at byte offset 8\)/],
    ['shape and dtype disagree with the offsets', () => build({ a: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 20] } }, f32(5)), /tensor 'a': shape \[2, 3\] of F32 needs 24 bytes, but data_offsets \[0, 20\] hold 20 \(at byte offset \d+\)/],
    ['offsets past the end (truncated data)', () => { const p = build({ a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, f32(4)); writeFileSync(p, readFileSync(p).subarray(0, -6)); return p; }, /tensor 'a': data_offsets \[0, 16\] run past the end of the data buffer \(10 bytes; file truncated\?\) \(at byte offset \d+\)/],
    ['overlapping tensors', () => build({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, f32(3)), /tensor 'b' \(data_offsets \[4, 12\]\) overlaps tensor 'a', which ends at 8 \(at byte offset \d+\)/],
    ['a gap between tensors', () => build({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] } }, f32(3)), /data buffer bytes \[4, 8\) belong to no tensor \(at byte offset \d+\)/],
    ['trailing bytes no tensor covers', () => build({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, f32(2)), /data buffer bytes \[4, 8\) at the end of the file belong to no tensor \(at byte offset \d+\)/],
    ['bad data_offsets', () => build({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 0] } }, f32(1)), /tensor 'a': data_offsets is \[4, 0\], not \[begin, end\]/],
    ['non-string metadata', () => build({ __metadata__: { epoch: 3 } }), /__metadata__\['epoch'\] is 3 of type number, not a string/],
  ];
  test.each(cases)('%s', async (_name, make, message) => {
    const path = make();
    const err = await loadSafetensors(path).then(() => null, (e: Error) => e);
    expect(err).not.toBeNull();
    expect(err!.message).toMatch(message);
    expect(err!.message.startsWith(`loadSafetensors: ${path}: `)).toBe(true);
    expect((err as Error & { code: string }).code).toBe('ERR_FILE_FORMAT');
    expect(() => loadSafetensorsSync(path)).toThrow(message);
  });

  test('a byte-exact offset: a header length one past the file', async () => {
    const p = build({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, f32(1));
    const b = readFileSync(p);
    b.writeBigUInt64LE(BigInt(b.length - 8 + 1));
    writeFileSync(p, b);
    await expect(readSafetensorsHeader(p)).rejects.toThrow(`readSafetensorsHeader: ${p}: header length ${b.length - 7} runs past the end of the file (${b.length} bytes; truncated or not a safetensors file) (at byte offset 0)`);
  });

  test('tensors the library cannot hold: empty, rank above 5', async () => {
    await expect(loadSafetensors(build({ e: { dtype: 'F32', shape: [0, 3], data_offsets: [0, 0] } }))).rejects.toThrow(/tensor 'e' of shape \[0, 3\] has no elements/);
    await expect(loadSafetensors(build({ r: { dtype: 'F32', shape: [1, 1, 1, 1, 1, 1], data_offsets: [0, 4] } }, f32(1)))).rejects.toThrow(/rank 6 \(above 5\)/);
  });
});

// Found by the reader fuzzer (test/fuzz/readers.ts): a tensor named '__proto__' was assigned
// as the result's prototype, so it vanished from the result (and leaked), and the record of the
// other tensors inherited from it.
describe.skipIf(!defaultCase.available)('names that are special to JavaScript objects', () => {
  test('a tensor named __proto__ is an own entry of the result, and inherited names are not dtypes', async () => {
    const before = memory().numTensors;
    const fuzzed = Buffer.from(
      'e5000000000000007b2268223a7b226474797065223a22463136222c227368617065223a5b325d2c22646174615f6f66' +
      '6673657473223a5b302c345d7d2c2262223a7b226474797065223a2242463136222c227368617065223a5b325d2c2264' +
      '6174615f6f666673657473223a5b342c385d7d2c2263223a7b226474797065223a22493634222c227368617065223a5b' +
      '315d2c22646174615f6f666673657473223a5b31362c32345d7d2c225f5f70726f746f5f5f223a7b226474797065223a' +
      '22463634222c227368617065223a5b5d2c22646174615f6f666673657473223a5b382c31365d7d7d2020202020003c00' +
      'bc803f0040000000000000f03f0500000000000000',
      'hex');
    const path = join(dir, 'proto.safetensors');
    writeFileSync(path, fuzzed);
    const d = loadSafetensorsSync(path, { backend: defaultCase.name });
    expect(Object.keys(d).sort()).toEqual(['__proto__', 'b', 'c', 'h']);
    expect(Object.getPrototypeOf(d)).toBe(Object.prototype);
    expect(d.__proto__.shape).toEqual([]);
    expect(Array.from(d.__proto__.dataSync())).toEqual([1]);
    expect(memory().numTensors).toBe(before + 4);
    disposeAll(d);
    const header = await readSafetensorsHeader(build({ __metadata__: JSON.parse('{"__proto__": "x"}') as Record<string, string> }));
    expect(Object.keys(header.metadata)).toEqual(['__proto__']);
    // 'toString' is on every object's prototype, not in the table of dtypes.
    await expect(loadSafetensors(build({ a: { dtype: 'toString', shape: [1], data_offsets: [0, 4] } }, bytesOf(new Float32Array(1))))).rejects.toThrow(/tensor 'a': unknown or unsupported dtype 'toString'/);
  });
});

describe.skipIf(!defaultCase.available)('argument checks', () => {
  test('wrong types throw at the call', () => {
    const t = tensor([1]);
    expect(() => saveSafetensors(3 as never, { t })).toThrow(new TypeError('saveSafetensors: expected path to be a non-empty string, got 3 of type number'));
    expect(() => saveSafetensors('x', [t] as never)).toThrow(/expected tensors to be an object of name → Tensor/);
    expect(() => saveSafetensors('x', { t: [1] } as never)).toThrow(/saveSafetensors: expected tensors\['t'\] to be a Tensor/);
    expect(() => saveSafetensors('x', { __metadata__: t })).toThrow(RangeError);
    expect(() => saveSafetensors('x', { t }, { metadata: { a: 1 } } as never)).toThrow(/expected metadata\['a'\] to be a string, got 1 of type number/);
    expect(() => saveSafetensors('x', { t }, { meta: {} } as never)).toThrow(/unknown option 'meta'/);
    expect(() => loadSafetensors('', {})).toThrow(TypeError);
    expect(() => loadSafetensors('x', { backend: 'tpu' } as never)).toThrow(/loadSafetensors: backend must be one of/);
    t.dispose();
  });
});

const python = spawnSync('python3', ['-c', 'import numpy, safetensors.numpy'], { encoding: 'utf8' });
const pythonReason = python.error ? String(python.error) : python.status !== 0 ? (python.stderr.trim().split('\n').pop() ?? 'failed') : '';
if (pythonReason) console.log(`[skip] cross-check with Python's safetensors: ${pythonReason} (pip install safetensors numpy)`);

// PyTorch is not needed: safetensors.numpy reads and writes the same files as safetensors.torch.
describe.skipIf(pythonReason !== '')("cross-check with Python's safetensors", () => {
  test('Python writes, we read; we write, Python reads; the bytes agree', async () => {
    const fromPy = join(dir, 'py.safetensors');
    const script = `
import numpy as np, sys
from safetensors.numpy import save_file
save_file({
  "conv.weight": np.arange(12, dtype=np.float32).reshape(2, 1, 2, 3) / 7,
  "bn.num_batches_tracked": np.array(42, dtype=np.int64),
  "ids": np.array([3, -9], dtype=np.int32),
  "half": np.array([0.25, -8], dtype=np.float16),
}, sys.argv[1], metadata={"format": "pt"})`;
    execFileSync('python3', ['-c', script, fromPy]);
    const d = await loadSafetensors(fromPy);
    expect(d['conv.weight']!.shape).toEqual([2, 1, 2, 3]);
    expect(Array.from(d['conv.weight']!.dataSync())).toEqual(Array.from({ length: 12 }, (_, i) => Math.fround(Math.fround(i) / 7)));
    expect(await d['bn.num_batches_tracked']!.item()).toBe(42);
    expect(Array.from(d.ids!.dataSync())).toEqual([3, -9]);
    expect(Array.from(d.half!.dataSync())).toEqual([0.25, -8]);
    expect((await readSafetensorsHeader(fromPy)).metadata).toEqual({ format: 'pt' });

    const ours = join(dir, 'ours.safetensors');
    const ref = join(dir, 'ref.safetensors');
    await saveSafetensors(ours, { 'conv.weight': d['conv.weight']!, ids: d.ids!, 'fc.bias': d.half! }, { metadata: { format: 'pt' } });
    const check = `
import numpy as np, sys, json
from safetensors.numpy import load_file, save_file
d = load_file(sys.argv[1])
save_file({k: v for k, v in d.items()}, sys.argv[2], metadata={"format": "pt"})
print(json.dumps({k: {"dtype": str(v.dtype), "shape": list(v.shape), "values": v.ravel().tolist()} for k, v in d.items()}))`;
    const out = JSON.parse(execFileSync('python3', ['-c', check, ours, ref], { encoding: 'utf8' }));
    expect(out['conv.weight'].dtype).toBe('float32');
    expect(out['conv.weight'].shape).toEqual([2, 1, 2, 3]);
    expect(out['conv.weight'].values).toEqual(Array.from(d['conv.weight']!.dataSync()));
    expect(out.ids).toEqual({ dtype: 'int32', shape: [2], values: [3, -9] });
    expect(out['fc.bias'].values).toEqual([0.25, -8]);
    // Python rewriting what it read produces our file byte for byte.
    expect(readFileSync(ours).equals(readFileSync(ref))).toBe(true);
    disposeAll(d);
  });
});
