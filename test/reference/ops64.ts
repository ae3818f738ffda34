/**
 * Float64 reference implementations of the ResNet ops, with PyTorch semantics, for checking the
 * native backends. They favour being obviously right over being fast: plain loops over
 * row-major NCHW arrays, one output element (or one gradient contribution) at a time, so each
 * can be read against the PyTorch documentation line by line. Every backward here is verified
 * against finite differences of its forward in ops64.test.ts.
 *
 * Conventions: arrays are row-major with the shape passed beside them; inputs are never
 * modified; shape-preserving ops return the array, shape-changing ops return `{ y, shape }`.
 * @module
 */

export type Pair = readonly [number, number];
export type Shape2 = readonly [number, number];
export type Shape4 = readonly [number, number, number, number];

/** PyTorch's output size: floor((in + 2p - d(k-1) - 1) / s) + 1. */
export function outputSize(input: number, kernel: number, stride: number, padding: number, dilation = 1): number {
  return Math.floor((input + 2 * padding - dilation * (kernel - 1) - 1) / stride) + 1;
}

function product(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function expectLength(name: string, array: ArrayLike<number>, shape: readonly number[]): void {
  if (array.length !== product(shape)) {
    throw new RangeError(`${name}: length ${array.length} does not match shape [${shape.join(', ')}]`);
  }
}

function expectPositiveOutput(op: string, oh: number, ow: number): void {
  if (oh < 1 || ow < 1) throw new RangeError(`${op}: output would be ${oh}x${ow}`);
}

// ---------------------------------------------------------------------------------------------
// Convolution

export interface Conv2dParams {
  stride: Pair;
  padding: Pair;
  dilation: Pair;
  groups: number;
}

interface ConvGeometry {
  n: number; c: number; h: number; w: number;
  o: number; cPerGroup: number; oPerGroup: number; kh: number; kw: number;
  oh: number; ow: number;
}

function convGeometry(xShape: Shape4, wShape: Shape4, p: Conv2dParams): ConvGeometry {
  const [n, c, h, w] = xShape;
  const [o, cPerGroup, kh, kw] = wShape;
  if (c % p.groups !== 0 || o % p.groups !== 0 || cPerGroup !== c / p.groups) {
    throw new RangeError(`conv2d: x [${xShape.join(', ')}] and w [${wShape.join(', ')}] do not fit groups=${p.groups}`);
  }
  const oh = outputSize(h, kh, p.stride[0], p.padding[0], p.dilation[0]);
  const ow = outputSize(w, kw, p.stride[1], p.padding[1], p.dilation[1]);
  expectPositiveOutput('conv2d', oh, ow);
  return { n, c, h, w, o, cPerGroup, oPerGroup: o / p.groups, kh, kw, oh, ow };
}

/**
 * Calls `visit(xIndex, wIndex, yIndex)` for every product x·w that contributes to an output,
 * skipping taps that fall in the zero padding. Forward and backward share this walk so that
 * they cannot disagree about which input meets which weight.
 */
function forEachConvTap(g: ConvGeometry, p: Conv2dParams,
  visit: (xIndex: number, wIndex: number, yIndex: number) => void): void {
  for (let n = 0; n < g.n; n++) {
    for (let o = 0; o < g.o; o++) {
      const group = Math.floor(o / g.oPerGroup);
      for (let oy = 0; oy < g.oh; oy++) {
        for (let ox = 0; ox < g.ow; ox++) {
          const yIndex = ((n * g.o + o) * g.oh + oy) * g.ow + ox;
          for (let cg = 0; cg < g.cPerGroup; cg++) {
            const c = group * g.cPerGroup + cg;
            for (let ky = 0; ky < g.kh; ky++) {
              const iy = oy * p.stride[0] - p.padding[0] + ky * p.dilation[0];
              if (iy < 0 || iy >= g.h) continue;
              for (let kx = 0; kx < g.kw; kx++) {
                const ix = ox * p.stride[1] - p.padding[1] + kx * p.dilation[1];
                if (ix < 0 || ix >= g.w) continue;
                const xIndex = ((n * g.c + c) * g.h + iy) * g.w + ix;
                const wIndex = ((o * g.cPerGroup + cg) * g.kh + ky) * g.kw + kx;
                visit(xIndex, wIndex, yIndex);
              }
            }
          }
        }
      }
    }
  }
}

/** torch.nn.functional.conv2d. `w` is [O, C/groups, kh, kw]; `bias` is [O] or null. */
export function conv2dForward(x: Float64Array, xShape: Shape4, w: Float64Array, wShape: Shape4,
  bias: Float64Array | null, params: Conv2dParams): { y: Float64Array; shape: Shape4 } {
  expectLength('conv2d x', x, xShape);
  expectLength('conv2d w', w, wShape);
  const g = convGeometry(xShape, wShape, params);
  if (bias !== null) expectLength('conv2d bias', bias, [g.o]);
  const y = new Float64Array(g.n * g.o * g.oh * g.ow);
  if (bias !== null) {
    for (let i = 0; i < y.length; i++) y[i] = bias[Math.floor(i / (g.oh * g.ow)) % g.o]!;
  }
  forEachConvTap(g, params, (xi, wi, yi) => { y[yi]! += x[xi]! * w[wi]!; });
  return { y, shape: [g.n, g.o, g.oh, g.ow] };
}

/** Gradients of conv2dForward for upstream gradient `dy`; `db` is null unless `withBias`. */
export function conv2dBackward(x: Float64Array, xShape: Shape4, w: Float64Array, wShape: Shape4,
  dy: Float64Array, params: Conv2dParams, withBias: boolean):
  { dx: Float64Array; dw: Float64Array; db: Float64Array | null } {
  expectLength('conv2d x', x, xShape);
  expectLength('conv2d w', w, wShape);
  const g = convGeometry(xShape, wShape, params);
  expectLength('conv2d dy', dy, [g.n, g.o, g.oh, g.ow]);
  const dx = new Float64Array(x.length);
  const dw = new Float64Array(w.length);
  forEachConvTap(g, params, (xi, wi, yi) => {
    dx[xi]! += dy[yi]! * w[wi]!;
    dw[wi]! += dy[yi]! * x[xi]!;
  });
  let db: Float64Array | null = null;
  if (withBias) {
    db = new Float64Array(g.o);
    for (let i = 0; i < dy.length; i++) db[Math.floor(i / (g.oh * g.ow)) % g.o]! += dy[i]!;
  }
  return { dx, dw, db };
}

// ---------------------------------------------------------------------------------------------
// Batch normalization (statistics per channel over N, H, W)

function channelOf(index: number, shape: Shape4): number {
  return Math.floor(index / (shape[2] * shape[3])) % shape[1];
}

function channelMeans(values: Float64Array, shape: Shape4): Float64Array {
  const sums = new Float64Array(shape[1]);
  for (let i = 0; i < values.length; i++) sums[channelOf(i, shape)]! += values[i]!;
  const count = shape[0] * shape[2] * shape[3];
  return sums.map((s) => s / count);
}

/** Per-channel mean and biased variance (divide by N·H·W), as batch norm normalizes with. */
export function batchStatistics(x: Float64Array, shape: Shape4): { mean: Float64Array; var: Float64Array } {
  expectLength('batchNorm x', x, shape);
  const mean = channelMeans(x, shape);
  const squaredDeviations = x.map((v, i) => (v - mean[channelOf(i, shape)]!) ** 2);
  return { mean, var: channelMeans(squaredDeviations, shape) };
}

/** F.batch_norm(training=True). Returns the batch mean and the biased batch variance too. */
export function batchNorm2dTrainForward(x: Float64Array, shape: Shape4, weight: Float64Array, bias: Float64Array,
  eps: number): { y: Float64Array; mean: Float64Array; var: Float64Array } {
  const { mean, var: variance } = batchStatistics(x, shape);
  const y = batchNorm2dEval(x, shape, weight, bias, mean, variance, eps);
  return { y, mean, var: variance };
}

/**
 * Gradients of batchNorm2dTrainForward, through the batch mean and variance. With
 * x̂ = (x - μ)·σ⁻¹, σ = sqrt(var + eps) and m = N·H·W per channel:
 * dx = weight·σ⁻¹ · (dy - mean(dy) - x̂·mean(dy·x̂)).
 */
export function batchNorm2dTrainBackward(x: Float64Array, shape: Shape4, weight: Float64Array, dy: Float64Array,
  eps: number): { dx: Float64Array; dweight: Float64Array; dbias: Float64Array } {
  expectLength('batchNorm dy', dy, shape);
  const { mean, var: variance } = batchStatistics(x, shape);
  const invStd = variance.map((v) => 1 / Math.sqrt(v + eps));
  const xHat = x.map((v, i) => (v - mean[channelOf(i, shape)]!) * invStd[channelOf(i, shape)]!);
  const count = shape[0] * shape[2] * shape[3];
  const dbias = new Float64Array(shape[1]);
  const dweight = new Float64Array(shape[1]);
  for (let i = 0; i < x.length; i++) {
    const c = channelOf(i, shape);
    dbias[c]! += dy[i]!;
    dweight[c]! += dy[i]! * xHat[i]!;
  }
  const dx = x.map((_, i) => {
    const c = channelOf(i, shape);
    return weight[c]! * invStd[c]! * (dy[i]! - dbias[c]! / count - xHat[i]! * dweight[c]! / count);
  });
  return { dx, dweight, dbias };
}

/** F.batch_norm(training=False): normalizes with the given (running) statistics. */
export function batchNorm2dEval(x: Float64Array, shape: Shape4, weight: Float64Array, bias: Float64Array,
  runningMean: Float64Array, runningVar: Float64Array, eps: number): Float64Array {
  expectLength('batchNorm x', x, shape);
  for (const [name, a] of [['weight', weight], ['bias', bias], ['mean', runningMean], ['var', runningVar]] as const) {
    expectLength(`batchNorm ${name}`, a, [shape[1]]);
  }
  return x.map((v, i) => {
    const c = channelOf(i, shape);
    return (v - runningMean[c]!) / Math.sqrt(runningVar[c]! + eps) * weight[c]! + bias[c]!;
  });
}

/** The fused tail of batch norm: y = relu?(bn + residual?), as `ops.batchNorm2d` takes it. */
export interface BatchNormTail {
  residual: Float64Array | null;
  relu: boolean;
}

/** Training-mode batch norm with its tail: batchNorm2dTrainForward, then + residual, then relu. */
export function batchNorm2dTailForward(x: Float64Array, shape: Shape4, weight: Float64Array, bias: Float64Array, eps: number,
  tail: BatchNormTail): { y: Float64Array; mean: Float64Array; var: Float64Array } {
  const bn = batchNorm2dTrainForward(x, shape, weight, bias, eps);
  const sum = tail.residual ? add(bn.y, tail.residual) : bn.y;
  return { ...bn, y: tail.relu ? relu(sum) : sum };
}

/**
 * Gradients of batchNorm2dTailForward: the ReLU's mask (from the output) applied to dy gives
 * the residual's gradient and the batch norm's output gradient.
 */
export function batchNorm2dTailBackward(x: Float64Array, shape: Shape4, weight: Float64Array, bias: Float64Array, dy: Float64Array,
  eps: number, tail: BatchNormTail): { dx: Float64Array; dweight: Float64Array; dbias: Float64Array; dresidual: Float64Array | null } {
  const dz = tail.relu ? reluBackward(batchNorm2dTailForward(x, shape, weight, bias, eps, tail).y, dy) : dy;
  return { ...batchNorm2dTrainBackward(x, shape, weight, dz, eps), dresidual: tail.residual ? dz : null };
}

/**
 * PyTorch's running-statistics update: running = (1 - momentum)·running + momentum·batch,
 * where the variance blended in is the unbiased one, biasedVar·n/(n-1), n = N·H·W.
 */
export function runningStatsUpdate(runningMean: Float64Array, runningVar: Float64Array, mean: Float64Array,
  biasedVar: Float64Array, n: number, momentum: number): { runningMean: Float64Array; runningVar: Float64Array } {
  return {
    runningMean: runningMean.map((r, c) => (1 - momentum) * r + momentum * mean[c]!),
    runningVar: runningVar.map((r, c) => (1 - momentum) * r + momentum * biasedVar[c]! * n / (n - 1)),
  };
}

// ---------------------------------------------------------------------------------------------
// Elementwise

export function relu(x: Float64Array): Float64Array {
  return x.map((v) => (v > 0 ? v : 0));
}

/** ReLU's gradient is taken as 0 at x = 0, as PyTorch does. */
export function reluBackward(x: Float64Array, dy: Float64Array): Float64Array {
  return dy.map((g, i) => (x[i]! > 0 ? g : 0));
}

export function add(a: Float64Array, b: Float64Array): Float64Array {
  if (a.length !== b.length) throw new RangeError(`add: lengths ${a.length} and ${b.length} differ`);
  return a.map((v, i) => v + b[i]!);
}

/** relu(a + b): the residual join of a BasicBlock. */
export function addRelu(a: Float64Array, b: Float64Array): Float64Array {
  return relu(add(a, b));
}

/** Both inputs receive the same gradient, dy masked by a + b > 0. */
export function addReluBackward(a: Float64Array, b: Float64Array, dy: Float64Array): { da: Float64Array; db: Float64Array } {
  const da = reluBackward(add(a, b), dy);
  return { da, db: da.slice() };
}

// ---------------------------------------------------------------------------------------------
// Pooling

export interface Pool2dParams {
  kernel: Pair;
  stride: Pair;
  padding: Pair;
}

function poolOutputShape(op: string, shape: Shape4, p: Pool2dParams): Shape4 {
  // PyTorch rejects larger padding, which could leave a window entirely in the padding.
  if (2 * p.padding[0] > p.kernel[0] || 2 * p.padding[1] > p.kernel[1]) {
    throw new RangeError(`${op}: padding should be at most half of the kernel size`);
  }
  const oh = outputSize(shape[2], p.kernel[0], p.stride[0], p.padding[0]);
  const ow = outputSize(shape[3], p.kernel[1], p.stride[1], p.padding[1]);
  expectPositiveOutput(op, oh, ow);
  return [shape[0], shape[1], oh, ow];
}

/**
 * Calls `visit(yIndex, xIndices)` per output with the in-bounds input indices of its window,
 * in row-major window order (the order max pooling breaks ties by).
 */
function forEachPoolWindow(shape: Shape4, outShape: Shape4, p: Pool2dParams,
  visit: (yIndex: number, xIndices: number[]) => void): void {
  const [n, c, h, w] = shape;
  const [, , oh, ow] = outShape;
  for (let plane = 0; plane < n * c; plane++) {
    for (let oy = 0; oy < oh; oy++) {
      for (let ox = 0; ox < ow; ox++) {
        const xIndices: number[] = [];
        for (let ky = 0; ky < p.kernel[0]; ky++) {
          const iy = oy * p.stride[0] - p.padding[0] + ky;
          if (iy < 0 || iy >= h) continue;
          for (let kx = 0; kx < p.kernel[1]; kx++) {
            const ix = ox * p.stride[1] - p.padding[1] + kx;
            if (ix >= 0 && ix < w) xIndices.push((plane * h + iy) * w + ix);
          }
        }
        visit((plane * oh + oy) * ow + ox, xIndices);
      }
    }
  }
}

/** Index of each window's maximum: the first one on ties, and NaN wins, as in PyTorch's CPU kernel. */
function maxPoolArgmax(x: Float64Array, shape: Shape4, p: Pool2dParams): { argmax: Int32Array; shape: Shape4 } {
  expectLength('maxPool2d x', x, shape);
  const outShape = poolOutputShape('maxPool2d', shape, p);
  const argmax = new Int32Array(product(outShape));
  forEachPoolWindow(shape, outShape, p, (yi, xIndices) => {
    // Padding counts as -inf, so it never wins; windows always hold an input (see poolOutputShape).
    let best = xIndices[0]!;
    for (const xi of xIndices) {
      if (x[xi]! > x[best]! || (Number.isNaN(x[xi]!) && !Number.isNaN(x[best]!))) best = xi;
    }
    argmax[yi] = best;
  });
  return { argmax, shape: outShape };
}

/** F.max_pool2d (dilation 1, ceil_mode false). */
export function maxPool2dForward(x: Float64Array, shape: Shape4, params: Pool2dParams): { y: Float64Array; shape: Shape4 } {
  const { argmax, shape: outShape } = maxPoolArgmax(x, shape, params);
  return { y: Float64Array.from(argmax, (xi) => x[xi]!), shape: outShape };
}

/** Each output's gradient goes to its window's (first) maximum; overlapping windows accumulate. */
export function maxPool2dBackward(x: Float64Array, shape: Shape4, dy: Float64Array, params: Pool2dParams): Float64Array {
  const { argmax, shape: outShape } = maxPoolArgmax(x, shape, params);
  expectLength('maxPool2d dy', dy, outShape);
  const dx = new Float64Array(x.length);
  argmax.forEach((xi, yi) => { dx[xi]! += dy[yi]!; });
  return dx;
}

/** F.avg_pool2d with count_include_pad=True: every window divides by kh·kw, padding included. */
export function avgPool2dForward(x: Float64Array, shape: Shape4, params: Pool2dParams): { y: Float64Array; shape: Shape4 } {
  expectLength('avgPool2d x', x, shape);
  const outShape = poolOutputShape('avgPool2d', shape, params);
  const divisor = params.kernel[0] * params.kernel[1];
  const y = new Float64Array(product(outShape));
  forEachPoolWindow(shape, outShape, params, (yi, xIndices) => {
    for (const xi of xIndices) y[yi]! += x[xi]!;
    y[yi]! /= divisor;
  });
  return { y, shape: outShape };
}

export function avgPool2dBackward(shape: Shape4, dy: Float64Array, params: Pool2dParams): Float64Array {
  const outShape = poolOutputShape('avgPool2d', shape, params);
  expectLength('avgPool2d dy', dy, outShape);
  const divisor = params.kernel[0] * params.kernel[1];
  const dx = new Float64Array(product(shape));
  forEachPoolWindow(shape, outShape, params, (yi, xIndices) => {
    for (const xi of xIndices) dx[xi]! += dy[yi]! / divisor;
  });
  return dx;
}

/** AdaptiveAvgPool2d(1): the mean of each H×W plane, shape [N, C, 1, 1]. */
export function globalAvgPoolForward(x: Float64Array, shape: Shape4): { y: Float64Array; shape: Shape4 } {
  expectLength('globalAvgPool x', x, shape);
  const planeSize = shape[2] * shape[3];
  const y = new Float64Array(shape[0] * shape[1]);
  for (let i = 0; i < x.length; i++) y[Math.floor(i / planeSize)]! += x[i]! / planeSize;
  return { y, shape: [shape[0], shape[1], 1, 1] };
}

export function globalAvgPoolBackward(shape: Shape4, dy: Float64Array): Float64Array {
  expectLength('globalAvgPool dy', dy, [shape[0], shape[1]]);
  const planeSize = shape[2] * shape[3];
  return Float64Array.from({ length: product(shape) }, (_, i) => dy[Math.floor(i / planeSize)]! / planeSize);
}

/** torch.flatten(x, 1): the values are already in order, only the shape changes. */
export function flatten(x: Float64Array, shape: Shape4): { y: Float64Array; shape: Shape2 } {
  expectLength('flatten x', x, shape);
  return { y: x.slice(), shape: [shape[0], shape[1] * shape[2] * shape[3]] };
}

// ---------------------------------------------------------------------------------------------
// Linear, loss, optimizer

/** F.linear: y = x·wᵀ + b with x [N, in], w [out, in]. */
export function linearForward(x: Float64Array, xShape: Shape2, w: Float64Array, wShape: Shape2,
  bias: Float64Array | null): { y: Float64Array; shape: Shape2 } {
  const [n, inFeatures] = xShape;
  const [outFeatures] = wShape;
  expectLength('linear x', x, xShape);
  expectLength('linear w', w, [outFeatures, inFeatures]);
  if (bias !== null) expectLength('linear bias', bias, [outFeatures]);
  const y = new Float64Array(n * outFeatures);
  for (let i = 0; i < n; i++) {
    for (let o = 0; o < outFeatures; o++) {
      let sum = bias === null ? 0 : bias[o]!;
      for (let k = 0; k < inFeatures; k++) sum += x[i * inFeatures + k]! * w[o * inFeatures + k]!;
      y[i * outFeatures + o] = sum;
    }
  }
  return { y, shape: [n, outFeatures] };
}

export function linearBackward(x: Float64Array, xShape: Shape2, w: Float64Array, wShape: Shape2, dy: Float64Array,
  withBias: boolean): { dx: Float64Array; dw: Float64Array; db: Float64Array | null } {
  const [n, inFeatures] = xShape;
  const [outFeatures] = wShape;
  expectLength('linear x', x, xShape);
  expectLength('linear w', w, [outFeatures, inFeatures]);
  expectLength('linear dy', dy, [n, outFeatures]);
  const dx = new Float64Array(x.length);
  const dw = new Float64Array(w.length);
  const db = withBias ? new Float64Array(outFeatures) : null;
  for (let i = 0; i < n; i++) {
    for (let o = 0; o < outFeatures; o++) {
      const g = dy[i * outFeatures + o]!;
      if (db !== null) db[o]! += g;
      for (let k = 0; k < inFeatures; k++) {
        dx[i * inFeatures + k]! += g * w[o * inFeatures + k]!;
        dw[o * inFeatures + k]! += g * x[i * inFeatures + k]!;
      }
    }
  }
  return { dx, dw, db };
}

/**
 * nn.CrossEntropyLoss(label_smoothing=ε), mean reduction, over logits [N, K]: the target
 * distribution is q = (1 - ε)·onehot(label) + ε/K, loss = mean over rows of -Σ q·log softmax.
 * `dlogits` is the gradient of that mean loss: (softmax - q) / N.
 */
export function softmaxCrossEntropy(logits: Float64Array, shape: Shape2, labels: Int32Array,
  labelSmoothing = 0): { loss: number; dlogits: Float64Array } {
  const [n, k] = shape;
  expectLength('crossEntropy logits', logits, shape);
  expectLength('crossEntropy labels', labels, [n]);
  const dlogits = new Float64Array(n * k);
  let loss = 0;
  for (let i = 0; i < n; i++) {
    const label = labels[i]!;
    if (!(label >= 0 && label < k)) throw new RangeError(`crossEntropy: label ${label} outside [0, ${k})`);
    const row = logits.subarray(i * k, (i + 1) * k);
    // Shifting by the row maximum keeps exp from overflowing; log-softmax is unchanged by it.
    const rowMax = Math.max(...row);
    const logSumExp = rowMax + Math.log(row.reduce((s, v) => s + Math.exp(v - rowMax), 0));
    for (let j = 0; j < k; j++) {
      const target = (j === label ? 1 - labelSmoothing : 0) + labelSmoothing / k;
      const logProb = row[j]! - logSumExp;
      loss -= target * logProb;
      dlogits[i * k + j] = (Math.exp(logProb) - target) / n;
    }
  }
  return { loss: loss / n, dlogits };
}

export interface SgdOptions {
  lr: number;
  momentum: number;
  weightDecay: number;
  nesterov: boolean;
}

/**
 * torch.optim.SGD (dampening 0) run for `gradsPerStep.length` steps; `gradsPerStep[step][i]`
 * is parameter i's gradient at that step. Per step: g += weightDecay·p; buf = g on the first
 * step, else momentum·buf + g; g = nesterov ? g + momentum·buf : buf; p -= lr·g.
 * Returns the final parameters and momentum buffers (null when momentum is 0, as PyTorch keeps none).
 */
export function sgdReference(params: Float64Array[], gradsPerStep: Float64Array[][], options: SgdOptions):
  { params: Float64Array[]; momentumBuffers: Float64Array[] | null } {
  const { lr, momentum, weightDecay, nesterov } = options;
  const current = params.map((p) => p.slice());
  const buffers: Float64Array[] = [];
  gradsPerStep.forEach((grads, step) => {
    if (grads.length !== current.length) throw new RangeError('sgdReference: one gradient per parameter per step');
    current.forEach((p, i) => {
      expectLength(`sgdReference grad ${i}`, grads[i]!, [p.length]);
      let d = grads[i]!.map((g, j) => g + weightDecay * p[j]!);
      if (momentum !== 0) {
        const buf = step === 0 ? d.slice() : buffers[i]!.map((b, j) => momentum * b + d[j]!);
        buffers[i] = buf;
        d = nesterov ? d.map((v, j) => v + momentum * buf[j]!) : buf;
      }
      for (let j = 0; j < p.length; j++) p[j] = p[j]! - lr * d[j]!;
    });
  });
  return { params: current, momentumBuffers: momentum !== 0 ? buffers : null };
}
