/**
 * Faults: a checkpoint write SIGKILLed at random points (20 times in a row) always leaves a
 * whole, loadable checkpoint, and no pile of temporary files; an exception thrown by user code
 * inside `tidy` or `fit` (a callback, a schedule, a model, a data source) leaves no tensor
 * behind and a library that goes on working.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { models, ops, optim, randn, sync, tensor, tidy } from '../lib/index.js';
import { type FitOptions, fit, loadCheckpoint } from '../lib/train/index.js';
import { defaultCase, defaultMemory, randomBatches } from './helpers.js';

const root = join(import.meta.dirname, '..');
const dir = mkdtempSync(join(tmpdir(), 'cr-faults-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const counts = () => {
  const m = defaultMemory();
  return [m.tensors, m.buffers, m.bytes];
};

// A WRN-16-4 (2.7 M parameters, 11 MB per checkpoint) whose every value is set to the epoch
// before each save, so that a checkpoint's content can be checked against its own metadata.
const SAVER = `
import { models, tensor } from ${JSON.stringify(join(root, 'dist', 'index.js'))};
import { saveCheckpoint } from ${JSON.stringify(join(root, 'dist', 'train', 'index.js'))};
const [path, first] = [process.argv[2], Number(process.argv[3])];
const model = models.wideResNet({ depth: 16, widen: 4, numClasses: 10, seed: 1 });
for (let epoch = first; ; epoch++) {
  const dict = {};
  for (const [k, t] of Object.entries(model.stateDict())) {
    const values = t.dtype === 'int32' ? new Int32Array(t.size).fill(epoch) : new Float32Array(t.size).fill(epoch);
    dict[k] = tensor(values, [...t.shape], { dtype: t.dtype });
  }
  model.loadStateDict(dict);
  for (const t of Object.values(dict)) t.dispose();
  process.stdout.write('saving ' + epoch + '\\n');
  await saveCheckpoint(path, { model, state: { epoch } });
}
`;

describe.skipIf(!defaultCase.available)('kill during save', () => {
  test('a checkpoint write SIGKILLed at a random point 20 times in a row leaves the last whole checkpoint', async () => {
    const script = join(dir, 'saver.mjs');
    writeFileSync(script, SAVER);
    const path = join(dir, 'ckpt', 'checkpoint.safetensors');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(join(dir, 'ckpt'));
    const model = models.wideResNet({ depth: 16, widen: 4, numClasses: 10, seed: 2 });
    let rand = 12345;
    const random = () => ((rand = (rand * 1103515245 + 12345) >>> 0) / 2 ** 32);
    let next = 1;
    const killedAfter: number[] = [];
    let midWrite = 0;
    for (let round = 0; round < 20; round++) {
      const child: ChildProcess = spawn(process.execPath, [script, path, String(next)], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, OMP_NUM_THREADS: '1' } });
      const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
      // Killed a random time (0-40 ms; one save takes ~20-100 ms here) after it starts its
      // second, third or fourth save: aimed at the write, landing anywhere in or around it.
      const target = 2 + Math.floor(random() * 3);
      let started = 0;
      await new Promise<void>((resolve) => child.stdout!.on('data', (chunk: Buffer) => {
        started += chunk.toString().split('\n').filter((l) => l.startsWith('saving')).length;
        if (started >= target) resolve();
      }));
      await new Promise((r) => setTimeout(r, random() * 40));
      child.kill('SIGKILL');
      expect(await exited).toBe('SIGKILL');
      killedAfter.push(started - 1);

      const state = await loadCheckpoint(path, { model });
      expect(state.epoch).toBeGreaterThanOrEqual(next);
      const values = await Promise.all(model.parameters().map((p) => p.data()));
      for (const v of values) expect(v.every((x) => x === state.epoch)).toBe(true);
      next = state.epoch + 1;
      // At most the temporary file of the writer just killed is left (its kill landed inside
      // the write); earlier ones were swept.
      const temps = readdirSync(join(dir, 'ckpt')).filter((f) => f.endsWith('.tmp')).length;
      expect(temps).toBeLessThanOrEqual(1);
      midWrite += temps;
    }
    // Not blind: a fair share of the kills hit a write in progress.
    expect(midWrite).toBeGreaterThanOrEqual(2);
    model.dispose();
    console.log(`20 kills, ${midWrite} of them inside a write; saves completed before each kill: ${killedAfter.join(', ')}; last checkpoint epoch ${next - 1}`);
  });
});

const batches = (steps: number, throwAt?: number) => randomBatches({ batch: 8, steps, size: 10, classes: 3, ...(throwAt === undefined ? {} : { throwAt }) });

describe.skipIf(!defaultCase.available)('exceptions from user code', () => {
  test('tidy disposes what fn made before it threw, also in nested scopes', async () => {
    await sync();
    const before = counts();
    const x = randn([4, 4]);
    expect(() => tidy(() => {
      ops.relu(x);
      tidy(() => {
        ops.scale(x, 2);
        throw new Error('inner');
      });
    })).toThrow('inner');
    x.dispose();
    await sync();
    expect(counts()).toEqual(before);
  });

  test('a throwing callback, schedule, model or data source stops fit with that error and leaves nothing behind', async () => {
    const model = models.cifarResNet({ depth: 8, numClasses: 3, inChannels: 1, seed: 1 });
    const optimizer = new optim.SGD(model.parameters(), { lr: 0.05, momentum: 0.9 });
    await fit(model, { trainData: batches(2), epochs: 1, optimizer, progress: false });
    await sync();
    const before = counts();
    const forward = model.forward.bind(model);
    let calls = 0;
    const cases: [string, Partial<FitOptions>, RegExp][] = [
      ['onStep', { onStep: (s) => { if (s.step === 1) throw new Error('onStep failed'); } }, /onStep failed/],
      ['onEpoch', { onEpoch: () => { throw new Error('onEpoch failed'); } }, /onEpoch failed/],
      ['async onEpoch', { onEpoch: async () => { await new Promise((r) => setTimeout(r, 1)); throw new Error('async onEpoch failed'); } }, /async onEpoch failed/],
      ['schedule', { schedule: (step) => { if (step === 2) throw new Error('schedule failed'); return 0.01; } }, /schedule failed/],
      ['data source', { trainData: batches(4, 2) }, /data source failed/],
      ['a model that throws half-way through its forward', {}, /forward failed/],
    ];
    for (const [name, options, error] of cases) {
      calls = 0;
      model.forward = name.startsWith('a model')
        ? (x) => {
          const y = forward(x);
          if (++calls === 2) throw new Error('forward failed');
          return y;
        }
        : forward;
      await expect(fit(model, { trainData: batches(4), epochs: 2, optimizer, progress: false, ...options }), name).rejects.toThrow(error);
      await sync();
      expect(counts(), name).toEqual(before);
      expect(model.parameters().every((p) => p.grad === null), name).toBe(true);
    }
    // And training goes on.
    model.forward = forward;
    const history = await fit(model, { trainData: batches(2), epochs: 1, optimizer, progress: false });
    expect(Number.isFinite(history[0]!.trainLoss)).toBe(true);
    model.dispose();
    optimizer.dispose();
  });
});
