/**
 * Observers of `backward()`: told when a leaf's gradient is final for the current walk (every
 * path into it has been accumulated) and when the walk ends. DistributedDataParallel starts a
 * gradient bucket's all-reduce as soon as its last gradient is final, while the walk goes on
 * enqueueing the rest of backward, as PyTorch's reducer does with its autograd hooks.
 * @internal
 * @module
 */
import type { Tensor } from '../tensor/tensor.js';

/** @internal */
export interface BackwardObserver {
  /** `leaf.grad` holds everything this walk will add to it. */
  leafReady(leaf: Tensor): void;
  /** The walk is over (`failed`: it threw): every leafReady of it has been called. */
  end(failed: boolean): void;
}

const observers = new Set<BackwardObserver>();

/** Registers `o` for every later backward(); returns the function that unregisters it. @internal */
export function observeBackward(o: BackwardObserver): () => void {
  observers.add(o);
  return () => observers.delete(o);
}

/** Whether anyone observes: a walk without observers counts nothing. @internal */
export function isObserved(): boolean {
  return observers.size > 0;
}

/** @internal */
export function notifyLeafReady(leaf: Tensor): void {
  for (const o of observers) o.leafReady(leaf);
}

/** @internal */
export function notifyEnd(failed: boolean): void {
  for (const o of [...observers]) o.end(failed);
}
