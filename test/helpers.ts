/**
 * Shared test plumbing: the backends to run conformance tests on, conversions between tensors
 * and the float64 reference arrays, and a batch source for training-loop tests.
 */
import { execFileSync } from 'node:child_process';
import { type BackendMemory, type BackendName, type Tensor, backends, defaultBackend, memory, randn, tensor } from '../lib/index.js';
import type { BatchSource } from '../lib/train/index.js';
import { Rng, randomArray } from './reference/random.js';

export interface BackendCase {
  name: BackendName;
  available: boolean;
  reason: string;
}

/** Every backend; tests of an unavailable one are skipped, and the reason is printed once. */
export const backendCases: BackendCase[] = backends().map((b) => {
  if (!b.available) console.log(`[skip] ${b.name} tests: ${b.reason}`);
  return { name: b.name, available: b.available, reason: b.reason ?? '' };
});

/**
 * The backend tests run on when they name none (`defaultBackend()`: cuda where a GPU is usable,
 * else cpu). Where it cannot run (no backend at all here, as on a machine whose CPU addon does not
 * load and that has no GPU), the tests that need it are skipped with its reason.
 */
export const defaultCase: BackendCase = backendCases.find((b) => b.name === defaultBackend())!;
if (!defaultCase.available) console.log(`[skip] tests on the default backend (${defaultCase.name}): ${defaultCase.reason}`);

/** The CPU backend's case, for the tests that are about it (oneDNN, host memory). */
export const cpuCase: BackendCase = backendCases.find((b) => b.name === 'cpu')!;

/** The default backend's entry of `memory()`. */
export function defaultMemory(): BackendMemory {
  return memory().backends[defaultCase.name]!;
}

/** Random float32-representable values in float64 (never zero), and the tensor holding them. */
export function random(rng: Rng, shape: readonly number[], backend: BackendName, opts: { scale?: number; requiresGrad?: boolean } = {}): { t: Tensor; v: Float64Array } {
  const n = shape.reduce((a, b) => a * b, 1);
  const f32 = Float32Array.from(randomArray(n, rng, opts.scale ?? 1));
  const t = tensor(f32, shape, { backend, requiresGrad: opts.requiresGrad ?? false });
  return { t, v: Float64Array.from(f32) };
}

export function values(t: Tensor): Float64Array {
  return Float64Array.from(t.dataSync());
}

/**
 * Relative error in the max norm: ‖a − r‖∞ / ‖r‖∞. Elementwise relative error is meaningless
 * where the reference is near zero; this is the error relative to the tensor's scale.
 */
export function relError(a: ArrayLike<number>, r: ArrayLike<number>): number {
  if (a.length !== r.length) throw new RangeError(`length ${a.length} vs reference ${r.length}`);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < r.length; i++) {
    const d = Math.abs((a[i] as number) - (r[i] as number));
    diff = Number.isNaN(d) ? Infinity : Math.max(diff, d);
    scale = Math.max(scale, Math.abs(r[i] as number));
  }
  return diff / Math.max(scale, 1e-30);
}

export { Rng };

/**
 * Seeded random batches of `batch` single-channel `size`×`size` images with labels k mod
 * `classes`: enough to run `fit` without a dataset. The source throws at batch `throwAt`.
 */
export function randomBatches(o: { batch: number; steps: number; size: number; classes: number; throwAt?: number }): BatchSource {
  return {
    batchesPerEpoch: o.steps,
    async *batches(epoch: number) {
      for (let i = 0; i < o.steps; i++) {
        if (i === o.throwAt) throw new Error('data source failed');
        const labels = Int32Array.from({ length: o.batch }, (_, k) => (k + i) % o.classes);
        yield { x: randn([o.batch, 1, o.size, o.size], { seed: 1000 * epoch + i }), y: tensor(labels, [o.batch], { dtype: 'int32' }) };
      }
    },
  };
}

/** Null when python3 can import `module`, else why not: for tests that skip with the reason. */
export function pythonLacks(module: string): string | null {
  try {
    execFileSync('python3', ['-c', `import ${module}`], { stdio: 'ignore' });
    return null;
  } catch {
    return `python3 cannot import ${module}`;
  }
}
