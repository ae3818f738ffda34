// Trains a small residual network on a synthetic task for a few steps and prints the loss.
// Run from a checkout after `npm ci`: node examples/quickstart.mjs
import { backends, defaultBackend, memory, ops, optim, ones, randn, tensor, tidy, zeros } from 'cudnn-resnet';

const backend = defaultBackend();
const info = backends().find((b) => b.name === backend);
console.log(`backend: ${backend} (${Object.entries(info.versions).map(([k, v]) => `${k} ${v}`).join(', ')})`);

const C = 16;
const param = (shape, fanIn) => randn(shape, { std: Math.sqrt(2 / fanIn), requiresGrad: true });
const bnLayer = () => ({
  weight: ones([C], { requiresGrad: true }), bias: zeros([C], { requiresGrad: true }),
  runningMean: zeros([C]), runningVar: ones([C]), training: true,
});
const stem = param([C, 3, 3, 3], 27);
const bn0 = bnLayer();
const blocks = [0, 1].map(() => ({ w1: param([C, C, 3, 3], 9 * C), bn1: bnLayer(), w2: param([C, C, 3, 3], 9 * C), bn2: bnLayer() }));
const fc = param([2, C], C);
const params = [stem, bn0.weight, bn0.bias, fc, ...blocks.flatMap((b) => [b.w1, b.w2, b.bn1.weight, b.bn1.bias, b.bn2.weight, b.bn2.bias])];
const opt = new optim.SGD(params, { lr: 0.05, momentum: 0.9, weightDecay: 1e-4 });

function forward(x) {
  let h = ops.relu(ops.batchNorm2d(ops.conv2d(x, stem, { padding: 1 }), bn0));
  for (const b of blocks) {
    const f = ops.batchNorm2d(ops.conv2d(ops.relu(ops.batchNorm2d(ops.conv2d(h, b.w1, { padding: 1 }), b.bn1)), b.w2, { padding: 1 }), b.bn2);
    h = ops.addRelu(f, h);
  }
  return ops.linear(ops.flatten(ops.globalAvgPool(h)), fc);
}

// The task: is the image's top half brighter than its bottom half?
const N = 32;
const pixels = new Float32Array(N * 3 * 16 * 16);
const labels = new Int32Array(N);
for (let n = 0; n < N; n++) {
  labels[n] = n % 2;
  for (let i = 0; i < 3 * 16 * 16; i++) {
    const row = Math.floor(i / 16) % 16;
    const bright = (row < 8) === (labels[n] === 1) ? 0.5 : -0.5;
    pixels[n * 768 + i] = bright + (Math.random() - 0.5);
  }
}
const images = tensor(pixels, [N, 3, 16, 16]);
const targets = tensor(labels);

for (let step = 1; step <= 20; step++) {
  const loss = tidy(() => {
    const l = ops.softmaxCrossEntropy(forward(images), targets);
    l.backward();
    return l;
  });
  opt.step();
  opt.zeroGrad();
  if (step % 5 === 0) console.log(`step ${step}: loss ${(await loss.item()).toFixed(4)}`);
  loss.dispose();
}
opt.dispose();
for (const t of [...params, images, targets, bn0.runningMean, bn0.runningVar, ...blocks.flatMap((b) => [b.bn1.runningMean, b.bn1.runningVar, b.bn2.runningMean, b.bn2.runningVar])]) t.dispose();
console.log(`live tensors at the end: ${memory().numTensors}`);
