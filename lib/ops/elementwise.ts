import { gradMask, needsGrad, record } from '../autograd/node.js';
import { Tensor } from '../tensor/tensor.js';
import { checkNumber, sameShape, shapeStr } from '../util/check.js';
import { checkFloat, checkSameBackend } from '../tensor/check-tensor.js';

/** max(x, 0), elementwise. */
export function relu(x: Tensor): Tensor {
  const op = 'relu';
  checkFloat(op, 'input', x);
  const b = x._binding();
  const y = Tensor._wrap(b.relu(x._live(op, 'input')), x.shape, x.backend);
  if (needsGrad(x)) {
    const ys = y._share(op);
    record(op, y, [x], [ys], (gy) => [Tensor._wrap(b.reluBackward(ys._buf!, gy._live(op, 'gradient')), x.shape, x.backend)]);
  }
  return y;
}

/** alpha · x, elementwise, for a finite number alpha. */
export function scale(x: Tensor, alpha: number): Tensor {
  const op = 'scale';
  checkFloat(op, 'input', x);
  checkNumber(op, 'alpha', alpha);
  const b = x._binding();
  const y = Tensor._wrap(b.scale(x._live(op, 'input'), alpha), x.shape, x.backend);
  if (needsGrad(x)) {
    record(op, y, [x], [], (gy) => [Tensor._wrap(b.scale(gy._live(op, 'gradient'), alpha), x.shape, x.backend)]);
  }
  return y;
}

/** The two operands of a binary elementwise op: float32 tensors of one shape on one backend. */
function checkOperands(op: string, a: unknown, bb: unknown): [Tensor, Tensor] {
  const ta = checkFloat(op, 'a', a);
  const tb = checkFloat(op, 'b', bb);
  checkSameBackend(op, { a: ta, b: tb });
  if (!sameShape(ta.shape, tb.shape)) {
    throw new RangeError(`${op}: expected tensors of the same shape (broadcasting is not supported), got a ${shapeStr(ta.shape)} and b ${shapeStr(tb.shape)}`);
  }
  return [ta, tb];
}

/** a + b, elementwise; both of the same shape. */
export function add(a: Tensor, b: Tensor): Tensor {
  const op = 'add';
  checkOperands(op, a, b);
  const bind = a._binding();
  const y = Tensor._wrap(bind.add(a._live(op, 'a'), b._live(op, 'b')), a.shape, a.backend);
  if (needsGrad(a, b)) {
    const [needA, needB] = gradMask(a, b);
    record(op, y, [a, b], [], (gy) => [needA ? gy.detach() : null, needB ? gy.detach() : null]);
  }
  return y;
}

/**
 * relu(a + b) in one fused kernel: the tail of a residual block (the block's output plus its
 * shortcut). Both of the same shape.
 */
export function addRelu(a: Tensor, b: Tensor): Tensor {
  const op = 'addRelu';
  checkOperands(op, a, b);
  const bind = a._binding();
  const y = Tensor._wrap(bind.addRelu(a._live(op, 'a'), b._live(op, 'b')), a.shape, a.backend);
  if (needsGrad(a, b)) {
    const [needA, needB] = gradMask(a, b);
    const ys = y._share(op);
    record(op, y, [a, b], [ys], (gy) => {
      const g = Tensor._wrap(bind.reluBackward(ys._buf!, gy._live(op, 'gradient')), a.shape, a.backend);
      return [needA ? g : null, needB ? (needA ? g.detach() : g) : null];
    });
  }
  return y;
}
