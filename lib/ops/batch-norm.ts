import { gradMask, needsGrad, record } from '../autograd/node.js';
import { type FloatDType, Tensor } from '../tensor/tensor.js';
import { FLOAT32_MAX, FLOAT32_MIN, checkBool, checkNumber, checkOptions, sameShape, shapeStr } from '../util/check.js';
import { checkFloat, checkSameBackend, checkSameDType, checkTensor } from '../tensor/check-tensor.js';
import { withCasts } from '../amp/autocast.js';

/** Options of `batchNorm2d`, as in PyTorch's `F.batch_norm`, plus the fused tail. */
export interface BatchNorm2dOptions {
  /** Scale γ of shape [C], float32 (default: ones). */
  weight?: Tensor | null;
  /** Shift β of shape [C], float32 (default: zeros). */
  bias?: Tensor | null;
  /** Running mean [C], float32: updated in place in training, used in evaluation. */
  runningMean?: Tensor | null;
  /** Running variance [C], float32: updated in place (unbiased) in training, used in evaluation. */
  runningVar?: Tensor | null;
  /** Normalize with the batch's statistics (true) or the running ones (false, the default). */
  training?: boolean;
  /** Weight of the new batch statistic in the running average (default 0.1). */
  momentum?: number;
  /** Added to the variance for stability (default 1e-5). */
  eps?: number;
  /**
   * Added to the normalized output, before the ReLU: the shortcut of a residual block, of x's
   * shape (default none).
   */
  residual?: Tensor | null;
  /** Applies max(·, 0) last (default false). */
  relu?: boolean;
}

/**
 * Batch normalization of `x` [N, C, H, W] over N, H and W per channel, with an optional fused
 * tail: `relu(bn(x))`, or `relu(bn(x) + residual)`, the ends of a residual block's layers, in one
 * op where the backend fuses them (see docs/architecture.md, "Fused batch norm"). In training it
 * normalizes with the biased batch variance and updates the running statistics in place with
 * momentum and the unbiased variance; in evaluation it uses the running statistics. `x` (and the
 * residual) may be float32, bfloat16 or float16, and the output has its dtype; γ, β and the
 * statistics are float32 whatever it is.
 */
export function batchNorm2d(x: Tensor, options?: BatchNorm2dOptions): Tensor {
  const op = 'batchNorm2d';
  checkFloat(op, 'input', x, { rank: 4, layout: '[N, C, H, W]' });
  const opts = checkOptions(op, options, ['weight', 'bias', 'runningMean', 'runningVar', 'training', 'momentum', 'eps', 'residual', 'relu']);
  const C = x.shape[1]!;
  const vec = (name: string, v: unknown): Tensor | null => {
    if (v == null) return null;
    const t = checkTensor(op, name, v, { dtype: 'float32', rank: 1, layout: `[C] with C = ${C}` }) as Tensor;
    if (t.shape[0] !== C) throw new RangeError(`${op}: expected ${name} of shape [C] with C = ${C}, got ${shapeStr(t.shape)} (input ${shapeStr(x.shape)})`);
    return t;
  };
  const weight = vec('weight', opts.weight);
  const bias = vec('bias', opts.bias);
  const runningMean = vec('runningMean', opts.runningMean);
  const runningVar = vec('runningVar', opts.runningVar);
  const residual = opts.residual == null ? null : checkFloat(op, 'residual', opts.residual, { rank: 4, layout: '[N, C, H, W]' });
  if (residual && !sameShape(residual.shape, x.shape)) {
    throw new RangeError(`${op}: expected residual of the input's shape ${shapeStr(x.shape)}, got ${shapeStr(residual.shape)}`);
  }
  const relu = opts.relu === undefined ? false : checkBool(op, 'relu', opts.relu);
  const training = opts.training === undefined ? false : checkBool(op, 'training', opts.training);
  const momentum = opts.momentum === undefined ? 0.1 : checkNumber(op, 'momentum', opts.momentum, 0, 1);
  // The backends normalize with eps as a float32: it must stay positive and finite there.
  const eps = opts.eps === undefined ? 1e-5 : checkNumber(op, 'eps', opts.eps, FLOAT32_MIN, FLOAT32_MAX);
  checkSameBackend(op, { input: x, weight, bias, runningMean, runningVar, residual });
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
  if (!training && needsGrad(x, weight, bias, residual)) {
    throw new Error(`${op}: gradients through evaluation-mode batch norm are not supported yet; use training: true or noGrad()`);
  }
  const p: Params = { weight, bias, runningMean, runningVar, relu, training, momentum, eps };
  return withCasts('promote', [x, residual], ([xc, rc]) => {
    checkSameDType(op, { input: xc, residual: rc });
    return forward(xc!, rc ?? null, p);
  });
}

interface Params {
  weight: Tensor | null;
  bias: Tensor | null;
  runningMean: Tensor | null;
  runningVar: Tensor | null;
  relu: boolean;
  training: boolean;
  momentum: number;
  eps: number;
}

function forward(x: Tensor, residual: Tensor | null, p: Params): Tensor {
  const op = 'batchNorm2d';
  const { weight, bias, runningMean, runningVar, relu, eps } = p;
  const C = x.shape[1]!;
  const b = x._binding();
  const xb = x._live(op, 'input');
  const zb = residual ? residual._live(op, 'residual') : null;
  // Without an affine transform, γ = 1 and β = 0; the queue keeps these alive while it needs them.
  const gamma = weight ? weight._live(op, 'weight') : b.fill([C], 1, 'float32');
  const beta = bias ? bias._live(op, 'bias') : b.fill([C], 0, 'float32');
  const releaseDefaults = () => {
    if (!weight) b.release(gamma);
    if (!bias) b.release(beta);
  };
  if (!p.training) {
    let y;
    try {
      y = b.batchNormForwardInference(xb, gamma, beta, runningMean!._live(op, 'runningMean'), runningVar!._live(op, 'runningVar'), eps, zb, relu);
    } finally {
      releaseDefaults();
    }
    return Tensor._wrap(y, x.shape, x.backend, x.dtype);
  }
  let outs: ReturnType<typeof b.batchNormForwardTraining>;
  try {
    outs = b.batchNormForwardTraining(xb, gamma, beta,
      runningMean ? runningMean._live(op, 'runningMean') : null, runningVar ? runningVar._live(op, 'runningVar') : null, p.momentum, eps, zb, relu);
  } catch (err) {
    // A refusal of the native side must not leave the default γ and β allocated.
    releaseDefaults();
    throw err;
  }
  const [yb, s1, s2, s3] = outs;
  const y = Tensor._wrap(yb, x.shape, x.backend, x.dtype);
  if (!needsGrad(x, weight, bias, residual)) {
    for (const s of [s1, s2, s3]) if (s) b.release(s);
    releaseDefaults();
    return y;
  }
  const [needX, needW, needB, needZ] = gradMask(x, weight, bias, residual);
  const xs = x._share(op);
  // The output's ReLU mask; a second handle on memory the next layer keeps anyway.
  const ys = relu ? y._share(op) : null;
  const mean = Tensor._wrapUntracked(s1, [C], x.backend, 'float32');
  const stat = Tensor._wrapUntracked(s2, [C], x.backend, 'float32');
  const tail = s3 ? Tensor._wrapUntracked(s3, b.shapeOf(s3), x.backend, 'float32') : null;
  const g = weight ? weight._share(op) : Tensor._wrapUntracked(gamma, [C], x.backend, 'float32');
  if (!bias) b.release(beta);
  const saved = [xs, ys, mean, stat, tail, g].filter((t): t is Tensor => t !== null);
  record(op, y, [x, weight, bias, residual], saved, (gy) => {
    const [dx, dw, db, dz] = b.batchNormBackward(xs._buf!, ys ? ys._buf! : null, gy._live(op, 'gradient'), g._buf!, mean._buf!, stat._buf!,
      tail ? tail._buf! : null, eps, residual !== null, relu);
    const keepOrRelease = (need: boolean, buf: typeof dz, shape: readonly number[], dtype: FloatDType) => {
      if (buf === null) return null;
      if (need) return Tensor._wrap(buf, shape, x.backend, dtype);
      b.release(buf);
      return null;
    };
    return [keepOrRelease(needX, dx, x.shape, x.dtype), keepOrRelease(needW, dw, [C], 'float32'), keepOrRelease(needB, db, [C], 'float32'),
      keepOrRelease(needZ, dz, x.shape, x.dtype)];
  });
  return y;
}
