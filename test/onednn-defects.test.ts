/**
 * The workarounds for oneDNN defects (native/cpu/onednn_defects.h). They switch on by the
 * oneDNN found at run time (3.x), which CI does not run, so these tests force them on with
 * CUDNN_RESNET_ONEDNN_WORKAROUNDS=1 in a child process (the variable is read once, when the
 * addon loads) and hold what they compute to the float64 reference:
 * - convolutions with 4 and 20 output channels: their backward-data weights go into a padded
 *   two-level blocked layout, which the workaround fills element by element;
 * - 1x1 convolutions with stride 2 and 3: the backward-data computed at stride 1 over the
 *   strided positions and scattered into zeros.
 * Tolerance: max-norm relative error 1e-5 (float32 sums of at most 288 products; the normal
 * path meets the same bound in test/ops.test.ts). The same cases in bfloat16 and float16 are
 * compared with the workarounds forced on and off (below).
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { backends } from '../lib/index.js';
import { relError } from './helpers.js';
import { conv2dBackward, conv2dForward, type Shape4 } from './reference/ops64.js';
import { Rng, randomArray } from './reference/random.js';

const cpu = backends().find((b) => b.name === 'cpu')!;
if (!cpu.available) console.log(`[skip] oneDNN workaround tests: the cpu backend is unavailable: ${cpu.reason}`);

interface Case { x: Shape4; w: Shape4; stride: number; padding: number }
const cases: Case[] = [
  { x: [2, 3, 9, 9], w: [4, 3, 3, 3], stride: 1, padding: 1 },
  { x: [1, 32, 6, 6], w: [20, 32, 3, 3], stride: 1, padding: 1 },
  { x: [2, 32, 9, 9], w: [48, 32, 1, 1], stride: 2, padding: 0 },
  { x: [1, 16, 10, 10], w: [16, 16, 1, 1], stride: 3, padding: 0 },
];

// Runs in the child: the library with the workarounds forced, one forward and backward per case.
const child = `
const cr = await import(process.argv[1]);
const { readFileSync } = await import('node:fs');
const cases = JSON.parse(readFileSync(0, 'utf8'));
const out = { workarounds: cr.backends().find((b) => b.name === 'cpu').details.onednnWorkarounds, results: [] };
for (const c of cases) {
  const x = cr.tensor(Float32Array.from(c.x), c.xShape, { backend: 'cpu', requiresGrad: true });
  const w = cr.tensor(Float32Array.from(c.w), c.wShape, { backend: 'cpu', requiresGrad: true });
  // In a reduced type (c.dtype), the convolution runs on cast inputs and its output is cast back.
  const low = c.dtype === 'float32' ? null : [x.cast(c.dtype), w.cast(c.dtype)];
  const conv = cr.ops.conv2d(low ? low[0] : x, low ? low[1] : w, { stride: [c.stride, c.stride], padding: [c.padding, c.padding] });
  const y = low ? conv.cast('float32') : conv;
  y.backward(cr.tensor(Float32Array.from(c.dy), y.shape, { backend: 'cpu' }));
  out.results.push({ y: Array.from(await y.data()), dx: Array.from(await x.grad.data()), dw: Array.from(await w.grad.data()) });
}
process.stdout.write(JSON.stringify(out));
`;

interface ChildCase { x: number[]; w: number[]; dy: number[]; xShape: Shape4; wShape: Shape4; stride: number; padding: number; dtype: string }
interface ChildOut { workarounds: string; results: { y: number[]; dx: number[]; dw: number[] }[] }

/** Runs `cases` in a child with CUDNN_RESNET_ONEDNN_WORKAROUNDS set to `forced`. */
function runChild(cases: ChildCase[], forced: '0' | '1'): ChildOut {
  const stdout = execFileSync(process.execPath, ['--input-type=module', '-e', child, '--', join(import.meta.dirname, '..', 'dist', 'index.js')], {
    input: JSON.stringify(cases),
    env: { ...process.env, CUDNN_RESNET_ONEDNN_WORKAROUNDS: forced, CUDNN_RESNET_POISON: '1' },
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  return JSON.parse(stdout) as ChildOut;
}

describe.skipIf(!cpu.available)('oneDNN defect workarounds', () => {
  test('are in effect exactly where the oneDNN in use has the defects', () => {
    const major = Number(cpu.versions.onednn!.split('.')[0]);
    const active = String(cpu.details.onednnWorkarounds);
    if (process.env.CUDNN_RESNET_ONEDNN_WORKAROUNDS === undefined) {
      expect(active === '').toBe(major < 3);
      if (major >= 3) expect(active).toContain('reorder-into-padded-double-blocked');
    }
  });

  test('forced on, convolution gradients match the float64 reference', () => {
    const rng = new Rng(7);
    const inputs = cases.map((c) => {
      const params = { stride: [c.stride, c.stride] as const, padding: [c.padding, c.padding] as const, dilation: [1, 1] as const, groups: 1 };
      const x = randomArray(c.x.reduce((a, b) => a * b), rng);
      const w = randomArray(c.w.reduce((a, b) => a * b), rng);
      const { y, shape } = conv2dForward(x, c.x, w, c.w, null, params);
      const dy = randomArray(y.length, rng);
      return { c, params, x, w, y, dy, shape };
    });
    const out = runChild(inputs.map((i) => ({ x: [...i.x], w: [...i.w], dy: [...i.dy], xShape: i.c.x, wShape: i.c.w, stride: i.c.stride, padding: i.c.padding, dtype: 'float32' })), '1');
    expect(out.workarounds).toBe('reorder-into-padded-double-blocked,strided-pointwise-backward-data');
    inputs.forEach((i, k) => {
      const ref = conv2dBackward(i.x, i.c.x, i.w, i.c.w, i.dy, i.params, false);
      const got = out.results[k]!;
      const errors = { y: relError(got.y, i.y), dx: relError(got.dx, ref.dx), dw: relError(got.dw, ref.dw) };
      for (const [name, e] of Object.entries(errors)) {
        expect(e, `${name}: x ${JSON.stringify(i.c.x)} w ${JSON.stringify(i.c.w)} stride ${i.c.stride}`).toBeLessThan(1e-5);
      }
    });
  });

  // bfloat16 and float16 convolutions reach the same code with other types: float16 weights are
  // converted to float32 on the way into the padded layout (CopyBetweenLayouts converts), the
  // strided 1x1 backward computes in the compute type. On a oneDNN without the defects (CI's
  // 2.6), the run with the workarounds forced off is the reference; 1e-2 is a few roundings of
  // the reduced types (bfloat16's unit is 2^-8), where a misplaced element errs by O(1).
  test.skipIf(Number(cpu.versions.onednn!.split('.')[0]) >= 3)('forced on, bfloat16 and float16 convolutions match the same ones without the workarounds', () => {
    const rng = new Rng(11);
    const half = [cases[0]!, cases[2]!].flatMap((c) => ['bfloat16', 'float16'].map((dtype) => {
      const x = [...randomArray(c.x.reduce((a, b) => a * b), rng)];
      const w = [...randomArray(c.w.reduce((a, b) => a * b), rng)];
      const y = conv2dForward(Float64Array.from(x), c.x, Float64Array.from(w), c.w, null,
        { stride: [c.stride, c.stride], padding: [c.padding, c.padding], dilation: [1, 1], groups: 1 });
      return { x, w, dy: [...randomArray(y.y.length, rng)], xShape: c.x, wShape: c.w, stride: c.stride, padding: c.padding, dtype };
    }));
    const on = runChild(half, '1');
    const off = runChild(half, '0');
    expect(off.workarounds).toBe('');
    half.forEach((c, k) => {
      for (const name of ['y', 'dx', 'dw'] as const) {
        expect(relError(on.results[k]![name], off.results[k]![name]), `${name}: ${c.dtype} x ${JSON.stringify(c.xShape)} w ${JSON.stringify(c.wShape)}`).toBeLessThan(1e-2);
      }
    });
  });
});
