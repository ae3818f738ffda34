/**
 * The benchmark's networks in TensorFlow.js (tf.layers, NHWC as tfjs requires), identical in
 * architecture and parameter count to `models.cifarResNet({ depth: 20, shortcut: 'B' })` and
 * `models.resnet50()`: conv-BN-ReLU, projection shortcut = 1x1 convolution (stride 2 where the
 * stage starts) + BN, bottleneck stride on the 3x3 convolution (torchvision's ResNet-50 v1.5),
 * global average pooling, a dense layer with bias. Convolutions have no bias.
 *
 * One difference in arithmetic, not in shapes or work: tfjs has no explicit padding for
 * convolutions and pools, so they use `'same'`, which for stride 2 pads one pixel less at the
 * top/left than PyTorch's symmetric padding (the outputs have the same size).
 */
import type { LayersModel, SymbolicTensor } from '@tensorflow/tfjs';

type Tf = typeof import('@tensorflow/tfjs');

export type TfjsModelName = 'resnet20' | 'resnet50';

function convBn(tf: Tf, x: SymbolicTensor, filters: number, kernel: number, stride: number): SymbolicTensor {
  const conv = tf.layers.conv2d({ filters, kernelSize: kernel, strides: stride, padding: 'same', useBias: false, kernelInitializer: 'heNormal' });
  // momentum 0.9 in Keras' convention is PyTorch's 0.1; eps as in PyTorch.
  const bn = tf.layers.batchNormalization({ axis: -1, momentum: 0.9, epsilon: 1e-5 });
  return bn.apply(conv.apply(x)) as SymbolicTensor;
}

const relu = (tf: Tf, x: SymbolicTensor) => tf.layers.reLU().apply(x) as SymbolicTensor;

function addRelu(tf: Tf, a: SymbolicTensor, b: SymbolicTensor): SymbolicTensor {
  return relu(tf, tf.layers.add().apply([a, b]) as SymbolicTensor);
}

function basicBlock(tf: Tf, x: SymbolicTensor, cin: number, cout: number, stride: number): SymbolicTensor {
  const h = relu(tf, convBn(tf, x, cout, 3, stride));
  const y = convBn(tf, h, cout, 3, 1);
  // Option B of He et al.: project only where the shape changes.
  const shortcut = stride !== 1 || cin !== cout ? convBn(tf, x, cout, 1, stride) : x;
  return addRelu(tf, y, shortcut);
}

function bottleneck(tf: Tf, x: SymbolicTensor, cin: number, width: number, stride: number): SymbolicTensor {
  const cout = width * 4;
  let h = relu(tf, convBn(tf, x, width, 1, 1));
  h = relu(tf, convBn(tf, h, width, 3, stride));
  h = convBn(tf, h, cout, 1, 1);
  const shortcut = stride !== 1 || cin !== cout ? convBn(tf, x, cout, 1, stride) : x;
  return addRelu(tf, h, shortcut);
}

function head(tf: Tf, x: SymbolicTensor, classes: number): SymbolicTensor {
  const pooled = tf.layers.globalAveragePooling2d({}).apply(x) as SymbolicTensor;
  return tf.layers.dense({ units: classes }).apply(pooled) as SymbolicTensor;
}

/** CIFAR ResNet-20 with projection shortcuts: 272,474 trainable parameters. */
function resnet20(tf: Tf): LayersModel {
  const input = tf.input({ shape: [32, 32, 3] });
  let x = relu(tf, convBn(tf, input, 16, 3, 1));
  let cin = 16;
  [16, 32, 64].forEach((cout, stage) => {
    for (let i = 0; i < 3; i++) {
      x = basicBlock(tf, x, cin, cout, stage > 0 && i === 0 ? 2 : 1);
      cin = cout;
    }
  });
  return tf.model({ inputs: input, outputs: head(tf, x, 10) });
}

/** ImageNet ResNet-50 (torchvision's layout): 25,557,032 trainable parameters. */
function resnet50(tf: Tf): LayersModel {
  const input = tf.input({ shape: [224, 224, 3] });
  let x = relu(tf, convBn(tf, input, 64, 7, 2));
  x = tf.layers.maxPooling2d({ poolSize: 3, strides: 2, padding: 'same' }).apply(x) as SymbolicTensor;
  let cin = 64;
  ([[64, 3], [128, 4], [256, 6], [512, 3]] as const).forEach(([width, count], stage) => {
    for (let i = 0; i < count; i++) {
      x = bottleneck(tf, x, cin, width, stage > 0 && i === 0 ? 2 : 1);
      cin = width * 4;
    }
  });
  return tf.model({ inputs: input, outputs: head(tf, x, 1000) });
}

export function buildTfjsModel(tf: Tf, name: TfjsModelName): LayersModel {
  return name === 'resnet20' ? resnet20(tf) : resnet50(tf);
}

/** Trainable parameters (BN's moving statistics are not trainable, as in PyTorch). */
export function trainableParams(model: LayersModel): number {
  return model.trainableWeights.reduce((n, w) => n + w.shape.reduce<number>((a, b) => a * (b ?? 1), 1), 0);
}
