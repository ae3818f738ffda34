/**
 * The autograd tape: each differentiable op that has an input requiring gradients records a
 * node holding its backward closure and the tensors it saved.
 *
 * Saved tensors are freed as soon as nothing can reach the node any more: when `backward()`
 * has walked through it, or when every tensor computed from it has been disposed (a node is
 * reference-counted by its output tensor and by the nodes that consume it). A forward pass
 * whose output is disposed without `backward()` therefore leaks nothing.
 * @module
 */
import type { Tensor } from '../tensor/tensor.js';
import { isGradEnabled } from './grad-mode.js';

/** Where the gradient of one op input goes. @internal */
export type Edge = { kind: 'leaf'; tensor: Tensor } | { kind: 'node'; node: GradNode } | null;

/** Computes the gradients of the inputs (null where an edge is null) from the output's. @internal */
export type BackwardFn = (gy: Tensor) => (Tensor | null)[];

/** @internal */
export class GradNode {
  readonly name: string;
  readonly edges: readonly Edge[];
  #saved: Tensor[];
  #backward: BackwardFn | null;
  #refs = 1;

  constructor(name: string, edges: Edge[], saved: Tensor[], backward: BackwardFn) {
    this.name = name;
    this.edges = edges;
    this.#saved = saved;
    this.#backward = backward;
    for (const e of edges) if (e?.kind === 'node') e.node.#refs++;
  }

  get freed(): boolean {
    return this.#backward === null;
  }

  /** Runs the backward closure once, then frees what it saved. */
  apply(gy: Tensor): (Tensor | null)[] {
    const fn = this.#backward;
    if (!fn) {
      throw new Error(
        `backward: the graph through '${this.name}' was already freed by an earlier backward(); ` +
          'run the forward pass again to compute new gradients',
      );
    }
    try {
      return fn(gy);
    } finally {
      this.#freeSaved();
    }
  }

  /** Drops one reference (an output tensor disposed, or a consuming node released). */
  release(): void {
    if (--this.#refs > 0) return;
    this.#freeSaved();
    for (const e of this.edges) if (e?.kind === 'node') e.node.release();
  }

  #freeSaved(): void {
    for (const t of this.#saved) t.dispose();
    this.#saved = [];
    this.#backward = null;
  }
}

/** Whether an op with these inputs must record a node. @internal */
export function needsGrad(...inputs: (Tensor | null | undefined)[]): boolean {
  if (!isGradEnabled()) return false;
  return inputs.some((t) => t != null && t.requiresGrad);
}

/** Which of these inputs gradients flow to. @internal */
export function gradMask(...inputs: (Tensor | null | undefined)[]): boolean[] {
  return inputs.map((t) => t != null && t.requiresGrad);
}

/**
 * Records `output` as computed by `name` from `inputs`. `saved` are tensors from `_share()`,
 * owned by the node from now on. @internal
 */
export function record(name: string, output: Tensor, inputs: (Tensor | null | undefined)[], saved: Tensor[], backward: BackwardFn): void {
  const edges: Edge[] = inputs.map((t) => {
    if (t == null || !t.requiresGrad) return null;
    if (t._node) return { kind: 'node', node: t._node };
    return { kind: 'leaf', tensor: t };
  });
  output._setComputed(new GradNode(name, edges, saved, backward));
}
