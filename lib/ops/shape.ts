import { needsGrad, record } from '../autograd/node.js';
import { Tensor } from '../tensor/tensor.js';
import { checkFloat } from '../tensor/check-tensor.js';

/** [N, C, H, W] (or any [N, ...]) → [N, C·H·W], in row-major order. */
export function flatten(x: Tensor): Tensor {
  const op = 'flatten';
  checkFloat(op, 'input', x);
  if (x.rank < 2) throw new RangeError(`${op}: expected input of rank 2 or more ([N, ...]), got [${x.shape.join(', ')}]`);
  const N = x.shape[0]!;
  const shape = [N, x.size / N];
  const b = x._binding();
  const y = Tensor._wrap(b.reshape(x._live(op, 'input'), shape), shape, x.backend, x.dtype);
  if (needsGrad(x)) {
    record(op, y, [x], [], (gy) => [Tensor._wrap(b.reshape(gy._live(op, 'gradient'), [...x.shape]), x.shape, x.backend, x.dtype)]);
  }
  return y;
}
