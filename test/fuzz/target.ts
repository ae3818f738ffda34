/**
 * What the boundary fuzzer calls: a target is a function with a schema for each argument. The
 * library's targets are in lib-targets.ts, the native addon's in native-targets.ts; exports and
 * methods that have no schema there are found here, by walking the exports, and get junk.
 * @module
 */
import { type Schema, junk } from './gen.js';
import type { World } from './world.js';

export type AnyFn = (...args: unknown[]) => unknown;

export interface TargetOptions {
  /** Share of calls generated with all arguments valid (default 0.1). 0 where a valid call is slow. */
  valid?: number;
  /** The first argument is the receiver of a method: a wrong one fails as any JavaScript method does. */
  receiver?: boolean;
  /** Run inside tidy(), as the documentation says to (a module's forward leaves intermediates). */
  scoped?: boolean;
  /** Internal (underscore or protected): engine errors for wrong arguments are not findings. */
  internal?: boolean;
  /** The backend of the native handles the call's arguments are made of (default 'cpu'). */
  backend?: string;
}

export interface Target extends TargetOptions {
  name: string;
  args: Schema[];
  call: AnyFn;
}

/** A method called on the receiver given as the first argument. */
const RECEIVER = Symbol('receiver');
type Method = AnyFn & { [RECEIVER]?: true };

export type Add = (name: string, args: Schema[], call: AnyFn, opts?: TargetOptions) => void;

export function asMethod(f: AnyFn): Method {
  return Object.assign(f, { [RECEIVER]: true as const });
}

/** `proto[name]` called as a method on the receiver given as the first argument. */
export function method(proto: object, name: string): Method {
  return asMethod((self, ...rest) => Reflect.apply((proto as Record<string, AnyFn>)[name]!, self, rest));
}

/** The setter `proto[name] = value` on the receiver given as the first argument. */
export function setter(proto: object, name: string): Method {
  return asMethod((self, v) => Reflect.set(proto, name, v, self));
}

/** An `add` that collects targets into `T`; names with `._` are internal. */
export function collector(T: Target[]): Add {
  return (name, args, call, opts = {}) => T.push({ name, args, call, receiver: (call as Method)[RECEIVER] === true, internal: /\._|^Tensor\._/.test(name), ...opts });
}

/** The receiver of a method without a schema: always junk. */
export const JUNK_RECEIVER: Schema = { ok: junk, bad: junk };

// ---------------------------------------------------------------------------------------------
// Every export reached: functions and methods without a target in lib-targets.ts or
// native-targets.ts get one of junk arguments.

export function autoTargets(w: World, T: Target[]): string[] {
  const have = new Set(T.map((t) => t.name.split(' ')[0]!));
  const missing: string[] = [];
  const junkArgs = [{ ok: junk, bad: junk, optional: true }, { ok: junk, bad: junk, optional: true }, { ok: junk, bad: junk, optional: true }];
  // The receiver of a method without a schema is junk too, always.
  const junkReceiver = [JUNK_RECEIVER, ...junkArgs];
  const visit = (name: string, v: unknown) => {
    if (typeof v !== 'function') return;
    if (!have.has(name) && !have.has(`${name}=`)) {
      missing.push(name);
      // The Tensor constructor is private: the factories are its public face.
      T.push({ name, args: junkArgs, internal: name === 'Tensor', call: (...a) => (isClass(v) ? Reflect.construct(v as new (...x: unknown[]) => unknown, a) : (v as AnyFn)(...a)) });
    }
    const proto = (v as { prototype?: object }).prototype;
    if (!proto || !isClass(v)) return;
    for (const key of Object.getOwnPropertyNames(proto)) {
      if (key === 'constructor') continue;
      const full = `${name.replace(/^(nn|models|optim|data|train)\./, '')}.${key}`;
      if (have.has(full) || have.has(`${full}=`) || have.has(`${name}.${key}`)) continue;
      missing.push(full);
      const d = Object.getOwnPropertyDescriptor(proto, key)!;
      T.push({
        name: full, args: junkReceiver, receiver: true, internal: key === 'afterLoad' || key === 'beforeExport',
        call: (self, ...a) => (d.get || d.set ? (d.set ? Reflect.set(proto, key, a[0], self) : Reflect.get(proto, key, self)) : Reflect.apply(d.value as AnyFn, self, a)),
      });
    }
  };
  for (const [k, v] of Object.entries(w.lib)) {
    if (typeof v === 'function') visit(k, v);
    else if (v && typeof v === 'object' && !Array.isArray(v)) for (const [k2, v2] of Object.entries(v)) visit(`${k}.${k2}`, v2);
  }
  for (const [be, native] of Object.entries(w.natives)) {
    // shutdown() stops the backend for good (load.ts calls it once, on 'exit'): a target of
    // its own would end the run; test/teardown.test.ts covers it.
    for (const [k, v] of Object.entries(native)) if (typeof v === 'function' && k !== 'NativeBuffer' && k !== 'shutdown') visit(be === 'cpu' ? `binding.${k}` : `binding(${be}).${k}`, v);
  }
  return missing;
}

function isClass(v: unknown): boolean {
  return typeof v === 'function' && /^class\b/.test(Function.prototype.toString.call(v));
}
