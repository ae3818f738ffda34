/**
 * Which backends exist here, and the choice of one.
 * @module
 */
import { checkBool, checkInt, show } from '../util/check.js';
import { BACKEND_NAMES, type BackendName, backendNameOf, bindingOf, loadBackend, setCudaTf32 } from './load.js';

export type { BackendName } from './load.js';

/** What `backends()` reports for one backend. */
export interface BackendInfo {
  name: BackendName;
  available: boolean;
  /** Library versions (oneDNN; CUDA, cuDNN, driver) where known. */
  versions: Record<string, string>;
  /** Why the backend cannot be used; absent when it can. */
  reason?: string;
  /** Backend-specific facts: the CPU's instruction set and threads, the GPU's name. */
  details: Record<string, unknown>;
}

/**
 * Every backend this library knows, with availability, versions and, when unavailable, why:
 * `cpu`, `cuda` (GPU 0), and `cuda:1`, `cuda:2`, ... for each further GPU CUDA sees.
 */
export function backends(): BackendInfo[] {
  const names = [...BACKEND_NAMES];
  const count = loadBackend('cuda').info?.deviceCount;
  if (typeof count === 'number') for (let i = 1; i < count; i++) names.push(`cuda:${i}`);
  return names.map((name) => {
    const { info, reason } = loadBackend(name);
    const details: Record<string, unknown> = {};
    if (info) {
      for (const [k, v] of Object.entries(info)) {
        if (!['backend', 'available', 'versions', 'reason'].includes(k)) details[k] = v;
      }
    }
    const entry: BackendInfo = { name, available: reason === null, versions: info?.versions ?? {}, details };
    if (reason !== null) entry.reason = reason;
    return entry;
  });
}

const NAMES = "'cpu', 'cuda', 'cuda:N' (N a GPU index)";

/** Checks a user-supplied backend name; `'cuda:0'` becomes `'cuda'`. @internal */
export function parseBackend(op: string, value: unknown): BackendName {
  if (value === undefined) return defaultBackend();
  const name = backendNameOf(value);
  if (name === null) throw new TypeError(`${op}: backend must be one of ${NAMES}, got ${show(value)}`);
  return name;
}

/**
 * The backend used when none is named: `CUDNN_RESNET_BACKEND` if set, else `cuda` when it is
 * usable, else `cpu`.
 */
export function defaultBackend(): BackendName {
  const forced = process.env.CUDNN_RESNET_BACKEND;
  if (forced !== undefined && forced !== '') {
    const name = backendNameOf(forced);
    if (name === null) throw new TypeError(`CUDNN_RESNET_BACKEND must be one of ${NAMES}, got '${forced}'`);
    return name;
  }
  return loadBackend('cuda').binding ? 'cuda' : 'cpu';
}

/**
 * Sets how many threads a backend's worker may use (CPU: OpenMP threads; `OMP_NUM_THREADS`
 * sets the initial value). Applies to ops enqueued after this call.
 */
export function setNumThreads(n: number, backend: BackendName = 'cpu'): void {
  checkInt('setNumThreads', 'n', n, 1);
  bindingOf(parseBackend('setNumThreads', backend)).setNumThreads(n);
}

/**
 * Lets the CUDA backend's float32 convolutions use TF32 tensor cores (10-bit mantissa inputs,
 * float32 accumulation): on by default, as in PyTorch; `CUDNN_RESNET_TF32=0` starts with it off.
 * Throws the reason when the CUDA backend is unavailable. Applies, on every GPU, to convolutions
 * enqueued after this call.
 */
export function setTf32(enabled: boolean): void {
  checkBool('setTf32', 'enabled', enabled);
  bindingOf('cuda');
  setCudaTf32(enabled);
}
