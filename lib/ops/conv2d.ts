import type { Pair } from '../backend/binding.js';
import { gradMask, needsGrad, record } from '../autograd/node.js';
import { Tensor } from '../tensor/tensor.js';
import { checkElements, checkInt, checkOptions, checkPair, shapeStr } from '../util/check.js';
import { checkFloat, checkSameBackend, checkSameDType } from '../tensor/check-tensor.js';
import { withCasts } from '../amp/autocast.js';

/** Options of `conv2d`, as in PyTorch's `F.conv2d`. */
export interface Conv2dOptions {
  /** Step between windows; a number or [sh, sw] (default 1). */
  stride?: number | [number, number];
  /** Zeros added on each side; a number or [ph, pw] (default 0). */
  padding?: number | [number, number];
  /** Spacing between kernel taps; a number or [dh, dw] (default 1). */
  dilation?: number | [number, number];
  /** Channel groups: input and output channels must both be divisible by it (default 1). */
  groups?: number;
  /** Per-output-channel bias of shape [O]. */
  bias?: Tensor | null;
}

/** Output spatial size of a sliding window (PyTorch's floor rule). @internal */
export function windowOutput(size: number, kernel: number, stride: number, padding: number, dilation: number): number {
  return Math.floor((size + 2 * padding - dilation * (kernel - 1) - 1) / stride) + 1;
}

/**
 * 2-D convolution (cross-correlation, as in PyTorch) of `x` [N, C, H, W] with `weight`
 * [O, C/groups, kH, kW]. Returns [N, O, H', W']. Input, weight and bias share a floating dtype,
 * which the output has; inside `amp.autocast` they are cast to its type first.
 */
export function conv2d(x: Tensor, weight: Tensor, options?: Conv2dOptions): Tensor {
  const op = 'conv2d';
  checkFloat(op, 'input', x, { rank: 4, layout: '[N, C, H, W]' });
  checkFloat(op, 'weight', weight, { rank: 4, layout: '[O, C/groups, kH, kW]' });
  const opts = checkOptions(op, options, ['stride', 'padding', 'dilation', 'groups', 'bias']);
  const stride = checkPair(op, 'stride', opts.stride ?? 1, 1);
  const padding = checkPair(op, 'padding', opts.padding ?? 0, 0);
  const dilation = checkPair(op, 'dilation', opts.dilation ?? 1, 1);
  const groups = checkInt(op, 'groups', opts.groups ?? 1, 1);
  const bias = opts.bias == null ? null : checkFloat(op, 'bias', opts.bias, { rank: 1, layout: '[O]' });
  checkSameBackend(op, { input: x, weight, bias });
  const [N, C, H, W] = x.shape as [number, number, number, number];
  const [O, Cg, kH, kW] = weight.shape as [number, number, number, number];
  const shapes = `input ${shapeStr(x.shape)}, weight ${shapeStr(weight.shape)}`;
  if (C % groups !== 0 || O % groups !== 0) {
    throw new RangeError(`${op}: input channels (${C}) and output channels (${O}) must be divisible by groups = ${groups} (${shapes})`);
  }
  if (Cg * groups !== C) {
    throw new RangeError(`${op}: expected weight of shape [O, C/groups, kH, kW] with C/groups = ${C / groups}, got ${shapeStr(weight.shape)} (input ${shapeStr(x.shape)}, groups = ${groups})`);
  }
  if (bias && bias.shape[0] !== O) throw new RangeError(`${op}: expected bias of shape [${O}], got ${shapeStr(bias.shape)}`);
  const Ho = windowOutput(H, kH, stride[0], padding[0], dilation[0]);
  const Wo = windowOutput(W, kW, stride[1], padding[1], dilation[1]);
  if (Ho < 1 || Wo < 1) {
    throw new RangeError(`${op}: the kernel (${kH}x${kW}, dilation ${dilation.join('x')}) is larger than the padded input (${shapes}, padding ${padding.join('x')})`);
  }
  checkElements(op, 'output', [N, O, Ho, Wo], ` (${shapes}, padding ${padding.join('x')}, stride ${stride.join('x')})`);
  return withCasts('lower', [x, weight, bias], ([xc, wc, bc]) => forward(xc!, wc!, bc ?? null, [stride, padding, dilation, groups], [N, O, Ho, Wo]));
}

function forward(x: Tensor, weight: Tensor, bias: Tensor | null, geometry: [Pair, Pair, Pair, number], out: number[]): Tensor {
  const op = 'conv2d';
  const dtype = checkSameDType(op, { input: x, weight, bias });
  const O = weight.shape[0]!;
  const b = x._binding();
  const y = Tensor._wrap(
    b.conv2dForward(x._live(op, 'input'), weight._live(op, 'weight'), bias ? bias._live(op, 'bias') : null, ...geometry),
    out, x.backend, dtype);
  if (needsGrad(x, weight, bias)) {
    const [needX, needW, needB] = gradMask(x, weight, bias);
    const xs = needW || needB ? x._share(op) : null;
    const ws = needX ? weight._share(op) : null;
    record(op, y, [x, weight, bias], [xs, ws].filter((t): t is Tensor => t !== null), (gy) => {
      const g = gy._live(op, 'gradient');
      const dx = needX ? Tensor._wrap(b.conv2dBackwardData(g, ws!._buf!, [...x.shape], ...geometry), x.shape, x.backend, dtype) : null;
      let dw: Tensor | null = null;
      let db: Tensor | null = null;
      if (needW || needB) {
        const [dwBuf, dbBuf] = b.conv2dBackwardWeights(xs!._buf!, g, [...weight.shape], bias !== null, ...geometry);
        dw = Tensor._wrap(dwBuf, weight.shape, x.backend, dtype);
        db = dbBuf ? Tensor._wrap(dbBuf, [O], x.backend, dtype) : null;
      }
      return [dx, dw, db];
    });
  }
  return y;
}
