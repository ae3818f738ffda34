// Trains ResNet-20 on Fashion-MNIST with the CIFAR recipe of He et al. (2015) and prints the
// test accuracy. Run: node examples/train-from-code.mjs
//   EXAMPLE_EPOCHS=N  epochs (default 3; the paper trains for ~160)
//   EXAMPLE_LIMIT=K   use only the first K images of each split (a quick smoke run)
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { data, models, optim, train } from 'cudnn-resnet';

const epochs = Number(process.env.EXAMPLE_EPOCHS ?? 3);
const limit = Number(process.env.EXAMPLE_LIMIT ?? Infinity);

// Keep the first k images: a Dataset is plain arrays, so a view is enough (no copy).
const head = (d, k) => k >= d.n ? d : { ...d, n: k, images: d.images.subarray(0, k * d.channels * d.height * d.width), labels: d.labels.subarray(0, k) };

let trainSet, testSet;
if (existsSync(join(data.dataRoot(), 'fashion-mnist'))) {
  [trainSet, testSet] = await Promise.all([data.loadFashionMnist({ split: 'train' }), data.loadFashionMnist({ split: 'test' })]);
} else {
  console.log(`Fashion-MNIST not found in ${join(data.dataRoot(), 'fashion-mnist')} (apt-get install dataset-fashion-mnist); using a synthetic data set`);
  [trainSet, testSet] = [synthetic(2048, 1), synthetic(512, 2)];
}
trainSet = head(trainSet, limit);
testSet = head(testSet, limit);

// Fashion-MNIST is grayscale: one input channel. The statistics are the training set's.
const model = models.cifarResNet({ depth: 20, inChannels: 1, seed: 1 });
const normalize = { mean: [0.286], std: [0.353] };
const { lr, momentum, weightDecay, batchSize, milestones, padCrop, flip } = train.heRecipe;
const trainData = new data.DataLoader(trainSet, { batchSize, seed: 1, augment: { padCrop, flip }, normalize });
// Evaluation sees the images as they are: no shuffling, no augmentation.
const evalData = new data.DataLoader(testSet, { batchSize: 256, shuffle: false, normalize });
const optimizer = new optim.SGD(model.parameters(), { lr, momentum, weightDecay });

// Progress goes to stderr; fit returns each epoch's metrics.
const history = await train.fit(model, { trainData, evalData, epochs, optimizer, schedule: train.stepSchedule({ lr, milestones }) });
console.log(`test accuracy: ${(100 * (1 - history.at(-1).testError)).toFixed(2)}% after ${epochs} epoch(s) on ${trainSet.n} images`);
optimizer.dispose();
model.dispose();

// A stand-in with the same shape as Fashion-MNIST: the class is which of ten horizontal bands
// is bright, under noise, so a network can learn it.
function synthetic(n, seed) {
  const rng = new data.Rng(seed);
  const images = new Uint8Array(n * 28 * 28);
  const labels = Int32Array.from({ length: n }, (_, i) => i % 10);
  for (let i = 0; i < n; i++) {
    for (let p = 0; p < 28 * 28; p++) {
      const band = Math.floor(Math.floor(p / 28) / 2.8);
      images[i * 784 + p] = Math.min(255, (band === labels[i] ? 160 : 40) + 80 * rng.uniform());
    }
  }
  return { images, labels, n, channels: 1, height: 28, width: 28, classes: 10 };
}
