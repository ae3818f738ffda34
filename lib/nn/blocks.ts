/**
 * Residual blocks: the post-activation `BasicBlock` and `Bottleneck` of He et al. 2015 (as in
 * torchvision), and the pre-activation `PreActBlock` and `PreActBottleneck` of He et al. 2016,
 * with the shortcut options of the 2015 paper, plain (shortcut-free) variants and stochastic
 * depth (Huang et al. 2016).
 * @module
 */
import type { BackendName } from '../backend/backends.js';
import { parseBackend } from '../backend/backends.js';
import * as ops from '../ops/index.js';
import { tensor } from '../tensor/create.js';
import { rngFor } from '../tensor/random.js';
import { refuseInCapture } from '../tensor/capture-phase.js';
import type { Tensor } from '../tensor/tensor.js';
import { checkBool, checkInt, checkNumber, checkOptions, show } from '../util/check.js';
import { BatchNorm2d, type BatchNormTail, Conv2d, Sequential, checkSeed } from './layers.js';
import { Module } from './module.js';

/**
 * The shortcut of a residual block, as in He et al. 2015, section 3.3:
 * - `'A'`: identity; where the shape changes, strided subsampling with zero-padded extra
 *   channels (no parameters);
 * - `'B'`: identity; where the shape changes, a 1x1 convolution projection (plus batch norm in
 *   post-activation blocks), named `downsample` as in torchvision;
 * - `'C'`: the projection on every block.
 */
export type ShortcutKind = 'A' | 'B' | 'C';

/** Options of every residual block. */
export interface BlockOptions {
  /** Stride of the block (its first 3x3 convolution; default 1). */
  stride?: number;
  /** Shortcut option (default `'B'`, torchvision's). */
  shortcut?: ShortcutKind;
  /** No shortcut at all: the plain network of He et al. 2015 (default false). */
  plain?: boolean;
  /**
   * Stochastic depth: the probability p that the residual branch is kept (default 1). In
   * training the branch is dropped for the whole mini-batch with probability 1 − p; in
   * evaluation it is scaled by p.
   */
  survival?: number;
  /**
   * Uniform numbers in [0, 1) for the stochastic-depth draws (one per training forward); a
   * model passes its own seeded generator. Default: the process-wide generator.
   */
  random?: () => number;
  /** Seed of the initial weights. */
  seed?: number;
  /** Where the parameters live; defaults to `defaultBackend()`. */
  backend?: BackendName;
}

const BLOCK_OPTIONS = ['stride', 'shortcut', 'plain', 'survival', 'random', 'seed', 'backend'];

/**
 * The option-A shortcut where the shape changes: x subsampled by the stride, its C_in channels
 * followed by C_out − C_in channels of zeros. Computed exactly, with no new op, as a 1x1
 * convolution of stride s whose fixed weight [C_out, C_in, 1, 1] embeds the identity (ones at
 * [i, i] for i < C_in). The weight is a non-persistent buffer named `embedding`: it moves with
 * `to()` and is freed by `dispose()`, but it is neither a parameter nor part of `stateDict()`.
 */
export class PadShortcut extends Module {
  readonly inChannels: number;
  readonly outChannels: number;
  readonly stride: number;

  constructor(inChannels: number, outChannels: number, stride: number, options?: { backend?: BackendName }) {
    super();
    const op = 'PadShortcut';
    this.inChannels = checkInt(op, 'inChannels', inChannels, 1);
    this.outChannels = checkInt(op, 'outChannels', outChannels, inChannels);
    this.stride = checkInt(op, 'stride', stride, 1);
    const opts = checkOptions(op, options, ['backend']);
    const w = new Float32Array(outChannels * inChannels);
    for (let i = 0; i < inChannels; i++) w[i * inChannels + i] = 1;
    this.addBuffer('embedding', tensor(w, [outChannels, inChannels, 1, 1], { backend: parseBackend(op, opts.backend) }), false);
  }

  /** x[:, :, ::s, ::s] with zero channels appended. */
  forward(x: Tensor): Tensor {
    return ops.conv2d(x, this.buffer('embedding') as Tensor, { stride: this.stride });
  }
}

interface ParsedBlock {
  stride: number;
  shortcut: ShortcutKind;
  plain: boolean;
  survival: number;
  random: () => number;
  nextSeed: () => number;
  backend: BackendName;
}

function parseBlock(op: string, inChannels: unknown, width: unknown, options: unknown): ParsedBlock {
  checkInt(op, 'inChannels', inChannels, 1);
  checkInt(op, op.includes('Bottleneck') ? 'planes' : 'outChannels', width, 1);
  const opts = checkOptions(op, options, BLOCK_OPTIONS);
  const shortcut = opts.shortcut ?? 'B';
  if (shortcut !== 'A' && shortcut !== 'B' && shortcut !== 'C') {
    throw new TypeError(`${op}: expected shortcut to be 'A', 'B' or 'C', got ${show(shortcut)}`);
  }
  const plain = opts.plain === undefined ? false : checkBool(op, 'plain', opts.plain);
  const survival = opts.survival === undefined ? 1 : checkNumber(op, 'survival', opts.survival, 0, 1, { exclusiveMin: true });
  if (plain && survival < 1) throw new RangeError(`${op}: stochastic depth (survival ${survival}) needs a shortcut; a plain block has none`);
  if (opts.random !== undefined && typeof opts.random !== 'function') {
    throw new TypeError(`${op}: expected random to be a function returning numbers in [0, 1), got ${show(opts.random)}`);
  }
  const seeds = rngFor(checkSeed(op, opts.seed));
  return {
    stride: opts.stride === undefined ? 1 : checkInt(op, 'stride', opts.stride, 1),
    shortcut, plain, survival,
    random: (opts.random as (() => number) | undefined) ?? (() => rngFor(undefined).uniform()),
    nextSeed: () => seeds.nextUint32(),
    backend: parseBackend(op, opts.backend),
  };
}

/**
 * Residual-block machinery shared by the four blocks: the shortcut child (`downsample`, absent
 * for an identity or plain block), the stochastic-depth decision and the pre-activation data
 * flow.
 */
abstract class ResidualBlock extends Module {
  /** Channels in. */
  readonly inChannels: number;
  /** Channels out. */
  readonly outChannels: number;
  /** Stride of the block. */
  readonly stride: number;
  /** The shortcut option the block was built with. */
  readonly shortcut: ShortcutKind;
  /** True for a block without shortcut. */
  readonly plain: boolean;
  /** Probability that the residual branch is kept (stochastic depth; 1 = always). */
  readonly survival: number;
  readonly #random: () => number;
  #downsample: Module | null = null;

  protected constructor(p: ParsedBlock, inChannels: number, outChannels: number) {
    super();
    this.inChannels = inChannels;
    this.outChannels = outChannels;
    this.stride = p.stride;
    this.shortcut = p.shortcut;
    this.plain = p.plain;
    this.survival = p.survival;
    this.#random = p.random;
    // Checked before the subclass builds anything, so that a refused block leaves nothing allocated.
    if (!p.plain && p.shortcut === 'A' && outChannels < inChannels) {
      throw new RangeError(`${new.target.name}: shortcut 'A' pads channels and cannot reduce them (${inChannels} → ${outChannels}); use 'B'`);
    }
  }

  /**
   * Registers the shortcut; called last by each block so that, as in torchvision, the
   * branch's tensors come first in `stateDict()`. @internal
   */
  protected addShortcut(p: ParsedBlock, preact: boolean): void {
    const same = this.stride === 1 && this.inChannels === this.outChannels;
    if (this.plain || (same && p.shortcut !== 'C')) return;
    if (p.shortcut === 'A') {
      this.#downsample = this.addModule('downsample', new PadShortcut(this.inChannels, this.outChannels, this.stride, { backend: p.backend }));
      return;
    }
    const conv = new Conv2d(this.inChannels, this.outChannels, 1, { stride: this.stride, bias: false, seed: p.nextSeed(), backend: p.backend });
    // A pre-activation block's projection takes the already normalized input: no BN of its own.
    const proj = preact ? new Sequential(conv) : new Sequential(conv, new BatchNorm2d(this.outChannels, { backend: p.backend }));
    this.#downsample = this.addModule('downsample', proj);
  }

  /**
   * The post-activation tail: relu(branch + shortcut(x)), or relu(branch) when plain. `branch`
   * computes the residual branch up to its last batch norm, into which it fuses `tail`: the
   * shortcut's output and the ReLU.
   */
  protected postActivated(x: Tensor, branch: (tail: BatchNormTail) => Tensor): Tensor {
    if (this.plain) return branch({ relu: true });
    const identity = this.#downsample ? this.#downsample.forward(x) : x;
    // Huang et al.: H = ReLU(b·f(x) + id(x)); with b = 0 the branch is not computed at all.
    if (this.#dropBranch()) return ops.relu(identity);
    // In evaluation with stochastic depth the branch is scaled before the sum: nothing to fuse.
    if (!this.training && this.survival < 1) return ops.addRelu(this.#scaled(branch({})), identity);
    return branch({ residual: identity, relu: true });
  }

  /**
   * The pre-activation flow: `rest(relu(bn1(x))) + shortcut`, where a projection shortcut
   * reads relu(bn1(x)) and an identity or option-A shortcut reads x; no activation after the
   * sum.
   */
  protected preActivated(x: Tensor, bn1: BatchNorm2d, rest: (pre: Tensor) => Tensor): Tensor {
    if (this.plain) return rest(bn1.forward(x, { relu: true }));
    const ds = this.#downsample;
    if (ds === null || ds instanceof PadShortcut) {
      const identity = ds ? ds.forward(x) : x;
      if (this.#dropBranch()) return identity;
      return ops.add(this.#scaled(rest(bn1.forward(x, { relu: true }))), identity);
    }
    const pre = bn1.forward(x, { relu: true });
    const identity = ds.forward(pre);
    if (this.#dropBranch()) return identity;
    return ops.add(this.#scaled(rest(pre)), identity);
  }

  #dropBranch(): boolean {
    if (!this.training || this.survival === 1) return false;
    // A captured step would replay the draw it made once.
    refuseInCapture('stochastic depth', 'a random draw on the host');
    return !(this.#random() < this.survival);
  }

  // In evaluation the branch enters the sum scaled by its survival probability (Huang et al.).
  #scaled(branch: Tensor): Tensor {
    return !this.training && this.survival < 1 ? ops.scale(branch, this.survival) : branch;
  }
}

/**
 * The basic block of ResNet-18/34 and the CIFAR ResNets: relu(bn2(conv2(relu(bn1(conv1(x)))))
 * + shortcut(x)), two 3x3 convolutions, the first with the block's stride.
 */
export class BasicBlock extends ResidualBlock {
  /** Output channels per unit of the width argument (the block keeps its width). */
  static readonly expansion = 1;
  readonly #conv1: Conv2d;
  readonly #bn1: BatchNorm2d;
  readonly #conv2: Conv2d;
  readonly #bn2: BatchNorm2d;

  constructor(inChannels: number, outChannels: number, options?: BlockOptions) {
    const p = parseBlock('BasicBlock', inChannels, outChannels, options);
    super(p, inChannels, outChannels);
    const b = p.backend;
    try {
      this.#conv1 = this.addModule('conv1', new Conv2d(inChannels, outChannels, 3, { stride: p.stride, padding: 1, bias: false, seed: p.nextSeed(), backend: b }));
      this.#bn1 = this.addModule('bn1', new BatchNorm2d(outChannels, { backend: b }));
      this.#conv2 = this.addModule('conv2', new Conv2d(outChannels, outChannels, 3, { padding: 1, bias: false, seed: p.nextSeed(), backend: b }));
      this.#bn2 = this.addModule('bn2', new BatchNorm2d(outChannels, { backend: b }));
      this.addShortcut(p, false);
    } catch (err) {
      throw this.abandon(err);
    }
  }

  /** The block on x [N, inChannels, H, W]. */
  forward(x: Tensor): Tensor {
    return this.postActivated(x, (tail) => this.#bn2.forward(this.#conv2.forward(this.#bn1.forward(this.#conv1.forward(x), { relu: true })), tail));
  }
}

/**
 * The bottleneck block of ResNet-50/101/152 as torchvision's (v1.5, stride on the 3x3):
 * 1x1 conv to `planes`, 3x3 conv with the stride, 1x1 conv to 4·planes, each followed by batch
 * norm; relu(branch + shortcut(x)).
 */
export class Bottleneck extends ResidualBlock {
  /** Output channels per plane. */
  static readonly expansion = 4;
  readonly #layers: [Conv2d, BatchNorm2d, Conv2d, BatchNorm2d, Conv2d, BatchNorm2d];

  constructor(inChannels: number, planes: number, options?: BlockOptions) {
    const p = parseBlock('Bottleneck', inChannels, planes, options);
    const out = planes * Bottleneck.expansion;
    super(p, inChannels, out);
    const b = p.backend;
    try {
      this.#layers = [
        this.addModule('conv1', new Conv2d(inChannels, planes, 1, { bias: false, seed: p.nextSeed(), backend: b })),
        this.addModule('bn1', new BatchNorm2d(planes, { backend: b })),
        this.addModule('conv2', new Conv2d(planes, planes, 3, { stride: p.stride, padding: 1, bias: false, seed: p.nextSeed(), backend: b })),
        this.addModule('bn2', new BatchNorm2d(planes, { backend: b })),
        this.addModule('conv3', new Conv2d(planes, out, 1, { bias: false, seed: p.nextSeed(), backend: b })),
        this.addModule('bn3', new BatchNorm2d(out, { backend: b })),
      ];
      this.addShortcut(p, false);
    } catch (err) {
      throw this.abandon(err);
    }
  }

  /** The block on x [N, inChannels, H, W]. */
  forward(x: Tensor): Tensor {
    const [conv1, bn1, conv2, bn2, conv3, bn3] = this.#layers;
    return this.postActivated(x, (tail) => {
      const h = bn2.forward(conv2.forward(bn1.forward(conv1.forward(x), { relu: true })), { relu: true });
      return bn3.forward(conv3.forward(h), tail);
    });
  }
}

/**
 * The pre-activation basic block (He et al. 2016, *Identity Mappings in Deep Residual
 * Networks*), as in wide ResNets: conv2(relu(bn2(conv1(relu(bn1(x)))))) + shortcut, no
 * activation after the sum. A projection shortcut reads relu(bn1(x)), as in the paper's code.
 */
export class PreActBlock extends ResidualBlock {
  /** Output channels per unit of the width argument. */
  static readonly expansion = 1;
  readonly #bn1: BatchNorm2d;
  readonly #conv1: Conv2d;
  readonly #bn2: BatchNorm2d;
  readonly #conv2: Conv2d;

  constructor(inChannels: number, outChannels: number, options?: BlockOptions) {
    const p = parseBlock('PreActBlock', inChannels, outChannels, options);
    super(p, inChannels, outChannels);
    const b = p.backend;
    try {
      this.#bn1 = this.addModule('bn1', new BatchNorm2d(inChannels, { backend: b }));
      this.#conv1 = this.addModule('conv1', new Conv2d(inChannels, outChannels, 3, { stride: p.stride, padding: 1, bias: false, seed: p.nextSeed(), backend: b }));
      this.#bn2 = this.addModule('bn2', new BatchNorm2d(outChannels, { backend: b }));
      this.#conv2 = this.addModule('conv2', new Conv2d(outChannels, outChannels, 3, { padding: 1, bias: false, seed: p.nextSeed(), backend: b }));
      this.addShortcut(p, true);
    } catch (err) {
      throw this.abandon(err);
    }
  }

  /** The block on x [N, inChannels, H, W]. */
  forward(x: Tensor): Tensor {
    return this.preActivated(x, this.#bn1, (pre) => this.#conv2.forward(this.#bn2.forward(this.#conv1.forward(pre), { relu: true })));
  }
}

/**
 * The pre-activation bottleneck (He et al. 2016) of ResNet-164 and ResNet-1001: bn-relu-conv
 * 1x1 to `planes`, bn-relu-conv 3x3 with the stride, bn-relu-conv 1x1 to 4·planes; plus the
 * shortcut, no activation after the sum.
 */
export class PreActBottleneck extends ResidualBlock {
  /** Output channels per plane. */
  static readonly expansion = 4;
  readonly #bn1: BatchNorm2d;
  readonly #rest: [Conv2d, BatchNorm2d, Conv2d, BatchNorm2d, Conv2d];

  constructor(inChannels: number, planes: number, options?: BlockOptions) {
    const p = parseBlock('PreActBottleneck', inChannels, planes, options);
    const out = planes * PreActBottleneck.expansion;
    super(p, inChannels, out);
    const b = p.backend;
    try {
      this.#bn1 = this.addModule('bn1', new BatchNorm2d(inChannels, { backend: b }));
      this.#rest = [
        this.addModule('conv1', new Conv2d(inChannels, planes, 1, { bias: false, seed: p.nextSeed(), backend: b })),
        this.addModule('bn2', new BatchNorm2d(planes, { backend: b })),
        this.addModule('conv2', new Conv2d(planes, planes, 3, { stride: p.stride, padding: 1, bias: false, seed: p.nextSeed(), backend: b })),
        this.addModule('bn3', new BatchNorm2d(planes, { backend: b })),
        this.addModule('conv3', new Conv2d(planes, out, 1, { bias: false, seed: p.nextSeed(), backend: b })),
      ];
      this.addShortcut(p, true);
    } catch (err) {
      throw this.abandon(err);
    }
  }

  /** The block on x [N, inChannels, H, W]. */
  forward(x: Tensor): Tensor {
    const [conv1, bn2, conv2, bn3, conv3] = this.#rest;
    return this.preActivated(x, this.#bn1, (pre) => {
      const h = conv2.forward(bn2.forward(conv1.forward(pre), { relu: true }));
      return conv3.forward(bn3.forward(h, { relu: true }));
    });
  }
}
