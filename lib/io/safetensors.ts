/**
 * Reading and writing the safetensors format, so that weights move between this library and
 * PyTorch (`safetensors.torch.save_file` / `load_file`).
 *
 * Layout: 8 bytes (little-endian u64) N, then N bytes of UTF-8 JSON
 * `{"__metadata__": {string: string}, "<name>": {"dtype", "shape", "data_offsets": [begin, end]}}`,
 * then the data buffer, which the tensors' byte ranges must tile exactly.
 * @module
 */
import { closeSync, fstatSync, openSync } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { type BackendName, parseBackend } from '../backend/backends.js';
import { checkOptions, setOwn, show, shapeStr } from '../util/check.js';
import { checkTensor } from '../tensor/check-tensor.js';
import { isTensor } from '../tensor/is-tensor.js';
import type { DType, Tensor } from '../tensor/tensor.js';
import { writeFileAtomic, writeFileAtomicSync } from './atomic.js';
import { checkPath, fileFormatError } from './file-error.js';
import { readExactly, readExactlySync } from './read-at.js';
import { type ElementType, checkHoldable, decodeElements, makeTensors } from './decode.js';

/** Options of `saveSafetensors`. */
export interface SaveSafetensorsOptions {
  /** Free-form string pairs stored under `__metadata__` (PyTorch writes `{"format": "pt"}`). */
  metadata?: Record<string, string>;
}

/** Options of `loadSafetensors`. */
export interface LoadSafetensorsOptions {
  /** Where the loaded tensors live; defaults to `defaultBackend()`. */
  backend?: BackendName;
}

/** One tensor's entry in a safetensors header. */
export interface SafetensorsEntry {
  /** The file's dtype name: `F32`, `I32`, `I64`, `F16`, `BF16` or `F64`. */
  dtype: string;
  shape: number[];
  /** Byte range `[begin, end)` in the data buffer, which starts after the header. */
  dataOffsets: [number, number];
}

/** A safetensors file's header, validated against the file's size. */
export interface SafetensorsHeader {
  metadata: Record<string, string>;
  /** Entries by tensor name, in the order of their data. */
  tensors: Record<string, SafetensorsEntry>;
}

/**
 * The dtypes read. F32 and I32 load as they are; I64 loads as int32 when every value fits
 * (PyTorch's `num_batches_tracked` is I64); F16, BF16 and F64 load converted to float32.
 */
const DTYPE_BYTES: Readonly<Record<string, number>> = { F32: 4, I32: 4, I64: 8, F16: 2, BF16: 2, F64: 8 };

/** The writer's order: the reference implementation sorts by dtype, descending in its enum (F32 before I32), then by name. */
const WRITE_ORDER: Readonly<Record<DType, number>> = { float32: 0, int32: 1 };

/** The reference implementation's cap; a larger claimed header is corruption, not a big model. */
const MAX_HEADER_BYTES = 100_000_000;

const METADATA_KEY = '__metadata__';

interface Parsed {
  headerBytes: number;
  metadata: Record<string, string>;
  entries: { name: string; dtype: string; shape: number[]; begin: number; end: number }[];
}

/** N from the first 8 bytes, checked against the file's size before anything is allocated for it. */
function parseHeaderLength(op: string, path: string, first: Uint8Array, fileSize: number): number {
  if (fileSize < 8) throw fileFormatError(op, path, 0, `file is ${fileSize} bytes, too short for the 8-byte header length`);
  const n = new DataView(first.buffer, first.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(fileSize - 8)) {
    throw fileFormatError(op, path, 0, `header length ${n} runs past the end of the file (${fileSize} bytes; truncated or not a safetensors file)`);
  }
  if (n > BigInt(MAX_HEADER_BYTES)) throw fileFormatError(op, path, 0, `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  if (n < 2n) throw fileFormatError(op, path, 0, `header length ${n} is too short for a JSON object`);
  return Number(n);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function isIndex(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** The header's JSON, every entry checked, and the byte ranges checked to tile the data buffer. */
function parseHeader(op: string, path: string, bytes: Uint8Array, fileSize: number): Parsed {
  const at = (pos: number) => 8 + pos;
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw fileFormatError(op, path, 8, 'header is not valid UTF-8');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    const msg = (err as Error).message;
    const pos = /position (\d+)/.exec(msg);
    throw fileFormatError(op, path, pos ? at(Number(pos[1])) : 8, `header is not valid JSON (${msg})`);
  }
  if (!isPlainObject(json)) throw fileFormatError(op, path, 8, 'header is not a JSON object');
  const dataStart = 8 + bytes.byteLength;
  const bufferSize = fileSize - dataStart;
  const metadata: Record<string, string> = {};
  const entries: Parsed['entries'] = [];
  for (const [name, value] of Object.entries(json)) {
    if (name === METADATA_KEY) {
      if (!isPlainObject(value)) throw fileFormatError(op, path, 8, `__metadata__ is ${show(value)}, not an object of strings`);
      for (const [k, v] of Object.entries(value)) {
        if (typeof v !== 'string') throw fileFormatError(op, path, 8, `__metadata__['${k}'] is ${show(v)}, not a string`);
        setOwn(metadata, k, v);
      }
      continue;
    }
    const bad = (reason: string, offset = 8) => fileFormatError(op, path, offset, `tensor '${name}': ${reason}`);
    if (!isPlainObject(value)) throw bad(`entry is ${show(value)}, not an object`);
    const { dtype, shape, data_offsets: offsets } = value;
    if (typeof dtype !== 'string') throw bad(`dtype is ${show(dtype)}, not a string`);
    const size = Object.hasOwn(DTYPE_BYTES, dtype) ? DTYPE_BYTES[dtype] : undefined;
    if (size === undefined) throw bad(`unknown or unsupported dtype '${dtype}' (supported: ${Object.keys(DTYPE_BYTES).join(', ')})`);
    if (!Array.isArray(shape) || !shape.every(isIndex)) throw bad(`shape is ${show(shape)}, not an array of non-negative integers`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isIndex) || offsets[0] > offsets[1]) {
      throw bad(`data_offsets is ${show(offsets)}, not [begin, end] with 0 <= begin <= end`);
    }
    const [begin, end] = offsets as [number, number];
    if (end > bufferSize) {
      throw bad(`data_offsets [${begin}, ${end}] run past the end of the data buffer (${bufferSize} bytes; file truncated?)`, dataStart + Math.min(begin, bufferSize));
    }
    // A product past 2^53 is inexact but far larger than any file, so the comparison still fails.
    const want = (shape as number[]).reduce((a, b) => a * b, 1) * size;
    if (want !== end - begin) {
      throw bad(`shape ${shapeStr(shape as number[])} of ${dtype} needs ${want} bytes, but data_offsets [${begin}, ${end}] hold ${end - begin}`, dataStart + begin);
    }
    entries.push({ name, dtype, shape: shape as number[], begin, end });
  }
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  let prev: string | null = null;
  for (const e of entries) {
    if (e.begin < covered) {
      throw fileFormatError(op, path, dataStart + e.begin, `tensor '${e.name}' (data_offsets [${e.begin}, ${e.end}]) overlaps tensor '${prev}', which ends at ${covered}`);
    }
    if (e.begin > covered) {
      throw fileFormatError(op, path, dataStart + covered, `data buffer bytes [${covered}, ${e.begin}) belong to no tensor`);
    }
    covered = e.end;
    prev = e.name;
  }
  if (covered !== bufferSize) {
    throw fileFormatError(op, path, dataStart + covered, `data buffer bytes [${covered}, ${bufferSize}) at the end of the file belong to no tensor`);
  }
  return { headerBytes: bytes.byteLength, metadata, entries };
}

/** Refuses, before any tensor is made, what the library cannot hold. */
function checkLoadable(op: string, path: string, parsed: Parsed): void {
  for (const e of parsed.entries) checkHoldable(op, path, e.name, e.shape);
}

/** The element type of each safetensors dtype name. */
const ELEMENT_TYPES: Readonly<Record<string, ElementType>> = { F32: 'float32', I32: 'int32', I64: 'int64', F16: 'float16', BF16: 'bfloat16', F64: 'float64' };

/** The values of one entry as the library's dtype; `bytes` is a fresh allocation. */
function decode(op: string, path: string, e: Parsed['entries'][number], bytes: Uint8Array, fileOffset: number): Float32Array | Int32Array {
  const n = e.shape.reduce((a, b) => a * b, 1);
  return decodeElements(ELEMENT_TYPES[e.dtype]!, bytes, n, (i, v) => new RangeError(
    `${op}: ${path}: tensor '${e.name}' (I64) holds ${v} at element ${i} (byte offset ${fileOffset + 8 * i}), ` +
      'outside the int32 range; int64 values load as int32 only when they fit',
  ));
}

/** Tensors from each entry's raw bytes (`raw[i]` for `parsed.entries[i]`), all or none. */
function toTensors(op: string, path: string, parsed: Parsed, raw: Uint8Array[], backend: BackendName): Record<string, Tensor<DType>> {
  const dataStart = 8 + parsed.headerBytes;
  return makeTensors(parsed.entries.map((e, i) => ({ name: e.name, shape: e.shape, values: decode(op, path, e, raw[i]!, dataStart + e.begin) })), backend);
}

function toHeader(parsed: Parsed): SafetensorsHeader {
  const tensors: Record<string, SafetensorsEntry> = {};
  for (const e of parsed.entries) setOwn(tensors, e.name, { dtype: e.dtype, shape: e.shape, dataOffsets: [e.begin, e.end] });
  return { metadata: parsed.metadata, tensors };
}

async function parseFile(op: string, path: string, fh: FileHandle): Promise<Parsed> {
  const size = (await fh.stat()).size;
  const n = parseHeaderLength(op, path, await readExactly(op, path, fh, 0, Math.min(8, size)), size);
  return parseHeader(op, path, await readExactly(op, path, fh, 8, n), size);
}

function parseFileSync(op: string, path: string, fd: number): Parsed {
  const size = fstatSync(fd).size;
  const n = parseHeaderLength(op, path, readExactlySync(op, path, fd, 0, Math.min(8, size)), size);
  return parseHeader(op, path, readExactlySync(op, path, fd, 8, n), size);
}

function loadArgs(op: string, path: unknown, options: unknown): { file: string; backend: BackendName } {
  const file = checkPath(op, path);
  const opts = checkOptions(op, options, ['backend']);
  return { file, backend: parseBackend(op, opts.backend) };
}

/**
 * Loads every tensor of a safetensors file (as PyTorch's `safetensors.torch.save_file` writes
 * them). F32 loads as float32 and I32 as int32; I64 (PyTorch's `num_batches_tracked`) loads as
 * int32 when every value fits, else a RangeError; F16, BF16 and F64 load converted to float32.
 * A truncated or corrupt file is refused with an error (`code` `'ERR_FILE_FORMAT'`) naming the
 * file, the byte offset and what is wrong; nothing is allocated from a size the file claims
 * before that size is checked against the file's length.
 */
export function loadSafetensors(path: string, options?: LoadSafetensorsOptions): Promise<Record<string, Tensor<DType>>> {
  const op = 'loadSafetensors';
  const { file, backend } = loadArgs(op, path, options);
  return loadFile(op, file, backend);
}

async function loadFile(op: string, file: string, backend: BackendName): Promise<Record<string, Tensor<DType>>> {
  const fh = await open(file, 'r');
  try {
    const parsed = await parseFile(op, file, fh);
    checkLoadable(op, file, parsed);
    const dataStart = 8 + parsed.headerBytes;
    const raw: Uint8Array[] = [];
    for (const e of parsed.entries) raw.push(await readExactly(op, file, fh, dataStart + e.begin, e.end - e.begin));
    return toTensors(op, file, parsed, raw, backend);
  } finally {
    await fh.close();
  }
}

/** `loadSafetensors`, blocking the thread while it reads. For scripts. */
export function loadSafetensorsSync(path: string, options?: LoadSafetensorsOptions): Record<string, Tensor<DType>> {
  const op = 'loadSafetensorsSync';
  const { file, backend } = loadArgs(op, path, options);
  const fd = openSync(file, 'r');
  try {
    const parsed = parseFileSync(op, file, fd);
    checkLoadable(op, file, parsed);
    const dataStart = 8 + parsed.headerBytes;
    const raw = parsed.entries.map((e) => readExactlySync(op, file, fd, dataStart + e.begin, e.end - e.begin));
    return toTensors(op, file, parsed, raw, backend);
  } finally {
    closeSync(fd);
  }
}

/** The metadata and tensor entries of a safetensors file, validated, without reading the data. */
export function readSafetensorsHeader(path: string): Promise<SafetensorsHeader> {
  const op = 'readSafetensorsHeader';
  const file = checkPath(op, path);
  return (async () => {
    const fh = await open(file, 'r');
    try {
      return toHeader(await parseFile(op, file, fh));
    } finally {
      await fh.close();
    }
  })();
}

interface Planned {
  header: Uint8Array;
  order: [string, Tensor<DType>][];
}

function compareUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** Validates the arguments and lays out the header exactly as the reference writer does. */
function plan(op: string, path: unknown, tensors: unknown, options: unknown): { file: string; planned: Planned } {
  const file = checkPath(op, path);
  if (!isPlainObject(tensors) || isTensor(tensors)) throw new TypeError(`${op}: expected tensors to be an object of name → Tensor, got ${show(tensors)}`);
  const opts = checkOptions(op, options, ['metadata']);
  const order: [string, Tensor<DType>][] = [];
  for (const [name, t] of Object.entries(tensors)) {
    if (name === METADATA_KEY) throw new RangeError(`${op}: '${METADATA_KEY}' is reserved for metadata and cannot name a tensor`);
    const dtype = isTensor(t) ? t.dtype : 'float32';
    order.push([name, checkTensor(op, `tensors['${name}']`, t, { dtype })]);
  }
  let metaJson = '';
  if (opts.metadata !== undefined) {
    if (!isPlainObject(opts.metadata)) throw new TypeError(`${op}: expected metadata to be an object of strings, got ${show(opts.metadata)}`);
    const pairs = Object.entries(opts.metadata).sort(([a], [b]) => compareUtf8(a, b));
    for (const [k, v] of pairs) {
      if (typeof v !== 'string') throw new TypeError(`${op}: expected metadata['${k}'] to be a string, got ${show(v)}`);
    }
    metaJson = `${JSON.stringify(METADATA_KEY)}:{${pairs.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(',')}}`;
  }
  order.sort(([na, a], [nb, b]) => WRITE_ORDER[a.dtype] - WRITE_ORDER[b.dtype] || compareUtf8(na, nb));
  let offset = 0;
  const parts = metaJson ? [metaJson] : [];
  for (const [name, t] of order) {
    const end = offset + 4 * t.size;
    parts.push(`${JSON.stringify(name)}:{"dtype":"${t.dtype === 'int32' ? 'I32' : 'F32'}","shape":[${t.shape.join(',')}],"data_offsets":[${offset},${end}]}`);
    offset = end;
  }
  const json = Buffer.from(`{${parts.join(',')}}`, 'utf8');
  // The reference writer pads with spaces so that the data buffer starts 8-byte aligned.
  const padded = Buffer.alloc(json.byteLength + ((8 - (json.byteLength % 8)) % 8), 0x20);
  json.copy(padded);
  const header = new Uint8Array(8 + padded.byteLength);
  new DataView(header.buffer).setBigUint64(0, BigInt(padded.byteLength), true);
  header.set(padded, 8);
  return { file, planned: { header, order } };
}

function asBytes(a: Float32Array | Int32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/**
 * Writes float32 and int32 tensors to a safetensors file that PyTorch's
 * `safetensors.torch.load_file` reads: the same header layout, key order and padding as the
 * reference writer. Tensors must be live; their values are read back (waiting for queued ops).
 * The write is atomic: a temporary file in the same directory is written, fsynced and renamed
 * over `path`, so a crash leaves the old file or the new one, never a torn one.
 */
export function saveSafetensors(path: string, tensors: Record<string, Tensor<DType>>, options?: SaveSafetensorsOptions): Promise<void> {
  const { file, planned } = plan('saveSafetensors', path, tensors, options);
  return Promise.all(planned.order.map(([, t]) => t.data())).then((values) => writeFileAtomic(file, [planned.header, ...values.map(asBytes)]));
}

/** `saveSafetensors`, blocking the thread until the values are read back and written. For scripts. */
export function saveSafetensorsSync(path: string, tensors: Record<string, Tensor<DType>>, options?: SaveSafetensorsOptions): void {
  const { file, planned } = plan('saveSafetensorsSync', path, tensors, options);
  writeFileAtomicSync(file, [planned.header, ...planned.order.map(([, t]) => asBytes(t.dataSync()))]);
}
