/**
 * The ResNet family: torchvision's ImageNet ResNets, the CIFAR ResNets and plain nets of He et
 * al. 2015, pre-activation ResNets (He et al. 2016), wide ResNets (Zagoruyko and Komodakis
 * 2016) and stochastic depth (Huang et al. 2016).
 * @module
 */
import type { BackendName } from '../backend/backends.js';
import { parseBackend } from '../backend/backends.js';
import * as ops from '../ops/index.js';
import { Rng, rngFor } from '../tensor/random.js';
import type { Tensor } from '../tensor/tensor.js';
import { MAX_ARRAY_ELEMENTS, checkEach, checkElements, checkInt, checkNumber, checkOptions, checkBool, shapeStr, show } from '../util/check.js';
import { checkFloat } from '../tensor/check-tensor.js';
import { BasicBlock, Bottleneck, PreActBlock, PreActBottleneck, type BlockOptions, type ShortcutKind } from '../nn/blocks.js';
import { BatchNorm2d, Conv2d, GlobalAvgPool, Linear, MaxPool2d, ReLU, Sequential, checkSeed, forwardChain } from '../nn/layers.js';
import { Module } from '../nn/module.js';

/** The residual block a `ResNet` is made of. */
export type BlockKind = 'basic' | 'bottleneck' | 'preact' | 'preactBottleneck';

/** Everything that defines a `ResNet`; the builders (`resnet50`, `cifarResNet`, …) fill it in. */
export interface ResNetConfig {
  /** The block of every stage. */
  block: BlockKind;
  /** Blocks per stage (`layer1`, `layer2`, …). */
  layers: number[];
  /** Width of each stage (a bottleneck's output is 4× this). The first stage has stride 1, the others 2. */
  widths: number[];
  /**
   * `'imagenet'`: 7x7 convolution of stride 2 and a 3x3 max pool of stride 2; `'cifar'`: one
   * 3x3 convolution.
   */
  stem: 'imagenet' | 'cifar';
  /** Output channels of the stem convolution (default: `widths[0]`). */
  stemWidth?: number;
  /** Shortcut option of every block (default `'B'`). */
  shortcut?: ShortcutKind;
  /** No shortcuts: the plain network (default false). */
  plain?: boolean;
  /**
   * Stochastic depth: the drop probability of the last block; block l of L survives with
   * probability 1 − (l / L)·dropPath (default 0: no stochastic depth).
   */
  dropPath?: number;
  /** Classes of the final linear layer (default 1000). */
  numClasses?: number;
  /** Channels of the input images (default 3). */
  inChannels?: number;
  /** Seed of the initial weights and of the stochastic-depth draws. */
  seed?: number;
  /** Where the parameters live; defaults to `defaultBackend()`. */
  backend?: BackendName;
}

const BLOCKS = {
  basic: BasicBlock,
  bottleneck: Bottleneck,
  preact: PreActBlock,
  preactBottleneck: PreActBottleneck,
} as const;

/**
 * A residual network, named as torchvision's: `conv1`, `bn1`, `relu`, `maxpool` (ImageNet
 * stem), `layer1` … `layerK` (each a `Sequential` of blocks named '0', '1', …), `avgpool`,
 * `fc`. Pre-activation networks have no `bn1`/`relu` after the stem conv (the first block
 * normalizes its input) and end instead with `bn` and `relu` before the pooling, as in
 * He et al. 2016.
 */
export class ResNet extends Module {
  /** Classes of the output. */
  readonly numClasses: number;
  /** Channels of the input images. */
  readonly inChannels: number;
  /** The block of every stage. */
  readonly block: BlockKind;
  readonly #stem: Module[];
  readonly #stages: Sequential[];
  readonly #head: Module[];
  readonly #fc: Linear;
  readonly #dropRng: Rng;

  constructor(config: ResNetConfig) {
    super();
    const op = 'ResNet';
    const c = checkOptions(op, config, ['block', 'layers', 'widths', 'stem', 'stemWidth', 'shortcut', 'plain', 'dropPath', 'numClasses', 'inChannels', 'seed', 'backend']);
    if (config === undefined) throw new TypeError(`${op}: expected a config object`);
    if (typeof c.block !== 'string' || !Object.hasOwn(BLOCKS, c.block)) {
      throw new TypeError(`${op}: expected block to be one of ${Object.keys(BLOCKS).map((k) => `'${k}'`).join(', ')}, got ${show(c.block)}`);
    }
    const block = c.block as BlockKind;
    const layers = checkIntArray(op, 'layers', c.layers, MAX_BLOCKS);
    const widths = checkIntArray(op, 'widths', c.widths);
    if (layers.length !== widths.length) {
      throw new RangeError(`${op}: layers and widths must have one entry per stage, got ${shapeStr(layers)} and ${shapeStr(widths)}`);
    }
    if (c.stem !== 'imagenet' && c.stem !== 'cifar') throw new TypeError(`${op}: expected stem to be 'imagenet' or 'cifar', got ${show(c.stem)}`);
    const stemWidth = c.stemWidth === undefined ? widths[0]! : checkInt(op, 'stemWidth', c.stemWidth, 1);
    const plain = c.plain === undefined ? false : checkBool(op, 'plain', c.plain);
    const dropPath = c.dropPath === undefined ? 0 : checkNumber(op, 'dropPath', c.dropPath, 0, 1, { exclusiveMax: true });
    if (plain && dropPath > 0) throw new RangeError(`${op}: stochastic depth (dropPath ${dropPath}) needs shortcuts; a plain network has none`);
    this.numClasses = c.numClasses === undefined ? 1000 : checkInt(op, 'numClasses', c.numClasses, 1);
    this.inChannels = c.inChannels === undefined ? 3 : checkInt(op, 'inChannels', c.inChannels, 1);
    // The classifier is made last: its size is refused before every block ahead of it is built.
    checkElements(op, 'fc.weight', [this.numClasses, widths[widths.length - 1]! * BLOCKS[block].expansion], '', MAX_ARRAY_ELEMENTS);
    this.block = block;
    const backend = parseBackend(op, c.backend);
    const seeds = rngFor(checkSeed(op, c.seed));
    const nextSeed = () => seeds.nextUint32();
    // The stochastic-depth draws get a generator of their own, so that they are reproducible
    // and do not shift with how many weights were initialised.
    const dropRng = new Rng(nextSeed());
    this.#dropRng = dropRng;
    const random = () => dropRng.uniform();
    const preact = block === 'preact' || block === 'preactBottleneck';

    try {
      const imagenet = c.stem === 'imagenet';
      const conv1 = new Conv2d(this.inChannels, stemWidth, imagenet ? 7 : 3, { stride: imagenet ? 2 : 1, padding: imagenet ? 3 : 1, bias: false, seed: nextSeed(), backend });
      this.#stem = [this.addModule('conv1', conv1)];
      if (!preact) this.#stem.push(this.addModule('bn1', new BatchNorm2d(stemWidth, { backend })), this.addModule('relu', new ReLU()));
      if (imagenet) this.#stem.push(this.addModule('maxpool', new MaxPool2d(3, { stride: 2, padding: 1 })));

      const Block = BLOCKS[block];
      const total = layers.reduce((a, b) => a + b, 0);
      let index = 0;
      let channels = stemWidth;
      this.#stages = layers.map((count, s) => {
        const blocks = [];
        for (let i = 0; i < count; i++) {
          index++;
          const options: BlockOptions = {
            stride: s > 0 && i === 0 ? 2 : 1, shortcut: (c.shortcut as ShortcutKind | undefined) ?? 'B', plain,
            survival: 1 - (index / total) * dropPath, random, seed: nextSeed(), backend,
          };
          const blk = new Block(channels, widths[s]!, options);
          channels = blk.outChannels;
          blocks.push(blk);
        }
        return this.addModule(`layer${s + 1}`, new Sequential(...blocks));
      });
      this.#head = preact ? [this.addModule('bn', new BatchNorm2d(channels, { backend })), this.addModule('relu', new ReLU())] : [];
      this.#head.push(this.addModule('avgpool', new GlobalAvgPool()));
      this.#fc = this.addModule('fc', new Linear(channels, this.numClasses, { seed: nextSeed(), backend }));
    } catch (err) {
      throw this.abandon(err);
    }
  }

  /**
   * The state of the generator behind stochastic depth's draws, so that a checkpointed run
   * resumes with the same draws.
   */
  get rngState(): number[] {
    return this.#dropRng.state;
  }

  set rngState(state: number[]) {
    this.#dropRng.state = state;
  }

  /** Logits [N, numClasses] of images x [N, inChannels, H, W]. */
  forward(x: Tensor): Tensor {
    checkFloat('ResNet.forward', 'input', x, { rank: 4, layout: '[N, C, H, W]' });
    if (x.shape[1] !== this.inChannels) {
      throw new RangeError(`ResNet.forward: expected input of shape [N, C, H, W] with C = ${this.inChannels}, got ${shapeStr(x.shape)}`);
    }
    const h = forwardChain([...this.#stem, ...this.#stages, ...this.#head], x);
    return this.#fc.forward(ops.flatten(h));
  }
}

function checkIntArray(op: string, name: string, value: unknown, max?: number): number[] {
  if (!Array.isArray(value) || value.length === 0) throw new TypeError(`${op}: expected ${name} to be a non-empty array of integers, got ${show(value)}`);
  return checkEach(value, (v, i) => checkInt(op, `${name}[${i}]`, v, 1, max));
}

/**
 * Most blocks in a stage: five times the deepest published network's (ResNet-1202, 200 per
 * stage). A depth of 6 · 2^40 + 2 would otherwise build blocks until memory runs out.
 */
const MAX_BLOCKS = 1000;

/** Options of the ImageNet ResNets. */
export interface ImageNetResNetOptions {
  /** Classes (default 1000). */
  numClasses?: number;
  /** Channels of the input images (default 3). */
  inChannels?: number;
  /** Seed of the initial weights. */
  seed?: number;
  /** Where the parameters live; defaults to `defaultBackend()`. */
  backend?: BackendName;
}

function imagenet(op: string, block: BlockKind, layers: number[], options: unknown): ResNet {
  const o = checkOptions(op, options, ['numClasses', 'inChannels', 'seed', 'backend']) as ImageNetResNetOptions;
  return new ResNet({ ...o, block, layers, widths: [64, 128, 256, 512], stem: 'imagenet', shortcut: 'B' });
}

/** torchvision's ResNet-18: basic blocks [2, 2, 2, 2]; 11,689,512 parameters with 1000 classes. */
export function resnet18(options?: ImageNetResNetOptions): ResNet {
  return imagenet('resnet18', 'basic', [2, 2, 2, 2], options);
}

/** torchvision's ResNet-34: basic blocks [3, 4, 6, 3]; 21,797,672 parameters. */
export function resnet34(options?: ImageNetResNetOptions): ResNet {
  return imagenet('resnet34', 'basic', [3, 4, 6, 3], options);
}

/** torchvision's ResNet-50 (v1.5): bottlenecks [3, 4, 6, 3]; 25,557,032 parameters. */
export function resnet50(options?: ImageNetResNetOptions): ResNet {
  return imagenet('resnet50', 'bottleneck', [3, 4, 6, 3], options);
}

/** torchvision's ResNet-101: bottlenecks [3, 4, 23, 3]; 44,549,160 parameters. */
export function resnet101(options?: ImageNetResNetOptions): ResNet {
  return imagenet('resnet101', 'bottleneck', [3, 4, 23, 3], options);
}

/** torchvision's ResNet-152: bottlenecks [3, 8, 36, 3]; 60,192,808 parameters. */
export function resnet152(options?: ImageNetResNetOptions): ResNet {
  return imagenet('resnet152', 'bottleneck', [3, 8, 36, 3], options);
}

/** Options shared by the CIFAR-style networks. */
export interface CifarOptions {
  /** Total depth (weighted layers); each builder accepts its own family of depths. */
  depth: number;
  /** Classes (default 10). */
  numClasses?: number;
  /** Channels of the input images (default 3). */
  inChannels?: number;
  /** Stochastic depth: the drop probability of the last block (default 0); see `ResNetConfig.dropPath`. */
  dropPath?: number;
  /** Seed of the initial weights and of the stochastic-depth draws. */
  seed?: number;
  /** Where the parameters live; defaults to `defaultBackend()`. */
  backend?: BackendName;
}

/** Options of `cifarResNet`. */
export interface CifarResNetOptions extends CifarOptions {
  /** Shortcut option (default `'A'`, the paper's choice for CIFAR). */
  shortcut?: 'A' | 'B';
  /** The plain counterpart, without shortcuts (default false). */
  plain?: boolean;
}

const CIFAR_KEYS = ['depth', 'numClasses', 'inChannels', 'dropPath', 'seed', 'backend'];

function cifarDepth(op: string, depth: unknown, per: number, extra: number): number {
  const d = checkInt(op, 'depth', depth, per + extra, per * MAX_BLOCKS + extra);
  if ((d - extra) % per !== 0) throw new RangeError(`${op}: expected depth = ${per}n + ${extra} (e.g. ${per * 3 + extra}), got ${d}`);
  return (d - extra) / per;
}

function cifarConfig(o: CifarOptions): Pick<ResNetConfig, 'numClasses' | 'inChannels' | 'dropPath' | 'seed' | 'backend'> {
  return { numClasses: o.numClasses ?? 10, inChannels: o.inChannels, dropPath: o.dropPath, seed: o.seed, backend: o.backend };
}

/**
 * The CIFAR ResNets of He et al. 2015, section 4.2: depth 6n + 2 (20, 32, 44, 56, 110, 1202),
 * a 3x3 stem of 16 channels, three stages of n basic blocks with 16, 32 and 64 channels.
 * ResNet-20 has 269,722 parameters with shortcut A and 272,474 with B; ResNet-110 1,727,962 with A. With `plain` the
 * shortcut-free counterpart; with `dropPath` stochastic depth (Huang et al. use ResNet-110
 * with dropPath 0.5).
 */
export function cifarResNet(options: CifarResNetOptions): ResNet {
  const op = 'cifarResNet';
  const o = checkOptions(op, options, [...CIFAR_KEYS, 'shortcut', 'plain']) as unknown as CifarResNetOptions;
  if (options === undefined) throw new TypeError(`${op}: expected options with a depth, e.g. { depth: 20 }`);
  const n = cifarDepth(op, o.depth, 6, 2);
  if (o.shortcut !== undefined && o.shortcut !== 'A' && o.shortcut !== 'B') throw new TypeError(`${op}: expected shortcut to be 'A' or 'B', got ${show(o.shortcut)}`);
  return new ResNet({
    ...cifarConfig(o), block: 'basic', layers: [n, n, n], widths: [16, 32, 64], stem: 'cifar',
    shortcut: o.shortcut ?? 'A', plain: o.plain ?? false,
  });
}

/**
 * The pre-activation ResNets of He et al. 2016 for CIFAR: depth 9n + 2 (164, 1001), three
 * stages of n pre-activation bottlenecks with 16, 32 and 64 planes (64, 128, 256 channels
 * out), projection shortcuts where the shape changes, and BN + ReLU before the pooling.
 * ResNet-164 has 1,703,258 parameters with 10 classes.
 */
export function preActResNet(options: CifarOptions): ResNet {
  const op = 'preActResNet';
  const o = checkOptions(op, options, CIFAR_KEYS) as unknown as CifarOptions;
  if (options === undefined) throw new TypeError(`${op}: expected options with a depth, e.g. { depth: 164 }`);
  const n = cifarDepth(op, o.depth, 9, 2);
  return new ResNet({ ...cifarConfig(o), block: 'preactBottleneck', layers: [n, n, n], widths: [16, 32, 64], stem: 'cifar', shortcut: 'B' });
}

/** Options of `wideResNet`. */
export interface WideResNetOptions extends CifarOptions {
  /** Widening factor k: the stages have 16k, 32k and 64k channels. */
  widen: number;
}

/**
 * The wide ResNets WRN-d-k of Zagoruyko and Komodakis 2016: depth 6n + 4 (e.g. 28, 40), a 3x3
 * stem of 16 channels, three stages of n pre-activation basic blocks with 16k, 32k and 64k
 * channels, 1x1 projection shortcuts where the shape changes, BN + ReLU before the pooling.
 * The paper's optional dropout between the two convolutions of a block is not included.
 * WRN-28-10 has 36,479,194 parameters with 10 classes.
 */
export function wideResNet(options: WideResNetOptions): ResNet {
  const op = 'wideResNet';
  const o = checkOptions(op, options, [...CIFAR_KEYS, 'widen']) as unknown as WideResNetOptions;
  if (options === undefined) throw new TypeError(`${op}: expected options with a depth and widen, e.g. { depth: 28, widen: 10 }`);
  const n = cifarDepth(op, o.depth, 6, 4);
  const k = checkInt(op, 'widen', o.widen, 1);
  return new ResNet({ ...cifarConfig(o), block: 'preact', layers: [n, n, n], widths: [16 * k, 32 * k, 64 * k], stem: 'cifar', stemWidth: 16, shortcut: 'B' });
}
