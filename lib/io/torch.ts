/**
 * Loading PyTorch checkpoints (`.pt`, `.pth`) written by `torch.save` since PyTorch 1.6: a ZIP
 * archive holding `<name>/data.pkl` (the pickled object) and one entry `<name>/data/<key>` per
 * storage. The pickle is read by a restricted unpickler that allows only what
 * `torch.load(weights_only=True)` allows and executes nothing; tensors are then read from their
 * storages, honouring storage offsets and strides (views, storages shared by several tensors).
 * @module
 */
import { open } from 'node:fs/promises';
import { type BackendName, parseBackend } from '../backend/backends.js';
import { checkOptions, show } from '../util/check.js';
import type { DType, Tensor } from '../tensor/tensor.js';
import { ELEMENT_BYTES, checkHoldable, decodeElements, isElementType, makeTensors } from './decode.js';
import { checkPath, fileFormatError } from './file-error.js';
import { readExactly } from './read-at.js';
import { PyDict, type PyValue, TORCH_DTYPES, TorchTensor, describe, unpickle } from './unpickler.js';
import { type ZipEntry, ZipReader } from './zip.js';

/** Options of `loadTorchStateDict`. */
export interface LoadTorchOptions {
  /** Where the loaded tensors live; defaults to `defaultBackend()`. */
  backend?: BackendName;
  /**
   * The key of the state dict in a checkpoint that holds more (`{ epoch, model, optimizer }`).
   * Without it: the file's top-level dict when every value is a tensor, else its `state_dict`,
   * `model_state_dict` or `model` entry, the first that is a dict of tensors only.
   */
  key?: string;
  /**
   * A prefix to remove from every key that starts with it: `'module.'` for a model saved from
   * `nn.DataParallel` or `DistributedDataParallel`, `'_orig_mod.'` from `torch.compile`.
   */
  stripPrefix?: string;
}

/** Where a state dict is looked for in a checkpoint without `key`, in this order. */
const STATE_DICT_KEYS = ['state_dict', 'model_state_dict', 'model'];

/**
 * A budget on the elements materialized, per byte of the file: a view may read elements of its
 * storage more than once (an expanded tensor, stride 0), so a small file could otherwise claim
 * any amount of memory. Four elements per byte is 16 float32 copies of every stored float32.
 */
const ELEMENTS_PER_FILE_BYTE = 4;

interface Context {
  op: string;
  path: string;
  size: number;
}

/** The tensors of the chosen state dict, by key (prefix stripped), not yet read. */
function selectStateDict(c: Context, root: PyValue, key: string | undefined): [string, TorchTensor][] {
  // A state dict is a dict of tensors only; a checkpoint may hold tensors beside it (`best_acc1`).
  const tensorDict = (v: PyValue | undefined): PyDict | null =>
    (v instanceof PyDict && v.items.size > 0 && [...v.items.values()].every((x) => x instanceof TorchTensor) ? v : null);
  const name = (k: PyValue) => (typeof k === 'string' ? `'${k}'` : describe(k));
  if (!(root instanceof PyDict)) throw fileFormatError(c.op, c.path, null, `holds ${describe(root)}, not a dict of tensors (a state dict) or a checkpoint dict`);
  const keys = [...root.items.keys()].map(name).join(', ');
  let dict: PyDict | null;
  if (key !== undefined) {
    const v = root.items.get(key);
    // A dict with other values besides tensors is refused below, naming the first of them.
    dict = v instanceof PyDict ? v : null;
    if (dict === null) {
      throw fileFormatError(c.op, c.path, null, `key '${key}' ${v === undefined ? 'is not in the checkpoint' : `holds ${describe(v)}, not a dict`} (its keys: ${keys})`);
    }
  } else {
    dict = tensorDict(root) ?? STATE_DICT_KEYS.map((k) => tensorDict(root.items.get(k))).find((d) => d !== null) ?? null;
    if (dict === null) {
      const candidates = [...root.items].filter(([, v]) => tensorDict(v) !== null).map(([k]) => name(k));
      throw fileFormatError(c.op, c.path, null, `holds a dict without tensors (keys: ${keys}) and none of ${STATE_DICT_KEYS.map((k) => `'${k}'`).join(', ')} is a dict of tensors` +
        (candidates.length ? `; dicts of tensors are under ${candidates.join(', ')}: pass { key }` : ''));
    }
  }
  const out: [string, TorchTensor][] = [];
  for (const [k, v] of dict.items) {
    if (typeof k !== 'string') throw fileFormatError(c.op, c.path, null, `the state dict has a key that is ${describe(k)}, not a string`);
    if (!(v instanceof TorchTensor)) throw fileFormatError(c.op, c.path, null, `state dict entry '${k}' is ${describe(v)}, not a tensor`);
    out.push([k, v]);
  }
  return out;
}

function stripKeys(c: Context, entries: [string, TorchTensor][], prefix: string | undefined): [string, TorchTensor][] {
  if (prefix === undefined) return entries;
  const seen = new Set<string>();
  return entries.map(([k, t]) => {
    const name = k.startsWith(prefix) ? k.slice(prefix.length) : k;
    if (seen.has(name)) throw new RangeError(`${c.op}: ${c.path}: removing the prefix '${prefix}' makes two keys '${name}'`);
    seen.add(name);
    return [name, t];
  });
}

/** The element count of `t`, checked to be loadable and to lie inside its storage. */
function checkTensor(c: Context, name: string, t: TorchTensor): number {
  if (!isElementType(t.dtype)) {
    throw new RangeError(`${c.op}: ${c.path}: tensor '${name}' is ${t.dtype}, which this library cannot load (supported: ${Object.keys(ELEMENT_BYTES).join(', ')})`);
  }
  checkHoldable(c.op, c.path, name, t.shape);
  const item = ELEMENT_BYTES[t.dtype];
  // Sizes are at least 1 here, so the last element is at offset + Σ (size - 1)·stride. A sum
  // past 2^53 is inexact but far beyond any storage, so the comparison still fails.
  const last = t.shape.reduce((a, d, i) => a + (d - 1) * t.stride[i]!, t.offset);
  const storageBytes = t.storage.numel * TORCH_DTYPES[t.storage.dtype]!;
  if ((last + 1) * item > storageBytes) {
    throw fileFormatError(c.op, c.path, null, `tensor '${name}' (size [${t.shape.join(', ')}], stride [${t.stride.join(', ')}], offset ${t.offset}) ` +
      `reads past the end of its storage '${t.storage.key}' (${storageBytes} bytes)`);
  }
  return t.shape.reduce((a, b) => a * b, 1);
}

/** The tensor's elements in row-major order, as raw bytes of its dtype (a fresh allocation). */
function gather(t: TorchTensor, storage: Uint8Array, item: number): Uint8Array {
  const n = t.shape.reduce((a, b) => a * b, 1);
  const out = new Uint8Array(n * item);
  let contiguous = true;
  for (let i = t.shape.length - 1, want = 1; i >= 0; want *= t.shape[i]!, i--) {
    if (t.shape[i]! !== 1 && t.stride[i] !== want) contiguous = false;
  }
  if (contiguous) {
    out.set(storage.subarray(t.offset * item, (t.offset + n) * item));
    return out;
  }
  // Copy in words of 2 or 4 bytes (an 8-byte element is two words); a storage is a fresh
  // allocation, so both views are aligned, and integer words copy bits exactly.
  const words = item === 2 ? 1 : item / 4;
  const src = item === 2 ? new Uint16Array(storage.buffer, 0, storage.length >> 1) : new Uint32Array(storage.buffer, 0, storage.length >> 2);
  const dst = item === 2 ? new Uint16Array(out.buffer) : new Uint32Array(out.buffer);
  const rank = t.shape.length;
  const index = new Array<number>(rank).fill(0);
  let at = t.offset;
  for (let k = 0; k < n; k++) {
    for (let w = 0; w < words; w++) dst[k * words + w] = src[at * words + w]!;
    for (let d = rank - 1; d >= 0; d--) {
      if (++index[d]! < t.shape[d]!) {
        at += t.stride[d]!;
        break;
      }
      at -= (t.shape[d]! - 1) * t.stride[d]!;
      index[d] = 0;
    }
  }
  return out;
}

/** Why a file that is not a ZIP archive is not loadable, from its first bytes. */
function notZip(c: Context, head: Uint8Array): Error {
  const ascii = (from: number, to: number) => String.fromCharCode(...head.subarray(from, to));
  const legacy = 'load it with PyTorch and save it again, which writes the ZIP format: torch.save(torch.load(path), new_path)';
  if (head.length >= 262 && ascii(257, 262) === 'ustar') return fileFormatError(c.op, c.path, 0, `is a tar archive, PyTorch's oldest checkpoint format; ${legacy}`);
  if (head[0] === 0x80 && head.length >= 2 && head[1]! <= 5) return fileFormatError(c.op, c.path, 0, `is a bare pickle, PyTorch's legacy checkpoint format (before 1.6, or _use_new_zipfile_serialization=False); ${legacy}`);
  return fileFormatError(c.op, c.path, 0, 'is not a PyTorch checkpoint: torch.save writes a ZIP archive, and this file does not start like one');
}

/** The archive's one `<name>/data.pkl`, after refusing TorchScript archives. */
function findPickle(c: Context, zip: ZipReader): { prefix: string; entry: ZipEntry } {
  const pickles = [...zip.entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (pickles.length !== 1) {
    throw fileFormatError(c.op, c.path, null, pickles.length === 0
      ? 'is a ZIP archive but not a PyTorch checkpoint (no <name>/data.pkl entry)'
      : `holds ${pickles.length} pickles (${pickles.join(', ')}); a torch.save archive holds one`);
  }
  const prefix = pickles[0]!.slice(0, -'data.pkl'.length);
  if (zip.entries.has(`${prefix}constants.pkl`) || [...zip.entries.keys()].some((n) => n.startsWith(`${prefix}code/`))) {
    throw fileFormatError(c.op, c.path, null, 'is a TorchScript archive (torch.jit.save), which holds code as well as weights; ' +
      "load it in PyTorch and save its weights: torch.save(torch.jit.load(path).state_dict(), 'weights.pt')");
  }
  return { prefix, entry: zip.entries.get(pickles[0]!)! };
}

/**
 * Loads the state dict of a PyTorch checkpoint written by `torch.save` (PyTorch 1.6 and later;
 * `.pt`, `.pth`): `torch.save(model.state_dict(), path)`, torchvision's published weights, or a
 * training checkpoint that holds the state dict next to other things (`{ epoch, model,
 * optimizer }`; see `key`). Keys are PyTorch's (`layer1.0.conv1.weight`), so the result goes
 * straight into `module.loadStateDict` of the library's models, whose names are torchvision's.
 *
 * Only what `torch.load(weights_only=True)` allows is read, and nothing in the file is
 * executed: a file that pickles other Python objects (a whole model, `os.system`) is refused
 * with an error naming the global. float32 loads as float32; float16, bfloat16 and float64 load
 * converted to float32; int64 (`num_batches_tracked`) and int32 load as int32 (int64 only when
 * every value fits). Views and storages shared by several tensors load as the values PyTorch
 * shows. Refused with an error (`code` `'ERR_FILE_FORMAT'` for the file's contents, naming the
 * file and, where there is one, the byte offset): the legacy formats (before PyTorch 1.6),
 * TorchScript archives (`torch.jit.save`), corrupt archives; with a RangeError, tensors of other
 * dtypes or that this library cannot hold.
 */
export function loadTorchStateDict(path: string, options?: LoadTorchOptions): Promise<Record<string, Tensor<DType>>> {
  const op = 'loadTorchStateDict';
  const file = checkPath(op, path);
  const opts = checkOptions(op, options, ['backend', 'key', 'stripPrefix']);
  const backend = parseBackend(op, opts.backend);
  for (const name of ['key', 'stripPrefix'] as const) {
    if (opts[name] !== undefined && (typeof opts[name] !== 'string' || opts[name] === '')) {
      throw new TypeError(`${op}: expected ${name} to be a non-empty string, got ${show(opts[name])}`);
    }
  }
  return load(op, file, backend, opts as Pick<LoadTorchOptions, 'key' | 'stripPrefix'>);
}

async function load(op: string, file: string, backend: BackendName, opts: Pick<LoadTorchOptions, 'key' | 'stripPrefix'>): Promise<Record<string, Tensor<DType>>> {
  const fh = await open(file, 'r');
  try {
    const c: Context = { op, path: file, size: (await fh.stat()).size };
    const head = await readExactly(op, file, fh, 0, Math.min(c.size, 512));
    if (head[0] !== 0x50 || head[1] !== 0x4b) throw notZip(c, head);
    const zip = await ZipReader.open(op, file, fh);
    const { prefix, entry } = findPickle(c, zip);
    const order = zip.entries.get(`${prefix}byteorder`);
    if (order !== undefined) {
      const { data } = await zip.read(order);
      const text = new TextDecoder().decode(data);
      if (text !== 'little') throw fileFormatError(op, file, null, `was saved on a '${text}'-endian machine; only little-endian checkpoints are read`);
    }
    const pickle = await zip.read(entry);
    const root = unpickle(pickle.data, (pos, reason) =>
      fileFormatError(op, file, entry.method === 0 ? pickle.at + pos : pickle.at, `${entry.name}: ${reason} (pickle byte ${pos})`));
    const tensors = stripKeys(c, selectStateDict(c, root, opts.key), opts.stripPrefix);
    let total = 0;
    for (const [name, t] of tensors) total += checkTensor(c, name, t);
    if (total > ELEMENTS_PER_FILE_BYTE * c.size) {
      throw new RangeError(`${op}: ${file}: the state dict's views hold ${total} elements, more than ${ELEMENTS_PER_FILE_BYTE} per byte of the ${c.size}-byte file; ` +
        'tensors that repeat their storage\'s elements (expanded views) are not loaded: save t.contiguous() instead');
    }
    const storages = new Map<string, Uint8Array>();
    const values: { name: string; shape: number[]; values: Float32Array | Int32Array }[] = [];
    for (const [name, t] of tensors) {
      // Checked for every tensor: two references to one storage key may claim different sizes.
      const storageEntry = zip.entries.get(`${prefix}data/${t.storage.key}`);
      const want = t.storage.numel * TORCH_DTYPES[t.storage.dtype]!;
      if (storageEntry === undefined) throw fileFormatError(op, file, null, `storage '${t.storage.key}' of tensor '${name}' is not in the archive (${prefix}data/${t.storage.key})`);
      if (storageEntry.size !== want) {
        throw fileFormatError(op, file, storageEntry.headerOffset, `storage '${t.storage.key}' holds ${storageEntry.size} bytes, but tensor '${name}' says ${t.storage.numel} ${t.storage.dtype} elements (${want} bytes)`);
      }
      let bytes = storages.get(t.storage.key);
      if (bytes === undefined) {
        bytes = (await zip.read(storageEntry)).data;
        storages.set(t.storage.key, bytes);
      }
      const type = t.dtype as keyof typeof ELEMENT_BYTES;
      const raw = gather(t, bytes, ELEMENT_BYTES[type]);
      values.push({
        name, shape: t.shape,
        values: decodeElements(type, raw, raw.length / ELEMENT_BYTES[type], (i, v) =>
          new RangeError(`${op}: ${file}: tensor '${name}' (int64) holds ${v} at element ${i}, outside the int32 range; int64 values load as int32 only when they fit`)),
      });
    }
    return makeTensors(values, backend);
  } finally {
    await fh.close();
  }
}
