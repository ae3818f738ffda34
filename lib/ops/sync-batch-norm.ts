/**
 * Batch norm whose training statistics span the process group (PyTorch's SyncBatchNorm): what
 * `nn.convertSyncBatchNorm` switches a `BatchNorm2d` to.
 *
 * Forward: each rank's per-channel mean, M2 (sum of squared deviations) and count
 * (`syncBatchNormStats`) are all-gathered and combined by Chan's parallel formula
 * (`syncBatchNormGather`, which also updates the running statistics with the group's unbiased
 * variance); then x is normalized with the group's mean and biased variance by the inference
 * batch norm. Mean and M2 rather than Σx and Σx²: the sums' difference loses every digit a
 * channel's mean has over its spread.
 *
 * Backward: each rank's Σdy and Σdy·x̂ per channel (`syncBatchNormBackwardReduce`) are
 * all-reduced, and dx takes the group's sums (`syncBatchNormBackwardElemt`), so that dx is the
 * gradient of the sum of every rank's loss; the weight and bias gradients are this rank's sums,
 * which DDP averages like every other gradient. Two ranks with batch B/2 therefore take the
 * steps of one process with batch B.
 *
 * Every rank must run the same synchronized layers in the same order (they are collectives).
 * Without a process group, or in a group of one, it is `batchNorm2d` in training.
 * @internal
 * @module
 */
import { gradMask, needsGrad, record } from '../autograd/node.js';
import { allGather, finish, startAllReduce } from '../distributed/collectives.js';
import { isInitialized, worldSize } from '../distributed/process-group.js';
import { checkFloat } from '../tensor/check-tensor.js';
import { Tensor } from '../tensor/tensor.js';
import { type BatchNorm2dOptions, batchNorm2d } from './batch-norm.js';

/** Training-mode `batchNorm2d` with the group's batch statistics (see the top of this file). @internal */
export function syncBatchNorm2d(x: Tensor, options: BatchNorm2dOptions & { weight: Tensor; bias: Tensor }): Tensor {
  if (!isInitialized() || worldSize() === 1) return batchNorm2d(x, { ...options, training: true });
  const op = 'SyncBatchNorm';
  checkFloat(op, 'input', x, { rank: 4, layout: '[N, C, H, W]' });
  // The group's statistics are computed and combined in float32 (the native parts take float32
  // only); under autocast the activations arrive in bfloat16 or float16 and go back in it.
  if (x.dtype !== 'float32') return syncBatchNorm2d(x.cast('float32'), options).cast(x.dtype);
  const { weight, bias, runningMean = null, runningVar = null, momentum = 0.1, eps = 1e-5 } = options;
  const C = x.shape[1]!;
  const b = x._binding();
  const xb = x._live(op, 'input');
  const stats = Tensor._wrap(b.syncBatchNormStats(xb), [3, C], x.backend);
  let gathered: Tensor;
  try {
    gathered = allGather(stats);
  } finally {
    stats.dispose();
  }
  let group: ReturnType<typeof b.syncBatchNormGather>;
  try {
    group = b.syncBatchNormGather(gathered._live(op, 'statistics'), runningMean?._live(op, 'runningMean') ?? null,
      runningVar?._live(op, 'runningVar') ?? null, momentum);
  } finally {
    gathered.dispose();
  }
  const [mean, variance, count] = group;
  const releaseStats = () => {
    for (const s of group) b.release(s);
  };
  let yb;
  try {
    yb = b.batchNormForwardInference(xb, weight._live(op, 'weight'), bias._live(op, 'bias'), mean, variance, eps, null, false);
  } catch (err) {
    releaseStats();
    throw err;
  }
  const y = Tensor._wrap(yb, x.shape, x.backend);
  if (!needsGrad(x, weight, bias)) {
    releaseStats();
    return y;
  }
  const [needX, needW, needB] = gradMask(x, weight, bias);
  const saved = [x._share(op), weight._share(op), ...group.map((s) => Tensor._wrapUntracked(s, [C], x.backend))];
  const [xs, g, m, v, n] = saved as [Tensor, Tensor, Tensor, Tensor, Tensor];
  record(op, y, [x, weight, bias], saved, (gy) => {
    const dy = gy._live(op, 'gradient');
    const sums = b.syncBatchNormBackwardReduce(xs._buf!, dy, m._buf!, v._buf!, eps).map((s) => Tensor._wrap(s, [C], x.backend));
    const [sumDy, sumDyXhat] = sums as [Tensor, Tensor];
    let dx: Tensor | null = null;
    if (needX) {
      // Every rank's gradient sums: dx is then the gradient of the sum of every rank's loss.
      const totals = finish(op, startAllReduce(sums, 'sum'));
      try {
        dx = Tensor._wrap(b.syncBatchNormBackwardElemt(xs._buf!, dy, m._buf!, v._buf!, g._buf!,
          totals[0]!._live(op, 'sum'), totals[1]!._live(op, 'sum'), n._buf!, eps), x.shape, x.backend);
      } finally {
        for (const t of totals) t.dispose();
      }
    }
    if (!needW) sumDyXhat.dispose();
    if (!needB) sumDy.dispose();
    return [dx, needW ? sumDyXhat : null, needB ? sumDy : null];
  });
  return y;
}
