/**
 * Where a backend's time goes: per-op execution times recorded by its worker.
 * @module
 */
import { checkBool, checkOptions, show } from '../util/check.js';
import { type BackendName, parseBackend } from './backends.js';
import { bindingOf } from './load.js';
import type { NativeProfile } from './binding.js';

/** The worker's time for one op name (or, with `byShape`, one op on inputs of given shapes). */
export interface OpTime {
  /**
   * The native op: `conv2d`, `conv2dBackwardData`, `batchNormForwardTraining`, `sgdStep`, …;
   * with `byShape`, followed by its inputs' shapes: `conv2d [16, 64, 56, 56] [64, 64, 3, 3]`.
   */
  op: string;
  /** How many times it ran. */
  calls: number;
  /** Its total wall time on the worker, in milliseconds. */
  totalMs: number;
}

/** What `profile()` measured. */
export interface Profile {
  backend: BackendName;
  /** From the start of `fn` until all the work it enqueued had run. */
  wallMs: number;
  /** Time the backend's worker spent running ops (the sum of `ops[].totalMs`). */
  busyMs: number;
  /**
   * `wallMs - busyMs`: time the worker waited for the JavaScript thread to enqueue work (plus
   * the final hand-back of the result). Large when the JS side, not the ops, limits speed.
   */
  idleMs: number;
  /** Per op name, the most time first. */
  ops: OpTime[];
}

/** Options of `profile`. */
export interface ProfileOptions {
  /** The backend to profile (default: `defaultBackend()`). */
  backend?: BackendName;
  /**
   * One entry per op and input shapes rather than per op (default false): which convolution of
   * a network takes the time, say.
   */
  byShape?: boolean;
}

const active = new Set<BackendName>();

/**
 * Runs `fn` (which enqueues work: a training step, say) and reports how long each native op it
 * caused took on the backend's worker, and how long the worker sat idle waiting for JavaScript.
 * Waits for earlier work to finish before it starts, and for `fn`'s work after.
 *
 * ```ts
 * const p = await profile(() => { trainStep(); });
 * for (const o of p.ops) console.log(o.op, o.calls, o.totalMs.toFixed(2));
 * ```
 *
 * Off (outside `profile`), recording costs nothing measurable. CPU: times are those of the
 * oneDNN calls on the worker. CUDA: each op waits for its GPU work while profiling, so the times
 * are execution times, but the GPU no longer overlaps with launches: `wallMs` is longer than
 * without profiling. One profile at a time per backend.
 */
export async function profile(fn: () => unknown, options?: ProfileOptions): Promise<Profile> {
  if (typeof fn !== 'function') throw new TypeError(`profile: expected a function, got ${show(fn)}`);
  const opts = checkOptions('profile', options, ['backend', 'byShape']);
  const backend = parseBackend('profile', opts.backend);
  const byShape = opts.byShape === undefined ? false : checkBool('profile', 'byShape', opts.byShape);
  if (active.has(backend)) throw new Error(`profile: backend '${backend}' is already being profiled`);
  const binding = bindingOf(backend);
  active.add(backend);
  let result: NativeProfile;
  try {
    await binding.sync();
    binding.startProfile(byShape);
    try {
      await fn();
      await binding.sync();
    } finally {
      result = binding.stopProfile();
    }
  } finally {
    active.delete(backend);
  }
  const ops = [...result.ops].sort((a, b) => b.totalMs - a.totalMs);
  return { backend, wallMs: result.wallMs, busyMs: result.busyMs, idleMs: Math.max(0, result.wallMs - result.busyMs), ops };
}
