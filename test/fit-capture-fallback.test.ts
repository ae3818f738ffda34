/**
 * fit's fallback when its training step cannot be captured (lib/train/fit.ts): a warning, the
 * batch run again eagerly, and every later step eagerly, instead of a failed run. Where there is
 * no GPU, captureStep is made to apply the capture's rules on the CPU (its 'checked' calls refuse
 * what a capture would), and the model breaks one of them after the warm-up.
 */
import { afterEach, expect, test, vi } from 'vitest';
import { type Tensor, ops, optim, tensor } from '../lib/index.js';
import { capturePhase } from '../lib/tensor/capture-phase.js';
import { fit } from '../lib/train/index.js';
import { Linear } from '../lib/nn/index.js';
import { randomBatches } from './helpers.js';

const forced = vi.hoisted(() => ({ on: false }));
vi.mock('../lib/train/capture.js', async (importOriginal) => {
  const m = await importOriginal<typeof import('../lib/train/capture.js')>();
  return { ...m, captureStep: ((fn, options) => m.captureStep(fn, forced.on ? { ...options, enabled: true } : options)) as typeof m.captureStep };
});

afterEach(() => {
  forced.on = false;
  vi.restoreAllMocks();
});

test('a step that cannot be captured trains on eagerly, the same, after one warning', async () => {
  const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
  const phases: (string | null)[] = [];
  const run = async (captureSteps: boolean) => {
    const lin = new Linear(4, 4, { seed: 2, backend: 'cpu' });
    const opt = new optim.SGD(lin.parameters(), { lr: 0.05, momentum: 0.9 });
    const model = {
      forward: (x: Tensor) => {
        phases.push(capturePhase());
        // An upload: refused in a captured call, before any of its work.
        tensor([1], [1], { backend: 'cpu' }).dispose();
        return lin.forward(ops.flatten(x));
      },
      train: () => undefined,
      eval: () => undefined,
    };
    const h = await fit(model, { trainData: randomBatches({ batch: 4, steps: 6, size: 2, classes: 4 }), epochs: 2, optimizer: opt, progress: false,
      captureSteps, schedule: (step) => 0.05 / (1 + step) });
    const weights = lin.parameters().map((p) => p.dataSync());
    opt.dispose();
    return { losses: h.map((m) => m.trainLoss), weights };
  };
  const eager = await run(false);
  expect(warn).not.toHaveBeenCalled();
  expect(phases).toEqual(Array<null>(12).fill(null));
  phases.length = 0;
  forced.on = true;
  const fellBack = await run(true);
  expect(fellBack).toEqual(eager);
  // Three warm-up calls, the refused one, its batch again, then eagerly to the end.
  expect(phases).toEqual(['warmup', 'warmup', 'warmup', 'checked', ...Array<null>(9).fill(null)]);
  expect(warn).toHaveBeenCalledTimes(1);
  expect(warn.mock.calls[0]![0]).toMatch(/^fit: the training step could not be captured into a CUDA graph; it runs eagerly from now on \(captureSteps: false skips the attempt\): tensor: an upload from JavaScript memory cannot be part of a captured step/);
  expect(warn.mock.calls[0]![1]).toEqual({ code: 'CUDNN_RESNET_CAPTURE_FAILED' });
});
