/**
 * Data parallelism: `DistributedDataParallel` wraps a module so that every rank's gradients are
 * averaged after each backward, as PyTorch's does.
 *
 * How (PyTorch's reducer): the parameters are grouped into buckets of about `bucketMB`, in the
 * reverse order of `parameters()` (the order backward produces their gradients). While
 * `backward()` walks the graph, a bucket's all-reduce is started the moment its last gradient is
 * final (autograd/hooks.ts), and the walk goes on enqueueing the rest of backward: on the CPU,
 * Gloo's thread communicates while the worker computes the earlier layers' gradients. When the
 * walk ends, the buckets are waited for (in the queue, not in JavaScript) and each parameter's
 * `grad` becomes the mean over the ranks. Buckets start in bucket order on every rank, so the
 * ranks' collectives match.
 * @module
 */
import { observeBackward } from '../autograd/hooks.js';
import { finish, startAllReduce, broadcastAll, type Pending } from '../distributed/collectives.js';
import { currentGroup } from '../distributed/process-group.js';
import type { Tensor } from '../tensor/tensor.js';
import { checkBool, checkNumber, checkOptions } from '../util/check.js';
import { Module } from './module.js';

/** Options of {@link DistributedDataParallel}. */
export interface DistributedDataParallelOptions {
  /** The size of a gradient bucket in MiB (default 25, PyTorch's). */
  bucketMB?: number;
  /**
   * Copy rank 0's buffers (batch norm's running statistics) to every rank at each training
   * forward, as PyTorch's `broadcast_buffers` (default true). Evaluation forwards do not, so
   * that ranks may evaluate shards of different sizes.
   */
  broadcastBuffers?: boolean;
}

interface Bucket {
  params: Tensor[];
  ready: number;
  pending: Pending | null;
}

/** Gives `tensors` rank 0's values, in one broadcast. */
function fromRankZero(tensors: readonly Tensor[]): void {
  if (tensors.length === 0) return;
  const copies = broadcastAll(tensors, 0);
  tensors.forEach((t, i) => {
    t._assign(copies[i]!);
    copies[i]!.dispose();
  });
}

/**
 * Wraps `module` for data-parallel training in the current process group
 * (`distributed.init()` first). At construction, rank 0's parameters and buffers are copied to
 * every rank, and rank 0's buffers again at each training forward (`broadcastBuffers`); after
 * each `backward()` through its output, every parameter's `grad` is the mean of all ranks'
 * gradients, computed in buckets that overlap the rest of backward. Parameter
 * names get the prefix `module.`, as in PyTorch; save `ddp.module`'s state dict for a model that
 * loads without it.
 *
 * Every rank must run the same forward and backward (the same model, the same number of steps):
 * a rank that stops taking part makes the others fail after the group's timeout.
 */
export class DistributedDataParallel extends Module {
  /** The wrapped module. */
  readonly module: Module;
  /** Whether each training forward starts from rank 0's buffers (see the options). */
  readonly broadcastBuffers: boolean;
  readonly #buckets: Bucket[] = [];
  readonly #bucketOf = new Map<Tensor, Bucket>();
  readonly #unobserve: () => void;
  #syncing = true;
  #nextLaunch = 0;
  #active = false;

  constructor(module: Module, options?: DistributedDataParallelOptions) {
    super();
    const op = 'DistributedDataParallel';
    if (!(module instanceof Module)) throw new TypeError(`${op}: expected a Module to wrap`);
    const o = checkOptions(op, options, ['bucketMB', 'broadcastBuffers']);
    const bucketBytes = checkNumber(op, 'bucketMB', o.bucketMB ?? 25, 0, 1 << 20, { exclusiveMin: true }) * 2 ** 20;
    this.broadcastBuffers = o.broadcastBuffers === undefined ? true : checkBool(op, 'broadcastBuffers', o.broadcastBuffers);
    const group = currentGroup(op);
    this.module = this.addModule('module', module);
    const params = module.parameters().filter((p) => p.requiresGrad);
    for (const p of params) {
      if (p.backend !== group.device) throw new TypeError(`${op}: the ${group.backend} process group trains ${group.device} parameters, got ${p.toString()}`);
    }
    let current: Bucket | null = null;
    let bytes = 0;
    for (const p of [...params].reverse()) {
      if (!current || bytes + p.size * 4 > bucketBytes) {
        current = { params: [], ready: 0, pending: null };
        this.#buckets.push(current);
        bytes = 0;
      }
      current.params.push(p);
      bytes += p.size * 4;
      this.#bucketOf.set(p, current);
    }
    // Every rank starts from rank 0's weights and statistics.
    if (group.worldSize > 1) fromRankZero([...module.parameters(), ...this.#buffers()]);
    this.#unobserve = observeBackward({ leafReady: (leaf) => this.#leafReady(leaf), end: (failed) => this.#end(failed) });
  }

  /** Runs the wrapped module; in training, from rank 0's buffers first (`broadcastBuffers`). */
  forward(x: Tensor): Tensor {
    if (this.broadcastBuffers && this.training && currentGroup('DistributedDataParallel').worldSize > 1) fromRankZero(this.#buffers());
    return this.module.forward(x);
  }

  /** The float32 buffers of the wrapped module (running statistics; not the int32 batch counts). */
  #buffers(): Tensor[] {
    return this.module.namedBuffers().map(([, b]) => b as Tensor).filter((b) => b.dtype === 'float32');
  }

  /**
   * Runs `fn` without averaging gradients: backward passes inside it only accumulate into
   * `grad` locally (gradient accumulation); the next backward outside averages the sum.
   * `fn` may return a promise: averaging resumes when it settles.
   */
  noSync<T>(fn: () => T): T {
    if (typeof fn !== 'function') throw new TypeError('noSync: expected a function');
    const was = this.#syncing;
    this.#syncing = false;
    let result: T;
    try {
      result = fn();
    } catch (err) {
      this.#syncing = was;
      throw err;
    }
    if (result instanceof Promise) {
      return result.finally(() => {
        this.#syncing = was;
      }) as T;
    }
    this.#syncing = was;
    return result;
  }

  #leafReady(leaf: Tensor): void {
    const bucket = this.#bucketOf.get(leaf);
    if (!bucket || !this.#syncing) return;
    this.#active = true;
    bucket.ready++;
    this.#launchReady();
  }

  /** Starts, in bucket order, every bucket whose gradients are all final. */
  #launchReady(all = false): void {
    while (this.#nextLaunch < this.#buckets.length) {
      const b = this.#buckets[this.#nextLaunch]!;
      if (!all && b.ready < b.params.length) return;
      // A parameter that got no gradient this step contributes zeros, so every rank sends the
      // same bucket.
      const zeros: Tensor[] = [];
      const grads = b.params.map((p) => {
        if (p.grad) return p.grad;
        const z = p._wrapLike(p._binding().zerosLike(p._live('DistributedDataParallel', 'a parameter')));
        zeros.push(z);
        return z;
      });
      b.pending = startAllReduce(grads, 'mean');
      for (const z of zeros) z.dispose();
      this.#nextLaunch++;
    }
  }

  #end(failed: boolean): void {
    if (!this.#active) return;
    this.#active = false;
    try {
      // After a failed walk too, every bucket is reduced, so that this rank's collectives still
      // match the other ranks'; the failed step's results are dropped.
      this.#launchReady(true);
      for (const b of this.#buckets) {
        const outs = finish('DistributedDataParallel', b.pending!);
        b.params.forEach((p, i) => {
          if (failed) outs[i]!.dispose();
          else p.grad = outs[i]!;
        });
      }
    } finally {
      for (const b of this.#buckets) {
        b.ready = 0;
        b.pending = null;
      }
      this.#nextLaunch = 0;
    }
  }

  /** Stops observing backward and frees the wrapped module. */
  override dispose(): void {
    this.#unobserve();
    super.dispose();
  }
}
