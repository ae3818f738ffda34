/**
 * A whole training step captured into a CUDA graph and replayed (PyTorch's `torch.cuda.graphs`
 * and `make_graphed_callables`, with a capturable optimizer).
 * @module
 */
import type { Binding } from '../backend/binding.js';
import { captureRefusal, runInPhase } from '../tensor/capture-phase.js';
import { isTensor } from '../tensor/is-tensor.js';
import { type DType, Tensor } from '../tensor/tensor.js';
import { checkBool, checkInt, checkOptions, show } from '../util/check.js';

export interface CaptureStepOptions {
  /** Eager calls of each input shape before one is captured (default 3, at least 1). */
  warmup?: number;
  /**
   * Most graphs the step holds, one per input shape (default 4); calls of further shapes run
   * eagerly. Each graph keeps the memory of every buffer its step uses.
   */
  maxGraphs?: number;
  /** false: every call runs `fn` eagerly, without the capture's rules (default true). */
  enabled?: boolean;
}

/** What a step function may return: nothing, a tensor, or an array of tensors. */
export type StepOutput = Tensor<DType> | readonly Tensor<DType>[] | void;

/** A step function made by `captureStep`: call it like `fn`. */
export interface CapturedStep<A extends Tensor<DType>[], R extends StepOutput> {
  (...inputs: A): R;
  /** Whether the last call replayed a graph (or captured one and launched it). */
  readonly captured: boolean;
  /** Why the last call ran `fn` eagerly; null when it replayed. */
  readonly reason: string | null;
  /** Graphs held now. */
  readonly graphs: number;
  /** Releases the graphs and the memory they keep; calls afterwards throw. */
  dispose(): void;
  [Symbol.dispose](): void;
}

interface Graph {
  id: number;
  binding: Binding;
  // Step-owned copies of the inputs the graph reads, refilled before each replay.
  inputs: Tensor<DType>[];
  // Handles onto the buffers the graph writes its outputs to, shared out at each call.
  outputs: Tensor<DType>[];
  form: 'none' | 'tensor' | 'array';
  // Host-side effects of `fn` to repeat at each replay (capture-phase.ts, eachReplay).
  replay: (() => void)[];
}

interface Entry {
  calls: number;
  graph: Graph | null;
  // Why this shape runs eagerly from now on.
  failure: string | null;
}

function releaseGraph(g: Graph): void {
  g.binding.graphRelease(g.id);
  for (const t of [...g.inputs, ...g.outputs]) t.dispose();
}

/**
 * Makes `fn(...inputs)` — forward, backward and optimizer step, say — into a step function
 * whose calls, once the shapes of its inputs are known, replay a CUDA graph instead of
 * launching each op: the first `warmup` calls of each input shape run `fn` eagerly (cuDNN
 * chooses its algorithms, the optimizer starts its momentum and moves its learning rate to the
 * device); the next is recorded into a graph, which that call launches and every later call of
 * the same shapes replays, after copying the new inputs into the graph's own.
 *
 * The captured call's work is recorded once, so inside `fn` after the warm-up (on every backend,
 * so that a step that runs on the CPU runs on a GPU):
 * - nothing may wait for the device or read JavaScript memory: `data()`, `item()`,
 *   `dataSync()`, `sync()`, `tensor(array)`, labels given as an array, collectives and changes
 *   of an optimizer's `lr` throw an `ERR_CAPTURE_REFUSED` error (set `lr` before the call: the
 *   replays read it from device memory);
 * - host-side decisions are made once: stochastic depth is refused; an SGD momentum buffer must
 *   start in the warm-up;
 * - the same tensors must be used: `fn` sees the step's copies of the inputs, and parameters,
 *   optimizer state and anything else it uses must not be replaced while the step lives (the
 *   graph keeps and updates the memory they had). Make a new step after loading a checkpoint.
 *
 * Outputs: each call returns new handles onto the same memory, which the next call overwrites;
 * dispose them as usual. A refusal or failure during the capture throws (for a failure on the
 * device, at the next sync point), and the shapes concerned run eagerly from the next call on.
 * Calls of more input shapes than `maxGraphs` run eagerly. On the CPU backend, which has no
 * graphs, every call runs `fn` eagerly, under the rules above after the warm-up;
 * `step.captured` and `step.reason` say which way each call ran.
 */
export function captureStep<A extends Tensor<DType>[], R extends StepOutput>(fn: (...inputs: A) => R,
  options?: CaptureStepOptions): CapturedStep<A, R> {
  const op = 'captureStep';
  if (typeof fn !== 'function') throw new TypeError(`${op}: expected a step function, got ${show(fn)}`);
  const opts = checkOptions(op, options, ['warmup', 'maxGraphs', 'enabled']);
  const warmup = opts.warmup === undefined ? 3 : checkInt(op, 'warmup', opts.warmup, 1);
  const maxGraphs = opts.maxGraphs === undefined ? 4 : checkInt(op, 'maxGraphs', opts.maxGraphs, 0);
  const enabled = opts.enabled === undefined ? true : checkBool(op, 'enabled', opts.enabled);
  const entries = new Map<string, Entry>();
  let graphs = 0;
  let captured = false;
  let reason: string | null = null;
  let disposed = false;

  const eager = (why: string, inputs: A, phase: 'warmup' | 'checked' | null): R => {
    captured = false;
    reason = why;
    return phase ? runInPhase(phase, () => fn(...inputs)).result : fn(...inputs);
  };

  const shareOut = (g: Graph): R => {
    const shares = g.outputs.map((t) => Tensor._wrap(g.binding.share(t._live(op, 'an output')), t.shape, t.backend, t.dtype));
    return (g.form === 'none' ? undefined : g.form === 'tensor' ? shares[0] : shares) as R;
  };

  const capture = (entry: Entry, inputs: A): R => {
    const first = inputs[0]!;
    const b = first._binding();
    const statics = inputs.map((t, i) => {
      const s = Tensor._wrapUntracked(b.zerosLike(t._live(op, `inputs[${i}]`)), t.shape, t.backend, t.dtype);
      b.copyInto(s._buf!, t._buf!);
      return s;
    });
    let id: number;
    try {
      id = b.captureBegin();
    } catch (err) {
      for (const s of statics) s.dispose();
      throw err;
    }
    let result: R;
    let replay: (() => void)[];
    let outputs: Tensor<DType>[];
    try {
      ({ result, replay } = runInPhase('capture', () => fn(...(statics as A))));
      outputs = result === undefined ? [] : isTensor(result) ? [result] : Array.isArray(result) ? [...result] : [result as never];
      outputs.forEach((t, i) => {
        if (!isTensor(t) || t.isDisposed || t.backend !== first.backend) {
          throw new TypeError(`${op}: expected the step function to return nothing, a tensor or an array of live ${first.backend} tensors; ` +
            `output ${i} is ${show(t)}`);
        }
      });
      b.captureEnd();
    } catch (err) {
      b.captureAbort();
      b.graphRelease(id);
      for (const s of statics) s.dispose();
      entry.failure = `its capture failed: ${(err as Error).message}`;
      captured = false;
      reason = entry.failure;
      throw err;
    }
    b.graphLaunch(id);
    const g: Graph = {
      id, binding: b, inputs: statics, replay,
      outputs: outputs.map((t) => Tensor._wrapUntracked(b.share(t._buf!), t.shape, t.backend, t.dtype)),
      form: result === undefined ? 'none' : isTensor(result) ? 'tensor' : 'array',
    };
    entry.graph = g;
    graphs++;
    captured = true;
    reason = null;
    return result;
  };

  const replay = (entry: Entry, g: Graph, inputs: A): R => {
    const status = g.binding.graphStatus(g.id);
    if (status.failure !== null) {
      entry.graph = null;
      graphs--;
      releaseGraph(g);
      entry.failure = `its capture failed: ${status.failure}`;
      return eager(entry.failure, inputs, null);
    }
    g.inputs.forEach((s, i) => {
      if (s.isDisposed) throw captureRefusal(op, `disposing the step's input ${i} (the graph reads it)`);
      g.binding.copyInto(s._buf!, inputs[i]!._live(op, `inputs[${i}]`));
    });
    g.binding.graphLaunch(g.id);
    for (const effect of g.replay) effect();
    captured = true;
    reason = null;
    return shareOut(g);
  };

  const step = (...inputs: A): R => {
    if (disposed) throw new Error(`${op}: the step is disposed`);
    if (inputs.length === 0) throw new TypeError(`${op}: a step takes at least one input tensor (its batch)`);
    inputs.forEach((t, i) => {
      if (!isTensor(t)) throw new TypeError(`${op}: inputs[${i}] is ${show(t)}, not a Tensor`);
      t._live(op, `inputs[${i}]`);
      if (t.backend !== inputs[0]!.backend) {
        throw new TypeError(`${op}: every input must be on one backend; inputs[0] is on ${inputs[0]!.backend}, inputs[${i}] on ${t.backend}`);
      }
    });
    if (!enabled) return eager('capture is disabled (enabled: false)', inputs, null);
    const backend = inputs[0]!.backend;
    const key = `${backend} ${inputs.map((t) => `${t.dtype}[${t.shape.join(',')}]`).join(' ')}`;
    let entry = entries.get(key);
    if (!entry) {
      entry = { calls: 0, graph: null, failure: null };
      entries.set(key, entry);
    }
    if (entry.failure !== null) return eager(entry.failure, inputs, null);
    if (entry.calls < warmup) {
      entry.calls++;
      return eager(`warm-up call ${entry.calls} of ${warmup} for inputs ${key}`, inputs, 'warmup');
    }
    if (entry.graph) return replay(entry, entry.graph, inputs);
    if (backend === 'cpu') {
      try {
        return eager('the cpu backend has no graphs: every call runs eagerly, under the rules of a captured step', inputs, 'checked');
      } catch (err) {
        if ((err as { code?: unknown }).code === 'ERR_CAPTURE_REFUSED') entry.failure = `it broke the rules of a captured step: ${(err as Error).message}`;
        throw err;
      }
    }
    if (graphs >= maxGraphs) return eager(`${graphs} graphs are held already (maxGraphs ${maxGraphs}); inputs ${key} run eagerly`, inputs, null);
    return capture(entry, inputs);
  };

  const dispose = (): void => {
    if (disposed) return;
    disposed = true;
    for (const e of entries.values()) if (e.graph) releaseGraph(e.graph);
    entries.clear();
    graphs = 0;
  };
  return Object.defineProperties(step, {
    captured: { get: () => captured, enumerable: true },
    reason: { get: () => reason, enumerable: true },
    graphs: { get: () => graphs, enumerable: true },
    dispose: { value: dispose },
    [Symbol.dispose]: { value: dispose },
  }) as unknown as CapturedStep<A, R>;
}
