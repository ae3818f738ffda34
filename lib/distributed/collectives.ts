/**
 * Collectives over the process group: all-reduce, broadcast, all-gather and barrier. Each is
 * queued on the backend like an op and returns at once; its result orders with the ops around
 * it, and a failure (a peer that died or hangs, past the group's timeout) is reported at the
 * next sync point (`data()`, `sync()`), naming the collective and the rank. Every rank must
 * call the same collectives, on tensors of the same shapes, in the same order, as in PyTorch.
 * @module
 */
import type { NativeBuffer } from '../backend/binding.js';
import { checkFloat } from '../tensor/check-tensor.js';
import { Tensor } from '../tensor/tensor.js';
import { checkInt, checkOptions, show } from '../util/check.js';
import { currentGroup } from './process-group.js';

/** How {@link allReduce} combines the ranks' values. `'mean'` is the sum divided by the world size. */
export type ReduceOp = 'sum' | 'mean' | 'max';

/** A started collective whose outputs are not available yet. @internal */
export interface Pending {
  ticket: number;
  like: readonly Tensor[];
}

function groupFor(op: string, tensors: readonly Tensor[]) {
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

/**
 * Starts an all-reduce of `tensors` as one bucket, without waiting: ops queued before
 * {@link finish} overlap it. DDP's reducer uses this. @internal
 */
export function startAllReduce(tensors: readonly Tensor[], op: ReduceOp): Pending {
  const g = groupFor('allReduce', tensors);
  const ticket = g.binding.allReduce(tensors.map((t) => t._live('allReduce', 'a tensor')), op);
  return { ticket, like: tensors };
}

/** Queues the wait for a started collective and returns its outputs, shaped like its inputs. @internal */
export function finish(op: string, pending: Pending, shapes?: readonly (readonly number[])[]): Tensor[] {
  const g = currentGroup(op);
  const bufs: NativeBuffer[] = g.binding.collectiveWait(pending.ticket);
  return bufs.map((b, i) => Tensor._wrap(b, shapes?.[i] ?? pending.like[i]!.shape, g.device));
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
  return finish('broadcast', { ticket: g.binding.broadcast([x._live('broadcast', 't')], root), like: [x] })[0]!;
}

/** Broadcasts several tensors from `root` as one bucket, into new tensors. @internal */
export function broadcastAll(tensors: readonly Tensor[], root: number): Tensor[] {
  const g = groupFor('broadcast', tensors);
  return finish('broadcast', { ticket: g.binding.broadcast(tensors.map((t) => t._live('broadcast', 'a tensor')), root), like: tensors });
}

/** Every rank's `t` stacked: a new tensor of shape [worldSize, ...t.shape], rank r's at index r. `t` has rank 0 to 4. */
export function allGather(t: Tensor): Tensor {
  const x = checkFloat('allGather', 't', t);
  if (x.rank > 4) throw new RangeError(`allGather: expected a tensor of rank 0 to 4, got ${x.toString()}`);
  const g = groupFor('allGather', [x]);
  const ticket = g.binding.allGather(x._live('allGather', 't'));
  return finish('allGather', { ticket, like: [x] }, [[g.worldSize, ...x.shape]])[0]!;
}

/** Resolves once every rank has reached its `barrier()` (and the ops queued before it ran). */
export async function barrier(): Promise<void> {
  const g = groupFor('barrier', []);
  g.binding.collectiveWait(g.binding.barrier());
  await g.binding.sync();
}
