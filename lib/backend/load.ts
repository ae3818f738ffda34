/**
 * Finds and loads the native addons, lazily and once each. A missing or unloadable addon is
 * not an import error: the backend is reported unavailable with the reason, and asking for it
 * throws that reason (never a silent fallback to another backend).
 * @internal
 * @module
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { constants } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Binding, NativeInfo } from './binding.js';

/**
 * A backend: `'cpu'`, `'cuda'` (the first GPU CUDA sees, after `CUDA_VISIBLE_DEVICES`), or
 * `'cuda:N'` for GPU N (`'cuda:0'` is another name for `'cuda'`).
 */
export type BackendName = 'cpu' | 'cuda' | `cuda:${number}`;
/** The backends every listing starts with; `'cuda:N'` follow where there are more GPUs. */
export const BACKEND_NAMES: readonly BackendName[] = ['cpu', 'cuda'];
/** Device indices go up to 63 (the native memory counters are per device). */
const MAX_DEVICES = 64;

/** The canonical name of a backend (`'cuda:0'` is `'cuda'`), or null for anything else. @internal */
export function backendNameOf(value: unknown): BackendName | null {
  if (value === 'cpu' || value === 'cuda') return value;
  const m = typeof value === 'string' ? /^cuda:(0|[1-9]\d?)$/.exec(value) : null;
  if (!m || Number(m[1]) >= MAX_DEVICES) return null;
  return m[1] === '0' ? 'cuda' : (value as BackendName);
}

/** The GPU a CUDA backend name means (0 for `'cuda'`). */
function deviceOf(name: BackendName): number {
  return name.startsWith('cuda:') ? Number(name.slice(5)) : 0;
}

interface Loaded {
  binding: Binding | null;
  info: NativeInfo | null;
  reason: string | null;
}

const require = createRequire(import.meta.url);
// lib/backend/load.ts and dist/backend/load.js both sit two levels below the package root.
const packageRoot = fileURLToPath(new URL('../../', import.meta.url));
const loaded = new Map<BackendName, Loaded>();

const ADDON_FILES: Record<'cpu' | 'cuda', string> = {
  cpu: 'cudnn_resnet_cpu.node',
  cuda: 'cudnn_resnet_cuda.node',
};

const NOT_BUILT: Record<'cpu' | 'cuda', string> = {
  cpu:
    'the CPU addon was not built. Possible solutions:\n' +
    '  - install oneDNN and a C++ toolchain: `sudo apt-get install libdnnl-dev cmake g++` ' +
    '(or run scripts/setup-debian.sh)\n' +
    '  - then rebuild: `npm rebuild cudnn-resnet` (in this repository: `npm run build:native`)',
  cuda:
    'the CUDA addon was not built: the CUDA toolkit or cuDNN 9 was not found when this package was built ' +
    '(see the README, section "GPU", for how the build finds them)',
};

// CUDNN_RESNET_ADDON_DIR (internal, for scripts/sanitize.sh and scripts/gpu-check.sh): the folder
// to load the addons from instead of build/Release, such as the sanitizer build's
// build-sanitize/Release.
function addonPath(addon: 'cpu' | 'cuda'): string {
  const dir = process.env.CUDNN_RESNET_ADDON_DIR;
  return join(dir ? resolve(dir) : `${packageRoot}build/Release`, ADDON_FILES[addon]);
}

// glibc's value; os.constants.dlopen does not list it.
const RTLD_NODELETE = 0x1000;

/**
 * Folders that may hold libcudnn.so.9 when the loader finds none (the CUDA addon's RUNPATH names
 * the folder of the machine that built it, and LD_LIBRARY_PATH may be unset): the nvidia-cudnn
 * wheel of `python3` (or of `CUDNN_RESNET_PYTHON`), which is the cuDNN PyTorch uses, then torch's
 * own lib folder. Asked without importing either package.
 */
function pythonCudnnFolders(): string[] {
  const script = [
    'import importlib.util as u',
    "for name in ('nvidia.cudnn', 'torch'):",
    '    try:',
    '        s = u.find_spec(name)',
    '    except Exception:',
    '        s = None',
    '    if s and s.submodule_search_locations:',
    "        print(list(s.submodule_search_locations)[0] + '/lib')",
  ].join('\n');
  const r = spawnSync(process.env.CUDNN_RESNET_PYTHON || 'python3', ['-c', script], { encoding: 'utf8', timeout: 30_000 });
  return r.status === 0 ? r.stdout.split('\n').filter((line) => line !== '') : [];
}

/**
 * Loads `folder`/libcudnn.so.9 for good (RTLD_NODELETE), so that the addon's dependency on it is
 * met by the library already loaded; cuDNN finds its sub-libraries next to itself ($ORIGIN).
 * Node's dlopen of a library that is not an addon always ends in "did not self-register" (and
 * a dlclose, which RTLD_NODELETE makes harmless); any other error means it did not load.
 */
function preloadCudnn(folder: string): boolean {
  const lib = join(folder, 'libcudnn.so.9');
  if (!existsSync(lib)) return false;
  try {
    process.dlopen({ exports: {} } as NodeJS.Module, lib, constants.dlopen.RTLD_NOW | RTLD_NODELETE);
  } catch (err) {
    return /did not self-register/.test(err instanceof Error ? err.message : String(err));
  }
  return true;
}

/**
 * The addon at `path`: the module for device 0 (shared by every copy of the library in the
 * process), a fresh instance for another device: each instance has its own queue, stream and
 * caches (native/cuda/cuda_backend.h).
 */
function open(path: string, fresh: boolean): Binding {
  if (!fresh) return require(path) as Binding;
  const m = { exports: {} } as NodeJS.Module;
  process.dlopen(m, path);
  return m.exports as Binding;
}

const missingLibrary = (err: unknown) =>
  /(lib[\w.+-]+\.so[\w.]*): cannot open shared object file/.exec(err instanceof Error ? err.message : String(err))?.[1];

// Settings that apply to every CUDA instance, including those loaded later.
const cudaSettings: { tf32: boolean | null } = { tf32: null };

/** Sets TF32 on every loaded CUDA instance and on those loaded later. @internal */
export function setCudaTf32(enabled: boolean): void {
  cudaSettings.tf32 = enabled;
  for (const [name, entry] of loaded) if (name !== 'cpu' && entry.binding) entry.binding.setTf32(enabled);
}

function load(name: BackendName): Loaded {
  const addon = name === 'cpu' ? 'cpu' : 'cuda';
  const path = addonPath(addon);
  if (!existsSync(path)) return { binding: null, info: null, reason: NOT_BUILT[addon] };
  const device = deviceOf(name);
  let binding: Binding;
  // The folders python3 offered, when libcudnn.so.9 had to be looked for there.
  const python: { offered: string[] | null } = { offered: null };
  try {
    try {
      binding = open(path, device !== 0);
    } catch (err) {
      if (addon !== 'cuda' || missingLibrary(err) !== 'libcudnn.so.9') throw err;
      python.offered = pythonCudnnFolders();
      if (!python.offered.some(preloadCudnn)) throw err;
      binding = open(path, device !== 0);
    }
  } catch (err) {
    const missing = missingLibrary(err);
    const { offered } = python;
    const also = offered === null ? '' : `; not in ${offered.length ? offered.join(' or ') : "python3's nvidia-cudnn wheel or torch either (none found)"}`;
    const reason = missing
      ? `${missing} not found (needed by ${ADDON_FILES[addon]}; is its library folder on the loader's path?${also})`
      : `${ADDON_FILES[addon]} failed to load: ${err instanceof Error ? err.message : String(err)}`;
    return { binding: null, info: null, reason };
  }
  // process.exit() and uncaught exceptions end the process without tearing the addon down: the
  // 'exit' event is the last point before exit() destroys the native libraries' statics (oneDNN's
  // JIT code), so the worker must not be running an op past it. A normal end also emits 'exit'.
  process.once('exit', () => binding.shutdown());
  if (device !== 0) binding.useDevice(device);
  if (addon === 'cuda' && cudaSettings.tf32 !== null) binding.setTf32(cudaSettings.tf32);
  const info = binding.info();
  if (!info.available) {
    const reason = typeof info.reason === 'string' ? info.reason : 'unavailable';
    return { binding: null, info, reason };
  }
  return { binding, info, reason: null };
}

/** The backends listed by default, and every `'cuda:N'` loaded so far. @internal */
export function loadedBackendNames(): BackendName[] {
  return [...BACKEND_NAMES, ...[...loaded.keys()].filter((name) => !BACKEND_NAMES.includes(name))];
}

/** The addon of a backend, loaded on first use. */
export function loadBackend(name: BackendName): Loaded {
  let entry = loaded.get(name);
  if (!entry) {
    entry = load(name);
    loaded.set(name, entry);
  }
  return entry;
}

/** The native binding of a backend; throws the reason it cannot be used. @internal */
export function bindingOf(name: BackendName): Binding {
  const { binding, reason } = loadBackend(name);
  if (!binding) {
    const err = new Error(`backend '${name}' is unavailable: ${reason}`);
    (err as Error & { code: string }).code = 'ERR_BACKEND_UNAVAILABLE';
    throw err;
  }
  return binding;
}
