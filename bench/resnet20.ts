/**
 * CIFAR ResNet-20 (He et al. 2015, section 4.2) written directly with `ops.*`, with projection
 * shortcuts (option B) where the shape changes: the network the op benchmark times against
 * PyTorch. 272,474 trainable parameters.
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

interface Block {
  a: ConvBn;
  b: ConvBn;
  shortcut: ConvBn | null;
}

export interface ResNet20 {
  params: Tensor[];
  buffers: Tensor[];
  forward(x: Tensor, training: boolean): Tensor;
  dispose(): void;
}

export function resnet20(backend: BackendName, seed = 1, numClasses = 10): ResNet20 {
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
    return { w, gamma, beta, mean, var: v, stride, padding: (k - 1) / 2 };
  };
  const stem = convBn(3, 16, 3, 1);
  const blocks: Block[] = [];
  let cin = 16;
  for (const [stage, cout] of [16, 32, 64].entries()) {
    for (let i = 0; i < 3; i++) {
      const stride = stage > 0 && i === 0 ? 2 : 1;
      const shortcut = stride !== 1 || cin !== cout ? convBn(cin, cout, 1, stride) : null;
      blocks.push({ a: convBn(cin, cout, 3, stride), b: convBn(cout, cout, 3, 1), shortcut });
      cin = cout;
    }
  }
  const fcW = randn([numClasses, 64], { backend, seed: s++, std: 1 / 8, requiresGrad: true });
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
      let h = ops.relu(apply(x, stem, training));
      for (const blk of blocks) {
        const out = apply(ops.relu(apply(h, blk.a, training)), blk.b, training);
        h = ops.addRelu(out, blk.shortcut ? apply(h, blk.shortcut, training) : h);
      }
      return ops.linear(ops.flatten(ops.globalAvgPool(h)), fcW, fcB);
    },
    dispose() {
      for (const t of [...params, ...buffers]) t.dispose();
    },
  };
}
