import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { type Tensor, memory, ops, optim, randn, sync, tensor, zeros, ones } from '../lib/index.js';
import { type BatchSource, NonFiniteLossError, cosineSchedule, evaluate, fit, renderChart, saveCheckpoint, stepSchedule, writeChart } from '../lib/train/index.js';
import { Linear } from '../lib/nn/index.js';
import { defaultCase, defaultMemory } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'cr-train-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('schedules', () => {
  test('step schedule divides by 10 at 50% and 75%, after warm-up', () => {
    const s = stepSchedule({ lr: 0.1 });
    expect(s(0, 100)).toBeCloseTo(0.1);
    expect(s(49, 100)).toBeCloseTo(0.1);
    expect(s(50, 100)).toBeCloseTo(0.01);
    expect(s(75, 100)).toBeCloseTo(0.001);
    const w = stepSchedule({ lr: 0.1, warmupSteps: 10 });
    expect(w(0, 100)).toBeCloseTo(0.01);
    expect(w(5, 100)).toBeCloseTo(0.055);
    expect(w(10, 100)).toBeCloseTo(0.1);
    expect(() => stepSchedule({ lr: 0.1, milestones: [0.7, 0.5] })).toThrow(/milestones must increase/);
  });

  test('cosine schedule goes from lr to minLr', () => {
    const c = cosineSchedule({ lr: 0.2, minLr: 0.02 });
    expect(c(0, 100)).toBeCloseTo(0.2);
    expect(c(50, 100)).toBeCloseTo(0.11);
    expect(c(100, 100)).toBeCloseTo(0.02);
  });

  test('chart renders every series as a polyline', () => {
    const svg = renderChart([{ name: 'a <b>', points: [[1, 2], [2, 3]] }, { name: 'c', points: [[1, 1]], dashed: true }], { title: 't', xLabel: 'x', yLabel: 'y' });
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.match(/<polyline/g)!.length).toBe(2);
    expect(svg).toContain('a &lt;b&gt;');
  });

  test('values one ulp apart make a chart, not an endless tick loop (found by the boundary fuzzer)', () => {
    // 100 · 0.07 = 7.000000000000001: beside an epoch at exactly 7 %, the tick step fell below
    // the values' resolution and `t += step` never moved.
    const svg = renderChart([{ name: 'train error', points: [[1, 100 * 0.07], [2, 7]] }], { title: 't', xLabel: 'epoch', yLabel: '%' });
    expect(svg).toContain('<polyline');
  });

  test('wrong series and options are refused with the function named', () => {
    const opts = { title: 't', xLabel: 'x', yLabel: 'y' };
    expect(() => renderChart(null as never, opts)).toThrow(/renderChart: expected series to be an array/);
    expect(() => renderChart([{ name: 'a' }] as never, opts)).toThrow(/renderChart: expected series\[0\]\.points to be an array of \[x, y\] number pairs/);
    expect(() => renderChart([], { ...opts, yLabel: 99 } as never)).toThrow(/renderChart: expected yLabel to be a string, got 99 of type number/);
    expect(() => renderChart([], { ...opts, yRange: [1, 1] })).toThrow(RangeError);
    expect(() => renderChart([], undefined as never)).toThrow(TypeError);
    expect(() => writeChart('', [], opts)).toThrow(/writeChart: expected path to be a non-empty string/);
  });

  test('a schedule refuses a step that is not a count', () => {
    expect(() => stepSchedule({ lr: 0.1 })(0n as never, 10)).toThrow(/stepSchedule: expected step to be an integer/);
    expect(() => cosineSchedule({ lr: 0.1 })(0, 0)).toThrow(/cosineSchedule: expected totalSteps to be an integer >= 1/);
  });
});

/** A tiny residual model written with ops, and a separable synthetic task. */
function setup(lr: number) {
  const w = randn([8, 2, 3, 3], { seed: 1, std: 0.3, requiresGrad: true });
  const g = ones([8], { requiresGrad: true });
  const b = zeros([8], { requiresGrad: true });
  const fc = randn([2, 8], { seed: 2, std: 0.3, requiresGrad: true });
  const params = [w, g, b, fc];
  let training = true;
  const model = {
    forward: (x: Tensor) => ops.linear(ops.flatten(ops.globalAvgPool(ops.relu(ops.batchNorm2d(ops.conv2d(x, w, { padding: 1 }), { weight: g, bias: b, training: true })))), fc),
    train: () => { training = true; },
    eval: () => { training = false; },
    get training() { return training; },
  };
  const opt = new optim.SGD(params, { lr, momentum: 0.9 });
  const data = (n: number, seed: number): BatchSource => ({
    batchesPerEpoch: n,
    async *batches(epoch: number) {
      for (let i = 0; i < n; i++) {
        const labels = Int32Array.from({ length: 8 }, (_, j) => (i + j + epoch) % 2);
        const px = new Float32Array(8 * 2 * 4 * 4);
        for (let k = 0; k < px.length; k++) {
          const sample = Math.floor(k / 32);
          const channel = Math.floor(k / 16) % 2;
          px[k] = (channel === labels[sample] ? 1 : -1) + 0.3 * Math.sin(k * 7.1 + seed + i);
        }
        yield { x: tensor(px, [8, 2, 4, 4]), y: tensor(labels) };
      }
    },
  });
  return { model, opt, params, data, dispose: () => { opt.dispose(); for (const p of params) p.dispose(); } };
}

describe.skipIf(!defaultCase.available)('fit', () => {
  test('trains, evaluates, writes metrics and curves, and leaks nothing', async () => {
    const { model, opt, data, dispose } = setup(0.1);
    await sync();
    const before = defaultMemory();
    const metricsFile = join(dir, 'metrics.jsonl');
    const curvesFile = join(dir, 'curves.svg');
    const steps: number[] = [];
    const history = await fit(model, {
      trainData: data(6, 0), evalData: data(2, 1), epochs: 4, optimizer: opt, onStep: (s) => steps.push(s.step),
      schedule: stepSchedule({ lr: 0.1 }), metricsFile, curvesFile, progress: false,
    });
    expect(history.length).toBe(4);
    expect(steps).toEqual(Array.from({ length: 24 }, (_, i) => i));
    expect(history[3]!.trainLoss).toBeLessThan(history[0]!.trainLoss);
    expect(history[3]!.testError).toBeLessThanOrEqual(0.25);
    expect(history[3]!.lr).toBeCloseTo(0.001);
    const lines = readFileSync(metricsFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { epoch: number });
    expect(lines.map((l) => l.epoch)).toEqual([1, 2, 3, 4]);
    expect(readFileSync(curvesFile, 'utf8')).toContain('test error');
    await sync();
    const after = defaultMemory();
    // Gradients were freed by zeroGrad; momentum buffers are the only new buffers.
    expect(after.tensors).toBe(before.tensors);
    expect(after.buffers).toBe(before.buffers + 4);
    dispose();
  });

  test('a non-finite loss stops training with an error naming the step', async () => {
    const { model, opt, data, dispose } = setup(1e30);
    const err = await fit(model, { trainData: data(20, 0), epochs: 1, optimizer: opt, progress: false }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NonFiniteLossError);
    expect((err as Error).message).toMatch(/at step \d+ \(epoch 1\)/);
    dispose();
  });

  test('a step that fails (forward, schedule, a non-finite loss) leaves no tensor behind', async () => {
    const { model, opt, data, dispose } = setup(0.1);
    await sync();
    const before = defaultMemory();
    const broken = { ...model, forward: () => { throw new Error('forward failed'); } };
    await expect(fit(broken, { trainData: data(2, 0), epochs: 1, optimizer: opt, progress: false })).rejects.toThrow('forward failed');
    await expect(evaluate(broken, data(2, 0))).rejects.toThrow('forward failed');
    await expect(fit(model, { trainData: data(2, 0), epochs: 1, optimizer: opt, progress: false, schedule: () => Number.NaN })).rejects.toThrow(/SGD: expected lr/);
    await sync();
    // Each of these left the batch (x, y) of the failed step allocated.
    expect(defaultMemory().tensors).toBe(before.tensors);
    expect(defaultMemory().buffers).toBe(before.buffers);
    dispose();
    const nan = setup(1e30);
    await sync();
    const start = defaultMemory().tensors;
    await expect(fit(nan.model, { trainData: data(20, 0), epochs: 1, optimizer: nan.opt, progress: false })).rejects.toThrow(NonFiniteLossError);
    // The step queued after the non-finite one used to stay allocated.
    expect(defaultMemory().tensors).toBe(start);
    nan.dispose();
  });

  test('evaluate, fit and saveCheckpoint check what they are given', async () => {
    const { model, opt, data, dispose } = setup(0.1);
    await expect(evaluate(null as never, data(1, 0))).rejects.toThrow(/evaluate: expected model to be an nn.Module/);
    await expect(evaluate(model, {} as never)).rejects.toThrow(/evaluate: expected data to be a data loader/);
    await expect(fit(0 as never, { trainData: data(1, 0), epochs: 1, optimizer: opt })).rejects.toThrow(/fit: expected model to be an nn.Module/);
    await expect(fit(model, { trainData: data(1, 0), epochs: 1, optimizer: opt, history: 5 as never })).rejects.toThrow(/expected history to be an array/);
    await expect(fit(model, { trainData: data(1, 0), epochs: 1, optimizer: opt, onEpoch: 5 as never })).rejects.toThrow(/expected onEpoch to be a function/);
    const lin = new Linear(2, 2, { backend: defaultCase.name });
    const file = join(dir, 'ckpt.safetensors');
    await expect(saveCheckpoint(file, { model: lin, optimizer: { step() {} } as never, state: { epoch: 1 } })).rejects.toThrow(/saveCheckpoint: expected optimizer to be an optimizer/);
    await expect(saveCheckpoint(file, { model: lin, state: { epoch: 1, big: 1n } })).rejects.toThrow(/saveCheckpoint: expected state to be JSON-serializable/);
    lin.dispose();
    dispose();
  });

  test('bad options are refused before training', async () => {
    const { model, opt, data, dispose } = setup(0.1);
    await expect(fit(model, { trainData: [] as never, epochs: 1, optimizer: opt })).rejects.toThrow(/expected trainData to be a data loader/);
    await expect(fit(model, { trainData: data(1, 0), epochs: 0, optimizer: opt })).rejects.toThrow(RangeError);
    await expect(fit(model, { trainData: data(1, 0), epochs: 1, optimizer: opt, labelSmoothing: 2 })).rejects.toThrow(RangeError);
    dispose();
  });
});
