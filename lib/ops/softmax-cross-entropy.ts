import { needsGrad, record } from '../autograd/node.js';
import { Tensor } from '../tensor/tensor.js';
import { isTensor } from '../tensor/is-tensor.js';
import { refuseInCapture } from '../tensor/capture-phase.js';
import { checkNumber, checkOptions, shapeStr, show } from '../util/check.js';
import { checkFloat, checkSameBackend, checkTensor } from '../tensor/check-tensor.js';
import { withCasts } from '../amp/autocast.js';

export interface SoftmaxCrossEntropyOptions {
  /** ε in [0, 1): the target is (1 − ε)·one-hot + ε/K, as in PyTorch's `label_smoothing`. */
  labelSmoothing?: number;
}

/** Class indices: a plain array, an `Int32Array`, or an int32 tensor of shape [N]. */
export type Labels = Int32Array | readonly number[] | Tensor<'int32'>;

/**
 * The mean softmax cross-entropy of `logits` [N, K] against class indices `labels` [N]
 * (PyTorch's `F.cross_entropy`). Returns a float32 scalar tensor: half-precision logits are cast
 * to float32 first, as `amp.autocast`'s policy has it for the loss. Labels in an int32 tensor are
 * range checked when the op runs; a bad one rejects the next `data()`/`sync()`.
 */
export function softmaxCrossEntropy(logits: Tensor, labels: Labels, options?: SoftmaxCrossEntropyOptions): Tensor {
  const op = 'softmaxCrossEntropy';
  checkFloat(op, 'logits', logits, { rank: 2, layout: '[N, K]' });
  const opts = checkOptions(op, options, ['labelSmoothing']);
  const smoothing = opts.labelSmoothing === undefined ? 0 : checkNumber(op, 'labelSmoothing', opts.labelSmoothing, 0, 1, { exclusiveMax: true });
  const [N, K] = logits.shape as [number, number];
  let labelTensor: Tensor<'int32'>;
  let ownLabels = false;
  if (isTensor(labels)) {
    labelTensor = checkTensor(op, 'labels', labels, { dtype: 'int32', rank: 1, layout: '[N]' }) as Tensor<'int32'>;
    checkSameBackend(op, { logits, labels: labelTensor });
    if (labelTensor.shape[0] !== N) throw new RangeError(`${op}: expected ${N} labels for logits ${shapeStr(logits.shape)}, got ${shapeStr(labelTensor.shape)}`);
  } else {
    if (!(labels instanceof Int32Array) && !Array.isArray(labels)) {
      throw new TypeError(`${op}: expected labels to be an Int32Array, an array of integers or an int32 tensor, got ${show(labels)}`);
    }
    if (labels.length !== N) throw new RangeError(`${op}: expected ${N} labels for logits ${shapeStr(logits.shape)}, got ${labels.length}`);
    const data = new Int32Array(N);
    for (let i = 0; i < N; i++) {
      const v = labels[i];
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v >= K) {
        throw new RangeError(`${op}: label ${typeof v === 'number' ? v : show(v)} at index ${i} is not a class index in [0, ${K})`);
      }
      data[i] = v;
    }
    refuseInCapture(op, 'labels from a JavaScript array (an upload)');
    labelTensor = Tensor._wrapUntracked(logits._binding().upload(data, [N]), [N], logits.backend, 'int32');
    ownLabels = true;
  }
  try {
    return withCasts('float32', [logits], ([l]) => forward(l!, labelTensor, ownLabels, smoothing));
  } catch (err) {
    if (ownLabels && !labelTensor.isDisposed) labelTensor.dispose();
    throw err;
  }
}

/** The loss of float32 logits; takes over `labelTensor` when `ownLabels`. */
function forward(logits: Tensor, labelTensor: Tensor<'int32'>, ownLabels: boolean, smoothing: number): Tensor {
  const op = 'softmaxCrossEntropy';
  const [N, K] = logits.shape as [number, number];
  const b = logits._binding();
  const [lossBuf, probsBuf] = b.softmaxCrossEntropyForward(logits._live(op, 'logits'), labelTensor._live(op, 'labels'), smoothing);
  const loss = Tensor._wrap(lossBuf, [], logits.backend, 'float32');
  if (!needsGrad(logits)) {
    b.release(probsBuf);
    if (ownLabels) labelTensor.dispose();
    return loss;
  }
  const probs = Tensor._wrapUntracked(probsBuf, [N, K], logits.backend, 'float32');
  const savedLabels = ownLabels ? labelTensor : labelTensor._share(op);
  record(op, loss, [logits], [probs, savedLabels as unknown as Tensor], (gy) => [
    Tensor._wrap(b.softmaxCrossEntropyBackward(probs._buf!, savedLabels._buf!, smoothing, gy._live(op, 'gradient')), logits.shape, logits.backend, 'float32'),
  ]);
  return loss;
}
