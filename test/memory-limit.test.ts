/**
 * Resource limits: setMemoryLimit turns an allocation beyond the cap into a catchable error that
 * names the op and the bytes, before anything is allocated or queued; huge shapes are refused
 * before allocation; a training run that reaches the cap stops cleanly (no tensor left behind,
 * no stray gradients), keeps its last checkpoint, and the library goes on working.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, test } from 'vitest';
import { type Tensor, models, ops, optim, randn, setMemoryLimit, sync, tensor, tidy, zeros } from '../lib/index.js';
import { fit, loadCheckpoint, saveCheckpoint } from '../lib/train/index.js';
import { defaultCase, defaultMemory, randomBatches } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'cr-memlimit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => setMemoryLimit(null));


interface LimitError extends Error { code: string; op: string }

function caught(fn: () => unknown): LimitError {
  try {
    fn();
  } catch (err) {
    return err as LimitError;
  }
  throw new Error('expected a throw');
}

describe.skipIf(!defaultCase.available)('setMemoryLimit', () => {
  test('an op past the cap throws ERR_MEMORY_LIMIT naming op, shape and bytes, and allocates nothing', async () => {
    const x = randn([8, 16, 32, 32], { seed: 1 });
    const w = randn([16, 16, 3, 3], { seed: 2 });
    await sync();
    const before = defaultMemory();
    setMemoryLimit(before.bytes + 100_000);
    expect(defaultMemory().limitBytes).toBe(before.bytes + 100_000);
    const err = caught(() => ops.conv2d(x, w, { padding: 1 }));
    expect(err).toBeInstanceOf(Error);
    expect(err.code).toBe('ERR_MEMORY_LIMIT');
    expect(err.op).toBe('conv2d');
    expect(err.message).toMatch(/^conv2d: memory limit exceeded: \d+ bytes requested for a float32 \[8, 16, 32, 32\] tensor/);
    expect(err.message).toContain(`limit ${before.bytes + 100_000} bytes`);
    const after = defaultMemory();
    expect([after.tensors, after.buffers, after.bytes, after.pendingOps]).toEqual([before.tensors, before.buffers, before.bytes, 0]);
    // Under the cap again, the same op works and computes what it computes without a cap.
    setMemoryLimit(null);
    expect(defaultMemory().limitBytes).toBeNull();
    const y = ops.conv2d(x, w, { padding: 1 });
    const values = await y.data();
    expect(values.every(Number.isFinite)).toBe(true);
    for (const t of [x, w, y]) t.dispose();
  });

  test('constructors and readbacks obey the cap; backward past it throws and leaves nothing behind', async () => {
    const base = defaultMemory().bytes;
    setMemoryLimit(base + 4096);
    expect(caught(() => zeros([2048])).code).toBe('ERR_MEMORY_LIMIT');
    expect(caught(() => tensor(new Float32Array(2048), [2048])).code).toBe('ERR_MEMORY_LIMIT');
    expect(caught(() => randn([1, 2048])).code).toBe('ERR_MEMORY_LIMIT');
    const small = zeros([512]);
    expect((await small.data()).length).toBe(512);
    small.dispose();
    setMemoryLimit(null);

    // A backward that reaches the cap at any point throws it, and the graph and partial
    // gradients it leaves are freed like any other.
    const w = randn([8, 3, 3, 3], { seed: 3, requiresGrad: true });
    const fc = randn([2, 8], { seed: 5, requiresGrad: true });
    const x = randn([4, 3, 16, 16], { seed: 4, requiresGrad: true });
    await sync();
    const start = defaultMemory();
    // Caps from just above the forward's memory upwards, until backward fits: every op of the
    // walk gets to be the one that fails.
    const failedOps = new Set<string>();
    for (let extra = 0; ; extra += 8192) {
      expect(extra).toBeLessThan(2 ** 22);
      // Conv backward makes two native calls (input, then weight gradient), and h's two uses
      // make the walk add gradients: both can fail between allocations.
      const loss = tidy(() => {
        const h = ops.relu(ops.conv2d(x, w, { padding: 1 }));
        return ops.softmaxCrossEntropy(ops.linear(ops.flatten(ops.globalAvgPool(ops.addRelu(h, h))), fc), [0, 1, 0, 1]);
      });
      await sync();
      setMemoryLimit(defaultMemory().bytes + extra);
      let done = true;
      try {
        loss.backward();
        await sync();
      } catch (err) {
        expect((err as LimitError).code).toBe('ERR_MEMORY_LIMIT');
        failedOps.add((err as LimitError).op);
        done = false;
      }
      setMemoryLimit(null);
      loss.dispose();
      for (const t of [w, fc, x]) t.grad = null;
      await sync();
      const now = defaultMemory();
      expect([now.tensors, now.buffers, now.bytes], `cap ${extra} bytes above the forward`).toEqual([start.tensors, start.buffers, start.bytes]);
      if (done) break;
    }
    // Which op meets the cap at a given cap also depends on how far the worker has got (it frees
    // an op's inputs once the op ran), so on a loaded machine a step of the sweep can skip an op:
    // the walk must fail in several different ops, not in a fixed list of them.
    expect(failedOps.size, [...failedOps].join(', ')).toBeGreaterThanOrEqual(3);
    expect([...failedOps]).toEqual(expect.arrayContaining(['fill', 'reluBackward']));
    for (const t of [w, fc, x]) t.dispose();
  });

  test('arguments are checked', () => {
    expect(() => setMemoryLimit(-1)).toThrow(RangeError);
    expect(() => setMemoryLimit(1.5)).toThrow(RangeError);
    expect(() => setMemoryLimit(Number.NaN)).toThrow(RangeError);
    expect(() => setMemoryLimit('1GiB' as unknown as number)).toThrow(TypeError);
    expect(() => setMemoryLimit(1024, 'tpu' as 'cpu')).toThrow(/tpu/);
    setMemoryLimit(Infinity);
    expect(defaultMemory().limitBytes).toBeNull();
    setMemoryLimit(0);
    expect(defaultMemory().limitBytes).toBeNull();
  });

  test('huge shapes are refused before any allocation', () => {
    const before = defaultMemory();
    expect(() => zeros([2 ** 20, 2 ** 20])).toThrow(/1099511627776 elements, more than the 17179869184 supported/);
    expect(() => randn([2 ** 10, 2 ** 10, 2 ** 10, 2 ** 10])).toThrow(RangeError);
    expect(() => zeros([2 ** 31, 2])).toThrow(/shape\[0\] to be an integer in \[1, 2147483647\]/);
    expect(() => zeros([2 ** 53, 1])).toThrow(RangeError);
    expect(defaultMemory().bytes).toBe(before.bytes);
  });
});

const batches = () => randomBatches({ batch: 16, steps: 3, size: 12, classes: 4 });

async function parameterValues(model: { parameters(): Tensor[] }): Promise<Float32Array[]> {
  return Promise.all(model.parameters().map((p) => p.data()));
}

describe.skipIf(!defaultCase.available)('training at the cap', () => {
  test('fit stops with the memory error, leaves no tensors or gradients, and the checkpoint resumes', async () => {
    const model = models.cifarResNet({ depth: 8, numClasses: 4, inChannels: 1, seed: 1 });
    const optimizer = new optim.SGD(model.parameters(), { lr: 0.05, momentum: 0.9 });
    const checkpoint = join(dir, 'checkpoint.safetensors');
    await fit(model, {
      trainData: batches(), epochs: 1, optimizer, progress: false,
      onEpoch: (m) => saveCheckpoint(checkpoint, { model, optimizer, state: { epoch: m.epoch } }),
    });
    const weights = await parameterValues(model);
    await sync();
    const before = defaultMemory();

    // Room for the weights, momentum and one batch, not for a step's activations.
    setMemoryLimit(before.bytes + 64 * 1024);
    const err = await fit(model, { trainData: batches(), epochs: 2, startEpoch: 1, optimizer, progress: false }).then(() => null, (e: LimitError) => e);
    expect(err?.code).toBe('ERR_MEMORY_LIMIT');
    await sync();
    const after = defaultMemory();
    expect([after.tensors, after.buffers, after.bytes]).toEqual([before.tensors, before.buffers, before.bytes]);
    expect(model.parameters().every((p) => p.grad === null)).toBe(true);
    // No optimizer step ran: the weights are those of the checkpoint.
    expect(await parameterValues(model)).toEqual(weights);

    // The checkpoint loads into a fresh model with the same weights, and training goes on.
    setMemoryLimit(null);
    const fresh = models.cifarResNet({ depth: 8, numClasses: 4, inChannels: 1, seed: 2 });
    const freshOpt = new optim.SGD(fresh.parameters(), { lr: 0.05, momentum: 0.9 });
    expect((await loadCheckpoint(checkpoint, { model: fresh, optimizer: freshOpt })).epoch).toBe(1);
    expect(await parameterValues(fresh)).toEqual(weights);
    const history = await fit(fresh, { trainData: batches(), epochs: 2, startEpoch: 1, optimizer: freshOpt, progress: false });
    expect(history.at(-1)!.epoch).toBe(2);
    expect(Number.isFinite(history.at(-1)!.trainLoss)).toBe(true);
    for (const d of [model, optimizer, fresh, freshOpt]) d.dispose();
  });
});
