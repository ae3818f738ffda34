/**
 * Argument generators for the boundary fuzzer: for each kind of parameter (a tensor of some
 * shape, an integer, a pair, an options object, …) a valid value and many wrong ones: wrong
 * types, wrong ranks and shapes, negative/huge/NaN/fractional sizes, disposed tensors, tensors
 * of another copy of the library, native handles of another addon instance, typed arrays of the
 * wrong kind or length, proxies and getters that throw.
 *
 * Every value comes with a short description (`Arg.d`) made when it is generated, never by
 * inspecting the value (which could run a trap), so a failing call can be printed.
 */
import { Rng } from '../../lib/tensor/random.js';

/** A generated argument and how it reads in a report. */
export interface Arg {
  v: unknown;
  d: string;
}

export const arg = (v: unknown, d: string): Arg => ({ v, d });

/** Thrown by the fuzzer's own traps (throwing getters, proxies); a call may let it through. */
export class FuzzTrap extends Error {
  constructor(where: string) {
    super(`fuzz trap: ${where}`);
    this.name = 'FuzzTrap';
  }
}

/** A valid value and wrong ones for one parameter. */
export interface Schema {
  ok(g: Gen): Arg;
  bad(g: Gen): Arg;
  /** May be left out (undefined is valid). */
  optional?: boolean;
}

/** The element types of fixture tensors and handles. */
export type FixtureDType = 'float32' | 'int32' | 'bfloat16';

/** Everything that makes fixtures: supplied by the runner (tensors, handles, files). */
export interface Fixtures {
  /** A fresh live tensor (disposed after the call); `instance: 'other'` makes it with the second copy of the library. */
  tensor(g: Gen, shape: readonly number[], opts?: { dtype?: FixtureDType; requiresGrad?: boolean; instance?: 'other'; backend?: string }): Arg;
  /** A tensor some op computed (a non-leaf with a gradient function). */
  computed(g: Gen, shape: readonly number[]): Arg;
  /** Anything that is a Tensor by appearance only. */
  forgedTensor(g: Gen, shape: readonly number[]): Arg;
  /**
   * A fresh native buffer handle of the call's backend (released after the call); `instance`:
   * of the second CPU addon instance, or of another backend's addon (the foreign one if there is none).
   */
  handle(g: Gen, shape: readonly number[], opts?: { dtype?: FixtureDType; instance?: 'foreign' | 'other-backend' }): Arg;
  /** A handle that is not a usable buffer of this addon: released, forged, of another kind. */
  badHandle(g: Gen, shape: readonly number[]): Arg;
}

/** A seeded stream of choices. */
export class Draw {
  readonly rng: Rng;

  constructor(seed: number) {
    this.rng = new Rng(seed);
  }

  uniform(): number {
    return this.rng.uniform();
  }

  int(n: number): number {
    return Math.floor(this.rng.uniform() * n);
  }

  chance(p: number): boolean {
    return this.rng.uniform() < p;
  }

  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
}

/** The generator of one call: its choices, and the fixtures to clean up after it. */
export class Gen extends Draw {
  readonly cleanup: (() => void)[] = [];
  /** The backend whose addon the call's handles come from. */
  backend = 'cpu';

  constructor(seed: number, readonly fx: Fixtures) {
    super(seed);
  }

  /** Registers something to dispose after the call. */
  own<T>(value: T, dispose: (v: T) => void): T {
    this.cleanup.push(() => dispose(value));
    return value;
  }
}

/** The seed of call `index` of a run with `seed`: every call can be regenerated alone. */
export function callSeed(seed: number, index: number): number {
  return (seed + Math.imul(index + 1, 0x9e3779b1)) >>> 0;
}

// ---------------------------------------------------------------------------------------------
// Traps and odd objects.

function throwingGetters(keys: readonly string[]): Arg {
  const o: Record<string, unknown> = {};
  for (const k of keys) Object.defineProperty(o, k, { enumerable: true, get: () => { throw new FuzzTrap(`getter ${k}`); } });
  return arg(o, `{getters that throw: ${keys.join(', ')}}`);
}

const TRAP_HANDLER: ProxyHandler<object> = Object.fromEntries(
  ['get', 'set', 'has', 'ownKeys', 'getOwnPropertyDescriptor', 'getPrototypeOf', 'defineProperty', 'deleteProperty', 'apply', 'construct', 'isExtensible', 'preventExtensions', 'setPrototypeOf']
    .map((trap) => [trap, () => { throw new FuzzTrap(`proxy ${trap}`); }]),
);

/** Odd values of every type: the pool every parameter's wrong values also draw from. */
export const JUNK: readonly ((g: Gen) => Arg)[] = [
  () => arg(undefined, 'undefined'),
  () => arg(null, 'null'),
  () => arg(true, 'true'),
  () => arg(false, 'false'),
  () => arg(0, '0'),
  () => arg(-0, '-0'),
  () => arg(-1, '-1'),
  () => arg(1.5, '1.5'),
  () => arg(Number.NaN, 'NaN'),
  () => arg(Infinity, 'Infinity'),
  () => arg(-Infinity, '-Infinity'),
  () => arg(2 ** 53 + 2, '2**53+2'),
  () => arg(Number.MAX_VALUE, 'MAX_VALUE'),
  () => arg(Number.MIN_VALUE, 'MIN_VALUE'),
  () => arg('', "''"),
  () => arg('cpu', "'cpu'"),
  () => arg('3', "'3'"),
  () => arg('\u0000\ud800', "'\\0\\ud800'"),
  () => arg(Symbol('s'), 'Symbol()'),
  () => arg(3n, '3n'),
  () => arg({}, '{}'),
  () => arg([], '[]'),
  () => arg([1, 2], '[1, 2]'),
  () => arg([, 1], '[<hole>, 1]'),
  () => arg(Object.create(null), 'Object.create(null)'),
  () => arg(() => 1, '() => 1'),
  () => arg(() => { throw new FuzzTrap('function'); }, '() => { throw }'),
  () => arg(new Date(0), 'Date'),
  () => arg(/x/, '/x/'),
  () => arg(new Map([[1, 2]]), 'Map'),
  () => arg(Promise.resolve(1), 'Promise'),
  () => arg(new Error('e'), 'Error'),
  () => arg(new Number(2), 'new Number(2)'),
  () => arg({ valueOf: () => 2, toString: () => '2' }, '{valueOf: 2}'),
  () => arg({ [Symbol.toPrimitive]: () => { throw new FuzzTrap('toPrimitive'); }, toString: () => { throw new FuzzTrap('toString'); } }, '{toPrimitive throws}'),
  () => arg(new Proxy({}, TRAP_HANDLER), 'Proxy(all traps throw)'),
  () => arg(new Proxy([1, 2], TRAP_HANDLER), 'Proxy([1, 2], all traps throw)'),
  () => {
    const r = Proxy.revocable({}, {});
    r.revoke();
    return arg(r.proxy, 'revoked Proxy');
  },
  () => arg(Object.freeze({ a: 1 }), 'frozen {a}'),
  () => arg(new Float32Array(4), 'Float32Array(4)'),
  () => arg(new Float64Array(4), 'Float64Array(4)'),
  () => arg(new Int32Array(4), 'Int32Array(4)'),
  () => arg(new Uint8Array(4), 'Uint8Array(4)'),
  () => arg(new BigInt64Array(2), 'BigInt64Array(2)'),
  () => arg(new ArrayBuffer(16), 'ArrayBuffer(16)'),
  () => arg(new DataView(new ArrayBuffer(8)), 'DataView'),
  () => arg(Buffer.from('abc'), 'Buffer'),
  () => arg(detachedFloat32(), 'detached Float32Array'),
  () => arg(new Array(1000), 'new Array(1000) (holes)'),
  (g) => throwingGetters(g.pick([['0'], ['length'], ['shape', 'dtype'], ['lr', 'kernel', 'batchSize', 'depth']])),
];

/** A resizable ArrayBuffer (ES2024; the typings here are ES2023). */
export function resizable(bytes: number, maxByteLength: number): ArrayBuffer {
  return new (ArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => ArrayBuffer)(bytes, { maxByteLength });
}

function detachedFloat32(): Float32Array {
  const a = new Float32Array(4);
  structuredClone(a.buffer, { transfer: [a.buffer] });
  return a;
}

export function junk(g: Gen): Arg {
  return g.pick(JUNK)(g);
}

// ---------------------------------------------------------------------------------------------
// Schemas.

/** A schema from its two halves; `bad` also draws from JUNK a quarter of the time. */
function schema(ok: (g: Gen) => Arg, bad: readonly ((g: Gen) => Arg)[], optional = false): Schema {
  return { ok, bad: (g) => (bad.length === 0 || g.chance(0.25) ? junk(g) : g.pick(bad)(g)), optional };
}

/** Makes a schema optional: undefined is valid, and the valid value is given most of the time. */
export function opt(s: Schema): Schema {
  return { ok: (g) => (g.chance(0.2) ? arg(undefined, 'undefined') : s.ok(g)), bad: s.bad, optional: true };
}

/** Null is also valid. */
export function nullable(s: Schema): Schema {
  return { ok: (g) => (g.chance(0.2) ? arg(null, 'null') : s.ok(g)), bad: s.bad, optional: s.optional };
}

export function constant(v: unknown, d: string, bad: readonly ((g: Gen) => Arg)[] = []): Schema {
  return schema(() => arg(v, d), bad);
}

const num = (v: number) => () => arg(v, Object.is(v, -0) ? '-0' : String(v));

/** Sizes and counts that are wrong wherever an integer is expected (but cheap to refuse). */
const BAD_INTS = [0, -1, -0.5, 1.5, 2.5, Number.NaN, Infinity, -Infinity, 2 ** 53, 2 ** 53 + 2, 1e308, -(2 ** 31) - 1, 2 ** 64].map(num);

/** An integer parameter: `valid` values, `large` values that are valid but should be refused or cheap. */
export function int(valid: readonly number[], extraBad: readonly number[] = []): Schema {
  return schema((g) => {
    const v = g.pick(valid);
    return arg(v, String(v));
  }, [...BAD_INTS, ...extraBad.map(num), () => arg(String(valid[0]), `'${valid[0]}'`), () => arg(new Number(valid[0]), `new Number(${valid[0]})`), () => arg(BigInt(valid[0]!), `${valid[0]}n`)]);
}

/** A finite number parameter. */
export function number(valid: readonly number[], extraBad: readonly number[] = []): Schema {
  return schema((g) => {
    const v = g.pick(valid);
    return arg(v, String(v));
  }, [num(Number.NaN), num(Infinity), num(-Infinity), num(-1), num(1e308), num(-1e-300), ...extraBad.map(num), () => arg(`${valid[0]}`, `'${valid[0]}'`)]);
}

export function bool(): Schema {
  return schema((g) => (g.chance(0.5) ? arg(true, 'true') : arg(false, 'false')), [num(0), num(1), () => arg('true', "'true'"), () => arg(new Boolean(false), 'new Boolean(false)')]);
}

/** One of a few strings. */
export function oneOf(valid: readonly unknown[]): Schema {
  return schema((g) => {
    const v = g.pick(valid);
    return arg(v, typeof v === 'string' ? `'${v}'` : String(v));
  }, [() => arg('x'.repeat(10_000), "'x'*10000"), () => arg('CPU', "'CPU'"), () => arg('__proto__', "'__proto__'"), () => arg('toString', "'toString'"), num(11), num(99)]);
}

/** Wrong pairs of integers (as the ops' stride/padding/kernel take them). */
const BAD_PAIRS: readonly ((g: Gen) => Arg)[] = [
  ...BAD_INTS,
  () => arg([1], '[1]'),
  () => arg([1, 1, 1], '[1, 1, 1]'),
  () => arg([0, 1], '[0, 1]'),
  () => arg([1, -1], '[1, -1]'),
  () => arg([1.5, 1], '[1.5, 1]'),
  () => arg([Number.NaN, 1], '[NaN, 1]'),
  // Beyond int32 for the native side; for a layer's kernel beyond a typed array (2^31 would be a
  // valid 16 GiB weight, which is not the fuzzer's to ask for).
  () => arg([2 ** 32, 1], '[2**32, 1]'),
  () => arg([2 ** 30 - 1, 2 ** 30 - 1], '[2**30-1, 2**30-1]'),
  () => arg([1e15, 1], '[1e15, 1]'),
  () => arg(['1', 1], "['1', 1]"),
  () => arg([, 1], '[<hole>, 1]'),
  () => arg(Int32Array.of(1, 1), 'Int32Array [1, 1]'),
  () => arg(new Proxy([1, 1], { get: (t, k) => (k === '0' ? (() => { throw new FuzzTrap('pair[0]'); })() : Reflect.get(t, k)) }), 'Proxy([1, 1]) whose [0] throws'),
];

/** A number or a pair of numbers, each one of `valid`. */
export function pair(valid: readonly number[], extraBad: readonly number[] = []): Schema {
  return schema((g) => {
    if (g.chance(0.5)) {
      const v = g.pick(valid);
      return arg(v, String(v));
    }
    const v = [g.pick(valid), g.pick(valid)];
    return arg(v, `[${v.join(', ')}]`);
  }, [...BAD_PAIRS, ...extraBad.map(num)]);
}

/** A native-side pair: always an array of exactly two integers. */
export function nativePair(valid: readonly number[]): Schema {
  return schema((g) => {
    const v = [g.pick(valid), g.pick(valid)];
    return arg(v, `[${v.join(', ')}]`);
  }, BAD_PAIRS);
}

/** Wrong shapes: negative, zero, fractional, NaN, huge, rank above 5, not arrays. */
const BAD_SHAPES: readonly ((g: Gen) => Arg)[] = [
  () => arg([2, -3], '[2, -3]'),
  () => arg([0], '[0]'),
  () => arg([2.5], '[2.5]'),
  () => arg([Number.NaN], '[NaN]'),
  () => arg([Infinity], '[Infinity]'),
  () => arg([2 ** 20, 2 ** 20], '[2**20, 2**20]'),
  () => arg([2 ** 35], '[2**35]'),
  () => arg([2 ** 53 + 2], '[2**53+2]'),
  () => arg([2 ** 31, 2 ** 31, 2 ** 31], '[2**31, 2**31, 2**31]'),
  () => arg([2 ** 32 + 1, 2 ** 32 + 1], '[2**32+1, 2**32+1]'),
  () => arg([1, 1, 1, 1, 1, 1], '[1, 1, 1, 1, 1, 1]'),
  () => arg(new Array(2 ** 32 - 1), 'new Array(2**32-1) (holes)'),
  () => arg(['2'], "['2']"),
  () => arg([2n], '[2n]'),
  () => arg([, 2], '[<hole>, 2]'),
  () => arg('3', "'3'"),
  () => arg(3, '3'),
  () => arg(Int32Array.of(2, 2), 'Int32Array [2, 2]'),
  () => arg(new Proxy([2, 2], { get: (t, k) => (k === '1' ? (() => { throw new FuzzTrap('shape[1]'); })() : Reflect.get(t, k)) }), 'Proxy([2, 2]) whose [1] throws'),
  (g) => {
    // An array whose element getter changes the array: a check-then-use race in one call.
    const a = [2, 2];
    Object.defineProperty(a, 0, { enumerable: true, configurable: true, get: () => { a.length = 6; return 2; } });
    return arg(g.chance(0.5) ? a : [...a], '[2, 2] whose [0] getter grows it to rank 6');
  },
];

/** A shape: `valid` most of the time when valid is asked for. */
export function shape(valid: readonly (readonly number[])[]): Schema {
  return schema((g) => {
    const v = [...g.pick(valid)];
    return arg(v, `[${v.join(', ')}]`);
  }, BAD_SHAPES);
}

/** A tensor of `shape` (and dtype); its wrong values keep close to it so deeper checks run. */
export function tensor(shapeOf: readonly number[], opts: { dtype?: FixtureDType; requiresGrad?: boolean } = {}): Schema {
  const dtype = opts.dtype ?? 'float32';
  const other = dtype === 'float32' ? 'int32' : 'float32';
  const s = [...shapeOf];
  return schema((g) => g.fx.tensor(g, s, { dtype, requiresGrad: opts.requiresGrad ?? (dtype === 'float32' && g.chance(0.3)) }), [
    (g) => {
      const t = g.fx.tensor(g, s, { dtype });
      (t.v as { dispose(): void }).dispose();
      return arg(t.v, `${t.d} (disposed)`);
    },
    (g) => g.fx.tensor(g, s, { dtype: other }),
    (g) => g.fx.tensor(g, s, { dtype: dtype === 'bfloat16' ? 'float32' : 'bfloat16' }),
    (g) => g.fx.tensor(g, s.length > 1 ? s.slice(1) : [...s, 2], { dtype }),
    (g) => g.fx.tensor(g, [...s, 1], { dtype }),
    (g) => {
      const bent = s.length === 0 ? [2] : s.map((d, i) => (i === g.int(s.length) ? d + 1 + g.int(3) : d));
      return g.fx.tensor(g, bent, { dtype });
    },
    (g) => g.fx.tensor(g, s.length === 0 ? [1] : s.map(() => 1), { dtype }),
    (g) => g.fx.tensor(g, s, { dtype, instance: 'other' }),
    (g) => g.fx.tensor(g, s, { dtype, backend: 'cuda' }),
    (g) => g.fx.forgedTensor(g, s),
    (g) => g.fx.computed(g, s),
    (g) => g.fx.handle(g, s, { dtype }),
    (g) => arg({ shape: s, dtype, backend: 'cpu', _buf: {} }, `{shape: [${s}], dtype, backend, _buf}`),
    () => arg(new Float32Array(s.reduce((a, b) => a * b, 1)), `Float32Array(${s.reduce((a, b) => a * b, 1)})`),
    (g) => {
      const t = g.fx.tensor(g, s, { dtype });
      return arg(new Proxy(t.v as object, {}), `Proxy(${t.d})`);
    },
  ]);
}

/** A native buffer handle of `shape`; wrong ones are released, foreign, forged or mis-shaped. */
export function handle(shapeOf: readonly number[], opts: { dtype?: FixtureDType } = {}): Schema {
  const dtype = opts.dtype ?? 'float32';
  const s = [...shapeOf];
  return schema((g) => g.fx.handle(g, s, { dtype }), [
    (g) => g.fx.badHandle(g, s),
    (g) => g.fx.badHandle(g, s),
    (g) => g.fx.handle(g, s, { dtype, instance: 'foreign' }),
    (g) => g.fx.handle(g, s, { dtype, instance: 'other-backend' }),
    (g) => g.fx.handle(g, s, { dtype: dtype === 'float32' ? 'int32' : 'float32' }),
    (g) => g.fx.handle(g, s, { dtype: dtype === 'bfloat16' ? 'float32' : 'bfloat16' }),
    (g) => g.fx.handle(g, s.length > 1 ? s.slice(1) : [...s, 2], { dtype }),
    (g) => g.fx.handle(g, s.length === 0 ? [3] : s.map((d, i) => (i === g.int(s.length) ? d + 1 : d)), { dtype }),
    (g) => g.fx.handle(g, [1], { dtype }),
    (g) => g.fx.tensor(g, s, { dtype }),
  ]);
}

/** An options object with the given fields; wrong ones break one field, add an unknown key, or are not plain objects. */
export function obj(fields: Record<string, Schema>, opts: { keys?: readonly string[] } = {}): Schema {
  const names = Object.keys(fields);
  const make = (g: Gen, breakKey: string | null): Arg => {
    const o: Record<string, unknown> = {};
    const parts: string[] = [];
    for (const k of names) {
      const f = fields[k]!;
      if (k !== breakKey && f.optional && g.chance(0.4)) continue;
      const a = k === breakKey ? f.bad(g) : f.ok(g);
      if (a.v === undefined && f.optional && k !== breakKey) continue;
      o[k] = a.v;
      parts.push(`${k}: ${a.d}`);
    }
    return arg(o, `{${parts.join(', ')}}`);
  };
  return schema((g) => make(g, null), [
    (g) => make(g, names.length ? g.pick(names) : null),
    (g) => make(g, names.length ? g.pick(names) : null),
    (g) => make(g, names.length ? g.pick(names) : null),
    (g) => {
      const a = make(g, null);
      (a.v as Record<string, unknown>)[g.pick(['unknownKey', '__proto__', 'constructor', 'toString', ''])] = 1;
      return arg(a.v, `${a.d} + unknown key`);
    },
    (g) => {
      const required = names.filter((k) => !fields[k]!.optional);
      const a = make(g, null);
      if (required.length) delete (a.v as Record<string, unknown>)[g.pick(required)];
      return arg(a.v, `${a.d} less a required key`);
    },
    (g) => throwingGetters(opts.keys ?? (names.length ? [g.pick(names)] : ['x'])),
    (g) => {
      const a = make(g, null);
      return arg(Object.create(a.v as object), `Object.create(${a.d}) (inherited keys)`);
    },
    (g) => {
      const a = make(g, null);
      return arg(new Proxy(a.v as object, { ownKeys: () => { throw new FuzzTrap('ownKeys'); } }), `Proxy(${a.d}) whose ownKeys throws`);
    },
    (g) => {
      const a = make(g, null);
      return arg(new Proxy(a.v as object, { get: (t, k) => (typeof k === 'string' && names.includes(k) ? Number.NaN : Reflect.get(t, k)) }), `Proxy(${a.d}) reading NaN`);
    },
    () => arg([], '[]'),
  ]);
}

/** A value of one schema or the other. */
export function either(a: Schema, b: Schema): Schema {
  return { ok: (g) => (g.chance(0.5) ? a.ok(g) : b.ok(g)), bad: (g) => (g.chance(0.5) ? a.bad(g) : b.bad(g)), optional: a.optional || b.optional };
}

/** A schema made by a function of the generator (fixtures that are not tensors). */
export function custom(ok: (g: Gen) => Arg, bad: readonly ((g: Gen) => Arg)[] = []): Schema {
  return schema(ok, bad);
}

/** Any value at all: valid is junk too. */
export const anything: Schema = { ok: junk, bad: junk };

/** A function; wrong ones are not functions or throw. */
export function fn(valid: (g: Gen) => Arg): Schema {
  return schema(valid, [
    () => arg(() => { throw new FuzzTrap('callback'); }, '() => { throw }'),
    () => arg(() => Number.NaN, '() => NaN'),
    () => arg(() => 'x', "() => 'x'"),
    () => arg(async () => 1, 'async () => 1'),
    () => arg(class {}, 'class {}'),
  ]);
}
