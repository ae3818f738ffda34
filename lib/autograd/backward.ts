/**
 * Reverse-mode differentiation over the recorded nodes.
 * @module
 */
import { isTensor } from '../tensor/is-tensor.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { sameShape, shapeStr, show } from '../util/check.js';
import { isObserved, notifyEnd, notifyLeafReady } from './hooks.js';
import type { GradNode } from './node.js';

/** Walks the graph below `root` once in reverse topological order. @internal */
export function runBackward(root: Tensor, seed: Tensor | undefined): void {
  root._live('backward', 'the tensor');
  if (!root.requiresGrad) {
    throw new Error('backward: this tensor does not require grad (no input of the ops that computed it has requiresGrad = true)');
  }
  let gy: Tensor;
  if (seed === undefined) {
    if (root.size !== 1) {
      throw new RangeError(`backward: a gradient is needed for a non-scalar tensor of shape ${shapeStr(root.shape)}`);
    }
    gy = root._wrapLike(root._binding().fill([...root.shape], 1, root.dtype));
  } else {
    if (!isTensor(seed)) throw new TypeError(`backward: expected grad to be a Tensor, got ${show(seed)}`);
    seed._live('backward', 'grad');
    if (seed.backend !== root.backend || seed.dtype !== root.dtype || !sameShape(seed.shape, root.shape)) {
      throw new RangeError(
        `backward: expected grad to be a ${root.dtype} tensor of shape ${shapeStr(root.shape)} on ${root.backend}, ` +
          `got ${seed.dtype} ${shapeStr(seed.shape)} on ${seed.backend}`,
      );
    }
    // The caller keeps its tensor; the walk owns (and disposes) the copy it accumulates into.
    gy = seed.detach();
  }
  const observed = isObserved();
  let failed = true;
  try {
    walk(root, gy, observed);
    failed = false;
  } finally {
    if (observed) notifyEnd(failed);
  }
}

function walk(root: Tensor, gy: Tensor, observed: boolean): void {
  if (!root._node) {
    accumulateLeaf(root, gy);
    if (observed) notifyLeafReady(root);
    return;
  }
  const order = topologicalOrder(root._node);
  const pending = new Map<GradNode, Tensor>([[root._node, gy]]);
  // Observers are told when a leaf's last incoming edge has been walked: its gradient is final.
  const edgesLeft = observed ? leafEdges(order) : null;
  const passed = (leaf: Tensor) => {
    if (!edgesLeft) return;
    const left = edgesLeft.get(leaf)! - 1;
    edgesLeft.set(leaf, left);
    if (left === 0) notifyLeafReady(leaf);
  };
  try {
    for (const node of order) {
      const g = pending.get(node);
      if (!g) continue;
      pending.delete(node);
      let inputs: (Tensor | null)[];
      try {
        // A closure that fails half-way (a memory limit, say) frees what it had computed.
        inputs = tidy(() => node.apply(g));
      } finally {
        g.dispose();
      }
      try {
        node.edges.forEach((edge, i) => {
          const gi = inputs[i] ?? null;
          inputs[i] = null;
          if (!gi) {
            if (edge?.kind === 'leaf') passed(edge.tensor);
            return;
          }
          if (!edge) {
            gi.dispose();
          } else if (edge.kind === 'leaf') {
            accumulateLeaf(edge.tensor, gi);
            passed(edge.tensor);
          } else {
            const prev = pending.get(edge.node);
            pending.set(edge.node, prev ? sum(prev, gi) : gi);
          }
        });
      } finally {
        for (const gi of inputs) gi?.dispose();
      }
    }
  } finally {
    for (const g of pending.values()) g.dispose();
  }
  // Leaves below nodes that received no gradient are as final as they will get.
  if (edgesLeft) for (const [leaf, left] of edgesLeft) if (left > 0) notifyLeafReady(leaf);
}

/** How many edges of these nodes lead to each leaf. */
function leafEdges(order: readonly GradNode[]): Map<Tensor, number> {
  const counts = new Map<Tensor, number>();
  for (const node of order) {
    for (const e of node.edges) if (e?.kind === 'leaf') counts.set(e.tensor, (counts.get(e.tensor) ?? 0) + 1);
  }
  return counts;
}

/** a + b; consumes both, also when the addition throws. */
function sum(a: Tensor, b: Tensor): Tensor {
  try {
    return a._wrapLike(a._binding().add(a._live('backward', 'a gradient'), b._live('backward', 'a gradient')));
  } finally {
    a.dispose();
    b.dispose();
  }
}

function accumulateLeaf(leaf: Tensor, g: Tensor): void {
  if (leaf.isDisposed) {
    g.dispose();
    throw new Error(`backward: a leaf tensor of shape ${shapeStr(leaf.shape)} that requires grad was disposed before backward()`);
  }
  leaf.grad = leaf.grad ? sum(leaf.grad.detach(), g) : g;
}

/** Nodes reachable from `root`, each after every node that feeds it a gradient. */
function topologicalOrder(root: GradNode): GradNode[] {
  const post: GradNode[] = [];
  const visited = new Set<GradNode>([root]);
  // Iterative DFS: a ResNet-1202 graph is deeper than the JS stack is comfortable with.
  const stack: [GradNode, number][] = [[root, 0]];
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    const [node, i] = top;
    if (i < node.edges.length) {
      top[1] = i + 1;
      const e = node.edges[i];
      if (e?.kind === 'node' && !visited.has(e.node)) {
        visited.add(e.node);
        stack.push([e.node, 0]);
      }
    } else {
      post.push(node);
      stack.pop();
    }
  }
  return post.reverse();
}
