import type { Pair } from '../backend/binding.js';
import { needsGrad, record } from '../autograd/node.js';
import { Tensor } from '../tensor/tensor.js';
import { windowOutput } from './conv2d.js';
import { checkOptions, checkPair, shapeStr } from '../util/check.js';
import { checkFloat } from '../tensor/check-tensor.js';

/** Options of the pooling ops, as in PyTorch (`ceil_mode` false). */
export interface Pool2dOptions {
  /** Window size; a number or [kH, kW]. Required. */
  kernel: number | [number, number];
  /** Step between windows (default: the kernel size). */
  stride?: number | [number, number];
  /** Implicit padding on each side, at most half the kernel (default 0). */
  padding?: number | [number, number];
}

interface Geometry {
  kernel: Pair;
  stride: Pair;
  padding: Pair;
  out: [number, number, number, number];
}

function geometry(op: string, x: unknown, options: unknown): Geometry {
  const t = checkFloat(op, 'input', x, { rank: 4, layout: '[N, C, H, W]' });
  if (options === undefined) throw new TypeError(`${op}: expected options with a kernel size, e.g. { kernel: 2 }`);
  const opts = checkOptions(op, options, ['kernel', 'stride', 'padding']);
  if (opts.kernel === undefined) throw new TypeError(`${op}: the kernel option is required`);
  const kernel = checkPair(op, 'kernel', opts.kernel, 1);
  const stride = checkPair(op, 'stride', opts.stride ?? kernel, 1);
  const padding = checkPair(op, 'padding', opts.padding ?? 0, 0);
  if (padding[0] > kernel[0] / 2 || padding[1] > kernel[1] / 2) {
    throw new RangeError(`${op}: padding (${padding.join('x')}) must be at most half the kernel (${kernel.join('x')})`);
  }
  const [N, C, H, W] = t.shape as [number, number, number, number];
  const Ho = windowOutput(H, kernel[0], stride[0], padding[0], 1);
  const Wo = windowOutput(W, kernel[1], stride[1], padding[1], 1);
  if (Ho < 1 || Wo < 1) {
    throw new RangeError(`${op}: the ${kernel.join('x')} window does not fit the input ${shapeStr(t.shape)} with padding ${padding.join('x')}`);
  }
  return { kernel, stride, padding, out: [N, C, Ho, Wo] };
}

/** Max pooling of `x` [N, C, H, W] (padding counts as -infinity). */
export function maxPool2d(x: Tensor, options: Pool2dOptions): Tensor {
  const op = 'maxPool2d';
  const g = geometry(op, x, options);
  const b = x._binding();
  const [yb, ws] = b.maxPool2dForward(x._live(op, 'input'), g.kernel, g.stride, g.padding);
  const y = Tensor._wrap(yb, g.out, x.backend, x.dtype);
  if (!needsGrad(x)) {
    b.release(ws);
    return y;
  }
  const workspace = Tensor._wrapUntracked(ws, g.out, x.backend);
  record(op, y, [x], [workspace], (gy) => [
    Tensor._wrap(b.maxPool2dBackward(gy._live(op, 'gradient'), workspace._buf!, [...x.shape], g.kernel, g.stride, g.padding), x.shape, x.backend, x.dtype),
  ]);
  return y;
}

function avgPool(op: string, x: Tensor, g: Geometry): Tensor {
  const b = x._binding();
  const y = Tensor._wrap(b.avgPool2dForward(x._live(op, 'input'), g.kernel, g.stride, g.padding), g.out, x.backend, x.dtype);
  if (needsGrad(x)) {
    record(op, y, [x], [], (gy) => [
      Tensor._wrap(b.avgPool2dBackward(gy._live(op, 'gradient'), [...x.shape], g.kernel, g.stride, g.padding), x.shape, x.backend, x.dtype),
    ]);
  }
  return y;
}

/** Average pooling of `x` [N, C, H, W]; padded zeros count in the average (PyTorch's default). */
export function avgPool2d(x: Tensor, options: Pool2dOptions): Tensor {
  return avgPool('avgPool2d', x, geometry('avgPool2d', x, options));
}

/** The mean over H and W: [N, C, H, W] → [N, C, 1, 1]. */
export function globalAvgPool(x: Tensor): Tensor {
  const op = 'globalAvgPool';
  checkFloat(op, 'input', x, { rank: 4, layout: '[N, C, H, W]' });
  const [N, C, H, W] = x.shape as [number, number, number, number];
  return avgPool(op, x, { kernel: [H, W], stride: [H, W], padding: [0, 0], out: [N, C, 1, 1] });
}
