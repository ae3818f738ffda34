/**
 * The layers a ResNet is made of, as PyTorch's `torch.nn` modules of the same names.
 * @module
 */
import type { BackendName } from '../backend/backends.js';
import { parseBackend } from '../backend/backends.js';
import * as ops from '../ops/index.js';
import { syncBatchNorm2d } from '../ops/sync-batch-norm.js';
import { tensor, zeros, ones } from '../tensor/create.js';
import { rngFor } from '../tensor/random.js';
import type { Tensor } from '../tensor/tensor.js';
import { eachReplay } from '../tensor/capture-phase.js';
import { FLOAT32_MAX, FLOAT32_MIN, MAX_ARRAY_ELEMENTS, checkBool, checkElements, checkInt, checkNumber, checkOptions, checkPair, show } from '../util/check.js';
import { Module } from './module.js';

/** Options every layer with parameters takes. */
export interface InitOptions {
  /** Seed of the initial values; without it the process-wide generator is used (see `seed()`). */
  seed?: number;
  /** Where the parameters live; defaults to `defaultBackend()`. */
  backend?: BackendName;
}

/** Options of `Conv2d`. */
export interface Conv2dLayerOptions extends InitOptions {
  /** Step between windows; a number or [sh, sw] (default 1). */
  stride?: number | [number, number];
  /** Zeros added on each side; a number or [ph, pw] (default 0). */
  padding?: number | [number, number];
  /** Spacing between kernel taps; a number or [dh, dw] (default 1). */
  dilation?: number | [number, number];
  /** Channel groups (default 1). */
  groups?: number;
  /** Learn a per-channel bias (default true, as PyTorch; ResNets pass false, BN follows). */
  bias?: boolean;
}

/** The seed option, checked. @internal */
export function checkSeed(op: string, value: unknown): number | undefined {
  return value === undefined ? undefined : checkInt(op, 'seed', value, -(2 ** 31), 2 ** 32 - 1);
}

function initTensor(op: string, shape: number[], backend: BackendName, draw: () => number): Tensor {
  const n = checkElements(op, 'weight', shape, '', MAX_ARRAY_ELEMENTS).reduce((a, b) => a * b, 1);
  const values = new Float32Array(n);
  for (let i = 0; i < n; i++) values[i] = draw();
  return tensor(values, shape, { backend });
}

/**
 * 2-D convolution, as `torch.nn.Conv2d`. Parameters `weight` [out, in/groups, kH, kW] and,
 * with `bias` (the default), `bias` [out].
 *
 * Initialisation departs from PyTorch's layer default on purpose: the weight is He (Kaiming)
 * normal in fan-out mode, std = √(2 / (out·kH·kW)), which torchvision's ResNets apply to every
 * convolution. The bias is PyTorch's, uniform in ±1/√(in/groups·kH·kW).
 */
export class Conv2d extends Module {
  readonly inChannels: number;
  readonly outChannels: number;
  readonly kernel: [number, number];
  readonly stride: [number, number];
  readonly padding: [number, number];
  readonly dilation: [number, number];
  readonly groups: number;

  constructor(inChannels: number, outChannels: number, kernel: number | [number, number], options?: Conv2dLayerOptions) {
    super();
    const op = 'Conv2d';
    this.inChannels = checkInt(op, 'inChannels', inChannels, 1);
    this.outChannels = checkInt(op, 'outChannels', outChannels, 1);
    this.kernel = checkPair(op, 'kernel', kernel, 1);
    const opts = checkOptions(op, options, ['stride', 'padding', 'dilation', 'groups', 'bias', 'seed', 'backend']);
    this.stride = checkPair(op, 'stride', opts.stride ?? 1, 1);
    this.padding = checkPair(op, 'padding', opts.padding ?? 0, 0);
    this.dilation = checkPair(op, 'dilation', opts.dilation ?? 1, 1);
    this.groups = checkInt(op, 'groups', opts.groups ?? 1, 1);
    if (inChannels % this.groups !== 0 || outChannels % this.groups !== 0) {
      throw new RangeError(`${op}: inChannels (${inChannels}) and outChannels (${outChannels}) must be divisible by groups = ${this.groups}`);
    }
    const withBias = opts.bias === undefined ? true : checkBool(op, 'bias', opts.bias);
    const rng = rngFor(checkSeed(op, opts.seed));
    const backend = parseBackend(op, opts.backend);
    const [kH, kW] = this.kernel;
    const std = Math.sqrt(2 / (outChannels * kH * kW));
    this.addParameter('weight', initTensor(op, [outChannels, inChannels / this.groups, kH, kW], backend, () => std * rng.normal()));
    if (withBias) {
      const bound = 1 / Math.sqrt((inChannels / this.groups) * kH * kW);
      this.addParameter('bias', initTensor(op, [outChannels], backend, () => bound * (2 * rng.uniform() - 1)));
    }
  }

  /** [out, in/groups, kH, kW]. */
  get weight(): Tensor {
    return this.parameter('weight')!;
  }

  /** [out], or null without bias. */
  get bias(): Tensor | null {
    return this.parameter('bias');
  }

  /** `ops.conv2d` with this layer's weight, bias and geometry. */
  forward(x: Tensor): Tensor {
    return ops.conv2d(x, this.weight, { stride: this.stride, padding: this.padding, dilation: this.dilation, groups: this.groups, bias: this.bias });
  }
}

/**
 * What `BatchNorm2d.forward` applies after normalizing, fused into the same op: a residual to
 * add, then a ReLU (see `ops.batchNorm2d`).
 */
export interface BatchNormTail {
  residual?: Tensor | null;
  relu?: boolean;
}

/** Options of `BatchNorm2d`. */
export interface BatchNorm2dLayerOptions {
  /** Added to the variance for stability (default 1e-5). */
  eps?: number;
  /** Weight of each new batch statistic in the running averages (default 0.1). */
  momentum?: number;
  /** Where the parameters and buffers live; defaults to `defaultBackend()`. */
  backend?: BackendName;
}

/**
 * Batch normalization over [N, C, H, W], as `torch.nn.BatchNorm2d`: parameters `weight` (γ,
 * ones) and `bias` (β, zeros) [C]; buffers `running_mean` (zeros), `running_var` (ones) and
 * `num_batches_tracked`. Training mode normalizes with batch statistics and updates the
 * running ones; evaluation mode uses the running ones.
 *
 * `num_batches_tracked` is an int32 scalar tensor (shape []) counting training-mode forward
 * calls (PyTorch's is int64; 2³¹ steps is beyond any training run). It is informational here,
 * as in PyTorch with a fixed momentum: the count lives in JS, and is written into the buffer
 * only when the buffer is handed out (`stateDict`, `namedBuffers`), so that a training step
 * does not upload one scalar per layer.
 */
export class BatchNorm2d extends Module {
  readonly numFeatures: number;
  readonly eps: number;
  readonly momentum: number;
  #batches = 0;
  #exported = 0;
  #synchronized = false;

  constructor(numFeatures: number, options?: BatchNorm2dLayerOptions) {
    super();
    const op = 'BatchNorm2d';
    this.numFeatures = checkInt(op, 'numFeatures', numFeatures, 1);
    const opts = checkOptions(op, options, ['eps', 'momentum', 'backend']);
    this.eps = opts.eps === undefined ? 1e-5 : checkNumber(op, 'eps', opts.eps, FLOAT32_MIN, FLOAT32_MAX);
    this.momentum = opts.momentum === undefined ? 0.1 : checkNumber(op, 'momentum', opts.momentum, 0, 1);
    const backend = parseBackend(op, opts.backend);
    this.addParameter('weight', ones([numFeatures], { backend }));
    this.addParameter('bias', zeros([numFeatures], { backend }));
    this.addBuffer('running_mean', zeros([numFeatures], { backend }));
    this.addBuffer('running_var', ones([numFeatures], { backend }));
    this.addBuffer('num_batches_tracked', tensor(Int32Array.of(0), [], { backend }));
  }

  /** γ [C]. */
  get weight(): Tensor {
    return this.parameter('weight')!;
  }

  /** β [C]. */
  get bias(): Tensor {
    return this.parameter('bias')!;
  }

  /** The running mean [C]. */
  get runningMean(): Tensor {
    return this.buffer('running_mean') as Tensor;
  }

  /** The running (unbiased) variance [C]. */
  get runningVar(): Tensor {
    return this.buffer('running_var') as Tensor;
  }

  /** Training-mode forward calls so far (the value of the `num_batches_tracked` buffer). */
  get numBatchesTracked(): number {
    return this.#batches;
  }

  /**
   * Whether training-mode batch statistics span the process group (set by
   * `nn.convertSyncBatchNorm`): every rank then normalizes with the mean and variance of all
   * ranks' batches, as PyTorch's SyncBatchNorm does.
   */
  get synchronized(): boolean {
    return this.#synchronized;
  }

  /** Makes this layer synchronized (see {@link synchronized}). @internal */
  _synchronize(): void {
    this.#synchronized = true;
  }

  /**
   * `ops.batchNorm2d` in this module's mode, with its parameters and running statistics, and
   * the fused `tail` when given: `relu(bn(x) + residual)` in one op where the blocks of a
   * residual network would otherwise run two or three. In training, synchronized, with the
   * process group's batch statistics, and the tail as separate ops after it.
   */
  forward(x: Tensor, tail?: BatchNormTail): Tensor {
    const t = checkOptions('BatchNorm2d.forward', tail, ['residual', 'relu']);
    const options = {
      weight: this.weight, bias: this.bias, runningMean: this.runningMean, runningVar: this.runningVar,
      training: this.training, momentum: this.momentum, eps: this.eps,
    };
    let y: Tensor;
    if (this.#synchronized && this.training) {
      const relu = t.relu === undefined ? false : checkBool('BatchNorm2d.forward', 'relu', t.relu);
      const normalized = syncBatchNorm2d(x, options);
      const residual = t.residual as Tensor | null | undefined;
      if (residual) y = relu ? ops.addRelu(normalized, residual) : ops.add(normalized, residual);
      else y = relu ? ops.relu(normalized) : normalized;
    } else {
      y = ops.batchNorm2d(x, {
        ...options,
        ...(t.residual === undefined ? {} : { residual: t.residual as Tensor | null }),
        ...(t.relu === undefined ? {} : { relu: t.relu as boolean }),
      });
    }
    // A captured step counts its replays too.
    if (this.training) eachReplay(() => this.#batches++);
    return y;
  }

  protected override beforeExport(): void {
    if (this.#exported === this.#batches) return;
    this.buffer('num_batches_tracked')._assign(Int32Array.of(this.#batches));
    this.#exported = this.#batches;
  }

  // A loaded count arrives in the buffer; the JS copy must follow it. One blocking read of a
  // scalar per layer, at load time only.
  protected override afterLoad(): void {
    this.#batches = this.buffer('num_batches_tracked').dataSync()[0]!;
    this.#exported = this.#batches;
  }
}

/** max(x, 0), as `torch.nn.ReLU`. */
export class ReLU extends Module {
  /** `ops.relu(x)`. */
  forward(x: Tensor): Tensor {
    return ops.relu(x);
  }
}

/** Options of `Linear`. */
export interface LinearLayerOptions extends InitOptions {
  /** Learn a bias (default true). */
  bias?: boolean;
}

/**
 * x·wᵀ + b, as `torch.nn.Linear`: `weight` [out, in] and `bias` [out], both initialised as
 * PyTorch does, uniform in ±1/√in.
 */
export class Linear extends Module {
  readonly inFeatures: number;
  readonly outFeatures: number;

  constructor(inFeatures: number, outFeatures: number, options?: LinearLayerOptions) {
    super();
    const op = 'Linear';
    this.inFeatures = checkInt(op, 'inFeatures', inFeatures, 1);
    this.outFeatures = checkInt(op, 'outFeatures', outFeatures, 1);
    const opts = checkOptions(op, options, ['bias', 'seed', 'backend']);
    const withBias = opts.bias === undefined ? true : checkBool(op, 'bias', opts.bias);
    const rng = rngFor(checkSeed(op, opts.seed));
    const backend = parseBackend(op, opts.backend);
    const bound = 1 / Math.sqrt(inFeatures);
    const uniform = () => bound * (2 * rng.uniform() - 1);
    this.addParameter('weight', initTensor(op, [outFeatures, inFeatures], backend, uniform));
    if (withBias) this.addParameter('bias', initTensor(op, [outFeatures], backend, uniform));
  }

  /** [out, in]. */
  get weight(): Tensor {
    return this.parameter('weight')!;
  }

  /** [out], or null without bias. */
  get bias(): Tensor | null {
    return this.parameter('bias');
  }

  /** `ops.linear` of x [N, in]. */
  forward(x: Tensor): Tensor {
    return ops.linear(x, this.weight, this.bias);
  }
}

/** Options of `MaxPool2d` and `AvgPool2d`. */
export interface Pool2dLayerOptions {
  /** Step between windows (default: the kernel size). */
  stride?: number | [number, number];
  /** Implicit padding on each side, at most half the kernel (default 0). */
  padding?: number | [number, number];
}

/** Options of `MaxPool2d`. */
export type MaxPool2dLayerOptions = Pool2dLayerOptions;

/** Options of `AvgPool2d`. */
export type AvgPool2dLayerOptions = Pool2dLayerOptions;

/** The geometry both pooling layers check and keep. */
abstract class Pool2d extends Module {
  readonly kernel: [number, number];
  readonly stride: [number, number];
  readonly padding: [number, number];

  protected constructor(op: string, kernel: number | [number, number], options: Pool2dLayerOptions | undefined) {
    super();
    this.kernel = checkPair(op, 'kernel', kernel, 1);
    const opts = checkOptions(op, options, ['stride', 'padding']);
    this.stride = checkPair(op, 'stride', opts.stride ?? this.kernel, 1);
    this.padding = checkPair(op, 'padding', opts.padding ?? 0, 0);
    if (this.padding[0] > this.kernel[0] / 2 || this.padding[1] > this.kernel[1] / 2) {
      throw new RangeError(`${op}: padding (${this.padding.join('x')}) must be at most half the kernel (${this.kernel.join('x')})`);
    }
  }
}

/** Max pooling, as `torch.nn.MaxPool2d` (torchvision's stem: kernel 3, stride 2, padding 1); padding counts as -infinity. */
export class MaxPool2d extends Pool2d {
  constructor(kernel: number | [number, number], options?: MaxPool2dLayerOptions) {
    super('MaxPool2d', kernel, options);
  }

  /** `ops.maxPool2d` with this layer's geometry. */
  forward(x: Tensor): Tensor {
    return ops.maxPool2d(x, { kernel: this.kernel, stride: this.stride, padding: this.padding });
  }
}

/** Average pooling, as `torch.nn.AvgPool2d`; padded zeros count in the average (PyTorch's default). */
export class AvgPool2d extends Pool2d {
  constructor(kernel: number | [number, number], options?: AvgPool2dLayerOptions) {
    super('AvgPool2d', kernel, options);
  }

  /** `ops.avgPool2d` with this layer's geometry. */
  forward(x: Tensor): Tensor {
    return ops.avgPool2d(x, { kernel: this.kernel, stride: this.stride, padding: this.padding });
  }
}

/** The mean over H and W, [N, C, H, W] → [N, C, 1, 1], as `torch.nn.AdaptiveAvgPool2d(1)`. */
export class GlobalAvgPool extends Module {
  /** `ops.globalAvgPool(x)`. */
  forward(x: Tensor): Tensor {
    return ops.globalAvgPool(x);
  }
}

/** `ops.flatten`: [N, ...] → [N, everything else], so a `Sequential` can end in a `Linear`. */
export class Flatten extends Module {
  /** `ops.flatten(x)`. */
  forward(x: Tensor): Tensor {
    return ops.flatten(x);
  }
}

/** Modules applied in order, as `torch.nn.Sequential`; children are named '0', '1', …. */
export class Sequential extends Module {
  readonly #layers: Module[];

  constructor(...modules: Module[]) {
    super();
    modules.forEach((m, i) => {
      if (!(m instanceof Module)) throw new TypeError(`Sequential: expected modules[${i}] to be a Module, got ${show(m)}`);
      this.addModule(String(i), m);
    });
    this.#layers = modules;
  }

  /** Number of modules. */
  get length(): number {
    return this.#layers.length;
  }

  /** The module at `index` (negative counts from the end). */
  at(index: number): Module {
    const i = checkInt('Sequential.at', 'index', index, -this.#layers.length, this.#layers.length - 1);
    return this.#layers.at(i)!;
  }

  /** Each module's forward on the previous one's output (see `forwardChain`). */
  forward(x: Tensor): Tensor {
    return forwardChain(this.#layers, x);
  }
}

/**
 * Each module's forward on the previous one's output, where a `BatchNorm2d` followed by a `ReLU`
 * runs as one fused batch norm + ReLU op (same result, one pass less over the activation).
 * @internal
 */
export function forwardChain(modules: readonly Module[], x: Tensor): Tensor {
  let h = x;
  for (let i = 0; i < modules.length; i++) {
    const m = modules[i]!;
    if (m instanceof BatchNorm2d && modules[i + 1] instanceof ReLU) {
      h = m.forward(h, { relu: true });
      i++;
    } else {
      h = m.forward(h);
    }
  }
  return h;
}
