/**
 * Coverage-guided fuzzing of the file readers (IDX, CIFAR binary, safetensors, and PyTorch's
 * checkpoints: the ZIP reader, the restricted unpickler, the whole loader): a mutational
 * fuzzer in the manner of libFuzzer/AFL, written here because Jazzer.js cannot run on this
 * platform (its only prebuilt addon needs glibc 2.38). Inputs that reach new blocks of the
 * readers' code, or run a block a new number of times, join the corpus; V8's block coverage
 * (see coverage.ts) is the feedback.
 *
 * The property checked on every input: the reader either returns a result consistent with the
 * bytes (dimensions that account for every byte, labels in range, one tensor per header entry
 * with the entry's shape and, for F32/I32, its exact bits) or throws an Error whose message names
 * the file; a format error (code ERR_FILE_FORMAT) carries a byte offset within the file. Anything
 * else (another throw, a hang, an unhandled rejection, a leaked tensor, a property added to
 * Object.prototype) is a failure, saved under
 * .cache/fuzz/crashes/ and printed as hex for a regression test.
 *
 *   node --import tsx test/fuzz/readers.ts [--seconds S | --iterations N] [--seed N] [--only idx|cifar|safetensors|zip|pickle|torch]
 * @module
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync, gzipSync } from 'node:zlib';
import * as L from '../../lib/index.js';
import { fileFormatError } from '../../lib/io/file-error.js';
import { unpickle } from '../../lib/io/unpickler.js';
import { ZipReader } from '../../lib/io/zip.js';
import { type ZipFileEntry, writeZip } from '../zip-writer.js';
import { Coverage } from './coverage.js';
import { Draw } from './gen.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const MAX_LEN = 16 * 1024;

/** A property the reader broke; the message says which. */
class Violation extends Error {}

interface ReaderTarget {
  name: 'idx' | 'cifar' | 'safetensors' | 'zip' | 'pickle' | 'torch';
  /** Small valid files to start from. */
  seeds(): Uint8Array[];
  /** Byte strings worth inserting (magic numbers, JSON keys, dtype names). */
  dictionary: Uint8Array[];
  /** A mutation that knows the format (keeps lengths consistent so that deeper checks run), or null. */
  structured(input: Uint8Array, r: Draw, file: string): Uint8Array | null | Promise<Uint8Array | null>;
  /** Reads `bytes` from `file` and checks the property; throws a Violation when it fails. */
  run(bytes: Uint8Array, file: string): Promise<void>;
  /** Another reader of the same bytes, if any. */
  extra?(bytes: Uint8Array, file: string): Promise<void>;
}

const enc = (s: string) => new TextEncoder().encode(s);

// ---------------------------------------------------------------------------------------------
// The property.

/** An error is acceptable when it names the file; a format error also has a byte offset in range. */
function checkError(err: unknown, file: string, size: number | null, allowed: (e: Error) => boolean = () => false): void {
  if (!(err instanceof Error)) throw new Violation(`threw a non-Error: ${String(err)}`);
  if (err instanceof Violation) throw err;
  if (!err.message.includes(file)) throw new Violation(`error does not name the file: ${err.constructor.name}: ${err.message}`);
  const e = err as Error & { code?: unknown; offset?: unknown };
  if (e.code === 'ERR_FILE_FORMAT') {
    if (e.offset !== null && (typeof e.offset !== 'number' || !Number.isInteger(e.offset) || e.offset < 0 || (size !== null && e.offset > size))) {
      throw new Violation(`format error with offset ${String(e.offset)} outside the file (${size} bytes): ${err.message}`);
    }
    return;
  }
  if (!allowed(err)) throw new Violation(`not a format error (code ${String(e.code)}): ${err.constructor.name}: ${err.message}`);
}

function idxDims(bytes: Uint8Array): { dims: number[]; headerLen: number } | null {
  if (bytes.length < 4 || bytes[0] !== 0 || bytes[1] !== 0) return null;
  const rank = bytes[3]!;
  const headerLen = 4 + 4 * rank;
  if (bytes.length < headerLen) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset);
  return { dims: Array.from({ length: rank }, (_, i) => view.getUint32(4 + 4 * i)), headerLen };
}

const idxTarget: ReaderTarget = {
  name: 'idx',
  seeds() {
    const file = (dims: number[], gz = false) => {
      const n = dims.reduce((a, b) => a * b, 1);
      const b = Buffer.alloc(4 + 4 * dims.length + n);
      b.writeUInt32BE(0x800 + dims.length, 0);
      dims.forEach((d, i) => b.writeUInt32BE(d, 4 + 4 * i));
      for (let i = 0; i < n; i++) b[4 + 4 * dims.length + i] = (i * 37) % 256;
      return gz ? new Uint8Array(gzipSync(b)) : new Uint8Array(b);
    };
    return [file([2, 3, 3]), file([5]), file([2, 2, 2], true), file([1, 1, 2, 2])];
  },
  dictionary: [[0, 0, 8, 3], [0, 0, 8, 1], [0, 0, 9, 3], [0x1f, 0x8b, 8, 0], [0xff, 0xff, 0xff, 0xff], [0, 0, 0, 0], [0x80, 0, 0, 0]].map((b) => Uint8Array.from(b)),
  structured(input, r) {
    // Inside a gzip member: decompress, mutate, recompress, so the IDX checks behind gunzip run.
    if (input[0] === 0x1f && input[1] === 0x8b) {
      try {
        const inner = new Uint8Array(gunzipSync(input));
        return new Uint8Array(gzipSync(mutate(inner, r, this.dictionary, [])));
      } catch {
        return null;
      }
    }
    // Make the dimensions account for the data (or not quite).
    const h = idxDims(input);
    if (!h || h.dims.length === 0) return null;
    const out = Uint8Array.from(input);
    const view = new DataView(out.buffer);
    const rest = h.dims.slice(1).reduce((a, b) => a * b, 1) || 1;
    view.setUint32(4, Math.max(0, Math.floor((input.length - h.headerLen) / rest) + r.pick([0, 0, 1, -1])) >>> 0);
    return out;
  },
  async run(bytes, file) {
    writeFileSync(file, bytes);
    const magic = bytes.length % 3 === 0 ? L.data.IDX_IMAGES_MAGIC : undefined;
    let result: L.data.IdxArray;
    try {
      result = await L.data.readIdx(file, magic === undefined ? undefined : { magic });
    } catch (err) {
      const gz = bytes[0] === 0x1f && bytes[1] === 0x8b;
      // A gzipped file's offsets are into its decompressed data, which may be longer than the file.
      checkError(err, file, gz ? null : bytes.length);
      return;
    }
    const n = result.dims.reduce((a, b) => a * b, 1);
    if (result.dims.length === 0 || result.dims.some((d) => !Number.isInteger(d) || d < 1)) throw new Violation(`dims ${result.dims} are not positive`);
    if (n !== result.data.length) throw new Violation(`dims [${result.dims}] hold ${n} elements, data has ${result.data.length}`);
    const raw = bytes[0] === 0x1f && bytes[1] === 0x8b ? new Uint8Array(gunzipSync(bytes)) : bytes;
    const h = idxDims(raw)!;
    if (h.headerLen + n !== raw.length) throw new Violation(`header ${h.headerLen} + data ${n} bytes != ${raw.length}`);
    if (Buffer.compare(Buffer.from(raw.subarray(h.headerLen)), Buffer.from(result.data)) !== 0) throw new Violation('data differs from the file');
    if (magic !== undefined && new DataView(raw.buffer, raw.byteOffset).getUint32(0) !== magic) throw new Violation('a file of another magic was accepted');
  },
  async extra(bytes, file) {
    // The input as Fashion-MNIST's test labels, beside a valid file of two images.
    const dir = `${file}.fashion`;
    mkdirSync(dir, { recursive: true });
    const images = Buffer.alloc(16 + 2 * 28 * 28);
    images.writeUInt32BE(0x803, 0);
    images.writeUInt32BE(2, 4);
    images.writeUInt32BE(28, 8);
    images.writeUInt32BE(28, 12);
    writeFileSync(join(dir, 't10k-images-idx3-ubyte'), images);
    writeFileSync(join(dir, 't10k-labels-idx1-ubyte'), bytes);
    let ds: L.data.Dataset;
    try {
      ds = await L.data.loadFashionMnist({ dir, split: 'test' });
    } catch (err) {
      checkError(err, dir, null);
      return;
    }
    if (ds.n !== 2 || ds.labels.length !== 2 || ds.images.length !== 2 * 28 * 28) throw new Violation(`fashion-mnist: n ${ds.n}`);
    if ([...ds.labels].some((l) => l < 0 || l >= 10)) throw new Violation(`fashion-mnist: labels ${ds.labels}`);
  },
};

const cifarTarget: ReaderTarget = {
  name: 'cifar',
  seeds() {
    const rec = (labels: number[]) => Uint8Array.from([...labels, ...Array.from({ length: 3072 }, (_, i) => (i * 13) % 256)]);
    return [rec([3]), new Uint8Array([...rec([9]), ...rec([0])]), rec([4, 41]), new Uint8Array([...rec([19, 99]), ...rec([0, 0])])];
  },
  dictionary: [[9], [10], [19], [20], [99], [100], [255]].map((b) => Uint8Array.from(b)),
  structured(input, r) {
    // Whole records, with their label bytes changed: the label checks run instead of the size check.
    const record = r.pick([3073, 3074]);
    const n = Math.max(1, Math.round(input.length / record));
    const out = new Uint8Array(n * record);
    out.set(input.subarray(0, out.length));
    out[r.int(n) * record + r.int(record - 3072)] = r.pick([0, 9, 10, 19, 20, 99, 100, 255, r.int(256)]);
    return out;
  },
  async run(bytes, file) {
    // The same bytes as a CIFAR-10 test batch and as a CIFAR-100 test file (fine and coarse labels).
    for (const [variant, name, labels] of [[10, 'test_batch.bin', 'fine'], [100, 'test.bin', 'fine'], [100, 'test.bin', 'coarse']] as const) {
      const dir = `${file}.d${variant}`;
      mkdirSync(dir, { recursive: true });
      const path = join(dir, name);
      writeFileSync(path, bytes);
      let ds: L.data.Dataset;
      try {
        ds = await L.data.loadCifar({ variant, split: 'test', dir, labels });
      } catch (err) {
        checkError(err, path, bytes.length);
        continue;
      }
      const record = variant === 10 ? 3073 : 3074;
      const n = bytes.length / record;
      if (!Number.isInteger(n) || ds.n !== n || ds.labels.length !== n || ds.images.length !== n * 3072) throw new Violation(`${variant}: ${bytes.length} bytes gave n ${ds.n}`);
      const classes = variant === 10 ? 10 : labels === 'fine' ? 100 : 20;
      if (ds.classes !== classes) throw new Violation(`classes ${ds.classes}, expected ${classes}`);
      for (let i = 0; i < n; i++) {
        const l = ds.labels[i]!;
        if (l < 0 || l >= classes || l !== bytes[i * record + (variant === 100 && labels === 'fine' ? 1 : 0)]) throw new Violation(`label ${i} is ${l}`);
        if (Buffer.compare(Buffer.from(ds.images.subarray(i * 3072, (i + 1) * 3072)), Buffer.from(bytes.subarray(i * record + record - 3072, (i + 1) * record))) !== 0) throw new Violation(`image ${i} differs`);
      }
    }
  },
};

function safetensorsFile(header: unknown, data: Uint8Array): Uint8Array {
  const json = enc(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

/** The header length and JSON text of a safetensors file, if its length field fits the file. */
function splitSafetensors(bytes: Uint8Array): { n: number; json: string; data: Uint8Array } | null {
  if (bytes.length < 8) return null;
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  if (n > bytes.length - 8) return null;
  return { n, json: new TextDecoder().decode(bytes.subarray(8, 8 + n)), data: bytes.subarray(8 + n) };
}

const safetensorsTarget: ReaderTarget = {
  name: 'safetensors',
  seeds() {
    const f32 = new Uint8Array(Float32Array.of(1, -2, 3.5, Number.NaN).buffer);
    return [
      safetensorsFile({ __metadata__: { format: 'pt' }, w: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] }, n: { dtype: 'I32', shape: [], data_offsets: [16, 20] } }, new Uint8Array([...f32, 7, 0, 0, 0])),
      safetensorsFile({ h: { dtype: 'F16', shape: [2], data_offsets: [0, 4] }, b: { dtype: 'BF16', shape: [2], data_offsets: [4, 8] }, d: { dtype: 'F64', shape: [1], data_offsets: [8, 16] }, c: { dtype: 'I64', shape: [1], data_offsets: [16, 24] } },
        new Uint8Array([0, 60, 0, 188, 128, 63, 0, 64, 0, 0, 0, 0, 0, 0, 240, 63, 5, 0, 0, 0, 0, 0, 0, 0])),
      safetensorsFile('{}', new Uint8Array(0)),
      safetensorsFile('{"a":{"dtype":"F32","shape":[1,1,1,1,1],"data_offsets":[0,4]}}    ', f32.subarray(0, 4)),
    ];
  },
  dictionary: ['"dtype"', '"shape"', '"data_offsets"', '"__metadata__"', '"__proto__"', '"constructor"', '"toString"', '"F32"', '"I32"', '"I64"', '"F16"', '"BF16"', '"F64"', '"U8"',
    '[]', '[0,0]', '[1,2,3,4,5,6]', '1e309', '-1', '0.5', '9007199254740993', '4294967296', 'null', 'true', '{}', '"\\ud800"', '\\u0000', ',', ':', '[', ']', '{', '}']
    .map(enc).concat([Uint8Array.of(0xff), Uint8Array.of(0xc0, 0x80), Uint8Array.of(0xed, 0xa0, 0x80)]),
  structured(input, r) {
    const parts = splitSafetensors(input);
    if (!parts) {
      // Repair the length field so that the JSON is reached at all.
      if (input.length < 10) return null;
      const out = Uint8Array.from(input);
      new DataView(out.buffer).setBigUint64(0, BigInt(r.int(out.length - 8) + 1), true);
      return out;
    }
    let header: Record<string, unknown>;
    try {
      header = JSON.parse(parts.json) as Record<string, unknown>;
    } catch {
      return null;
    }
    if (header === null || typeof header !== 'object') return null;
    // Change one field of one entry, keep the rest, and rewrite the length.
    const names = Object.keys(header);
    const name = names.length ? r.pick(names) : 'x';
    const entry = (header[name] && typeof header[name] === 'object' ? header[name] : {}) as Record<string, unknown>;
    const choices: (() => void)[] = [
      () => { entry.dtype = r.pick(['F32', 'I32', 'I64', 'F16', 'BF16', 'F64', 'U8', 'toString', '__proto__', 7]); },
      () => { entry.shape = r.pick([[], [0], [2, 2], [1, 1, 1, 1, 1, 1], [2 ** 31, 2 ** 31], [-1], [1.5], ['2'], [2 ** 53 + 2]]); },
      () => { entry.data_offsets = [r.int(parts.data.length + 2), r.int(parts.data.length + 2)].sort((a, b) => a - b); },
      () => { entry.data_offsets = r.pick([[0, 0], [0], [4, 0], [0, 2 ** 53 + 2], [-4, 0], [0, '4'], null]); },
      // An own key, even '__proto__' (an assignment would set the prototype instead).
      () => { Object.defineProperty(header, r.pick(['__proto__', 'constructor', 'toString', '__metadata__', 'w2', '']), { value: r.pick([entry, { format: 'pt' }, { __proto__: 'x' }, { k: 1 }, 5, null]), enumerable: true, configurable: true, writable: true }); },
      () => { delete header[name]; },
    ];
    const rename = r.int(6) === 0;
    if (rename) {
      // The same entry under another name: names that are special to JavaScript objects among them.
      delete header[name];
      Object.defineProperty(header, r.pick(['__proto__', 'constructor', 'toString', 'hasOwnProperty', '', 'a.b', '\ud800', 'é']), { value: entry, enumerable: true, configurable: true, writable: true });
    } else {
      r.pick(choices)();
      if (!Object.hasOwn(header, name) && name !== 'x') header[name] = entry;
    }
    const json = JSON.stringify(header);
    return safetensorsFile(r.int(4) === 0 ? json + ' '.repeat(r.int(8)) : json, parts.data);
  },
  async run(bytes, file) {
    writeFileSync(file, bytes);
    const before = L.memory().numTensors;
    let loaded: Record<string, L.Tensor<L.DType>>;
    try {
      loaded = L.loadSafetensorsSync(file, { backend: 'cpu' });
    } catch (err) {
      if (L.memory().numTensors !== before) throw new Violation(`a refused file left ${L.memory().numTensors - before} tensors allocated`);
      // Entries the library cannot hold (no elements, rank above 5, too many elements) and I64
      // values beyond int32 are refused as RangeErrors naming the file and the tensor.
      checkError(err, file, bytes.length, (e) => e instanceof RangeError && /tensor '.*' (of shape .* has|\(I64\) holds)/s.test(e.message));
      return;
    }
    try {
      const parts = splitSafetensors(bytes)!;
      const header = JSON.parse(parts.json) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
      const names = Object.keys(header).filter((k) => k !== '__metadata__');
      const got = Object.keys(loaded);
      if (got.length !== names.length || L.memory().numTensors - before !== names.length) {
        throw new Violation(`header has ${names.length} tensors [${names}], loaded ${got.length} [${got}] and ${L.memory().numTensors - before} allocated`);
      }
      for (const name of names) {
        const e = header[name]!;
        const t = loaded[name];
        if (!t || !Object.hasOwn(loaded, name)) throw new Violation(`tensor '${name}' missing`);
        if (t.shape.join() !== e.shape.join()) throw new Violation(`'${name}' has shape [${t.shape}], header [${e.shape}]`);
        const want = e.dtype === 'I32' || e.dtype === 'I64' ? 'int32' : 'float32';
        if (t.dtype !== want) throw new Violation(`'${name}' is ${t.dtype}, header ${e.dtype}`);
        if (e.dtype === 'F32' || e.dtype === 'I32') {
          const [b, end] = e.data_offsets;
          const bits = new Uint8Array(t.dataSync().buffer);
          if (Buffer.compare(Buffer.from(bits), Buffer.from(parts.data.subarray(b, end))) !== 0) throw new Violation(`'${name}' values differ from the file's bytes`);
        }
      }
    } finally {
      for (const t of Object.values(loaded)) t.dispose();
    }
  },
};

/** Object.prototype's own keys, to see that no input added one. */
const PROTO_KEYS = Object.getOwnPropertyNames(Object.prototype).join();

function checkPrototype(): void {
  if (Object.getOwnPropertyNames(Object.prototype).join() !== PROTO_KEYS) throw new Violation(`Object.prototype changed: ${Object.getOwnPropertyNames(Object.prototype)}`);
}

/** The entries of a ZIP archive as the test writer's input, or null when it is not one the reader opens. */
async function unzip(bytes: Uint8Array, file: string): Promise<ZipFileEntry[] | null> {
  writeFileSync(file, bytes);
  const fh = await open(file, 'r');
  try {
    const zip = await ZipReader.open('fuzz', file, fh);
    const out: ZipFileEntry[] = [];
    for (const e of zip.entries.values()) out.push({ name: e.name, data: (await zip.read(e)).data });
    return out;
  } catch {
    return null;
  } finally {
    await fh.close();
  }
}

const fixture = (name: string) => new Uint8Array(readFileSync(join(root, 'test/fixtures/torch', name)));
const torchSeeds = () => [fixture('dtypes.pt'), fixture('views.pt'), fixture('proto-keys.pt'), fixture('os-system.pt')];

const zipTarget: ReaderTarget = {
  name: 'zip',
  seeds() {
    const entries = [{ name: 'a/data.pkl', data: enc('hello') }, { name: 'a/data/0', data: new Uint8Array(16).fill(7) }];
    return [writeZip(entries), writeZip(entries, { deflate: true }), writeZip(entries, { zip64: true }), writeZip([])];
  },
  dictionary: [[0x50, 0x4b, 3, 4], [0x50, 0x4b, 1, 2], [0x50, 0x4b, 5, 6], [0x50, 0x4b, 6, 6], [0x50, 0x4b, 6, 7], [0xff, 0xff, 0xff, 0xff], [0xff, 0xff], [1, 0], [8, 0]]
    .map((b) => Uint8Array.from(b)),
  // The archive rewritten with one entry's data mutated, so that the CRC holds and reading goes on.
  structured(input, r, file) {
    return mutateEntry(input, r, this.dictionary, file, (e) => r.int(e.length));
  },
  async run(bytes, file) {
    writeFileSync(file, bytes);
    const fh = await open(file, 'r');
    try {
      let zip: ZipReader;
      try {
        zip = await ZipReader.open('fuzz', file, fh);
      } catch (err) {
        checkError(err, file, bytes.length);
        return;
      }
      for (const e of zip.entries.values()) {
        if (e.size > 1032 * Math.max(1, e.compressedSize) || e.headerOffset > bytes.length) throw new Violation(`entry '${e.name}' claims ${e.size} bytes from ${e.compressedSize} at ${e.headerOffset}`);
        try {
          const { data, at } = await zip.read(e);
          if (data.length !== e.size) throw new Violation(`entry '${e.name}' read ${data.length} bytes, claims ${e.size}`);
          if (e.method === 0 && Buffer.compare(Buffer.from(data), Buffer.from(bytes.subarray(at, at + e.size))) !== 0) throw new Violation(`stored entry '${e.name}' differs from the file's bytes`);
        } catch (err) {
          checkError(err, file, bytes.length);
        }
      }
    } finally {
      await fh.close();
    }
  },
};

/** The data.pkl of a torch.save archive: its first entry, stored. */
function pickleOf(zip: Uint8Array): Uint8Array {
  const v = new DataView(zip.buffer, zip.byteOffset);
  const start = 30 + v.getUint16(26, true) + v.getUint16(28, true);
  return zip.subarray(start, start + v.getUint32(18, true));
}

const pickleTarget: ReaderTarget = {
  name: 'pickle',
  seeds: () => torchSeeds().map((b) => Uint8Array.from(pickleOf(b))),
  dictionary: [[0x80, 2], [0x2e], [0x28], [0x74], [0x52], [0x51], [0x62], [0x81], [0x75], [0x73], [0x61], [0x65], [0x7d], [0x5d], [0x29], [0x68, 0], [0x71, 0], [0x6a, 0xff, 0xff, 0xff, 0xff],
    [0x8a, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0x80], [0x58, 0xff, 0xff, 0xff, 0xff], [0x55, 0xff]].map((b) => Uint8Array.from(b))
    .concat(['ctorch._utils\n_rebuild_tensor_v2\n', 'ctorch\nFloatStorage\n', 'ccollections\nOrderedDict\n', 'cposix\nsystem\n', 'c__builtin__\nset\n', 'ctorch\nSize\n',
      'ctorch._tensor\n_rebuild_from_type_v2\n', 'ctorch.nn.parameter\nParameter\n', 'c_codecs\nencode\n', 'X\x09\x00\x00\x00__proto__'].map(enc)),
  structured: () => null,
  async run(bytes, file) {
    try {
      unpickle(bytes, (pos, reason) => {
        if (!Number.isInteger(pos) || pos < 0 || pos > bytes.length) throw new Violation(`error at pickle byte ${pos}, outside the ${bytes.length}-byte pickle: ${reason}`);
        return fileFormatError('unpickle', file, pos, reason);
      });
    } catch (err) {
      checkError(err, file, bytes.length);
    }
    checkPrototype();
  },
};

/** What the torch loader may refuse with a RangeError (a tensor this library cannot hold or load). */
const TORCH_RANGE = /tensor '.*' (of shape .* has|is \w+, which this library cannot load|\(int64\) holds)|views hold \d+ elements|removing the prefix/s;

const torchTarget: ReaderTarget = {
  name: 'torch',
  seeds: torchSeeds,
  dictionary: pickleTarget.dictionary.concat(zipTarget.dictionary),
  // Mostly the pickle, so that the loader's checks behind a valid archive run.
  structured(input, r, file) {
    return mutateEntry(input, r, pickleTarget.dictionary, file, (e) => Math.max(0, e.findIndex((x) => x.name.endsWith('/data.pkl'))));
  },
  async run(bytes, file) {
    writeFileSync(file, bytes);
    const before = L.memory().numTensors;
    let loaded: Record<string, L.Tensor<L.DType>>;
    try {
      loaded = await L.loadTorchStateDict(file, { backend: 'cpu', ...(bytes.length % 2 ? { stripPrefix: 'e' } : {}) });
    } catch (err) {
      if (L.memory().numTensors !== before) throw new Violation(`a refused file left ${L.memory().numTensors - before} tensors allocated`);
      checkError(err, file, bytes.length, (e) => e instanceof RangeError && TORCH_RANGE.test(e.message));
      checkPrototype();
      return;
    }
    try {
      checkPrototype();
      if (Object.getPrototypeOf(loaded) !== Object.prototype) throw new Violation('the result\'s prototype was replaced');
      const names = Object.keys(loaded);
      if (L.memory().numTensors - before !== names.length) throw new Violation(`${names.length} tensors returned, ${L.memory().numTensors - before} allocated`);
      for (const name of names) {
        const t = loaded[name]!;
        const n = t.shape.reduce((a, b) => a * b, 1);
        if (t.dataSync().length !== n || n < 1) throw new Violation(`'${name}' of shape [${t.shape}] holds ${t.dataSync().length} values`);
      }
    } finally {
      for (const t of Object.values(loaded)) t.dispose();
    }
  },
};

/** Mutates the bytes of one entry of an archive and writes it again with a valid CRC (deflated or ZIP64 at times). */
async function mutateEntry(input: Uint8Array, r: Draw, dictionary: readonly Uint8Array[], file: string, pickFirst: (e: ZipFileEntry[]) => number): Promise<Uint8Array | null> {
  const entries = await unzip(input, `${file}.structured`);
  if (!entries || entries.length === 0) return null;
  const i = r.int(3) === 0 ? r.int(entries.length) : pickFirst(entries);
  entries[i] = { name: entries[i]!.name, data: mutate(entries[i]!.data, r, dictionary, []) };
  return writeZip(entries, { deflate: r.int(8) === 0, zip64: r.int(8) === 0 });
}

export const TARGETS: readonly ReaderTarget[] = [idxTarget, cifarTarget, safetensorsTarget, zipTarget, pickleTarget, torchTarget];

// ---------------------------------------------------------------------------------------------
// Mutation.

const INTERESTING_32 = [0, 1, 2, 3, 4, 8, 16, 255, 256, 3072, 3073, 0x7fff, 0x8000, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xffffffff];

/** One to four stacked mutations of `input` (never longer than MAX_LEN). */
export function mutate(input: Uint8Array, r: Draw, dictionary: readonly Uint8Array[], corpus: readonly Uint8Array[]): Uint8Array {
  let b = Uint8Array.from(input);
  const rounds = 1 + r.int(4);
  for (let k = 0; k < rounds; k++) {
    const at = () => r.int(Math.max(1, b.length));
    switch (r.int(11)) {
      case 0: // flip a bit
        if (b.length) b[at()]! ^= 1 << r.int(8);
        break;
      case 1: // set a byte to an interesting value
        if (b.length) b[at()] = r.pick([0, 1, 0x7f, 0x80, 0xff, r.int(256)]);
        break;
      case 2: // add or subtract a small number
        if (b.length) {
          const i = at();
          b[i] = (b[i]! + r.pick([1, -1, 2, -2, 16, -16])) & 0xff;
        }
        break;
      case 3: // an interesting 32-bit value, big or little endian
        if (b.length >= 4) {
          const v = r.pick([...INTERESTING_32, b.length, b.length - 8, b.length - 4]) >>> 0;
          new DataView(b.buffer).setUint32(r.int(b.length - 3), v, r.int(2) === 0);
        }
        break;
      case 4: // the 64-bit length field of safetensors, or any 8 bytes
        if (b.length >= 8) new DataView(b.buffer).setBigUint64(r.int(2) === 0 ? 0 : r.int(b.length - 7), BigInt(r.pick([0, 1, 2, b.length - 8, b.length - 7, 2 ** 53, 1e8 + 1])), true);
        break;
      case 5: { // delete a range
        const i = at();
        b = Uint8Array.from([...b.subarray(0, i), ...b.subarray(i + 1 + r.int(16))]);
        break;
      }
      case 6: { // insert random bytes
        const i = at();
        b = Uint8Array.from([...b.subarray(0, i), ...Array.from({ length: 1 + r.int(8) }, () => r.int(256)), ...b.subarray(i)]);
        break;
      }
      case 7: { // duplicate a range
        const i = at();
        const len = 1 + r.int(64);
        b = Uint8Array.from([...b.subarray(0, i + len), ...b.subarray(i, i + len), ...b.subarray(i + len)]);
        break;
      }
      case 8: // overwrite or insert a dictionary token
        if (dictionary.length) {
          const tok = r.pick(dictionary);
          const i = at();
          b = r.int(2) === 0 ? Uint8Array.from([...b.subarray(0, i), ...tok, ...b.subarray(i)]) : Uint8Array.from([...b.subarray(0, i), ...tok, ...b.subarray(i + tok.length)]);
        }
        break;
      case 9: // splice with another input
        if (corpus.length) {
          const other = r.pick(corpus);
          const i = at();
          const j = r.int(Math.max(1, other.length));
          b = Uint8Array.from([...b.subarray(0, i), ...other.subarray(j)]);
        }
        break;
      default: // truncate
        b = b.subarray(0, at());
    }
  }
  return b.length > MAX_LEN ? b.subarray(0, MAX_LEN) : b;
}

// ---------------------------------------------------------------------------------------------
// The loop.

export interface ReaderSummary {
  target: string;
  executions: number;
  seconds: number;
  corpus: number;
  /** Distinct features (V8 blocks with a hit-count bucket) the inputs reached. */
  features: number;
  failures: { input: string; problem: string; saved: string }[];
}

const TIMEOUT_MS = 10_000;

async function execute(t: ReaderTarget, bytes: Uint8Array, file: string): Promise<string | null> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const both = async () => {
      await t.run(bytes, file);
      await t.extra?.(bytes, file);
    };
    await Promise.race([both(), new Promise((_, reject) => { timer = setTimeout(() => reject(new Violation(`no result after ${TIMEOUT_MS} ms`)), TIMEOUT_MS); })]);
    return null;
  } catch (err) {
    return err instanceof Violation ? err.message : `fuzzer error: ${(err as Error)?.stack ?? String(err)}`;
  } finally {
    clearTimeout(timer);
  }
}

export async function fuzzReader(t: ReaderTarget, opts: { seed: number; seconds: number; iterations: number; cov: Coverage; dir: string; log: (s: string) => void }): Promise<ReaderSummary> {
  const r = new Draw(opts.seed);
  const file = join(opts.dir, `${t.name}-input`);
  const seen = new Set<string>();
  const corpus: Uint8Array[] = [];
  const summary: ReaderSummary = { target: t.name, executions: 0, seconds: 0, corpus: 0, features: 0, failures: [] };
  const late: string[] = [];
  const onRejection = (e: unknown) => late.push(`unhandled rejection: ${String((e as Error)?.message ?? e)}`);
  process.on('unhandledRejection', onRejection);
  const t0 = performance.now();
  opts.cov.take();
  const runOne = async (input: Uint8Array): Promise<boolean> => {
    let problem = await execute(t, input, file);
    summary.executions++;
    const features = opts.cov.take();
    if (late.length) problem = late.splice(0).join('; ');
    if (problem !== null) {
      const hash = createHash('sha1').update(input).digest('hex').slice(0, 12);
      const saved = join(root, '.cache/fuzz/crashes', `${t.name}-${hash}.bin`);
      mkdirSync(join(root, '.cache/fuzz/crashes'), { recursive: true });
      writeFileSync(saved, input);
      if (summary.failures.length < 20) summary.failures.push({ input: Buffer.from(input).toString('hex'), problem, saved });
      opts.log(`${t.name}: FAILURE ${problem} (input saved to ${saved})`);
    }
    let fresh = false;
    for (const f of features) {
      if (!seen.has(f)) {
        seen.add(f);
        fresh = true;
      }
    }
    return fresh;
  };
  for (const s of t.seeds()) {
    await runOne(s);
    corpus.push(s);
  }
  const budgetDone = () => (opts.iterations > 0 ? summary.executions >= opts.iterations : performance.now() - t0 >= opts.seconds * 1000);
  while (!budgetDone()) {
    // Recent finds first: they are where the frontier is.
    const parent = corpus[corpus.length - 1 - Math.min(corpus.length - 1, Math.floor(-Math.log(1 - r.uniform()) * 8))]!;
    const structured = r.int(3) === 0 ? await t.structured(parent, r, file) : null;
    const child = structured ?? mutate(parent, r, t.dictionary, corpus);
    if (await runOne(child)) corpus.push(child);
  }
  process.off('unhandledRejection', onRejection);
  summary.seconds = Math.round((performance.now() - t0) / 100) / 10;
  summary.corpus = corpus.length;
  summary.features = seen.size;
  return summary;
}

export interface ReadersResult {
  readers: ReaderSummary[];
  /** Per source file: the share of its code that ran, in percent. */
  coverage: Record<string, number>;
}

export async function run(opts: { seed: number; seconds: number; iterations: number; only: string | null; log: (s: string) => void }): Promise<ReadersResult> {
  const cov = new Coverage(/\/lib\/(data\/(idx|cifar)|io\/(safetensors|file-error|zip|unpickler|torch|decode|read-at))\.[jt]s$/);
  const dir = mkdtempSync(join(tmpdir(), 'cudnn-resnet-readers-'));
  const readers: ReaderSummary[] = [];
  try {
    for (const t of TARGETS) {
      if (opts.only && t.name !== opts.only) continue;
      readers.push(await fuzzReader(t, { ...opts, cov, dir }));
    }
    return { readers, coverage: cov.report() };
  } finally {
    cov.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const argv = process.argv.slice(2);
  const get = (name: string) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const only = get('only') ?? null;
  const targets = only ? 1 : TARGETS.length;
  const seed = Number(get('seed') ?? Math.floor(Math.random() * 2 ** 31));
  const iterations = Number(get('iterations') ?? 0);
  // --seconds is the whole run's budget, shared by the readers.
  const seconds = iterations > 0 ? 0 : Number(get('seconds') ?? 60) / targets;
  console.error(`reader fuzz: seed ${seed}, ${iterations > 0 ? `${iterations} executions` : `${seconds.toFixed(0)} s`} per reader`);
  const result = await run({ seed, seconds, iterations, only, log: (s) => console.error(s) });
  for (const s of result.readers) {
    console.error(`${s.target}: ${s.executions} executions in ${s.seconds} s, corpus ${s.corpus}, features ${s.features}, failures ${s.failures.length}`);
  }
  for (const [file, c] of Object.entries(result.coverage)) console.error(`  ${file}: ${c}% of its code ran`);
  console.log(JSON.stringify({ seed, ...result }));
  // Exit now: an input that hung is still being read and would keep the process alive.
  process.exit(result.readers.some((s) => s.failures.length > 0) ? 1 : 0);
}
