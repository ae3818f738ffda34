/**
 * Captured steps (train.captureStep, lib/train/capture.ts; native/cuda/graph.cc). On every
 * available backend, a step made by captureStep gives what the same function called eagerly
 * gives, step after step, with a learning rate that changes between steps: on the CPU, which has
 * no graphs and runs every call eagerly under the capture's rules, bit for bit; on a GPU, where
 * the calls after the warm-up replay a CUDA graph, within the tolerance of cuDNN's
 * non-deterministic backward algorithms. The capture's rules (no sync point, upload, change of
 * lr or start of momentum inside a step after its warm-up), the shape keys, disposal and the
 * native surface's refusals are checked on the CPU; the native capture's own refusals (a
 * readback, a cuDNN plan for new shapes) and recovery only where a GPU is.
 */
import { describe, expect, test } from 'vitest';
import { type Tensor, amp, memory, ops, optim, randn, sync, tensor, zeros } from '../lib/index.js';
import { bindingOf } from '../lib/backend/load.js';
import type { BackendName } from '../lib/backend/load.js';
import { cifarResNet } from '../lib/models/resnet.js';
import { captureStep, fit } from '../lib/train/index.js';
import { Linear } from '../lib/nn/index.js';
import { backendCases, cpuCase, randomBatches } from './helpers.js';

const cuda = backendCases.find((b) => b.name === 'cuda')!;

// A ResNet-8 and its SGD, built alike from one seed, and the function of one training step.
function setup(backend: BackendName, capturable = false) {
  const model = cifarResNet({ depth: 8, seed: 7, backend });
  model.train();
  const opt = new optim.SGD(model.parameters(), { lr: 0.1, momentum: 0.9, weightDecay: 5e-4, nesterov: true, capturable });
  const fn = (x: Tensor, y: Tensor<'int32'>): Tensor => {
    const loss = ops.softmaxCrossEntropy(model.forward(x), y);
    loss.backward();
    opt.step();
    opt.zeroGrad();
    return loss;
  };
  return { model, opt, fn };
}

function batch(i: number, backend: BackendName, n = 4) {
  const x = randn([n, 3, 8, 8], { seed: 100 + i, backend });
  const y = tensor(Int32Array.from({ length: n }, (_, k) => (k * 3 + i) % 10), [n], { backend, dtype: 'int32' });
  return { x, y };
}

const lrAt = (i: number) => 0.1 / (1 + i);

for (const c of backendCases) {
  describe.skipIf(!c.available)(`captured ResNet-8 steps on ${c.name}`, () => {
    const graphs = c.name !== 'cpu';
    // Bitwise on the CPU (the same kernels in the same order); on a GPU, the graph replays the
    // kernels eager calls launch, but cuDNN's backward-filter algorithms sum with atomics.
    const close = (a: Float32Array, b: Float32Array) => {
      if (!graphs) return expect(a).toEqual(b);
      for (let i = 0; i < a.length; i++) expect(Math.abs(a[i]! - b[i]!), `element ${i}`).toBeLessThanOrEqual(1e-4 * (1 + Math.abs(b[i]!)));
    };

    test('give the eager steps\' losses and parameters, following an lr schedule; outputs are overwritten by the next call', async () => {
      const eager = setup(c.name);
      const cap = setup(c.name);
      const step = captureStep(cap.fn, { warmup: 2 });
      const ways: (string | null)[] = [];
      for (let i = 0; i < 6; i++) {
        const { x, y } = batch(i, c.name);
        eager.opt.lr = lrAt(i);
        cap.opt.lr = lrAt(i);
        const le = eager.fn(x, y);
        const lc = step(x, y);
        ways.push(step.captured ? 'captured' : step.reason);
        close(await lc.data(), await le.data());
        for (const t of [x, y, le, lc]) t.dispose();
      }
      expect(ways.slice(0, 2)).toEqual([expect.stringMatching(/^warm-up call 1 of 2 for inputs/), expect.stringMatching(/^warm-up call 2 of 2/)]);
      if (graphs) {
        expect(ways.slice(2)).toEqual(['captured', 'captured', 'captured', 'captured']);
        expect(step.graphs).toBe(1);
      } else {
        expect(ways.slice(2).every((w) => /the cpu backend has no graphs/.test(w!))).toBe(true);
        expect(step.graphs).toBe(0);
      }
      expect(cap.opt.capturable).toBe(true);
      const pe = eager.model.parameters();
      const pc = cap.model.parameters();
      for (let i = 0; i < pe.length; i++) close(pc[i]!.dataSync() as Float32Array, pe[i]!.dataSync() as Float32Array);
      // Batch-norm layers count the replays as forward calls.
      expect(cap.model.stateDict()['bn1.num_batches_tracked']!.dataSync()[0]).toBe(6);
      step.dispose();
      const after = batch(0, c.name);
      expect(() => step(after.x, after.y)).toThrow('captureStep: the step is disposed');
      after.x.dispose();
      after.y.dispose();
      step.dispose();
      eager.opt.dispose();
      cap.opt.dispose();
    });

    test('a new input shape is warmed up and captured on its own; past maxGraphs it runs eagerly', async () => {
      const eager = setup(c.name);
      const cap = setup(c.name);
      const step = captureStep(cap.fn, { warmup: 1, maxGraphs: 1 });
      const ways: (string | null)[] = [];
      for (const [i, n] of [[0, 4], [1, 4], [2, 2], [3, 2], [4, 4], [5, 2]] as const) {
        const { x, y } = batch(i, c.name, n);
        const le = eager.fn(x, y);
        const lc = step(x, y);
        ways.push(step.captured ? 'captured' : step.reason);
        close(await lc.data(), await le.data());
        for (const t of [x, y, le, lc]) t.dispose();
      }
      expect(ways[0]).toMatch(/^warm-up call 1 of 1 for inputs \S+ float32\[4,3,8,8\] int32\[4\]$/);
      expect(ways[2]).toMatch(/^warm-up call 1 of 1 for inputs \S+ float32\[2,3,8,8\] int32\[2\]$/);
      if (graphs) {
        expect(ways[1]).toBe('captured');
        expect(ways[3]).toMatch(/^1 graphs are held already \(maxGraphs 1\)/);
        expect(ways[4]).toBe('captured');
      }
      step.dispose();
      eager.opt.dispose();
      cap.opt.dispose();
    });
  });
}

// A linear model's step on `backend` that does `extra` inside, after one warm-up call: the
// refusal, and why the step runs eagerly afterwards.
function refusedAfterWarmup(backend: BackendName, extra: (t: { loss: Tensor; opt: optim.SGD }) => void, momentum = 0) {
  const lin = new Linear(4, 3, { seed: 1, backend });
  const opt = new optim.SGD(lin.parameters(), { lr: 0.1, momentum });
  let calls = 0;
  const step = captureStep((x: Tensor, y: Tensor<'int32'>) => {
    const loss = ops.softmaxCrossEntropy(lin.forward(x), y);
    loss.backward();
    if (calls++ > 0) extra({ loss, opt });
    if (momentum === 0 || calls > 1) opt.step();
    opt.zeroGrad();
    return loss;
  }, { warmup: 1 });
  const x = randn([2, 4], { seed: 3, backend });
  const y = tensor(Int32Array.of(0, 2), [2], { backend, dtype: 'int32' });
  step(x, y).dispose();
  let err: unknown = null;
  try {
    step(x, y);
  } catch (e) {
    err = e;
  }
  // The step stays usable, eagerly, without the rules.
  const after = step(x, y);
  const reason = step.reason;
  after.dispose();
  step.dispose();
  opt.dispose();
  x.dispose();
  y.dispose();
  return { err: err as Error & { code?: string }, reason };
}

for (const c of backendCases) {
  describe.skipIf(!c.available)(`the rules of a captured step on ${c.name} (the CPU checks them too)`, () => {
    test.each([
      ['a readback', ({ loss }: { loss: Tensor }) => loss.data().catch(() => undefined), /^data: a readback \(a sync point\) cannot be part of a captured step/],
      ['dataSync', ({ loss }: { loss: Tensor }) => loss.dataSync(), /^dataSync: a readback/],
      ['sync()', () => sync(c.name).catch(() => undefined), /^sync: a sync point cannot be part/],
      ['an upload', () => tensor([1, 2], [2], { backend: c.name }), /^tensor: an upload from JavaScript memory cannot be part/],
      ['a change of lr', ({ opt }: { opt: optim.SGD }) => {
        opt.lr = 0.5;
      }, /^SGD\.lr: a change of the learning rate cannot be part/],
    ])('%s inside the step is refused with ERR_CAPTURE_REFUSED, and the step runs eagerly afterwards', (_, extra, message) => {
      const { err, reason } = refusedAfterWarmup(c.name, extra as (t: { loss: Tensor; opt: optim.SGD }) => void);
      expect(err).toBeInstanceOf(Error);
      expect(err.message).toMatch(message);
      expect(err.code).toBe('ERR_CAPTURE_REFUSED');
      expect(reason).toMatch(c.name === 'cpu' ? /^it broke the rules of a captured step: / : /^its capture failed: /);
    });

    test('a momentum buffer that would start after the warm-up is refused', () => {
      const { err } = refusedAfterWarmup(c.name, () => undefined, 0.9);
      expect(err.message).toMatch(/^SGD\.step: the start of params\[0\]'s momentum buffer \(the step's warm-up calls start it\) cannot be part/);
    });
  });
}

describe.skipIf(!cpuCase.available)('captureStep\'s checks, the capturable SGD, fit and the cpu addon', () => {
  test('stochastic depth is refused inside a step after its warm-up', () => {
    const model = cifarResNet({ depth: 8, seed: 1, backend: 'cpu', dropPath: 0.5 } as never);
    const step = captureStep((x: Tensor) => model.forward(x), { warmup: 1 });
    const x = randn([2, 3, 8, 8], { seed: 1, backend: 'cpu' });
    step(x).dispose();
    expect(() => step(x)).toThrow(/^stochastic depth: a random draw on the host cannot be part of a captured step/);
    step.dispose();
    x.dispose();
  });

  test('steps do not nest; arguments and options are checked', () => {
    const inner = captureStep((x: Tensor) => ops.relu(x), { warmup: 1 });
    const outer = captureStep((x: Tensor) => inner(x), { warmup: 1 });
    const x = zeros([2], { backend: 'cpu' });
    expect(() => outer(x)).toThrow(/^captureStep: a step called inside another step cannot be part/);
    expect(() => captureStep(3 as never)).toThrow(new TypeError('captureStep: expected a step function, got 3 of type number'));
    expect(() => captureStep(() => undefined, { warmup: 0 })).toThrow(/warmup/);
    expect(() => captureStep(() => undefined, { maxGraphs: -1 })).toThrow(/maxGraphs/);
    expect(() => captureStep(() => undefined, { every: 1 } as never)).toThrow(/every/);
    const step = captureStep((t: Tensor) => t);
    expect(() => (step as unknown as () => void)()).toThrow('captureStep: a step takes at least one input tensor (its batch)');
    expect(() => step(5 as never)).toThrow('captureStep: inputs[0] is 5 of type number, not a Tensor');
    const disposedInput = zeros([1], { backend: 'cpu' });
    disposedInput.dispose();
    expect(() => step(disposedInput)).toThrow(/disposed/);
    // An error of the step function that is no refusal leaves its shape under the rules.
    let fail = true;
    const flaky = captureStep((t: Tensor) => {
      if (fail) throw new RangeError('the step function failed');
      return ops.relu(t);
    }, { warmup: 1 });
    fail = false;
    flaky(x).dispose();
    fail = true;
    expect(() => flaky(x)).toThrow('the step function failed');
    fail = false;
    flaky(x).dispose();
    expect(flaky.reason).toMatch(/^the cpu backend has no graphs/);
    flaky.dispose();
    const off = captureStep((t: Tensor) => ops.relu(t), { enabled: false });
    off(x).dispose();
    expect(off.reason).toBe('capture is disabled (enabled: false)');
    expect(off.captured).toBe(false);
    for (const s of [inner, outer, step, off]) s.dispose();
    x.dispose();
  });

  test('a capturable SGD (lr in device memory) steps as the plain one, bit for bit, through lr changes', () => {
    const make = (capturable: boolean) => {
      const lin = new Linear(5, 3, { seed: 4, backend: 'cpu' });
      return { lin, opt: new optim.SGD(lin.parameters(), { lr: 0.2, momentum: 0.5, capturable }) };
    };
    const a = make(false);
    const b = make(true);
    for (let i = 0; i < 4; i++) {
      const x = randn([3, 5], { seed: 10 + i, backend: 'cpu' });
      for (const m of [a, b]) {
        m.opt.lr = lrAt(i);
        ops.softmaxCrossEntropy(m.lin.forward(x), [0, 1, 2]).backward();
        m.opt.step();
        m.opt.zeroGrad();
      }
      x.dispose();
    }
    expect(b.opt.capturable).toBe(true);
    a.lin.parameters().forEach((p, i) => expect(b.lin.parameters()[i]!.dataSync()).toEqual(p.dataSync()));
    a.opt.dispose();
    b.opt.dispose();
  });

  test('fit checks captureSteps, and trains the same with it on or off where there are no graphs', async () => {
    const run = async (captureSteps: boolean) => {
      const lin = new Linear(4, 4, { seed: 2, backend: 'cpu' });
      const opt = new optim.SGD(lin.parameters(), { lr: 0.05, momentum: 0.9 });
      const model = { forward: (x: Tensor) => lin.forward(ops.flatten(x)), train: () => undefined, eval: () => undefined };
      const h = await fit(model, { trainData: randomBatches({ batch: 4, steps: 5, size: 2, classes: 4 }), epochs: 2, optimizer: opt, progress: false, captureSteps });
      opt.dispose();
      return h.map((m) => m.trainLoss);
    };
    expect(await run(true)).toEqual(await run(false));
    await expect(fit({ forward: (x: Tensor) => x, train: () => undefined, eval: () => undefined }, {
      trainData: randomBatches({ batch: 2, steps: 1, size: 2, classes: 4 }), epochs: 1, optimizer: new optim.SGD([zeros([1], { backend: 'cpu', requiresGrad: true })], { lr: 1 }),
      captureSteps: 'yes' as never,
    })).rejects.toThrow(/captureSteps/);
  });

  test('the cpu addon refuses graphs, copies with copyInto, and checks sgdStep\'s lrBuffer', () => {
    const b = bindingOf('cpu');
    expect(() => b.captureBegin()).toThrow(expect.objectContaining({ code: 'ERR_UNSUPPORTED', message: expect.stringMatching(/^captureBegin: the cpu backend has no graphs/) }));
    expect(() => b.graphLaunch(1)).toThrow(expect.objectContaining({ code: 'ERR_UNSUPPORTED' }));
    expect(() => b.captureEnd()).toThrow(expect.objectContaining({ code: 'ERR_CAPTURE_OPEN' }));
    expect(() => b.captureAbort()).not.toThrow();
    expect(() => b.graphRelease(7)).not.toThrow();
    expect(b.graphStatus(1)).toEqual({ ready: false, failure: 'this backend has no graphs' });
    expect(() => b.graphStatus(0)).toThrow(RangeError);
    const src = b.upload(Float32Array.of(1, 2, 3, 4), [2, 2]);
    const dst = b.zerosLike(src);
    b.copyInto(dst, src);
    expect(b.downloadSync(dst)).toEqual(Float32Array.of(1, 2, 3, 4));
    const other = b.fill([4], 0, 'float32');
    expect(() => b.copyInto(other, src)).toThrow(new RangeError('copyInto: dst is float32 [4] but src is float32 [2, 2]'));
    expect(() => b.sgdStep([dst], [src], [], 0.1, 0, 0, false, false, other)).toThrow(/^sgdStep: expected lrBuffer to be a float32 buffer of one value, got float32 \[4\]/);
    for (const h of [src, dst, other]) b.release(h);
  });
});

describe.skipIf(!cuda.available)('captures on a GPU: the native refusals and recovery', () => {
  test('a readback inside a capture is refused natively, the capture discarded, and the backend works on', async () => {
    const b = bindingOf('cuda');
    const x = b.fill([4], 2, 'float32');
    const id = b.captureBegin();
    const y = b.scale(x, 3);
    expect(() => b.downloadSync(y)).toThrow(expect.objectContaining({ code: 'ERR_CAPTURE_REFUSED', message: expect.stringMatching(/^dataSync \[4\]: a sync point cannot be part of a captured step/) }));
    expect(() => b.upload(Float32Array.of(1), [1])).toThrow(expect.objectContaining({ code: 'ERR_CAPTURE_REFUSED' }));
    expect(() => b.captureEnd()).toThrow(/^captureEnd: the capture was abandoned: dataSync \[4\]/);
    await b.sync();
    expect(b.graphStatus(id).failure).toBe('the capture was abandoned');
    expect(() => b.graphLaunch(id)).not.toThrow();
    await expect(b.sync()).rejects.toThrow(/cannot be replayed: the capture was abandoned/);
    b.graphRelease(id);
    const z = b.scale(x, 5);
    expect(Array.from(await b.download(z))).toEqual([10, 10, 10, 10]);
    for (const h of [x, y, z]) b.release(h);
  });

  test('a cuDNN plan for new shapes inside a capture fails it, reported at the next sync point', async () => {
    const b = bindingOf('cuda');
    const x = b.fill([1, 3, 9, 9], 1, 'float32');
    const w = b.fill([2, 3, 3, 3], 1, 'float32');
    const id = b.captureBegin();
    const y = b.conv2dForward(x, w, null, [1, 1], [1, 1], [1, 1], 1);
    b.captureEnd();
    await expect(b.sync()).rejects.toThrow(/a cuDNN plan for new shapes \(built on their first use\) cannot be part of a captured step/);
    expect(b.graphStatus(id).failure).toMatch(/cuDNN plan/);
    b.graphRelease(id);
    // Eagerly the same conv works, and a capture after it replays it.
    const eager = b.conv2dForward(x, w, null, [1, 1], [1, 1], [1, 1], 1);
    const id2 = b.captureBegin();
    const y2 = b.conv2dForward(x, w, null, [1, 1], [1, 1], [1, 1], 1);
    b.captureEnd();
    b.graphLaunch(id2);
    b.graphLaunch(id2);
    expect(await b.download(y2)).toEqual(await b.download(eager));
    expect(b.graphStatus(id2)).toEqual({ ready: true, failure: null });
    b.graphRelease(id2);
    for (const h of [x, w, y, eager, y2]) b.release(h);
  });

  test('fit trains a ResNet-8 the same with its steps captured or not', async () => {
    const run = async (captureSteps: boolean) => {
      const model = cifarResNet({ depth: 8, seed: 5, inChannels: 1, backend: 'cuda' });
      const opt = new optim.SGD(model.parameters(), { lr: 0.05, momentum: 0.9 });
      const h = await fit(model, { trainData: randomBatches({ batch: 8, steps: 7, size: 8, classes: 10 }), epochs: 2, optimizer: opt, progress: false,
        captureSteps, schedule: (step) => 0.05 / (1 + step) });
      opt.dispose();
      return h.map((m) => m.trainLoss);
    };
    const eager = await run(false);
    const captured = await run(true);
    captured.forEach((l, i) => expect(Math.abs(l - eager[i]!)).toBeLessThanOrEqual(1e-4 * (1 + Math.abs(eager[i]!))));
  });

  // The memory a captured task makes for itself: float16's fused batch-norm tails keep their
  // reserve space (DeviceMemory) from the forward to the backward, and bfloat16's batch norm runs
  // on float32 copies; each must outlive the capture and be the same at every replay.
  test.each(['float16', 'bfloat16'] as const)('%s ResNet-8 steps replay like eager ones', async (dtype) => {
    const eager = setup('cuda');
    const cap = setup('cuda');
    const half = (fn: typeof eager.fn) => (x: Tensor, y: Tensor<'int32'>) => amp.autocast({ dtype }, () => fn(x, y));
    const step = captureStep(half(cap.fn), { warmup: 2 });
    for (let i = 0; i < 6; i++) {
      const { x, y } = batch(i, 'cuda');
      const le = half(eager.fn)(x, y);
      const lc = step(x, y);
      if (i >= 2) expect(step.captured, step.reason ?? '').toBe(true);
      const [got, want] = [await lc.data(), await le.data()];
      expect(Math.abs(got[0]! - want[0]!), `step ${i}`).toBeLessThanOrEqual(1e-2 * (1 + Math.abs(want[0]!)));
      for (const t of [x, y, le, lc]) t.dispose();
    }
    step.dispose();
    eager.opt.dispose();
    cap.opt.dispose();
  });

  test('replays read the new inputs, and disposing the step gives its memory back', async () => {
    const before = memory().backends.cuda!.bytes;
    const w = randn([3, 5], { seed: 1, backend: 'cuda' });
    const step = captureStep((x: Tensor) => ops.linear(x, w), { warmup: 1 });
    for (let i = 0; i < 4; i++) {
      const x = randn([2, 5], { seed: 20 + i, backend: 'cuda' });
      const got = step(x);
      const want = ops.linear(x, w);
      expect(await got.data()).toEqual(await want.data());
      for (const t of [x, got, want]) t.dispose();
    }
    expect(step.captured).toBe(true);
    step.dispose();
    w.dispose();
    await sync('cuda');
    expect(memory().backends.cuda!.bytes).toBe(before);
  });
});
