/**
 * Making tensors: from values, random, constant.
 * @module
 */
import { type BackendName, parseBackend } from '../backend/backends.js';
import { bindingOf } from '../backend/load.js';
import { loadBackend, loadedBackendNames } from '../backend/load.js';
import { MAX_ARRAY_ELEMENTS, checkBool, checkElements, checkInt, checkOptions, checkShape, show, shapeStr } from '../util/check.js';
import { refuseInCapture } from './capture-phase.js';
import { rngFor } from './random.js';
import { type DType, type FloatDType, Tensor, isFloatDType, liveTensorCount } from './tensor.js';

/** Options shared by the tensor constructors. */
export interface CreateOptions {
  /** Where the tensor lives; defaults to `defaultBackend()`. */
  backend?: BackendName;
  /** Makes the tensor a leaf whose `grad` `backward()` fills (float32 only). */
  requiresGrad?: boolean;
}

export interface TensorOptions<D extends DType = DType> extends CreateOptions {
  /**
   * Element type; by default int32 for an `Int32Array`, float32 otherwise. bfloat16 and float16
   * store the values rounded to nearest even (2 bytes each).
   */
  dtype?: D;
}

/** Options of the constructors of floating tensors (`randn`, `zeros`, `ones`). */
export interface FloatOptions extends CreateOptions {
  /** 'float32' (the default), 'bfloat16' or 'float16'. */
  dtype?: FloatDType;
}

export interface RandomOptions extends FloatOptions {
  /** Seed for reproducible values; without it a process-wide generator is used (see `seed()`). */
  seed?: number;
  /** Standard deviation (default 1). */
  std?: number;
  /** Mean (default 0). */
  mean?: number;
}

/** The requiresGrad option, checked before anything is allocated. */
function gradOption(op: string, value: unknown, dtype: DType): boolean {
  if (value === undefined || !checkBool(op, 'requiresGrad', value)) return false;
  if (dtype === 'int32') throw new TypeError(`${op}: only floating tensors can require grad`);
  return true;
}

function floatOption(op: string, value: unknown): FloatDType {
  if (value === undefined) return 'float32';
  if (!isFloatDType(value)) throw new TypeError(`${op}: expected dtype to be 'float32', 'bfloat16' or 'float16', got ${show(value)}`);
  return value;
}

function finish<D extends DType>(t: Tensor<D>, requiresGrad: boolean): Tensor<D> {
  if (requiresGrad) t.requiresGrad = true;
  return t;
}

/**
 * A tensor holding `values` (row-major, NCHW for images). `shape` defaults to
 * `[values.length]`; `[]` makes a scalar.
 */
export function tensor(values: Int32Array, shape?: readonly number[], options?: TensorOptions<'int32'>): Tensor<'int32'>;
export function tensor<D extends DType = 'float32'>(values: ArrayLike<number>, shape?: readonly number[], options?: TensorOptions<D>): Tensor<D>;
export function tensor<D extends DType = 'float32'>(values: ArrayLike<number>, shape?: readonly number[], options?: TensorOptions<D>): Tensor<D> {
  const op = 'tensor';
  const opts = checkOptions(op, options, ['backend', 'requiresGrad', 'dtype']);
  const backend = parseBackend(op, opts.backend);
  const isTyped = values instanceof Float32Array || values instanceof Int32Array || values instanceof Float64Array ||
    values instanceof Uint8Array || values instanceof Int16Array || values instanceof Uint16Array ||
    values instanceof Int8Array || values instanceof Uint32Array || values instanceof Uint8ClampedArray;
  if (!isTyped && !Array.isArray(values)) {
    throw new TypeError(`${op}: expected values to be an array or typed array of numbers, got ${show(values)}`);
  }
  const dtype = (opts.dtype ?? (values instanceof Int32Array ? 'int32' : 'float32')) as D;
  if (dtype !== 'int32' && !isFloatDType(dtype)) {
    throw new TypeError(`${op}: dtype must be 'float32', 'int32', 'bfloat16' or 'float16', got ${show(dtype)}`);
  }
  const requiresGrad = gradOption(op, opts.requiresGrad, dtype);
  const dims = shape === undefined ? [values.length] : Array.isArray(shape) && shape.length === 0 ? [] : checkShape(op, shape);
  const n = dims.reduce((a, b) => a * b, 1);
  if (values.length !== n) {
    throw new RangeError(`${op}: ${values.length} values do not fill shape ${shapeStr(dims)} (${n} elements)`);
  }
  if (n === 0) throw new RangeError(`${op}: empty tensors are not supported`);
  const isInt = dtype === 'int32';
  const check = (i: number): number => {
    const v = values[i];
    if (typeof v !== 'number' || (isInt && (!Number.isInteger(v) || v < -(2 ** 31) || v >= 2 ** 31))) {
      throw new TypeError(`${op}: values[${i}] is ${show(v)}, not a ${isInt ? '32-bit integer' : 'number'}`);
    }
    return v;
  };
  let data: Float32Array | Int32Array;
  if (values instanceof (isInt ? Int32Array : Float32Array)) {
    data = values as Float32Array | Int32Array;
  } else {
    // The first value is checked before the array is made: a plain array of 2^32 - 1 holes fails
    // at once instead of after a 16 GiB allocation.
    check(0);
    data = isInt ? new Int32Array(n) : new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = check(i);
  }
  refuseInCapture(op, 'an upload from JavaScript memory');
  const buf = bindingOf(backend).upload(data, dims, dtype);
  return finish(Tensor._wrap<D>(buf, dims, backend, dtype), requiresGrad);
}

/** A tensor of normally distributed values (mean 0, std 1 unless given). */
export function randn(shape: readonly number[], options?: RandomOptions): Tensor {
  const op = 'randn';
  const opts = checkOptions(op, options, ['backend', 'requiresGrad', 'seed', 'std', 'mean', 'dtype']);
  const dims = checkShape(op, shape);
  const backend = parseBackend(op, opts.backend);
  const seedValue = opts.seed === undefined ? undefined : checkInt(op, 'seed', opts.seed, -(2 ** 31), 2 ** 32 - 1);
  const std = opts.std === undefined ? 1 : checkFinite(op, 'std', opts.std);
  const mean = opts.mean === undefined ? 0 : checkFinite(op, 'mean', opts.mean);
  const dtype = floatOption(op, opts.dtype);
  const requiresGrad = gradOption(op, opts.requiresGrad, dtype);
  const rng = rngFor(seedValue);
  const n = checkElements(op, 'shape', dims, '', MAX_ARRAY_ELEMENTS).reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = mean + std * rng.normal();
  refuseInCapture(op, 'an upload from JavaScript memory');
  const buf = bindingOf(backend).upload(data, dims, dtype);
  return finish(Tensor._wrap(buf, dims, backend, dtype), requiresGrad);
}

function checkFinite(op: string, name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new TypeError(`${op}: expected ${name} to be a finite number, got ${show(v)}`);
  return v;
}

function constant(op: string, shape: readonly number[], value: number, options: unknown): Tensor {
  const opts = checkOptions(op, options, ['backend', 'requiresGrad', 'dtype']);
  const dims = checkShape(op, shape);
  const backend = parseBackend(op, opts.backend);
  const dtype = floatOption(op, opts.dtype);
  const requiresGrad = gradOption(op, opts.requiresGrad, dtype);
  const buf = bindingOf(backend).fill(dims, value, dtype);
  return finish(Tensor._wrap(buf, dims, backend, dtype), requiresGrad);
}

/** A tensor of zeros (float32 unless `dtype` says otherwise). */
export function zeros(shape: readonly number[], options?: FloatOptions): Tensor {
  return constant('zeros', shape, 0, options);
}

/** A tensor of ones (float32 unless `dtype` says otherwise). */
export function ones(shape: readonly number[], options?: FloatOptions): Tensor {
  return constant('ones', shape, 1, options);
}

/** Memory in use on one backend. */
export interface BackendMemory {
  /** Live tensors made through this API (excluding those autograd saved for backward). */
  tensors: number;
  /** Native buffers alive, including those autograd saved and those queued ops still use. */
  buffers: number;
  bytes: number;
  peakBytes: number;
  /** Ops enqueued and not yet run. */
  pendingOps: number;
  /** Freed memory the backend keeps for reuse (see `emptyCache()`). */
  cachedBytes: number;
  /** The cap set by `setMemoryLimit` on `bytes`, or null when there is none. */
  limitBytes: number | null;
}

/** What is allocated, per loaded backend, and in total. */
export interface MemoryInfo {
  numTensors: number;
  numBytes: number;
  backends: Partial<Record<BackendName, BackendMemory>>;
}

/** Live tensors and bytes per backend (backends not yet used are absent). */
export function memory(): MemoryInfo {
  const out: MemoryInfo = { numTensors: 0, numBytes: 0, backends: {} };
  for (const name of loadedBackendNames()) {
    const { binding } = loadBackend(name);
    if (!binding) continue;
    const m = binding.memory();
    const entry: BackendMemory = {
      tensors: liveTensorCount(name), buffers: m.buffers, bytes: m.bytes, peakBytes: m.peakBytes, pendingOps: m.pendingOps,
      cachedBytes: binding.cachedBytes(), limitBytes: m.limitBytes > 0 ? m.limitBytes : null,
    };
    out.backends[name] = entry;
    out.numTensors += entry.tensors;
    out.numBytes += entry.bytes;
  }
  return out;
}

/**
 * Returns the memory a backend's caching allocator keeps for reuse to the system. Freed tensor
 * memory is cached because a training step allocates the same buffers every iteration.
 */
export function emptyCache(backend?: BackendName): void {
  bindingOf(parseBackend('emptyCache', backend)).emptyCache();
}

/**
 * Caps the memory a backend's tensors may hold together (`memory().backends[b].bytes`: every
 * live buffer, including those autograd saved for backward and those queued ops still use).
 * An op or constructor whose outputs would go past the cap throws, before allocating anything,
 * an `Error` with `code: 'ERR_MEMORY_LIMIT'` that names the op, the shape and the bytes
 * requested; nothing is left half-done, and the library keeps working once memory is freed or
 * the cap raised. `null`, `0` or `Infinity` removes the cap. The cap is per process (all
 * worker threads share it) and does not include the caching allocator's idle blocks
 * (`cachedBytes`, freed by `emptyCache()`) or oneDNN/cuDNN scratch space.
 */
export function setMemoryLimit(bytes: number | null, backend?: BackendName): void {
  const name = parseBackend('setMemoryLimit', backend);
  const limit = bytes === null || bytes === Infinity ? 0 : checkInt('setMemoryLimit', 'bytes', bytes, 0);
  bindingOf(name).setMemoryLimit(limit);
}

/** Resolves once every op enqueued so far on the backend has run; rejects with the first failure. */
export function sync(backend?: BackendName): Promise<void> {
  refuseInCapture('sync', 'a sync point');
  return bindingOf(parseBackend('sync', backend)).sync();
}
