/**
 * Finds and loads the native addons, lazily and once each. A missing or unloadable addon is
 * not an import error: the backend is reported unavailable with the reason, and asking for it
 * throws that reason (never a silent fallback to another backend).
 * @internal
 * @module
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Binding, NativeInfo } from './binding.js';

/** The backends this library knows. */
export type BackendName = 'cpu' | 'cuda';
export const BACKEND_NAMES: readonly BackendName[] = ['cpu', 'cuda'];

interface Loaded {
  binding: Binding | null;
  info: NativeInfo | null;
  reason: string | null;
}

const require = createRequire(import.meta.url);
// lib/backend/load.ts and dist/backend/load.js both sit two levels below the package root.
const packageRoot = fileURLToPath(new URL('../../', import.meta.url));
const loaded = new Map<BackendName, Loaded>();

const ADDON_FILES: Record<BackendName, string> = {
  cpu: 'cudnn_resnet_cpu.node',
  cuda: 'cudnn_resnet_cuda.node',
};

const NOT_BUILT: Record<BackendName, string> = {
  cpu:
    'the CPU addon was not built. Possible solutions:\n' +
    '  - install oneDNN and a C++ toolchain: `sudo apt-get install libdnnl-dev cmake g++` ' +
    '(or run scripts/setup-debian.sh)\n' +
    '  - then rebuild: `npm rebuild cudnn-resnet` (in this repository: `npm run build:native`)',
  cuda:
    'the CUDA addon was not built: the CUDA toolkit or cuDNN 9 was not found when this package was built ' +
    '(see the README, section "GPU", for how the build finds them)',
};

// CUDNN_RESNET_ADDON_DIR (internal, for scripts/sanitize.sh): the folder to load the addons from
// instead of build/Release, such as the sanitizer build's build-sanitize/Release.
function addonPath(name: BackendName): string {
  const dir = process.env.CUDNN_RESNET_ADDON_DIR;
  return join(dir ? resolve(dir) : `${packageRoot}build/Release`, ADDON_FILES[name]);
}

function load(name: BackendName): Loaded {
  const path = addonPath(name);
  if (!existsSync(path)) return { binding: null, info: null, reason: NOT_BUILT[name] };
  let binding: Binding;
  try {
    binding = require(path) as Binding;
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    const missing = /(lib[\w.+-]+\.so[\w.]*): cannot open shared object file/.exec(message);
    const reason = missing
      ? `${missing[1]} not found (needed by ${ADDON_FILES[name]}; is its library folder on the loader's path?)`
      : `${ADDON_FILES[name]} failed to load: ${message}`;
    return { binding: null, info: null, reason };
  }
  // process.exit() and uncaught exceptions end the process without tearing the addon down: the
  // 'exit' event is the last point before exit() destroys the native libraries' statics (oneDNN's
  // JIT code), so the worker must not be running an op past it. A normal end also emits 'exit'.
  process.once('exit', () => binding.shutdown());
  const info = binding.info();
  if (!info.available) {
    const reason = typeof info.reason === 'string' ? info.reason : 'unavailable';
    return { binding: null, info, reason };
  }
  return { binding, info, reason: null };
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
