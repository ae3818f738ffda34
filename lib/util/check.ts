/**
 * Argument checks shared by every public function. All checking happens in TypeScript, before
 * any native work, with messages of one form: "<op>: expected <what>, got <value>". Tensor
 * arguments are checked by `tensor/check-tensor.ts`, which builds on these.
 *
 * This module sits below everything else in lib/ (it imports only the tensor brand), so that
 * `Tensor` itself, the backends and the random generators use the same checks.
 * @internal
 * @module
 */
import { isTensor } from '../tensor/is-tensor.js';

/** How a value reads in an error message: short, whatever its size (a sparse array of length 2^32 - 1, a long string). */
export function show(value: unknown): string {
  if (isTensor(value)) return value.toString();
  if (typeof value === 'string') return value.length > 80 ? `'${value.slice(0, 80)}…' (${value.length} characters)` : `'${value}'`;
  if (Array.isArray(value)) {
    const head = value.slice(0, 8).map((v) => (typeof v === 'number' ? String(v) : show(v))).join(', ');
    return value.length > 8 ? `[${head}, … (${value.length} elements)]` : `[${head}]`;
  }
  if (value === null) return 'null';
  if (typeof value === 'object') return `an object (${Object.prototype.toString.call(value).slice(8, -1)})`;
  return `${String(value)} of type ${typeof value}`;
}

export function shapeStr(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/**
 * An options object (or undefined) with only the known keys. A built-in object (an array, a Map,
 * a Date, a typed array, …) is refused: its entries are not options, and with no own keys it
 * would pass for `{}`.
 */
export function checkOptions(op: string, value: unknown, known: readonly string[]): Record<string, unknown> {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Object.prototype.toString.call(value) !== '[object Object]' || isTensor(value)) {
    throw new TypeError(`${op}: expected an options object, got ${show(value)}`);
  }
  for (const key of Object.keys(value)) {
    if (!known.includes(key)) {
      throw new TypeError(`${op}: unknown option '${key}' (expected ${known.map((k) => `'${k}'`).join(', ')})`);
    }
  }
  return value as Record<string, unknown>;
}

/**
 * `record[key] = value` as an own enumerable property, also for the key '__proto__', which an
 * assignment turns into the record's prototype: a tensor named '__proto__' in a file would
 * vanish from the result and become the prototype of the others' record.
 */
export function setOwn<T>(record: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(record, key, { value, enumerable: true, writable: true, configurable: true });
}

/**
 * `check(element, index)` of each element of an array, by index, and the results: a hole fails at
 * once, where forEach/every/map skip holes and walk all 2^32 - 1 indices of `new Array(2 ** 32 - 1)`.
 */
export function checkEach<T>(value: readonly unknown[], check: (v: unknown, i: number) => T): T[] {
  const out: T[] = [];
  for (let i = 0; i < value.length; i++) out.push(check(value[i], i));
  return out;
}

/** An integer >= min (and <= max). */
export function checkInt(op: string, name: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number') throw new TypeError(`${op}: expected ${name} to be an integer, got ${show(value)}`);
  if (!Number.isInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in [${min}, ${max}]`;
    throw new RangeError(`${op}: expected ${name} to be an integer ${range}, got ${value}`);
  }
  return value;
}

/** A number or a pair of numbers, each an integer >= min; returns the pair. */
export function checkPair(op: string, name: string, value: unknown, min: number): [number, number] {
  if (typeof value === 'number') {
    const v = checkInt(op, name, value, min);
    return [v, v];
  }
  if (!Array.isArray(value) || value.length !== 2) {
    throw new TypeError(`${op}: expected ${name} to be an integer or a pair of integers, got ${show(value)}`);
  }
  return [checkInt(op, `${name}[0]`, value[0], min), checkInt(op, `${name}[1]`, value[1], min)];
}

/** A finite number in [min, max]. */
export function checkNumber(op: string, name: string, value: unknown, min = -Infinity, max = Infinity, opts: { exclusiveMin?: boolean; exclusiveMax?: boolean } = {}): number {
  if (typeof value !== 'number') throw new TypeError(`${op}: expected ${name} to be a number, got ${show(value)}`);
  const lowOk = opts.exclusiveMin ? value > min : value >= min;
  const highOk = opts.exclusiveMax ? value < max : value <= max;
  if (!Number.isFinite(value) || !lowOk || !highOk) {
    const lo = Number.isFinite(min) ? `${opts.exclusiveMin ? '(' : '['}${min}` : '(-inf';
    const hi = Number.isFinite(max) ? `${max}${opts.exclusiveMax ? ')' : ']'}` : 'inf)';
    throw new RangeError(`${op}: expected ${name} to be a finite number in ${lo}, ${hi}, got ${value}`);
  }
  return value;
}

export function checkBool(op: string, name: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw new TypeError(`${op}: expected ${name} to be a boolean, got ${show(value)}`);
  return value;
}

/** The smallest positive normal and the largest finite float32: bounds of values the backends take as float32. */
export const FLOAT32_MIN = 1.1754943508222875e-38;
export const FLOAT32_MAX = 3.4028234663852886e38;

/** Largest element count a tensor may have; keeps byte counts exact and allocations sane. */
export const MAX_ELEMENTS = 2 ** 34;

/** Largest element count of a typed array (V8's limit): bounds tensors whose values are made in JavaScript. */
export const MAX_ARRAY_ELEMENTS = 2 ** 32;

/** Largest size of one dimension: the native side (and cuDNN's descriptors) hold dimensions as int32. */
export const MAX_DIM = 2 ** 31 - 1;

/** A shape: an array of positive integers up to MAX_DIM whose product stays below MAX_ELEMENTS. */
export function checkShape(op: string, value: unknown): number[] {
  if (!Array.isArray(value)) throw new TypeError(`${op}: expected shape to be an array of integers, got ${show(value)}`);
  if (value.length > 5) throw new RangeError(`${op}: shapes of rank above 5 are not supported, got ${show(value)}`);
  const shape = value.map((d, i) => checkInt(op, `shape[${i}]`, d, 1, MAX_DIM));
  return checkElements(op, 'shape', shape);
}

/** A shape the op computed (an output) or was given, refused when it has more than MAX_ELEMENTS elements. */
export function checkElements(op: string, what: string, shape: number[], detail = '', max = MAX_ELEMENTS): number[] {
  const n = shape.reduce((a, b) => a * b, 1);
  if (n > max) {
    const why = max === MAX_ARRAY_ELEMENTS ? ' (its values are made in JavaScript, whose typed arrays hold at most that many)' : '';
    throw new RangeError(`${op}: ${what} ${shapeStr(shape)} has ${n} elements, more than the ${max} supported${detail}${why}`);
  }
  return shape;
}
