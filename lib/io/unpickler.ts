/**
 * A restricted unpickler for the `data.pkl` of a PyTorch checkpoint: it allows exactly what
 * `torch.load(weights_only=True)` allows (PyTorch's `_weights_only_unpickler`) and never runs
 * anything from the file.
 *
 * - Opcodes: the protocol-2 subset PyTorch's restricted unpickler implements (what `torch.save`
 *   writes); any other opcode is refused.
 * - Globals: dicts (`collections.OrderedDict`, `Counter`), `torch.Size`, `torch.device`, bytes
 *   (`_codecs.encode`, `bytearray`), `set`, `complex`, the dtypes, the tensor and storage
 *   classes and the tensor rebuild functions. Any other global (`os.system`, a model class of
 *   the script that saved the file) is refused with an error naming it.
 * - Calls: `REDUCE` and `NEWOBJ` are interpreted here, one handler per allowed callable, and
 *   produce plain data: a tensor becomes a `TorchTensor` record (storage, offset, shape,
 *   strides, dtype) that the loader materializes later; a storage is a `TorchStorage` naming
 *   its entry in the archive (`BINPERSID` allows only storage ids, as PyTorch's does).
 *
 * The result is data only: `PyDict` keeps its items in a `Map` (no key can reach an object's
 * prototype), lists are arrays, tuples frozen arrays. The machine does constant work per byte
 * of input plus one allocation per value, so its time and memory are linear in the pickle's
 * size; a value may contain itself (through the memo), so consumers never walk values
 * recursively.
 * @internal
 * @module
 */

/** What a pickle holds once loaded. @internal */
export type PyValue = null | boolean | number | bigint | string | Uint8Array | PyValue[] | PyDict | PySet | PyGlobal | PyOpaque | TorchStorage | TorchTensor;

/** A Python dict (also `OrderedDict`, `Counter`), keys in insertion order. @internal */
export class PyDict {
  readonly items = new Map<PyValue, PyValue>();
  constructor(readonly type: string) {}
}

/** A Python set, as its items. @internal */
export class PySet {
  constructor(readonly items: PyValue[]) {}
}

/** An allowed global that is data rather than a call (a dtype, a storage or tensor class). @internal */
export class PyGlobal {
  constructor(readonly module: string, readonly name: string) {}
  get path(): string {
    return `${this.module}.${this.name}`;
  }
}

/** A value of an allowed type that the loader has no use for (a device, a complex number). @internal */
export class PyOpaque {
  constructor(readonly type: string, readonly args: PyValue[]) {}
}

/**
 * PyTorch's element types, with their size in bytes. A storage's numel counts elements of its
 * dtype (`UntypedStorage` counts bytes, as `uint8`). @internal
 */
export const TORCH_DTYPES: Readonly<Record<string, number>> = {
  float32: 4, float64: 8, float16: 2, bfloat16: 2, int64: 8, int32: 4, int16: 2, int8: 1, uint8: 1, bool: 1,
  complex64: 8, complex128: 16, qint8: 1, quint8: 1, qint32: 4, quint4x2: 1, quint2x4: 1,
};

/** A storage of the checkpoint: entry `data/<key>` of the archive. @internal */
export class TorchStorage {
  constructor(readonly key: string, readonly dtype: string, readonly numel: number, readonly location: string) {}
}

/** A tensor: a strided view of a storage, not yet read. @internal */
export class TorchTensor {
  constructor(
    readonly storage: TorchStorage,
    readonly offset: number,
    readonly shape: number[],
    readonly stride: number[],
    readonly dtype: string,
  ) {}
}

/** How the caller turns a problem at pickle byte `pos` into its error. @internal */
export type PickleFail = (pos: number, reason: string) => Error;

const STORAGE_DTYPES: Readonly<Record<string, string>> = {
  FloatStorage: 'float32', DoubleStorage: 'float64', HalfStorage: 'float16', BFloat16Storage: 'bfloat16',
  LongStorage: 'int64', IntStorage: 'int32', ShortStorage: 'int16', CharStorage: 'int8', ByteStorage: 'uint8',
  BoolStorage: 'bool', ComplexFloatStorage: 'complex64', ComplexDoubleStorage: 'complex128',
  QInt8Storage: 'qint8', QUInt8Storage: 'quint8', QInt32Storage: 'qint32', QUInt4x2Storage: 'quint4x2', QUInt2x4Storage: 'quint2x4',
};
const TENSOR_CLASSES = ['Float', 'Double', 'Half', 'BFloat16', 'Long', 'Int', 'Short', 'Char', 'Byte', 'Bool'].map((t) => `${t}Tensor`);
/** dtype globals PyTorch allows that this loader reads or at least names (`torch.float32`, …). */
const DTYPE_NAMES = [
  ...Object.keys(TORCH_DTYPES), 'complex32', 'bits1x8', 'bits2x4', 'bits4x2', 'bits8', 'bits16', 'float8_e4m3fn', 'float8_e4m3fnuz',
  'float8_e5m2', 'float8_e5m2fnuz', 'float8_e8m0fnu', 'float4_e2m1fn_x2', 'uint16', 'uint32', 'uint64',
  ...[1, 2, 3, 4, 5, 6, 7].flatMap((b) => [`int${b}`, `uint${b}`]),
];
const QSCHEMES = ['per_tensor_affine', 'per_tensor_symmetric', 'per_channel_affine', 'per_channel_symmetric', 'per_channel_affine_float_qparams'];
/** Rebuild functions PyTorch allows for tensor kinds this library has no counterpart of. */
const UNSUPPORTED_REBUILDS: Readonly<Record<string, string>> = {
  _rebuild_qtensor: 'a quantized tensor', _rebuild_sparse_tensor: 'a sparse tensor', _rebuild_meta_tensor_no_storage: 'a meta tensor (no data)',
  _rebuild_nested_tensor: 'a nested tensor', _rebuild_wrapper_subclass: 'a tensor subclass', _rebuild_device_tensor_from_numpy: 'a tensor saved from NumPy',
  _rebuild_device_tensor_from_cpu_tensor: 'a device tensor rebuilt from a CPU tensor',
};

/** The data globals PyTorch's restricted unpickler allows (calls are in CALLS). */
const DATA_GLOBALS: ReadonlySet<string> = new Set([
  'torch.Tensor', 'torch.nn.parameter.Parameter', 'torch.storage.TypedStorage', 'torch.storage.UntypedStorage',
  ...DTYPE_NAMES.map((d) => `torch.${d}`),
  ...QSCHEMES.map((q) => `torch.${q}`),
  ...['torch', 'torch.cuda'].flatMap((m) => [...Object.keys(STORAGE_DTYPES).filter((s) => m === 'torch' || !s.startsWith('QU') && !s.startsWith('QI')), ...TENSOR_CLASSES].map((c) => `${m}.${c}`)),
  ...['torch.sparse', 'torch.cuda.sparse'].flatMap((m) => TENSOR_CLASSES.filter((c) => c !== 'BoolTensor').map((c) => `${m}.${c}`)),
  ...Object.keys(UNSUPPORTED_REBUILDS).map((f) => `torch._utils.${f}`),
]);

/** Python 2 names PyTorch maps to their Python 3 modules, as `pickle`'s compatibility table does. */
const IMPORT_MAPPING: Readonly<Record<string, string>> = { __builtin__: 'builtins', copy_reg: 'copyreg' };

type Call = (args: PyValue[], fail: (reason: string) => Error) => PyValue;

function isTuple(v: PyValue): v is PyValue[] {
  return Array.isArray(v) && Object.isFrozen(v);
}

function tuple(items: PyValue[]): PyValue[] {
  return Object.freeze(items) as PyValue[];
}

/** A short description of a value for an error message; never walks into it (it may contain itself). @internal */
export function describe(v: PyValue): string {
  if (v === null) return 'None';
  if (typeof v === 'string') return v.length > 40 ? `a string ('${v.slice(0, 40)}…')` : `the string '${v}'`;
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return String(v);
  if (v instanceof Uint8Array) return `bytes (${v.length})`;
  if (Array.isArray(v)) return `a ${isTuple(v) ? 'tuple' : 'list'} of ${v.length}`;
  if (v instanceof PyDict) return `a ${v.type} of ${v.items.size} items`;
  if (v instanceof PySet) return `a set of ${v.items.length}`;
  if (v instanceof PyGlobal) return `the global ${v.path}`;
  if (v instanceof PyOpaque) return `a ${v.type}`;
  if (v instanceof TorchStorage) return `a ${v.dtype} storage`;
  return `a ${v.dtype} tensor`;
}

function int(v: PyValue, what: string, fail: (reason: string) => Error, min = 0): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) throw fail(`${what} is ${describe(v)}, not an integer >= ${min}`);
  return v;
}

function ints(v: PyValue, what: string, fail: (reason: string) => Error): number[] {
  if (!Array.isArray(v)) throw fail(`${what} is ${describe(v)}, not a tuple of integers`);
  return v.map((x, i) => int(x, `${what}[${i}]`, fail));
}

function storageOf(v: PyValue, fail: (reason: string) => Error): TorchStorage {
  if (!(v instanceof TorchStorage)) throw fail(`expected a storage, got ${describe(v)}`);
  return v;
}

function tensorOf(v: PyValue, fail: (reason: string) => Error): TorchTensor {
  if (!(v instanceof TorchTensor)) throw fail(`expected a tensor, got ${describe(v)}`);
  return v;
}

function dtypeOf(v: PyValue, fail: (reason: string) => Error): string {
  if (!(v instanceof PyGlobal) || v.module !== 'torch' || !DTYPE_NAMES.includes(v.name)) throw fail(`expected a dtype, got ${describe(v)}`);
  return v.name;
}

function arity(args: PyValue[], min: number, max: number, fail: (reason: string) => Error): void {
  if (args.length < min || args.length > max) throw fail(`takes ${min === max ? min : `${min} to ${max}`} arguments, got ${args.length}`);
}

function rebuildTensor(args: PyValue[], dtype: string | null, fail: (reason: string) => Error): TorchTensor {
  const storage = storageOf(args[0]!, fail);
  const shape = ints(args[2]!, 'size', fail);
  const stride = ints(args[3]!, 'stride', fail);
  if (stride.length !== shape.length) throw fail(`size has ${shape.length} dimensions but stride has ${stride.length}`);
  return new TorchTensor(storage, int(args[1]!, 'storage_offset', fail), shape, stride, dtype ?? storage.dtype);
}

function newDict(type: string): Call {
  return (args, fail) => {
    arity(args, 0, 1, fail);
    const d = new PyDict(type);
    if (args.length === 1) {
      const pairs = args[0]!;
      if (!Array.isArray(pairs)) throw fail(`expected a list of (key, value) pairs, got ${describe(pairs)}`);
      for (const p of pairs) {
        if (!Array.isArray(p) || p.length !== 2) throw fail(`expected a (key, value) pair, got ${describe(p)}`);
        d.items.set(p[0]!, p[1]!);
      }
    }
    return d;
  };
}

function bytesOf(args: PyValue[], fail: (reason: string) => Error): Uint8Array {
  arity(args, 0, 2, fail);
  const [data, encoding] = args;
  if (data === undefined) return new Uint8Array(0);
  if (data instanceof Uint8Array) return data;
  if (typeof data === 'string' && (encoding === 'latin1' || encoding === 'latin-1')) {
    const out = new Uint8Array(data.length);
    for (let i = 0; i < data.length; i++) {
      const c = data.charCodeAt(i);
      if (c > 0xff) throw fail(`character ${c} of a latin1 string is outside latin1`);
      out[i] = c;
    }
    return out;
  }
  if (typeof data === 'string' && (encoding === 'utf-8' || encoding === 'utf8')) return new TextEncoder().encode(data);
  throw fail(`cannot make bytes from ${describe(data)} with encoding ${describe(encoding ?? null)}`);
}

/** The allowed callables: what each makes of its arguments. */
const CALLS: Readonly<Record<string, Call>> = {
  'collections.OrderedDict': newDict('OrderedDict'),
  'collections.Counter': newDict('Counter'),
  'torch._utils._rebuild_tensor': (a, f) => (arity(a, 4, 4, f), rebuildTensor(a, null, f)),
  'torch._utils._rebuild_tensor_v2': (a, f) => (arity(a, 6, 7, f), rebuildTensor(a, null, f)),
  'torch._utils._rebuild_tensor_v3': (a, f) => (arity(a, 7, 8, f), rebuildTensor(a, dtypeOf(a[6]!, f), f)),
  // A parameter's data is the tensor; requires_grad and hooks mean nothing to a state dict.
  'torch._utils._rebuild_parameter': (a, f) => (arity(a, 3, 3, f), tensorOf(a[0]!, f)),
  'torch._utils._rebuild_parameter_with_state': (a, f) => (arity(a, 4, 4, f), tensorOf(a[0]!, f)),
  'torch._tensor._rebuild_from_type_v2': (a, f) => {
    arity(a, 4, 4, f);
    const [fn, type, args] = a as [PyValue, PyValue, PyValue];
    if (!(type instanceof PyGlobal) || (type.path !== 'torch.Tensor' && type.path !== 'torch.nn.parameter.Parameter')) {
      throw f(`tensor subclass ${describe(type)} is not supported`);
    }
    if (!(fn instanceof PyGlobal) || !fn.path.startsWith('torch._utils._rebuild_')) throw f(`expected a rebuild function, got ${describe(fn)}`);
    if (!isTuple(args)) throw f(`expected the rebuild function's arguments as a tuple, got ${describe(args)}`);
    return call(fn, args, f);
  },
  'torch.Size': (a, f) => (arity(a, 1, 1, f), tuple(ints(a[0]!, 'torch.Size', f))),
  'torch.device': (a, f) => (arity(a, 1, 2, f), new PyOpaque('torch.device', a)),
  'torch.serialization._get_layout': (a, f) => (arity(a, 1, 1, f), new PyOpaque('torch.layout', a)),
  'builtins.complex': (a, f) => (arity(a, 0, 2, f), new PyOpaque('complex', a)),
  'builtins.set': (a, f) => {
    arity(a, 0, 1, f);
    const items = a[0] ?? [];
    if (!Array.isArray(items)) throw f(`expected a list, got ${describe(items)}`);
    return new PySet([...items]);
  },
  '_codecs.encode': bytesOf,
  'builtins.bytearray': bytesOf,
};

function call(fn: PyValue, args: PyValue[], fail: (reason: string) => Error): PyValue {
  if (!(fn instanceof PyGlobal)) throw fail(`cannot call ${describe(fn)}`);
  const path = fn.path;
  const handler = Object.hasOwn(CALLS, path) ? CALLS[path] : undefined;
  if (handler) return handler(args, (reason) => fail(`${path}: ${reason}`));
  const unsupported = fn.module === 'torch._utils' && Object.hasOwn(UNSUPPORTED_REBUILDS, fn.name) ? UNSUPPORTED_REBUILDS[fn.name] : undefined;
  if (unsupported) throw fail(`${path}: the checkpoint holds ${unsupported}, which this library cannot load`);
  throw fail(`${path} cannot be called (it is a type, not a constructor PyTorch's restricted unpickler allows)`);
}

/** The persistent id of a storage: ('storage', storage class, key, location, numel). */
function persistentLoad(pid: PyValue, fail: (reason: string) => Error): TorchStorage {
  if (!isTuple(pid) || pid.length !== 5 || pid[0] !== 'storage') {
    throw fail(`persistent id ${describe(pid)} is not ('storage', type, key, location, numel); only storages may be persistent`);
  }
  const [, type, key, location, numel] = pid as [PyValue, PyValue, PyValue, PyValue, PyValue];
  if (!(type instanceof PyGlobal)) throw fail(`storage type is ${describe(type)}, not a storage class`);
  const dtype = type.path === 'torch.storage.UntypedStorage' ? 'uint8' : Object.hasOwn(STORAGE_DTYPES, type.name) ? STORAGE_DTYPES[type.name] : undefined;
  if (dtype === undefined || !/^torch(\.cuda)?$|^torch\.storage$/.test(type.module)) throw fail(`storage type ${type.path} is not a storage class`);
  if (typeof key !== 'string' || !/^[0-9A-Za-z_.-]{1,64}$/.test(key)) throw fail(`storage key ${describe(key)} is not a short name`);
  if (typeof location !== 'string') throw fail(`storage location ${describe(location)} is not a string`);
  return new TorchStorage(key, dtype, int(numel, 'storage numel', fail), location);
}

// Opcodes (pickle's names), the subset PyTorch's restricted unpickler implements.
const OP = {
  MARK: 0x28, STOP: 0x2e, POP: 0x30, POP_MARK: 0x31, DUP: 0x32, BINFLOAT: 0x47, BININT: 0x4a, BININT1: 0x4b, BININT2: 0x4d,
  NONE: 0x4e, BINPERSID: 0x51, REDUCE: 0x52, BINUNICODE: 0x58, EMPTY_LIST: 0x5d, APPEND: 0x61, BUILD: 0x62, GLOBAL: 0x63,
  APPENDS: 0x65, BINGET: 0x68, LONG_BINGET: 0x6a, BINPUT: 0x71, LONG_BINPUT: 0x72, SETITEM: 0x73, TUPLE: 0x74, SETITEMS: 0x75,
  EMPTY_DICT: 0x7d, EMPTY_TUPLE: 0x29, SHORT_BINSTRING: 0x55, PROTO: 0x80, NEWOBJ: 0x81, TUPLE1: 0x85, TUPLE2: 0x86, TUPLE3: 0x87,
  NEWTRUE: 0x88, NEWFALSE: 0x89, LONG1: 0x8a, EMPTY_SET: 0x8f,
} as const;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Loads the pickle `bytes`. Every problem, a refused global among them, is thrown as
 * `fail(pos, reason)` with the byte position of the opcode. @internal
 */
export function unpickle(bytes: Uint8Array, fail: PickleFail): PyValue {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let stack: PyValue[] = [];
  const marks: PyValue[][] = [];
  const memo = new Map<number, PyValue>();
  let p = 0;
  let at = 0;
  const bad = (reason: string) => fail(at, reason);
  const need = (n: number, what: string) => {
    if (p + n > bytes.length) throw bad(`${what} needs ${n} bytes, but the pickle ends after ${bytes.length - p}`);
    const start = p;
    p += n;
    return start;
  };
  const pop = (): PyValue => {
    if (stack.length === 0) throw bad('the stack is empty');
    return stack.pop()!;
  };
  const top = (): PyValue => {
    if (stack.length === 0) throw bad('the stack is empty');
    return stack[stack.length - 1]!;
  };
  const popMark = (): PyValue[] => {
    const items = stack;
    const outer = marks.pop();
    if (outer === undefined) throw bad('no MARK to pop to');
    stack = outer;
    return items;
  };
  const line = (): string => {
    const end = bytes.indexOf(0x0a, p);
    if (end < 0) throw bad('GLOBAL needs a line ending in a newline');
    const raw = bytes.subarray(p, end);
    p = end + 1;
    try {
      return utf8.decode(raw);
    } catch {
      throw bad('GLOBAL names are not valid UTF-8');
    }
  };
  const text = (n: number, what: string): string => {
    const start = need(n, what);
    try {
      return utf8.decode(bytes.subarray(start, start + n));
    } catch {
      throw bad(`${what} is not valid UTF-8`);
    }
  };
  const setItems = (target: PyValue, kv: PyValue[]) => {
    if (!(target instanceof PyDict)) throw bad(`can only set items of a dict, not of ${describe(target)}`);
    for (let i = 0; i + 1 < kv.length; i += 2) target.items.set(kv[i]!, kv[i + 1]!);
    if (kv.length % 2 !== 0) throw bad('SETITEMS needs key-value pairs, got an odd number of values');
  };
  const list = (target: PyValue): PyValue[] => {
    if (!Array.isArray(target) || isTuple(target)) throw bad(`can only append to a list, not to ${describe(target)}`);
    return target;
  };

  for (;;) {
    at = p;
    if (p >= bytes.length) throw bad('the pickle ends without a STOP opcode');
    const code = bytes[p++]!;
    switch (code) {
      case OP.PROTO: {
        const v = bytes[need(1, 'PROTO')]!;
        if (v > 5) throw bad(`pickle protocol ${v} is unknown`);
        break;
      }
      case OP.STOP:
        return pop();
      case OP.MARK:
        marks.push(stack);
        stack = [];
        break;
      case OP.POP:
        pop();
        break;
      case OP.POP_MARK:
        popMark();
        break;
      case OP.DUP:
        stack.push(top());
        break;
      case OP.NONE:
        stack.push(null);
        break;
      case OP.NEWTRUE:
        stack.push(true);
        break;
      case OP.NEWFALSE:
        stack.push(false);
        break;
      case OP.BININT:
        stack.push(view.getInt32(need(4, 'BININT'), true));
        break;
      case OP.BININT1:
        stack.push(bytes[need(1, 'BININT1')]!);
        break;
      case OP.BININT2:
        stack.push(view.getUint16(need(2, 'BININT2'), true));
        break;
      case OP.LONG1: {
        const n = bytes[need(1, 'LONG1')]!;
        const start = need(n, 'LONG1');
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[start + i]!);
        if (n > 0 && bytes[start + n - 1]! & 0x80) v -= 1n << BigInt(8 * n);
        stack.push(v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
        break;
      }
      case OP.BINFLOAT:
        stack.push(view.getFloat64(need(8, 'BINFLOAT'), false));
        break;
      case OP.BINUNICODE: {
        const n = view.getUint32(need(4, 'BINUNICODE'), true);
        stack.push(text(n, 'BINUNICODE string'));
        break;
      }
      case OP.SHORT_BINSTRING: {
        const n = bytes[need(1, 'SHORT_BINSTRING')]!;
        stack.push(text(n, 'SHORT_BINSTRING string'));
        break;
      }
      case OP.EMPTY_TUPLE:
        stack.push(tuple([]));
        break;
      case OP.TUPLE: {
        // popMark() replaces `stack`: take the items before naming the stack to push on.
        const items = popMark();
        stack.push(tuple(items));
        break;
      }
      case OP.TUPLE1:
      case OP.TUPLE2:
      case OP.TUPLE3: {
        const n = code - OP.TUPLE1 + 1;
        if (stack.length < n) throw bad(`TUPLE${n} needs ${n} values on the stack, there are ${stack.length}`);
        stack.push(tuple(stack.splice(stack.length - n, n)));
        break;
      }
      case OP.EMPTY_LIST:
        stack.push([]);
        break;
      case OP.EMPTY_DICT:
        stack.push(new PyDict('dict'));
        break;
      case OP.EMPTY_SET:
        stack.push(new PySet([]));
        break;
      case OP.APPEND: {
        const v = pop();
        list(top()).push(v);
        break;
      }
      case OP.APPENDS: {
        const items = popMark();
        const target = list(top());
        for (const v of items) target.push(v);
        break;
      }
      case OP.SETITEM: {
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case OP.SETITEMS: {
        const kv = popMark();
        setItems(top(), kv);
        break;
      }
      case OP.BINPUT:
        memo.set(bytes[need(1, 'BINPUT')]!, top());
        break;
      case OP.LONG_BINPUT:
        memo.set(view.getUint32(need(4, 'LONG_BINPUT'), true), top());
        break;
      case OP.BINGET:
      case OP.LONG_BINGET: {
        const i = code === OP.BINGET ? bytes[need(1, 'BINGET')]! : view.getUint32(need(4, 'LONG_BINGET'), true);
        if (!memo.has(i)) throw bad(`memo entry ${i} was never stored`);
        stack.push(memo.get(i)!);
        break;
      }
      case OP.GLOBAL: {
        const rawModule = line();
        const name = line();
        const module = Object.hasOwn(IMPORT_MAPPING, rawModule) ? IMPORT_MAPPING[rawModule]! : rawModule;
        const path = `${module}.${name}`;
        if (!Object.hasOwn(CALLS, path) && !DATA_GLOBALS.has(path)) {
          throw bad(`refused global '${path}': only what torch.load(weights_only=True) allows is loaded (tensors, storages, dicts, lists, tuples, numbers, strings); ` +
            'nothing in the file is executed. A file that pickles a whole model or other Python objects must be re-saved as a state dict: torch.save(model.state_dict(), path)');
        }
        stack.push(new PyGlobal(module, name));
        break;
      }
      case OP.REDUCE: {
        const args = pop();
        const fn = pop();
        if (!isTuple(args)) throw bad(`REDUCE needs a tuple of arguments, got ${describe(args)}`);
        stack.push(call(fn, args, bad));
        break;
      }
      case OP.NEWOBJ: {
        const args = pop();
        const cls = pop();
        if (!isTuple(args)) throw bad(`NEWOBJ needs a tuple of arguments, got ${describe(args)}`);
        if (cls instanceof PyGlobal && cls.path === 'torch.nn.parameter.Parameter') {
          stack.push(tensorOf(args[0] ?? null, (r) => bad(`Parameter: ${r}`)));
        } else if (cls instanceof PyGlobal && (cls.path === 'collections.OrderedDict' || cls.path === 'collections.Counter')) {
          stack.push(new PyDict(cls.name));
        } else {
          throw bad(`NEWOBJ can only create a Parameter or a dict, not ${describe(cls)}`);
        }
        break;
      }
      case OP.BUILD: {
        const state = pop();
        const target = top();
        // An OrderedDict's state is its attributes (a state dict's `_metadata`); a parameter's
        // is its Python attributes. Neither holds weights.
        if (!(target instanceof PyDict) && !(target instanceof TorchTensor)) throw bad(`BUILD can only set the state of a dict or a tensor, not of ${describe(target)}`);
        if (state !== null && !(state instanceof PyDict) && !isTuple(state)) throw bad(`BUILD state is ${describe(state)}, not a dict`);
        break;
      }
      case OP.BINPERSID:
        stack.push(persistentLoad(pop(), bad));
        break;
      default:
        throw bad(`opcode 0x${code.toString(16).padStart(2, '0')} is not one that torch.load(weights_only=True) accepts`);
    }
  }
}
