/**
 * Stochastic gradient descent with momentum, Nesterov momentum and weight decay.
 * @module
 */
import type { NativeBuffer } from '../backend/binding.js';
import type { BackendName } from '../backend/load.js';
import { capturePhase, refuseInCapture } from '../tensor/capture-phase.js';
import { Tensor } from '../tensor/tensor.js';
import { isTensor } from '../tensor/is-tensor.js';
import { checkBool, checkNumber, checkOptions, show } from '../util/check.js';

export interface SGDOptions {
  /** Learning rate (≥ 0); can be changed between steps through `optimizer.lr`. */
  lr: number;
  /** Momentum factor (default 0). */
  momentum?: number;
  /** L2 penalty added to the gradient (default 0). */
  weightDecay?: number;
  /** Nesterov momentum (default false; needs momentum > 0). */
  nesterov?: boolean;
  /**
   * Keep the learning rate in device memory, where the step's kernels read it when they run, so
   * that a step captured into a CUDA graph follows later changes of `lr` (PyTorch's
   * `capturable`). Default false; `train.captureStep` turns it on in its warm-up calls.
   */
  capturable?: boolean;
}

/**
 * PyTorch's `torch.optim.SGD` (dampening 0): for each parameter with a gradient,
 * g = grad + weightDecay·p; buf = momentum·buf + g (buf = g on its first step);
 * g = nesterov ? g + momentum·buf : buf; p -= lr·g. One native call updates every parameter
 * of a backend.
 */
export class SGD {
  readonly params: readonly Tensor[];
  #lr: number;
  readonly momentum: number;
  readonly weightDecay: number;
  readonly nesterov: boolean;
  readonly #buffers = new Map<Tensor, Tensor>();
  #capturable: boolean;
  // Capturable: the learning rate as a float32 [1] per backend with parameters, rewritten by the
  // lr setter in queue order, so that a replayed step reads the value set before it was launched.
  readonly #lrBuffers = new Map<BackendName, Tensor>();

  constructor(params: Iterable<Tensor>, options: SGDOptions) {
    const op = 'SGD';
    if (params === null || typeof params !== 'object' || typeof (params as Iterable<Tensor>)[Symbol.iterator] !== 'function') {
      throw new TypeError(`${op}: expected an iterable of parameter tensors, got ${show(params)}`);
    }
    // Each parameter is checked as it is taken, so that an iterable of no end, or an array with
    // 2^32 - 1 holes, fails at its first wrong element instead of being copied whole.
    const list: Tensor[] = [];
    const seen = new Set<Tensor>();
    for (const p of params as Iterable<unknown>) {
      const i = list.length;
      if (!isTensor(p)) throw new TypeError(`${op}: params[${i}] is ${show(p)}, not a Tensor`);
      if (p.isDisposed) throw new Error(`${op}: params[${i}] (shape [${p.shape.join(', ')}]) is disposed`);
      if (!p.requiresGrad || p.gradFn !== null) {
        throw new TypeError(`${op}: params[${i}] (shape [${p.shape.join(', ')}]) must be a leaf tensor with requiresGrad = true`);
      }
      if (seen.has(p as Tensor)) throw new TypeError(`${op}: params[${i}] appears more than once`);
      seen.add(p as Tensor);
      list.push(p as Tensor);
    }
    if (list.length === 0) throw new RangeError(`${op}: got an empty parameter list`);
    const opts = checkOptions(op, options, ['lr', 'momentum', 'weightDecay', 'nesterov', 'capturable']);
    if (opts.lr === undefined) throw new TypeError(`${op}: the lr option is required`);
    this.params = list;
    this.#lr = checkNumber(op, 'lr', opts.lr, 0);
    this.momentum = opts.momentum === undefined ? 0 : checkNumber(op, 'momentum', opts.momentum, 0);
    this.weightDecay = opts.weightDecay === undefined ? 0 : checkNumber(op, 'weightDecay', opts.weightDecay, 0);
    this.nesterov = opts.nesterov === undefined ? false : checkBool(op, 'nesterov', opts.nesterov);
    if (this.nesterov && this.momentum === 0) throw new RangeError(`${op}: Nesterov momentum needs momentum > 0`);
    this.#capturable = opts.capturable === undefined ? false : checkBool(op, 'capturable', opts.capturable);
  }

  /** Whether the learning rate lives in device memory (see `SGDOptions.capturable`). */
  get capturable(): boolean {
    return this.#capturable;
  }

  get lr(): number {
    return this.#lr;
  }

  set lr(value: number) {
    const lr = checkNumber('SGD', 'lr', value, 0);
    if (lr === this.#lr) return;
    // Written inside a captured step, the new value would be part of the graph and come back at
    // every replay.
    if (this.#lrBuffers.size) refuseInCapture('SGD.lr', 'a change of the learning rate');
    this.#lr = lr;
    for (const t of this.#lrBuffers.values()) {
      const b = t._binding();
      const value = b.fill([1], lr, 'float32');
      b.copyInto(t._buf!, value);
      b.release(value);
    }
  }

  /** The capturable optimizer's learning-rate buffer on `owner`'s backend, made on first use. */
  #lrBuffer(owner: Tensor): NativeBuffer {
    let t = this.#lrBuffers.get(owner.backend);
    if (!t) {
      refuseInCapture('SGD.step', "moving the learning rate to the device (the step's warm-up calls do)");
      t = Tensor._wrapUntracked(owner._binding().fill([1], this.#lr, 'float32'), [1], owner.backend);
      this.#lrBuffers.set(owner.backend, t);
    }
    return t._buf!;
  }

  /** Updates every parameter that has a gradient, in place. */
  step(): void {
    const op = 'SGD.step';
    if (capturePhase() === 'warmup') this.#capturable = true;
    // Parameters whose momentum buffer starts now take buf = g; the rest continue theirs.
    const groups = new Map<string, { params: NativeBuffer[]; grads: NativeBuffer[]; bufs: NativeBuffer[]; first: boolean; owner: Tensor }>();
    this.params.forEach((p, i) => {
      const pb = p._live(op, `params[${i}]`);
      const g = p.grad;
      if (!g) return;
      const gb = g._live(op, `the gradient of params[${i}]`);
      let first = false;
      let buf: NativeBuffer | null = null;
      if (this.momentum !== 0) {
        let m = this.#buffers.get(p);
        if (!m) {
          // Its first step (buf = g) would be replayed as a first step every time.
          refuseInCapture(op, `the start of params[${i}]'s momentum buffer (the step's warm-up calls start it)`);
          m = Tensor._wrapUntracked(p._binding().zerosLike(pb), p.shape, p.backend);
          this.#buffers.set(p, m);
          first = true;
        }
        buf = m._buf!;
      }
      const key = `${p.backend}/${first}`;
      let group = groups.get(key);
      if (!group) {
        group = { params: [], grads: [], bufs: [], first, owner: p };
        groups.set(key, group);
      }
      group.params.push(pb);
      group.grads.push(gb);
      if (buf) group.bufs.push(buf);
    });
    for (const g of groups.values()) {
      g.owner._binding().sgdStep(g.params, g.grads, g.bufs, this.#lr, this.momentum, this.weightDecay, this.nesterov, g.first,
        this.#capturable ? this.#lrBuffer(g.owner) : null);
    }
  }

  /** Sets every parameter's gradient to null (freeing it), as PyTorch's `zero_grad()` does by default. */
  zeroGrad(): void {
    for (const p of this.params) if (!p.isDisposed) p.grad = null;
  }

  /**
   * The optimizer's state: each parameter's momentum buffer under `<index>.momentum_buffer`
   * (the parameter's position in `params`), as in PyTorch's `state_dict()['state']`. The
   * tensors are the optimizer's own (not copies): read them, do not dispose them.
   */
  stateDict(): Record<string, Tensor> {
    const out: Record<string, Tensor> = {};
    this.params.forEach((p, i) => {
      const m = this.#buffers.get(p);
      if (m) out[`${i}.momentum_buffer`] = m;
    });
    return out;
  }

  /** Restores momentum buffers saved by `stateDict()` (values are copied). */
  loadStateDict(state: Record<string, Tensor>): void {
    const op = 'SGD.loadStateDict';
    if (state === null || typeof state !== 'object') throw new TypeError(`${op}: expected an object of tensors, got ${show(state)}`);
    const incoming = new Map<Tensor, Tensor>();
    for (const [key, t] of Object.entries(state)) {
      const m = /^(\d+)\.momentum_buffer$/.exec(key);
      const p = m ? this.params[Number(m[1])] : undefined;
      if (!p) throw new RangeError(`${op}: unexpected key '${key}' (expected '<index>.momentum_buffer' for ${this.params.length} parameters)`);
      if (!isTensor(t) || t.isDisposed) throw new TypeError(`${op}: '${key}' is not a live Tensor`);
      if (t.shape.join() !== p.shape.join()) {
        throw new RangeError(`${op}: '${key}' has shape [${t.shape.join(', ')}], its parameter [${p.shape.join(', ')}]`);
      }
      incoming.set(p, t);
    }
    this.#disposeMomentum();
    for (const [p, t] of incoming) {
      this.#buffers.set(p, Tensor._wrapUntracked(p._binding().upload(t.dataSync() as Float32Array, [...p.shape]), p.shape, p.backend));
    }
  }

  /** Frees the momentum buffers and the device-side learning rate. The parameters are the caller's. */
  dispose(): void {
    this.#disposeMomentum();
    for (const t of this.#lrBuffers.values()) t.dispose();
    this.#lrBuffers.clear();
  }

  #disposeMomentum(): void {
    for (const m of this.#buffers.values()) m.dispose();
    this.#buffers.clear();
  }
}
