import { gradMask, needsGrad, record } from '../autograd/node.js';
import { Tensor } from '../tensor/tensor.js';
import { checkNumber, sameShape, shapeStr } from '../util/check.js';
import { checkFloat, checkSameBackend, checkSameDType } from '../tensor/check-tensor.js';
import { withCasts } from '../amp/autocast.js';

/** max(x, 0), elementwise, in x's dtype. */
export function relu(x: Tensor): Tensor {
  const op = 'relu';
  checkFloat(op, 'input', x);
  const b = x._binding();
  const y = Tensor._wrap(b.relu(x._live(op, 'input')), x.shape, x.backend, x.dtype);
  if (needsGrad(x)) {
    const ys = y._share(op);
    record(op, y, [x], [ys], (gy) => [Tensor._wrap(b.reluBackward(ys._buf!, gy._live(op, 'gradient')), x.shape, x.backend, x.dtype)]);
  }
  return y;
}

/** alpha · x, elementwise, for a finite number alpha, in x's dtype. */
export function scale(x: Tensor, alpha: number): Tensor {
  const op = 'scale';
  checkFloat(op, 'input', x);
  checkNumber(op, 'alpha', alpha);
  const b = x._binding();
  const y = Tensor._wrap(b.scale(x._live(op, 'input'), alpha), x.shape, x.backend, x.dtype);
  if (needsGrad(x)) {
    record(op, y, [x], [], (gy) => [Tensor._wrap(b.scale(gy._live(op, 'gradient'), alpha), x.shape, x.backend, x.dtype)]);
  }
  return y;
}

/**
 * The two operands of a binary elementwise op: floating tensors of one shape on one backend,
 * cast to the wider of their dtypes inside `amp.autocast` (outside it, of one dtype) and handed
 * to `fn`.
 */
function binary(op: string, a: unknown, bb: unknown, fn: (a: Tensor, b: Tensor) => Tensor): Tensor {
  const ta = checkFloat(op, 'a', a);
  const tb = checkFloat(op, 'b', bb);
  checkSameBackend(op, { a: ta, b: tb });
  if (!sameShape(ta.shape, tb.shape)) {
    throw new RangeError(`${op}: expected tensors of the same shape (broadcasting is not supported), got a ${shapeStr(ta.shape)} and b ${shapeStr(tb.shape)}`);
  }
  return withCasts('promote', [ta, tb], ([ca, cb]) => {
    checkSameDType(op, { a: ca, b: cb });
    return fn(ca!, cb!);
  });
}

/** a + b, elementwise; both of the same shape. */
export function add(a: Tensor, b: Tensor): Tensor {
  return binary('add', a, b, (ta, tb) => {
    const op = 'add';
    const bind = ta._binding();
    const y = Tensor._wrap(bind.add(ta._live(op, 'a'), tb._live(op, 'b')), ta.shape, ta.backend, ta.dtype);
    if (needsGrad(ta, tb)) {
      const [needA, needB] = gradMask(ta, tb);
      record(op, y, [ta, tb], [], (gy) => [needA ? gy.detach() : null, needB ? gy.detach() : null]);
    }
    return y;
  });
}

/**
 * relu(a + b) in one fused kernel: the tail of a residual block (the block's output plus its
 * shortcut). Both of the same shape.
 */
export function addRelu(a: Tensor, b: Tensor): Tensor {
  return binary('addRelu', a, b, (ta, tb) => {
    const op = 'addRelu';
    const bind = ta._binding();
    const y = Tensor._wrap(bind.addRelu(ta._live(op, 'a'), tb._live(op, 'b')), ta.shape, ta.backend, ta.dtype);
    if (needsGrad(ta, tb)) {
      const [needA, needB] = gradMask(ta, tb);
      const ys = y._share(op);
      record(op, y, [ta, tb], [ys], (gy) => {
        const g = Tensor._wrap(bind.reluBackward(ys._buf!, gy._live(op, 'gradient')), ta.shape, ta.backend, ta.dtype);
        return [needA ? g : null, needB ? (needA ? g.detach() : g) : null];
      });
    }
    return y;
  });
}
