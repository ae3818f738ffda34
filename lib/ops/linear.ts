import { gradMask, needsGrad, record } from '../autograd/node.js';
import { Tensor } from '../tensor/tensor.js';
import { shapeStr } from '../util/check.js';
import { checkFloat, checkSameBackend, checkSameDType } from '../tensor/check-tensor.js';
import { withCasts } from '../amp/autocast.js';

/**
 * x·wᵀ + b for x [N, in], w [out, in] and an optional b [out] (PyTorch's `F.linear`), all of one
 * floating dtype, which the output has; inside `amp.autocast` they are cast to its type first.
 */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  const op = 'linear';
  checkFloat(op, 'input', x, { rank: 2, layout: '[N, in]' });
  checkFloat(op, 'weight', weight, { rank: 2, layout: '[out, in]' });
  const b = bias == null ? null : checkFloat(op, 'bias', bias, { rank: 1, layout: '[out]' });
  checkSameBackend(op, { input: x, weight, bias: b });
  const [N, inF] = x.shape as [number, number];
  const [outF, inW] = weight.shape as [number, number];
  if (inW !== inF) {
    throw new RangeError(`${op}: expected weight of shape [out, in] with in = ${inF}, got ${shapeStr(weight.shape)} (input ${shapeStr(x.shape)})`);
  }
  if (b && b.shape[0] !== outF) throw new RangeError(`${op}: expected bias of shape [${outF}], got ${shapeStr(b.shape)}`);
  return withCasts('lower', [x, weight, b], ([xc, wc, bc]) => forward(xc!, wc!, bc ?? null));
}

function forward(x: Tensor, weight: Tensor, b: Tensor | null): Tensor {
  const op = 'linear';
  const dtype = checkSameDType(op, { input: x, weight, bias: b });
  const [N] = x.shape as [number];
  const [outF] = weight.shape as [number];
  const bind = x._binding();
  const y = Tensor._wrap(bind.linearForward(x._live(op, 'input'), weight._live(op, 'weight'), b ? b._live(op, 'bias') : null), [N, outF], x.backend, dtype);
  if (needsGrad(x, weight, b)) {
    const [needX, needW, needB] = gradMask(x, weight, b);
    const xs = x._share(op);
    const ws = weight._share(op);
    record(op, y, [x, weight, b], [xs, ws], (gy) => {
      const [dx, dw, db] = bind.linearBackward(xs._buf!, ws._buf!, gy._live(op, 'gradient'), b !== null);
      const wrap = (need: boolean, buf: typeof dx | null, shape: readonly number[]) => {
        if (buf === null) return null;
        if (need) return Tensor._wrap(buf, shape, x.backend, dtype);
        bind.release(buf);
        return null;
      };
      return [wrap(needX, dx, x.shape), wrap(needW, dw, weight.shape), wrap(needB, db, [outF])];
    });
  }
  return y;
}
