/**
 * One benchmark job in its own process (started by bench/index.ts): one framework, one network,
 * one batch size, one phase (training step or inference), reported over the line protocol of
 * bench/harness.ts.
 *
 *   node --import tsx bench/peer.ts --framework ours|tfjs-cpu|tfjs-wasm|tfjs-node|tfjs-node-gpu
 *     --model resnet20|resnet50 --batch 128 --phase train|infer [--backend cpu|cuda]
 *     [--precision fp32|bf16|fp16] [--threads 2] [--warmup 3] [--reps 10] [--budget 30]
 *     [--profile-steps 3 --profile-budget 6]
 *
 * Every framework: random inputs, random labels, SGD (lr 0.1, momentum 0.9, weight decay 1e-4),
 * training-mode batch norm in the training step and inference-mode under inference. A step is
 * timed until its results are computed (this library: `sync()`; tfjs: `await data()` of the
 * loss or the logits). This library's mixed precision (`--precision`, ours only) is what
 * `train.fit` does: forward and loss under `amp.autocast`, and for fp16 a `GradScaler` whose step
 * reads back its overflow check.
 */
import { emit, closeProtocol, option, summarize, timeSteps, type LoopOptions, type Phase } from './harness.js';
import type { TfjsModelName } from './tfjs-models.js';

const argv = process.argv.slice(2);
const framework = option(argv, 'framework');
const model = option(argv, 'model') as TfjsModelName;
const batch = Number(option(argv, 'batch'));
const phase = option(argv, 'phase') as Phase;
const threads = Number(option(argv, 'threads', '2'));
const loop: LoopOptions = {
  warmup: Number(option(argv, 'warmup', '3')),
  reps: Number(option(argv, 'reps', '10')),
  budgetMs: Number(option(argv, 'budget', '30')) * 1000,
};
const size = model === 'resnet20' ? 32 : 224;
const classes = model === 'resnet20' ? 10 : 1000;
const labelValues = Int32Array.from({ length: batch }, (_, i) => (i * 7) % classes);
const LR = 0.1;
const MOMENTUM = 0.9;
const WEIGHT_DECAY = 1e-4;

async function ours(): Promise<void> {
  const backend = option(argv, 'backend', 'cpu') as 'cpu' | 'cuda';
  // OpenMP reads its thread count when the addon loads: set it before importing the library.
  process.env.OMP_NUM_THREADS = String(threads);
  const lib = await import('../lib/index.js');
  const { amp, models, noGrad, ops, optim, profile, randn, sync, tensor, tidy } = lib;
  const precision = option(argv, 'precision', 'fp32');
  const inPrecision = <T>(fn: () => T): T => (precision === 'fp32' ? fn() : amp.autocast({ dtype: precision === 'bf16' ? 'bfloat16' : 'float16' }, fn));
  const scaler = precision === 'fp16' ? new amp.GradScaler() : null;
  const info = lib.backends().find((b) => b.name === backend)!;
  if (!info.available) {
    emit({ type: 'unavailable', reason: info.reason });
    return;
  }
  if (backend === 'cpu') lib.setNumThreads(threads);
  const net = model === 'resnet20'
    ? models.cifarResNet({ depth: 20, shortcut: 'B', seed: 1, backend })
    : models.resnet50({ seed: 1, backend });
  const params = net.parameters().reduce((n, p) => n + p.size, 0);
  emit({ type: 'meta', framework: 'cudnn-resnet', version: Object.entries(info.versions).map(([k, v]) => `${k} ${v}`).join(', '), params, threads: backend === 'cpu' ? threads : null,
    notes: precision });
  const x = randn([batch, 3, size, size], { seed: 9, backend });
  if (phase === 'infer') {
    net.eval();
    await timeSteps(phase, async () => {
      noGrad(() => tidy(() => { inPrecision(() => net.forward(x)); }));
      await sync(backend);
    }, loop);
    return;
  }
  const labels = tensor(labelValues, [batch], { backend });
  const sgd = new optim.SGD(net.parameters(), { lr: LR, momentum: MOMENTUM, weightDecay: WEIGHT_DECAY });
  // Time on the JS thread per part of the step (enqueueing and bookkeeping; the ops run on the worker).
  const js = { forward: 0, backward: 0, optimizer: 0 };
  const trainStep = async () => {
    tidy(() => inPrecision(() => {
      const t0 = performance.now();
      const loss = ops.softmaxCrossEntropy(net.forward(x), labels);
      const t1 = performance.now();
      (scaler ? scaler.scale(loss) : loss).backward();
      js.forward += t1 - t0;
      js.backward += performance.now() - t1;
    }));
    const t2 = performance.now();
    if (scaler) {
      const stepped = scaler.step(sgd);
      js.optimizer += performance.now() - t2;
      await stepped;
      scaler.update();
    } else {
      sgd.step();
      js.optimizer += performance.now() - t2;
    }
    sgd.zeroGrad();
  };
  const started = performance.now();
  const timed = await timeSteps(phase, async () => {
    await trainStep();
    await sync(backend);
  }, loop);
  // The breakdown, from separate profiled steps after the timed ones (profiling does not disturb
  // them), as many as fit in the time left of the budget plus the profiling allowance.
  const profileSteps = Number(option(argv, 'profile-steps', '0'));
  const leftMs = loop.budgetMs + Number(option(argv, 'profile-budget', '0')) * 1000 - (performance.now() - started);
  const steps = timed.length === 0 ? 0 : Math.min(profileSteps, Math.floor((0.9 * leftMs) / (1.2 * summarize(timed).medianMs)));
  if (steps > 0) {
    // Tells the parent how long this should take, so that a load spike does not get it killed.
    emit({ type: 'profiling', steps, expectMs: steps * summarize(timed).medianMs });
    js.forward = js.backward = js.optimizer = 0;
    const p = await profile(async () => {
      for (let i = 0; i < steps; i++) {
        await trainStep();
        await sync(backend);
      }
    }, { backend });
    emit({ type: 'breakdown', steps, backend, wallMs: p.wallMs, busyMs: p.busyMs, idleMs: p.idleMs, ops: p.ops, js });
  }
}

async function tfjs(): Promise<void> {
  let tf: typeof import('@tensorflow/tfjs');
  let notes = '';
  try {
    if (framework === 'tfjs-node' || framework === 'tfjs-node-gpu') {
      // Optional peers: measured only where the user installed them.
      tf = (await import(`@tensorflow/${framework}`)) as typeof import('@tensorflow/tfjs');
    } else {
      tf = await import('@tensorflow/tfjs');
      if (framework === 'tfjs-wasm') {
        const wasm = await import('@tensorflow/tfjs-backend-wasm');
        // A no-op in Node: tfjs-backend-wasm reports no multithreading there (tfjs#3830) and
        // loads its single-threaded SIMD binary.
        wasm.setThreadsCount(threads);
        if (!(await tf.setBackend('wasm'))) throw new Error('tf.setBackend("wasm") failed');
        await tf.ready();
        notes = `${wasm.getThreadsCount()} thread(s), SIMD ${String(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'))}`;
      } else {
        if (!(await tf.setBackend('cpu'))) throw new Error('tf.setBackend("cpu") failed');
        notes = 'pure JavaScript on the main thread';
      }
    }
  } catch (err) {
    emit({ type: 'unavailable', reason: `${framework} could not be loaded: ${(err as Error).message.split('\n')[0]}` });
    return;
  }
  const { buildTfjsModel, trainableParams } = await import('./tfjs-models.js');
  const net = buildTfjsModel(tf, model);
  emit({ type: 'meta', framework, version: `${tf.version.tfjs} (backend ${tf.getBackend()})`, params: trainableParams(net), threads: framework.startsWith('tfjs-node') ? null : 1, notes });
  const x = tf.randomNormal([batch, size, size, 3], 0, 1, 'float32', 9);
  if (phase === 'infer') {
    await timeSteps(phase, async () => {
      const y = net.predict(x) as import('@tensorflow/tfjs').Tensor;
      await y.data();
      y.dispose();
    }, loop);
    return;
  }
  const onehot = tf.oneHot(tf.tensor1d(labelValues, 'int32'), classes);
  const opt = tf.train.momentum(LR, MOMENTUM);
  const weights = net.trainableWeights.map((w) => w.read());
  const trainStep = async () => {
    const cost = opt.minimize(() => {
      const logits = net.apply(x, { training: true }) as import('@tensorflow/tfjs').Tensor;
      const ce = tf.losses.softmaxCrossEntropy(onehot, logits);
      // PyTorch's coupled weight decay (gradient + wd·p) is the gradient of wd/2·Σp².
      return ce.add(tf.addN(weights.map((w) => tf.sum(tf.square(w)))).mul(WEIGHT_DECAY / 2)) as import('@tensorflow/tfjs').Scalar;
    }, true)!;
    await cost.data();
    cost.dispose();
  };
  try {
    await timeSteps(phase, trainStep, loop);
  } catch (err) {
    // tfjs-backend-wasm has no kernels for convolution gradients: report the error it raises.
    emit({ type: 'cannot', phase, error: (err as Error).message.split('\n')[0] });
  }
}

try {
  if (framework === 'ours') await ours();
  else await tfjs();
} finally {
  closeProtocol();
}
// Native worker threads (ours) and wasm/tfjs-node handles must not keep the process alive.
process.exit(0);
