import { gradMask, needsGrad, record } from '../autograd/node.js';
import { Tensor } from '../tensor/tensor.js';
import { FLOAT32_MAX, FLOAT32_MIN, checkBool, checkNumber, checkOptions, shapeStr } from '../util/check.js';
import { checkFloat, checkSameBackend } from '../tensor/check-tensor.js';

/** Options of `batchNorm2d`, as in PyTorch's `F.batch_norm`. */
export interface BatchNorm2dOptions {
  /** Scale γ of shape [C] (default: ones). */
  weight?: Tensor | null;
  /** Shift β of shape [C] (default: zeros). */
  bias?: Tensor | null;
  /** Running mean [C]: updated in place in training, used in evaluation. */
  runningMean?: Tensor | null;
  /** Running variance [C]: updated in place (unbiased) in training, used in evaluation. */
  runningVar?: Tensor | null;
  /** Normalize with the batch's statistics (true) or the running ones (false, the default). */
  training?: boolean;
  /** Weight of the new batch statistic in the running average (default 0.1). */
  momentum?: number;
  /** Added to the variance for stability (default 1e-5). */
  eps?: number;
}

/**
 * Batch normalization of `x` [N, C, H, W] over N, H and W per channel. In training it
 * normalizes with the biased batch variance and updates the running statistics in place with
 * momentum and the unbiased variance; in evaluation it uses the running statistics.
 */
export function batchNorm2d(x: Tensor, options?: BatchNorm2dOptions): Tensor {
  const op = 'batchNorm2d';
  checkFloat(op, 'input', x, { rank: 4, layout: '[N, C, H, W]' });
  const opts = checkOptions(op, options, ['weight', 'bias', 'runningMean', 'runningVar', 'training', 'momentum', 'eps']);
  const C = x.shape[1]!;
  const vec = (name: string, v: unknown): Tensor | null => {
    if (v == null) return null;
    const t = checkFloat(op, name, v, { rank: 1, layout: `[C] with C = ${C}` });
    if (t.shape[0] !== C) throw new RangeError(`${op}: expected ${name} of shape [C] with C = ${C}, got ${shapeStr(t.shape)} (input ${shapeStr(x.shape)})`);
    return t;
  };
  const weight = vec('weight', opts.weight);
  const bias = vec('bias', opts.bias);
  const runningMean = vec('runningMean', opts.runningMean);
  const runningVar = vec('runningVar', opts.runningVar);
  const training = opts.training === undefined ? false : checkBool(op, 'training', opts.training);
  const momentum = opts.momentum === undefined ? 0.1 : checkNumber(op, 'momentum', opts.momentum, 0, 1);
  // The backends normalize with eps as a float32: it must stay positive and finite there.
  const eps = opts.eps === undefined ? 1e-5 : checkNumber(op, 'eps', opts.eps, FLOAT32_MIN, FLOAT32_MAX);
  checkSameBackend(op, { input: x, weight, bias, runningMean, runningVar });
  if ((runningMean === null) !== (runningVar === null)) {
    throw new TypeError(`${op}: give both runningMean and runningVar, or neither`);
  }
  if (runningMean?.requiresGrad || runningVar?.requiresGrad) {
    throw new TypeError(`${op}: running statistics are buffers and must not require grad`);
  }
  if (!training && runningMean === null) {
    throw new TypeError(`${op}: evaluation (training: false, the default) needs runningMean and runningVar; pass training: true to use batch statistics`);
  }
  if (training && x.shape[0]! * x.shape[2]! * x.shape[3]! < 2) {
    throw new RangeError(`${op}: training needs more than one value per channel, got input ${shapeStr(x.shape)}`);
  }
  if (!training && needsGrad(x, weight, bias)) {
    throw new Error(`${op}: gradients through evaluation-mode batch norm are not supported yet; use training: true or noGrad()`);
  }
  const b = x._binding();
  const xb = x._live(op, 'input');
  // Without an affine transform, γ = 1 and β = 0; the queue keeps these alive while it needs them.
  const gamma = weight ? weight._live(op, 'weight') : b.fill([C], 1, 'float32');
  const beta = bias ? bias._live(op, 'bias') : b.fill([C], 0, 'float32');
  const releaseDefaults = () => {
    if (!weight) b.release(gamma);
    if (!bias) b.release(beta);
  };
  if (!training) {
    let y;
    try {
      y = b.batchNormForwardInference(xb, gamma, beta, runningMean!._live(op, 'runningMean'), runningVar!._live(op, 'runningVar'), eps);
    } finally {
      releaseDefaults();
    }
    return Tensor._wrap(y, x.shape, x.backend);
  }
  let outs: ReturnType<typeof b.batchNormForwardTraining>;
  try {
    outs = b.batchNormForwardTraining(xb, gamma, beta,
      runningMean ? runningMean._live(op, 'runningMean') : null, runningVar ? runningVar._live(op, 'runningVar') : null, momentum, eps);
  } catch (err) {
    // A refusal of the native side must not leave the default γ and β allocated.
    releaseDefaults();
    throw err;
  }
  const [yb, s1, s2] = outs;
  const y = Tensor._wrap(yb, x.shape, x.backend);
  if (!needsGrad(x, weight, bias)) {
    b.release(s1);
    b.release(s2);
    releaseDefaults();
    return y;
  }
  const [needX, needW, needB] = gradMask(x, weight, bias);
  const xs = x._share(op);
  const mean = Tensor._wrapUntracked(s1, [C], x.backend);
  const stat = Tensor._wrapUntracked(s2, [C], x.backend);
  const g = weight ? weight._share(op) : Tensor._wrapUntracked(gamma, [C], x.backend);
  if (!bias) b.release(beta);
  record(op, y, [x, weight, bias], [xs, mean, stat, g], (gy) => {
    const [dx, dw, db] = b.batchNormBackward(xs._buf!, gy._live(op, 'gradient'), g._buf!, mean._buf!, stat._buf!, eps);
    const keepOrRelease = (need: boolean, buf: typeof dx, shape: readonly number[]) => {
      if (need) return Tensor._wrap(buf, shape, x.backend);
      b.release(buf);
      return null;
    };
    return [keepOrRelease(needX, dx, x.shape), keepOrRelease(needW, dw, [C]), keepOrRelease(needB, db, [C])];
  });
  return y;
}
