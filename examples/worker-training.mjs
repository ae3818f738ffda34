// Trains in a worker_thread and reports progress to the main thread, which stays free for other
// work (a UI, a server, a second model). The addon is context-aware: the worker gets its own
// native queue and tensors. Run: node examples/worker-training.mjs  (EXAMPLE_STEPS=N, default 30)
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';

if (isMainThread) {
  const steps = Number(process.env.EXAMPLE_STEPS ?? 30);
  // The heartbeat stands for whatever the main thread is really for; if training blocked it,
  // the beats would stop.
  let beats = 0, last = performance.now(), longestGap = 0;
  const heartbeat = setInterval(() => {
    beats++;
    longestGap = Math.max(longestGap, performance.now() - last);
    last = performance.now();
  }, 10);
  // This same file is the worker's script: isMainThread is false there.
  const worker = new Worker(new URL(import.meta.url), { workerData: { steps } });
  let final;
  worker.on('message', (msg) => {
    if (msg.type === 'step') console.log(`step ${msg.step}/${steps}: loss ${msg.loss.toFixed(4)}, ${msg.imagesPerSecond.toFixed(0)} img/s (heartbeat ${beats})`);
    else if (msg.type === 'done') final = msg;
  });
  const code = await new Promise((resolve, reject) => { worker.once('error', reject); worker.once('exit', resolve); });
  clearInterval(heartbeat);
  console.log(`worker exited with code ${code}: final loss ${final?.loss.toFixed(4)}, ${final?.tensors} tensors left in the worker`);
  console.log(`main thread heartbeats during training: ${beats} (every 10 ms; longest gap ${longestGap.toFixed(0)} ms)`);
  process.exitCode = code;
} else {
  // In the worker: an ordinary training loop. Importing here, not at the top, keeps the main
  // thread from loading the addon it does not use.
  const { models, ops, optim, tensor, tidy, memory, data } = await import('cudnn-resnet');
  const { steps } = workerData;
  const batch = 32;
  const model = models.cifarResNet({ depth: 8, numClasses: 2, seed: 1 });
  const opt = new optim.SGD(model.parameters(), { lr: 0.05, momentum: 0.9, weightDecay: 1e-4 });
  // Synthetic task: is the top half of the image brighter than the bottom half?
  const rng = new data.Rng(1);
  const labels = Int32Array.from({ length: batch }, (_, i) => i % 2);
  const pixels = new Float32Array(batch * 3 * 32 * 32).map((_, i) => {
    const n = Math.floor(i / 3072), row = Math.floor(i / 32) % 32;
    return ((row < 16) === (labels[n] === 1) ? 0.5 : -0.5) + (rng.uniform() - 0.5);
  });
  const x = tensor(pixels, [batch, 3, 32, 32]);
  const y = tensor(labels);
  let loss = NaN;
  for (let step = 1; step <= steps; step++) {
    const t0 = performance.now();
    const l = tidy(() => {
      const out = ops.softmaxCrossEntropy(model.forward(x), y);
      out.backward();
      return out;
    });
    opt.step();
    opt.zeroGrad();
    loss = await l.item();
    l.dispose();
    // Structured-cloned to the main thread; plain numbers are cheap to send.
    parentPort.postMessage({ type: 'step', step, loss, imagesPerSecond: batch / ((performance.now() - t0) / 1000) });
  }
  for (const t of [x, y]) t.dispose();
  opt.dispose();
  model.dispose();
  parentPort.postMessage({ type: 'done', loss, tensors: memory().numTensors });
  // Returning ends the worker: nothing (timers, handles) is left to keep it alive.
}
