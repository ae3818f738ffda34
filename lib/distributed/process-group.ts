/**
 * The process group of this process: joining it (`init`), leaving it (`destroy`), and who we
 * are in it (`rank`, `worldSize`). One group per process, on one backend: Gloo for `cpu`
 * tensors, NCCL for `cuda` tensors.
 * @module
 */
import type { Binding } from '../backend/binding.js';
import { backendNameOf, bindingOf, type BackendName } from '../backend/load.js';
import { defaultBackend } from '../backend/backends.js';
import { checkInt, checkOptions, show } from '../util/check.js';
import { StoreClient, StoreServer } from './store.js';

/** The collective engines: Gloo (CPU tensors) and NCCL (CUDA tensors). */
export type DistBackend = 'gloo' | 'nccl';

/**
 * Options of {@link init}. Each defaults from torchrun's environment variables, so a script
 * started by `cudnn-resnet launch` (or torchrun) calls `init()` with none.
 */
export interface InitOptions {
  /** `'gloo'` (CPU tensors) or `'nccl'` (CUDA tensors). Default: `'nccl'` where CUDA is the default backend, else `'gloo'`. */
  backend?: DistBackend;
  /** This process's rank in [0, worldSize). Default: `RANK`, else 0. */
  rank?: number;
  /** The number of processes. Default: `WORLD_SIZE`, else 1. */
  worldSize?: number;
  /** Where rank 0 runs the rendezvous. Default: `MASTER_ADDR`, else `'127.0.0.1'`. */
  masterAddr?: string;
  /** Its TCP port. Default: `MASTER_PORT`, else 29500 (PyTorch's). */
  masterPort?: number;
  /**
   * How long to wait for the other ranks: to join, and in every collective. A rank that dies
   * or hangs makes the others fail after at most this long. Default: 30 minutes (PyTorch's).
   */
  timeoutMs?: number;
  /**
   * The backend whose tensors the group reduces: `'cpu'` for Gloo; for NCCL the GPU of this
   * process, `'cuda:N'`. Default: `'cpu'`, or for NCCL `'cuda:<LOCAL_RANK>'` (one process per
   * GPU, as torchrun starts them), `'cuda'` without `LOCAL_RANK`.
   */
  device?: BackendName;
}

interface Group {
  backend: DistBackend;
  device: BackendName;
  binding: Binding;
  rank: number;
  worldSize: number;
  timeoutMs: number;
  store: StoreClient;
  server: StoreServer | null;
  /** Set once a peer left or the store went away: every later collective fails with it. */
  lost: string | null;
}

let group: Group | null = null;
let joining = false;

function envInt(name: string): number | undefined {
  const v = process.env[name];
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isInteger(n)) throw new TypeError(`distributed.init: the environment variable ${name} must be an integer, got '${v}'`);
  return n;
}

function resolveOptions(options: unknown): Required<InitOptions> {
  const op = 'distributed.init';
  const o = checkOptions(op, options, ['backend', 'rank', 'worldSize', 'masterAddr', 'masterPort', 'timeoutMs', 'device']);
  const backend = o.backend ?? (defaultBackend() === 'cpu' ? 'gloo' : 'nccl');
  if (backend !== 'gloo' && backend !== 'nccl') throw new TypeError(`${op}: expected backend 'gloo' or 'nccl', got ${show(backend)}`);
  const localRank = envInt('LOCAL_RANK');
  const device = o.device === undefined
    ? (backend === 'gloo' ? 'cpu' : backendNameOf(`cuda:${localRank ?? 0}`))
    : backendNameOf(o.device);
  if (device === null || (device === 'cpu') !== (backend === 'gloo')) {
    const given = o.device === undefined ? `LOCAL_RANK ${localRank} (no such GPU index)` : show(o.device);
    throw new TypeError(`${op}: expected device ${backend === 'gloo' ? "'cpu' for gloo" : "'cuda' or 'cuda:N' for nccl"}, got ${given}`);
  }
  const worldSize = checkInt(op, 'worldSize (or WORLD_SIZE)', o.worldSize ?? envInt('WORLD_SIZE') ?? 1, 1, 65535);
  const rank = checkInt(op, 'rank (or RANK)', o.rank ?? envInt('RANK') ?? 0, 0, worldSize - 1);
  const masterAddr = o.masterAddr ?? process.env.MASTER_ADDR ?? '127.0.0.1';
  if (typeof masterAddr !== 'string' || masterAddr.length === 0 || masterAddr.length > 255 || /\s/.test(masterAddr)) {
    throw new TypeError(`${op}: expected masterAddr (or MASTER_ADDR) to be a host name or IP address, got ${show(masterAddr)}`);
  }
  const masterPort = checkInt(op, 'masterPort (or MASTER_PORT)', o.masterPort ?? envInt('MASTER_PORT') ?? 29500, 1, 65535);
  const timeoutMs = checkInt(op, 'timeoutMs', o.timeoutMs ?? 30 * 60_000, 1, 2 ** 31);
  return { backend, rank, worldSize, masterAddr, masterPort, timeoutMs, device };
}

/**
 * Joins this process to the group: rank 0 starts the rendezvous on `masterAddr:masterPort`,
 * every rank (rank 0 too) meets the others there, and they connect to each other (Gloo over
 * TCP, or NCCL). Resolves once every rank has joined; rejects, naming what is wrong, for a
 * MASTER_ADDR that does not resolve or is unreachable, a port in use, ranks started with
 * different world sizes, two processes with one rank, or a rank that does not join within
 * `timeoutMs`.
 */
export async function init(options?: InitOptions): Promise<void> {
  const o = resolveOptions(options);
  if (group || joining) throw new Error('distributed.init: this process is already in a process group (call destroy() first)');
  const { device } = o;
  const binding = bindingOf(device);
  joining = true;
  const deadline = Date.now() + o.timeoutMs;
  let server: StoreServer | null = null;
  let store: StoreClient | null = null;
  let prepared = false;
  try {
    if (o.rank === 0) server = await StoreServer.listen(o.masterAddr, o.masterPort, o.worldSize);
    store = await StoreClient.connect(o.masterAddr, o.masterPort, deadline);
    await store.hello(o.rank, o.worldSize, deadline);
    const published = binding.groupPrepare(o.rank, o.worldSize, o.timeoutMs, store.localAddress);
    prepared = true;
    await store.set(`group/${o.rank}`, published, deadline);
    const all: Uint8Array[] = [];
    for (let r = 0; r < o.worldSize; r++) {
      all.push(await store.get(`group/${r}`, deadline, `rank ${r} of ${o.worldSize} to join (started? same MASTER_ADDR/MASTER_PORT?)`));
    }
    await binding.groupConnect(all);
    const g: Group = { ...o, binding, store, server, lost: null };
    store.onLost = (reason) => {
      g.lost = reason;
      binding.groupAbort(reason);
    };
    store.unref();
    group = g;
  } catch (err) {
    if (prepared) binding.groupDestroy();
    await store?.leave(Date.now() + 1000);
    server?.close();
    throw err;
  } finally {
    joining = false;
  }
}

/** Whether this process is in a process group. */
export function isInitialized(): boolean {
  return group !== null;
}

/** The group, or an error saying to call init(). @internal */
export function currentGroup(op: string): Group {
  if (!group) {
    throw Object.assign(new Error(`${op}: no process group: call distributed.init() first`), { code: 'ERR_DIST_NOT_INITIALIZED' });
  }
  return group;
}

/** This process's rank in the group (0 without a group). */
export function rank(): number {
  return group?.rank ?? 0;
}

/** The number of processes in the group (1 without a group). */
export function worldSize(): number {
  return group?.worldSize ?? 1;
}

/** The group's engine, or null without a group. */
export function backend(): DistBackend | null {
  return group?.backend ?? null;
}

/**
 * The backend whose tensors the group reduces (`'cpu'`, or this process's GPU, `'cuda:N'`), or
 * null without a group: build the model and the data on it.
 */
export function device(): BackendName | null {
  return group?.device ?? null;
}

/**
 * Leaves the group: waits for the other ranks at a barrier (so that no rank closes the
 * rendezvous while another still needs it), then closes the connections. Collectives queued
 * before it run first. If a peer is already gone, it only closes what is left. A no-op without
 * a group.
 */
export async function destroy(): Promise<void> {
  const g = group;
  if (!g) return;
  group = null;
  try {
    if (!g.lost) {
      g.binding.collectiveWait(g.binding.barrier().ticket);
      await g.binding.sync();
    }
  } catch {
    // A peer that is gone cannot say goodbye; what is left is closed below all the same.
  } finally {
    g.binding.groupDestroy();
    g.store.onLost = null;
    const deadline = Date.now() + Math.min(g.timeoutMs, 10_000);
    await g.store.leave(deadline);
    // Rank 0 keeps the rendezvous until the others have left it, so that none sees it vanish.
    await g.server?.closeWhenLeft(deadline);
  }
}
