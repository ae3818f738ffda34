/**
 * ImageNet ResNet-50 written directly with `ops.*`, in torchvision's layout (v1.5: the stride
 * sits on the 3x3 convolution of each bottleneck; projection shortcuts where the shape
 * changes). 25,557,032 trainable parameters with 1000 classes.
 */
import { ops, randn, zeros, ones, type Tensor, type BackendName } from '../lib/index.js';

interface ConvBn {
  w: Tensor;
  gamma: Tensor;
  beta: Tensor;
  mean: Tensor;
  var: Tensor;
  stride: number;
  padding: number;
}

interface Bottleneck {
  a: ConvBn;
  b: ConvBn;
  c: ConvBn;
  shortcut: ConvBn | null;
}

export interface ResNet50 {
  params: Tensor[];
  buffers: Tensor[];
  forward(x: Tensor, training: boolean): Tensor;
  dispose(): void;
}

export function resnet50(backend: BackendName, seed = 1, numClasses = 1000): ResNet50 {
  let s = seed;
  const params: Tensor[] = [];
  const buffers: Tensor[] = [];
  const convBn = (cin: number, cout: number, k: number, stride: number): ConvBn => {
    const w = randn([cout, cin, k, k], { backend, seed: s++, std: Math.sqrt(2 / (cin * k * k)), requiresGrad: true });
    const gamma = ones([cout], { backend, requiresGrad: true });
    const beta = zeros([cout], { backend, requiresGrad: true });
    const mean = zeros([cout], { backend });
    const v = ones([cout], { backend });
    params.push(w, gamma, beta);
    buffers.push(mean, v);
    return { w, gamma, beta, mean, var: v, stride, padding: (k - 1) >> 1 };
  };
  const stem = convBn(3, 64, 7, 2);
  stem.padding = 3;
  const blocks: Bottleneck[] = [];
  let cin = 64;
  for (const [stage, [width, count]] of [[64, 3], [128, 4], [256, 6], [512, 3]].entries()) {
    for (let i = 0; i < count!; i++) {
      const stride = stage > 0 && i === 0 ? 2 : 1;
      const cout = width! * 4;
      const shortcut = stride !== 1 || cin !== cout ? convBn(cin, cout, 1, stride) : null;
      blocks.push({ a: convBn(cin, width!, 1, 1), b: convBn(width!, width!, 3, stride), c: convBn(width!, cout, 1, 1), shortcut });
      cin = cout;
    }
  }
  const fcW = randn([numClasses, cin], { backend, seed: s++, std: 1 / Math.sqrt(cin), requiresGrad: true });
  const fcB = zeros([numClasses], { backend, requiresGrad: true });
  params.push(fcW, fcB);

  const apply = (x: Tensor, l: ConvBn, training: boolean): Tensor =>
    ops.batchNorm2d(ops.conv2d(x, l.w, { stride: l.stride, padding: l.padding }), {
      weight: l.gamma, bias: l.beta, runningMean: l.mean, runningVar: l.var, training,
    });

  return {
    params,
    buffers,
    forward(x: Tensor, training: boolean): Tensor {
      let h = ops.maxPool2d(ops.relu(apply(x, stem, training)), { kernel: 3, stride: 2, padding: 1 });
      for (const blk of blocks) {
        const out = apply(ops.relu(apply(ops.relu(apply(h, blk.a, training)), blk.b, training)), blk.c, training);
        h = ops.addRelu(out, blk.shortcut ? apply(h, blk.shortcut, training) : h);
      }
      return ops.linear(ops.flatten(ops.globalAvgPool(h)), fcW, fcB);
    },
    dispose() {
      for (const t of [...params, ...buffers]) t.dispose();
    },
  };
}
