/**
 * The workload scripts/sanitize.sh runs under AddressSanitizer, LeakSanitizer and UBSan: every
 * entry point of the CPU addon, its error paths, a few training steps of a small ResNet, worker
 * threads that load the addon and go away (one ends normally, one is terminated with work
 * queued), and a process group of two worker threads over Gloo (collectives, DDP, a rank lost). Not a test of results (the vitest suite does that), though it checks enough to
 * know the code it meant to reach ran. Everything is disposed and the process exits by itself,
 * so that Node tears down the addon (instance data, queue, handles) before LeakSanitizer looks.
 *
 *   CUDNN_RESNET_ADDON_DIR=build-sanitize/Release LD_PRELOAD=... node --import tsx test/sanitize/workload.ts [steps]
 *
 * `steps` (default 3) is the number of ResNet training steps; scripts/sanitize.sh passes it.
 * @internal
 */
import assert from 'node:assert/strict';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { type AddressInfo, createServer } from 'node:net';
import {
  type Tensor, distributed, emptyCache, memory, models, nn, noGrad, ones, ops, optim, randn, sync, tensor, tidy, zeros,
} from '../../lib/index.js';
import type { NativeBuffer } from '../../lib/backend/binding.js';
import { bindingOf } from '../../lib/backend/load.js';

const b = bindingOf('cpu');

/** Runs `fn`, which must throw an error whose message matches `pattern`. */
function throws(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof Error && pattern.test(e.message));
}

async function rejects(p: Promise<unknown>, pattern: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => e instanceof Error && pattern.test(e.message));
}

/** Every op forward and backward through the public API, with the options each takes. */
async function opsForwardBackward(): Promise<void> {
  const loss = tidy(() => {
    const x = randn([2, 4, 9, 7], { seed: 1, requiresGrad: true });
    const terms: Tensor[] = [];
    // conv2d: plain, bias, stride, padding, dilation, groups, depthwise, 1x1.
    const convs: [number[], ops.Conv2dOptions, boolean][] = [
      [[6, 4, 3, 3], { padding: 1 }, false],
      [[6, 4, 3, 3], { stride: 2, padding: [1, 0] }, true],
      [[4, 2, 3, 3], { dilation: 2, padding: 2, groups: 2 }, true],
      [[4, 1, 3, 3], { groups: 4, padding: 1 }, false],
      [[8, 4, 1, 1], { stride: [2, 1] }, false],
    ];
    convs.forEach(([shape, o, withBias], i) => {
      const w = randn(shape, { seed: 10 + i, std: 0.2, requiresGrad: true });
      const bias = withBias ? randn([shape[0]!], { seed: 20 + i, requiresGrad: true }) : undefined;
      terms.push(ops.conv2d(x, w, bias ? { ...o, bias } : o));
    });
    const h = terms[0]!;
    // Batch norm in training (with and without running statistics) and in evaluation.
    const bn = { weight: ones([6], { requiresGrad: true }), bias: zeros([6], { requiresGrad: true }) };
    const bnTrain = ops.batchNorm2d(h, { ...bn, runningMean: zeros([6]), runningVar: ones([6]), training: true, momentum: 0.2 });
    const bnBatchOnly = ops.batchNorm2d(h, { ...bn, training: true, eps: 1e-3 });
    // (No gradients through evaluation-mode batch norm yet.)
    const bnEval = noGrad(() => ops.batchNorm2d(h, { ...bn, runningMean: randn([6], { seed: 30 }), runningVar: ones([6]), training: false }));
    // Elementwise ops, on blocked (conv output) and plain layouts.
    const e1 = ops.addRelu(ops.relu(bnTrain), ops.scale(bnBatchOnly, 0.5));
    const e2 = ops.add(e1, bnEval);
    const plain = randn([2, 6, 9, 7], { seed: 31, requiresGrad: true });
    const e3 = ops.addRelu(e2, plain);
    // Pooling: max (with padding, overlapping), average, global average.
    const mp = ops.maxPool2d(e3, { kernel: 3, stride: 2, padding: 1 });
    const ap = ops.avgPool2d(e3, { kernel: [2, 3], stride: [1, 2], padding: [1, 1] });
    const gp = ops.globalAvgPool(ap);
    const mpPlain = ops.maxPool2d(plain, { kernel: 2 });
    // Linear with and without bias, softmax cross-entropy with and without label smoothing.
    const feats = ops.flatten(mp);
    const fc1 = randn([5, feats.shape[1]!], { seed: 32, std: 0.1, requiresGrad: true });
    const fcb = zeros([5], { requiresGrad: true });
    const logits1 = ops.linear(feats, fc1, fcb);
    const fc2 = randn([5, 6], { seed: 33, std: 0.1, requiresGrad: true });
    const logits2 = ops.linear(ops.flatten(gp), fc2);
    const labels = tensor(Int32Array.from([1, 4]));
    const l1 = ops.softmaxCrossEntropy(logits1, labels, { labelSmoothing: 0.1 });
    const l2 = ops.softmaxCrossEntropy(logits2, [0, 3]);
    let total = ops.add(l1, l2);
    for (const t of [...terms.slice(1), mpPlain]) {
      total = ops.add(total, ops.scale(ops.softmaxCrossEntropy(ops.linear(ops.flatten(ops.globalAvgPool(t)),
        ones([3, t.shape[1]!])), [0, 2]), 0.1));
    }
    total.backward();
    // One SGD step of each kind over the parameters that got gradients.
    const params = [x, plain, fc1, fcb, fc2, bn.weight, bn.bias];
    for (const o of [{ lr: 0.1 }, { lr: 0.1, momentum: 0.9, weightDecay: 1e-4 }, { lr: 0.1, momentum: 0.9, nesterov: true }]) {
      const opt = new optim.SGD(params, o);
      opt.step();
      opt.step();
      opt.dispose();
    }
    return total;
  });
  const value = await loss.item();
  assert.ok(Number.isFinite(value), `loss ${value}`);
  loss.dispose();
}

/** The raw binding: every function, including the ones the library reaches only indirectly. */
async function bindingSurface(): Promise<void> {
  const info = b.info();
  assert.equal(info.backend, 'cpu');
  b.setNumThreads(2);
  const x = b.upload(Float32Array.from({ length: 2 * 3 * 5 * 5 }, (_, i) => Math.sin(i)), [2, 3, 5, 5]);
  const f = b.fill([2, 3, 5, 5], 0.5, 'float32');
  const fi = b.fill([4], 3, 'int32');
  const z = b.zerosLike(x);
  const second = b.share(x);
  assert.deepEqual(b.shapeOf(second), [2, 3, 5, 5]);
  const r = b.reshape(x, [6, 25]);
  const sum = b.add(x, f);
  b.release(second);
  assert.equal((await b.download(r)).length, 150);
  assert.equal(b.downloadSync(fi).length, 4);
  assert.equal(b.downloadSync(z)[7], 0);
  assert.equal(b.downloadSync(sum).length, 150);
  // Backward entry points directly, with and without bias, and the pooling workspaces.
  const w = b.upload(new Float32Array(4 * 3 * 3 * 3).fill(0.1), [4, 3, 3, 3]);
  const y = b.conv2dForward(x, w, null, [1, 1], [1, 1], [1, 1], 1);
  const dx = b.conv2dBackwardData(y, w, [2, 3, 5, 5], [1, 1], [1, 1], [1, 1], 1);
  const [dw, db] = b.conv2dBackwardWeights(x, y, [4, 3, 3, 3], true, [1, 1], [1, 1], [1, 1], 1);
  const [mp, ws] = b.maxPool2dForward(y, [2, 2], [2, 2], [0, 0]);
  const dmp = b.maxPool2dBackward(mp, ws, [2, 4, 5, 5], [2, 2], [2, 2], [0, 0]);
  const ap = b.avgPool2dForward(y, [3, 3], [1, 1], [1, 1]);
  const dap = b.avgPool2dBackward(ap, [2, 4, 5, 5], [3, 3], [1, 1], [1, 1]);
  const rb = b.reluBackward(b.relu(y), y);
  const flat = b.reshape(y, [2, 100]);
  const fw = b.fill([3, 100], 0.01, 'float32');
  const lin = b.linearForward(flat, fw, null);
  const [ldx, ldw, ldb] = b.linearBackward(flat, fw, lin, false);
  assert.equal(ldb, null);
  const labels = b.upload(Int32Array.from([2, 0]), [2]);
  const [loss, probs] = b.softmaxCrossEntropyForward(lin, labels, 0.05);
  const dlogits = b.softmaxCrossEntropyBackward(probs, labels, 0.05, b.fill([], 1, 'float32'));
  const c = b.fill([3], 1, 'float32');
  const [bny, m, v, none] = b.batchNormForwardTraining(y, b.fill([4], 1, 'float32'), b.fill([4], 0, 'float32'), null, null, 0.1, 1e-5, null, false);
  assert.equal(none, null);
  const [bdx, bdw, bdb] = b.batchNormBackward(y, null, bny, b.fill([4], 1, 'float32'), m, v, null, 1e-5, false, false);
  const bni = b.batchNormForwardInference(y, b.fill([4], 1, 'float32'), b.fill([4], 0, 'float32'), b.fill([4], 0, 'float32'), b.fill([4], 1, 'float32'), 1e-5, null, false);
  // The fused tails: oneDNN's ReLU mask, and this backend's batch norm + add + ReLU kernels in
  // float32 and bfloat16 (float16 goes through float32), on the convolution's blocked layout.
  const [rly, rlm, rlv, mask] = b.batchNormForwardTraining(y, b.fill([4], 1, 'float32'), b.fill([4], 0, 'float32'), null, null, 0.1, 1e-5, null, true);
  assert.ok(mask);
  const [rdx] = b.batchNormBackward(y, rly, bny, b.fill([4], 1, 'float32'), rlm, rlv, mask, 1e-5, false, true);
  const tails = [];
  for (const dtype of ['float32', 'bfloat16', 'float16'] as const) {
    const yh = b.cast(y, dtype);
    const [ty, tm, tv] = b.batchNormForwardTraining(yh, b.fill([4], 1, 'float32'), b.fill([4], 0, 'float32'), b.fill([4], 0, 'float32'), b.fill([4], 1, 'float32'), 0.1, 1e-5, yh, true);
    const [tdx, , , tdz] = b.batchNormBackward(yh, ty, ty, b.fill([4], 1, 'float32'), tm, tv, null, 1e-5, true, true);
    const ti = b.batchNormForwardInference(yh, b.fill([4], 1, 'float32'), b.fill([4], 0, 'float32'), tm, tv, 1e-5, yh, false);
    tails.push(tdx, tdz!, ti, b.countNonFinite([tdx, ti]), b.upload(Float32Array.from([1, 2.5, -3, 70000]), [4], dtype));
  }
  const p = b.fill([3], 1, 'float32');
  const g = b.fill([3], 0.5, 'float32');
  const mom = b.zerosLike(p);
  b.sgdStep([p], [g], [mom], 0.1, 0.9, 0.01, true, true);
  b.sgdStep([p], [g], [], 0.1, 0, 0, false, false);
  await b.sync();
  b.syncBlocking();
  for (const t of [dx, dw, dmp, dap, rb, ldx, ldw, dlogits, bdx, bdw, bdb, bni, loss, rdx, ...tails]) assert.ok(b.downloadSync(t).length > 0);
  assert.ok(db && b.downloadSync(db).length === 4);
  assert.ok(Math.abs(b.downloadSync(p)[0]! - 1) < 1);
  for (const h of [x, f, fi, z, r, sum, w, y, dx, dw, db!, mp, ws, dmp, ap, dap, rb, flat, fw, lin, ldx, ldw, labels,
    loss, probs, dlogits, c, bny, m, v, bdx, bdw, bdb, bni, p, g, mom, rly, rlm, rlv, mask, rdx]) b.release(h);
  assert.ok(b.memory().buffers >= 0);
  assert.ok(b.cachedBytes() >= 0);
}

/** Handles released, shared and dropped while queued work still uses them. */
async function releaseInFlight(): Promise<void> {
  for (let round = 0; round < 3; round++) {
    const x = b.upload(new Float32Array(8 * 16 * 16 * 16).fill(1), [8, 16, 16, 16]);
    const w = b.fill([16, 16, 3, 3], 0.01, 'float32');
    let h: NativeBuffer = x;
    const chain: NativeBuffer[] = [];
    for (let i = 0; i < 6; i++) {
      const next = b.relu(b.conv2dForward(h, w, null, [1, 1], [1, 1], [1, 1], 1));
      chain.push(next);
      h = next;
    }
    // Release everything but the end while the chain is queued; the queue keeps what it needs.
    b.release(x);
    b.release(w);
    const pending = b.download(h);
    for (const t of chain.slice(0, -1)) b.release(t);
    b.release(h);
    assert.equal((await pending).length, 8 * 16 * 16 * 16);
    // A readback that nobody awaits before the handle goes; then the cache is emptied under it.
    const t = b.fill([1000], 2, 'float32');
    const late = b.download(t);
    b.release(t);
    b.emptyCache();
    assert.equal((await late)[999], 2);
  }
  // The library's dispose() and tidy() while ops are queued on the same tensors.
  const a = randn([4, 8, 12, 12], { seed: 5 });
  const w = randn([8, 8, 3, 3], { seed: 6 });
  const out = tidy(() => ops.relu(ops.conv2d(ops.relu(ops.conv2d(a, w, { padding: 1 })), w, { padding: 1 })));
  a.dispose();
  w.dispose();
  const data = out.data();
  out.dispose();
  assert.equal((await data).length, 4 * 8 * 12 * 12);
}

/** Argument errors at the call, failures at the next sync point, foreign and released handles. */
async function errors(): Promise<void> {
  const x = b.upload(new Float32Array(2 * 3 * 4 * 4), [2, 3, 4, 4]);
  const w = b.upload(new Float32Array(4 * 3 * 3 * 3), [4, 3, 3, 3]);
  const i32 = b.upload(Int32Array.from([0, 1]), [2]);
  const gone = b.fill([2], 0, 'float32');
  b.release(gone);
  b.release(gone);
  const fake = Object.create(Object.getPrototypeOf(x) as object) as NativeBuffer;
  throws(() => b.relu(gone), /released/);
  throws(() => b.relu({} as NativeBuffer), /NativeBuffer/);
  throws(() => b.relu(fake), /.+/);
  throws(() => b.relu(null as never), /NativeBuffer/);
  throws(() => b.release(42 as never), /NativeBuffer/);
  throws(() => b.shapeOf(gone), /released/);
  throws(() => new (b as unknown as { NativeBuffer: new (v: unknown) => unknown }).NativeBuffer(1), /cannot be constructed/);
  throws(() => b.relu(i32), /float32/);
  throws(() => b.add(x, w), /differ/);
  throws(() => b.upload(new Float32Array(3), [2, 2]), /do not fill/);
  throws(() => b.upload(new Float64Array(4) as never, [4]), /Float32Array/);
  throws(() => b.fill([2, -1], 0, 'float32'), /positive/);
  throws(() => b.fill([2 ** 20, 2 ** 20, 2 ** 10], 0, 'float32'), /too large/);
  throws(() => b.fill([1, 2, 3, 4, 5, 6], 0, 'float32'), /rank/);
  throws(() => b.fill([2], Number.NaN, 'float32'), /finite/);
  throws(() => b.fill([2], 0, 'float64' as never), /dtype/);
  throws(() => b.reshape(x, [5]), /cannot reshape/);
  throws(() => b.conv2dForward(x, w, null, [0, 1], [1, 1], [1, 1], 1), /stride/);
  throws(() => b.conv2dForward(x, w, null, [1, 1], [1, 1], [1, 1], 2), /groups/);
  throws(() => b.conv2dForward(x, w, w, [1, 1], [1, 1], [1, 1], 1), /bias/);
  throws(() => b.conv2dForward(x, w, null, [1, 1] as never, [1] as never, [1, 1], 1), /padding/);
  throws(() => b.conv2dBackwardData(x, w, [2, 3, 4, 4], [1, 1], [1, 1], [1, 1], 1), /does not match/);
  throws(() => b.conv2dBackwardWeights(x, x, [4, 3, 3, 3], false, [1, 1], [1, 1], [1, 1], 1), /does not match/);
  throws(() => b.maxPool2dForward(x, [5, 5], [1, 1], [0, 0]), /kernel/);
  throws(() => b.maxPool2dForward(x, [2, 2], [1, 1], [2, 2]), /padding/);
  const [mp, ws] = b.maxPool2dForward(x, [2, 2], [2, 2], [0, 0]);
  throws(() => b.maxPool2dBackward(mp, ws, [2, 3, 4, 4], [2, 2], [1, 1], [0, 0]), /.+/);
  throws(() => b.maxPool2dBackward(mp, mp, [2, 3, 4, 4], [2, 2], [2, 2], [0, 0]), /workspace/);
  throws(() => b.avgPool2dBackward(mp, [2, 3, 4, 4], [2, 2], [1, 1], [0, 0]), /gradient/);
  throws(() => b.linearForward(x, w, null), /expected input \[N, in\]/);
  throws(() => b.linearBackward(b.reshape(x, [2, 48]), b.fill([3, 48], 0, 'float32'), x, true), /gradient/);
  throws(() => b.softmaxCrossEntropyForward(x, i32, 0), /logits/);
  throws(() => b.softmaxCrossEntropyForward(b.fill([2, 3], 0, 'float32'), i32, 1), /labelSmoothing/);
  throws(() => b.softmaxCrossEntropyBackward(b.fill([2, 3], 0, 'float32'), i32, 0, i32), /loss gradient/);
  throws(() => b.batchNormForwardTraining(x, w, w, null, null, 0.1, 1e-5, null, false), /weight/);
  throws(() => b.batchNormForwardTraining(x, b.fill([3], 1, 'float32'), b.fill([3], 0, 'float32'), null, null, 2, 1e-5, null, false), /momentum/);
  throws(() => b.batchNormForwardInference(x, b.fill([3], 1, 'float32'), b.fill([3], 0, 'float32'), i32, i32, 1e-5, null, false), /mean/);
  throws(() => b.batchNormBackward(x, null, mp, b.fill([3], 1, 'float32'), i32, i32, null, 1e-5, false, false), /gradient/);
  throws(() => b.batchNormForwardTraining(x, b.fill([3], 1, 'float32'), b.fill([3], 0, 'float32'), null, null, 0.1, 0, null, false), /eps/);
  throws(() => b.batchNormForwardTraining(x, b.fill([3], 1, 'float32'), b.fill([3], 0, 'float32'), null, null, 0.1, 1e-5, mp, true), /residual/);
  throws(() => b.batchNormBackward(x, null, x, b.fill([3], 1, 'float32'), b.fill([3], 0, 'float32'), b.fill([3], 1, 'float32'), null, 1e-5, false, true), /output/);
  throws(() => b.batchNormBackward(x, x, x, b.fill([3], 1, 'float32'), b.fill([3], 0, 'float32'), b.fill([3], 1, 'float32'), x, 1e-5, false, true), /tail state/);
  throws(() => b.cast(i32, 'float32'), /int32/);
  throws(() => b.countNonFinite([i32]), /int32/);
  throws(() => b.sgdStep([w, w], [w, w], [], 0.1, 0, 0, false, true), /twice/);
  throws(() => b.sgdStep([w], [x], [], 0.1, 0, 0, false, true), /shape/);
  throws(() => b.sgdStep([w], [w], [], 0.1, 0.9, 0, false, true), /momentum buffers/);
  throws(() => b.sgdStep([w], 'w' as never, [], 0.1, 0, 0, false, true), /array/);
  throws(() => b.setNumThreads(0), /threads/);
  // A failure during execution: rejected at the next sync point, once; later work is unaffected.
  const logits = b.fill([2, 3], 0, 'float32');
  const bad = b.upload(Int32Array.from([0, 9]), [2]);
  const [loss, probs] = b.softmaxCrossEntropyForward(logits, bad, 0);
  const grad = b.softmaxCrossEntropyBackward(probs, bad, 0, b.fill([], 1, 'float32'));
  // The first failure since the last sync point is reported, once: the backward's is not.
  await rejects(b.download(loss), /label 9 at row 1/);
  assert.equal(b.downloadSync(grad).length, 6);
  await b.sync();
  throws(() => { b.softmaxCrossEntropyForward(logits, bad, 0); b.syncBlocking(); }, /label 9/);
  assert.equal(b.downloadSync(b.relu(logits)).length, 6);
  // Through the library: the same failure, and a disposed tensor.
  const t = randn([2, 3]);
  const outOfRange = tensor(Int32Array.from([0, 5]));
  const l = ops.softmaxCrossEntropy(t, outOfRange);
  await rejects(l.data(), /label 5/);
  await sync();
  for (const u of [t, outOfRange, l]) u.dispose();
  throws(() => ops.relu(t), /disposed/);
  // Handles of this test that are still live are dropped here and collected by the GC or at exit.
  for (const h of [x, w, i32, mp, ws, logits, bad, loss, probs, grad]) b.release(h);
}

/** A few training steps of a small CIFAR ResNet (option A and B), then evaluation. */
async function resnetSteps(steps: number): Promise<void> {
  for (const shortcut of ['A', 'B'] as const) {
    const model = models.cifarResNet({ depth: 8, seed: 3, shortcut });
    const opt = new optim.SGD(model.parameters(), { lr: 0.05, momentum: 0.9, weightDecay: 5e-4, nesterov: true });
    const x = randn([4, 3, 16, 16], { seed: 4 });
    const labels = [0, 3, 7, 9];
    let first = 0;
    let last = 0;
    for (let i = 0; i < steps; i++) {
      const loss = tidy(() => {
        const l = ops.softmaxCrossEntropy(model.forward(x), labels, { labelSmoothing: 0.1 });
        l.backward();
        return l;
      });
      opt.step();
      opt.zeroGrad();
      last = await loss.item();
      if (i === 0) first = last;
      loss.dispose();
    }
    assert.ok(Number.isFinite(first) && Number.isFinite(last));
    const y = noGrad(() => tidy(() => model.eval().forward(x)));
    assert.deepEqual(y.shape, [4, 10]);
    await y.data();
    y.dispose();
    x.dispose();
    model.dispose();
  }
}

/** A worker_thread that loads the addon, trains, and ends (mode 'end'), or is terminated with work queued ('busy'). */
function workerMain(mode: string): void {
  const w = randn([8, 8, 3, 3], { seed: 1, std: 0.1, requiresGrad: true });
  const x = randn([4, 8, 16, 16], { seed: 2 });
  const opt = new optim.SGD([w], { lr: 0.01, momentum: 0.9 });
  const step = (): Tensor => tidy(() => {
    const l = ops.softmaxCrossEntropy(ops.flatten(ops.globalAvgPool(ops.relu(ops.conv2d(x, w, { padding: 1 })))), [0, 1, 2, 3]);
    l.backward();
    return l;
  });
  if (mode === 'end') {
    void (async () => {
      for (let i = 0; i < 3; i++) {
        const l = step();
        opt.step();
        opt.zeroGrad();
        await l.item();
        l.dispose();
      }
      parentPort!.postMessage(memory().numTensors);
      // Left for the environment's teardown: live tensors and a readback still pending.
      void x.data();
    })();
  } else {
    // Queue a lot of work and readbacks, then report; the parent terminates this thread while
    // the queue is busy, so teardown drops queued tasks and abandons pending readbacks.
    for (let i = 0; i < 40; i++) {
      step();
      opt.step();
      void x.data().catch(() => {});
    }
    parentPort!.postMessage(memory().backends.cpu?.pendingOps ?? -1);
  }
}

/** A thread running this file with `data` as its workerData. */
function startWorker(data: Record<string, unknown>): Worker {
  // tsx's loader does not reach worker threads: the worker loads this file through its API.
  const api = import.meta.resolve('tsx/esm/api');
  const code = `import(${JSON.stringify(api)}).then((m) => m.tsImport(${JSON.stringify(import.meta.url)}, ${JSON.stringify(import.meta.url)}))`;
  return new Worker(code, { eval: true, workerData: data });
}

function runWorker(mode: 'end' | 'busy'): Promise<void> {
  return new Promise((resolve, reject) => {
    const worker = startWorker({ mode });
    worker.once('error', reject);
    worker.once('message', (msg: number) => {
      if (mode === 'busy') void worker.terminate();
      else assert.equal(msg, 2); // w and x
    });
    worker.once('exit', () => resolve());
  });
}

/**
 * One rank of a group of two worker threads in this process (each thread has its own addon
 * context, so the two talk over loopback like two processes): the collectives on odd sizes, a
 * bucket of several tensors, a start nobody waits for, two DDP steps; then, with `lose`, rank 1
 * leaves without a word while rank 0 is blocked in an all-reduce, which must fail (the abort path).
 */
async function rankMain(rank: number, port: number, lose: boolean): Promise<void> {
  await distributed.init({ rank, worldSize: 2, masterPort: port, timeoutMs: 60_000 });
  const own = (n: number) => tensor(Float32Array.from({ length: n }, (_, i) => (rank + 1) * (i + 1)), [n]);
  for (const n of [1, 7, 1001]) {
    const x = own(n);
    const values = async (t: Tensor) => {
      const v = await t.data();
      t.dispose();
      return v;
    };
    const sum = await values(distributed.allReduce(x));
    const mean = await values(distributed.allReduce(x, { op: 'mean' }));
    const max = await values(distributed.allReduce(x, { op: 'max' }));
    const root = await values(distributed.broadcast(x, { root: 1 }));
    const gathered = await values(distributed.allGather(x));
    assert.equal(sum[n - 1], 3 * n);
    assert.equal(mean[n - 1], 1.5 * n);
    assert.equal(max[n - 1], 2 * n);
    assert.equal(root[0], 2);
    assert.deepEqual([gathered[0], gathered[n]], [1, 2]);
    x.dispose();
  }
  await distributed.barrier();
  // A bucket of several buffers, and a start nobody waits for: each frees what it holds once run.
  const parts = [b.fill([3], rank + 1, 'float32'), b.fill([2, 2], 1, 'float32')];
  const bucket = b.allReduce(parts, 'sum');
  b.collectiveWait(bucket.ticket);
  assert.deepEqual([...b.downloadSync(bucket.outputs[0]!)], [3, 3, 3]);
  const unwaited = b.broadcast(parts, 0);
  for (const h of [...parts, ...bucket.outputs, ...unwaited.outputs]) b.release(h);
  b.syncBlocking();
  const model = models.cifarResNet({ depth: 8, seed: 1 + rank, numClasses: 4 });
  const ddp = new nn.DistributedDataParallel(model, { bucketMB: 0.01 });
  const opt = new optim.SGD(model.parameters(), { lr: 0.05, momentum: 0.9 });
  const x = randn([2, 3, 8, 8], { seed: 7 + rank });
  for (let i = 0; i < 2; i++) {
    const loss = tidy(() => {
      const l = ops.softmaxCrossEntropy(ddp.forward(x), [rank, 2 + rank]);
      l.backward();
      return l;
    });
    opt.step();
    opt.zeroGrad();
    assert.ok(Number.isFinite(await loss.item()));
    loss.dispose();
  }
  for (const d of [x, opt, ddp]) d.dispose();
  if (!lose) {
    await distributed.destroy();
    return;
  }
  await distributed.barrier();
  if (rank === 1) {
    // Gone without destroy(): the thread's teardown aborts its group and closes its connections.
    parentPort!.postMessage('leaving');
    return new Promise(() => {});
  }
  const y = randn([100_000]);
  const blocked = distributed.allReduce(y);
  await rejects(blocked.data(), /allReduce #\d+.*(rank 1 left|lost the connection to rank 1)/);
  for (const t of [y, blocked]) t.dispose();
  await distributed.destroy();
}

/** Runs `rankMain` in two threads; with `lose`, rank 1 is terminated once it leaves the collectives. */
async function runGroup(lose: boolean): Promise<void> {
  const port = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
  await Promise.all([0, 1].map((rank) => new Promise<void>((resolve, reject) => {
    const worker = startWorker({ mode: 'rank', rank, port, lose });
    worker.once('error', reject);
    worker.once('message', () => void worker.terminate());
    worker.once('exit', () => resolve());
  })));
}

async function main(): Promise<void> {
  const steps = Number(process.argv[2] ?? 3);
  const started = Date.now();
  const phases: [string, () => Promise<void>][] = [
    ['ops forward and backward, SGD', opsForwardBackward],
    ['binding surface', bindingSurface],
    ['release while in flight', releaseInFlight],
    ['errors', errors],
    [`ResNet-8 (A, B), ${steps} training steps each`, () => resnetSteps(steps)],
    ['worker thread that ends', () => runWorker('end')],
    ['worker thread terminated while busy', () => runWorker('busy')],
    ['collectives and DDP, 2 ranks in 2 threads', () => runGroup(false)],
    ['a rank lost while the other is blocked in an all-reduce', () => runGroup(true)],
  ];
  for (const [name, run] of phases) {
    const t0 = Date.now();
    await run();
    console.log(`workload: ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  }
  await sync();
  emptyCache();
  const m = memory();
  assert.equal(m.numTensors, 0, `tensors left: ${m.numTensors}`);
  console.log(`workload: done in ${((Date.now() - started) / 1000).toFixed(1)} s; ${JSON.stringify(m.backends.cpu)}`);
}

if (isMainThread) {
  await main();
} else {
  const data = workerData as { mode: string; rank: number; port: number; lose: boolean };
  if (data.mode === 'rank') await rankMain(data.rank, data.port, data.lose);
  else workerMain(data.mode);
}
