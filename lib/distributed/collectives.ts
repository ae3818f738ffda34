/**
 * Collectives over the process group: all-reduce, broadcast, all-gather and barrier. Each is
 * queued on the backend like an op and returns at once; its result orders with the ops around
 * it, and a failure (a peer that died or hangs, past the group's timeout) is reported at the
 * next sync point (`data()`, `sync()`), naming the collective and the rank. Every rank must
 * call the same collectives, on tensors of the same shapes, in the same order, as in PyTorch.
 * @module
 */
import type { StartedCollective } from '../backend/binding.js';
import type { BackendName } from '../backend/load.js';
import { refuseInCapture } from '../tensor/capture-phase.js';
import { checkFloat } from '../tensor/check-tensor.js';
import { Tensor } from '../tensor/tensor.js';
import { checkInt, checkOptions, show } from '../util/check.js';
import { currentGroup } from './process-group.js';

/** How {@link allReduce} combines the ranks' values. `'mean'` is the sum divided by the world size. */
export type ReduceOp = 'sum' | 'mean' | 'max';

/** A started collective: its outputs may be read once {@link finish} has queued its wait. @internal */
export interface Pending {
  ticket: number;
  outputs: Tensor[];
}

function groupFor(op: string, tensors: readonly Tensor[]) {
  refuseInCapture(op, 'a collective');
  const g = currentGroup(op);
  if (g.lost) throw Object.assign(new Error(`${op}: the process group failed: ${g.lost}`), { code: 'ERR_DIST_PEER_LOST' });
  for (const t of tensors) {
    if (t.backend !== g.device) {
      throw new TypeError(`${op}: the ${g.backend} process group reduces ${g.device} tensors, got ${t.toString()}`);
    }
  }
  return g;
}

function checkReduceOp(op: string, value: unknown): ReduceOp {
  if (value !== 'sum' && value !== 'mean' && value !== 'max') throw new TypeError(`${op}: expected op 'sum', 'mean' or 'max', got ${show(value)}`);
  return value;
}

function started(started: StartedCollective, shapes: readonly (readonly number[])[], device: BackendName): Pending {
  return { ticket: started.ticket, outputs: started.outputs.map((b, i) => Tensor._wrap(b, shapes[i]!, device)) };
}

/**
 * Starts an all-reduce of `tensors` as one bucket, without waiting: ops queued before
 * {@link finish} overlap it. DDP's reducer uses this. @internal
 */
export function startAllReduce(tensors: readonly Tensor[], op: ReduceOp): Pending {
  const g = groupFor('allReduce', tensors);
  const s = g.binding.allReduce(tensors.map((t) => t._live('allReduce', 'a tensor')), op);
  return started(s, tensors.map((t) => t.shape), g.device);
}

/** Queues the wait for a started collective and returns its outputs, readable from now on. @internal */
export function finish(op: string, pending: Pending): Tensor[] {
  currentGroup(op).binding.collectiveWait(pending.ticket);
  return pending.outputs;
}

/**
 * Combines `t` across the ranks: every rank gets the sum (default), mean or maximum of all
 * ranks' values, as a new tensor (`t` is unchanged).
 *
 * ```ts
 * const total = distributed.allReduce(correct, { op: 'sum' });
 * ```
 */
export function allReduce(t: Tensor, options?: { op?: ReduceOp }): Tensor {
  const o = checkOptions('allReduce', options, ['op']);
  const op = checkReduceOp('allReduce', o.op ?? 'sum');
  const x = checkFloat('allReduce', 't', t);
  return finish('allReduce', startAllReduce([x], op))[0]!;
}

/** Rank `root`'s values of `t` on every rank, as a new tensor of `t`'s shape. */
export function broadcast(t: Tensor, options?: { root?: number }): Tensor {
  const o = checkOptions('broadcast', options, ['root']);
  const x = checkFloat('broadcast', 't', t);
  const g = groupFor('broadcast', [x]);
  const root = checkInt('broadcast', 'root', o.root ?? 0, 0, g.worldSize - 1);
  return finish('broadcast', started(g.binding.broadcast([x._live('broadcast', 't')], root), [x.shape], g.device))[0]!;
}

/** Broadcasts several tensors from `root` as one bucket, into new tensors. @internal */
export function broadcastAll(tensors: readonly Tensor[], root: number): Tensor[] {
  const g = groupFor('broadcast', tensors);
  return finish('broadcast', started(g.binding.broadcast(tensors.map((t) => t._live('broadcast', 'a tensor')), root), tensors.map((t) => t.shape), g.device));
}

/** Every rank's `t` stacked: a new tensor of shape [worldSize, ...t.shape], rank r's at index r. `t` has rank 0 to 4. */
export function allGather(t: Tensor): Tensor {
  const x = checkFloat('allGather', 't', t);
  if (x.rank > 4) throw new RangeError(`allGather: expected a tensor of rank 0 to 4, got ${x.toString()}`);
  const g = groupFor('allGather', [x]);
  return finish('allGather', started(g.binding.allGather(x._live('allGather', 't')), [[g.worldSize, ...x.shape]], g.device))[0]!;
}

/** Resolves once every rank has reached its `barrier()` (and the ops queued before it ran). */
export async function barrier(): Promise<void> {
  const g = groupFor('barrier', []);
  g.binding.collectiveWait(g.binding.barrier().ticket);
  await g.binding.sync();
}
