/**
 * ONNX export: the evaluation-mode graph of a network built from the library's modules, with
 * its weights, as an ONNX model that any runtime reads (onnxruntime in Node, the browser or
 * Python; TensorRT; OpenVINO).
 *
 * The exporter follows the module tree. Each module type has one entry in `EXPORTS`, which
 * emits that module's nodes from its children and fields, mirroring its `forward` in
 * evaluation mode: batch norm with running statistics, a stochastic-depth branch scaled by its
 * survival probability, an option-A shortcut as Slice (the stride) and Pad (the zero channels)
 * where the library multiplies by a fixed embedding. A module without an entry (a block of the
 * user's own) is refused with its name and type: the exporter never guesses at a `forward`.
 * Entries match a module's exact class, so a subclass that overrides `forward` is refused too.
 * Initializers are named by the state dict (`layer1.0.conv1.weight`), nodes by module path.
 * @module
 */
import { readFileSync } from 'node:fs';
import { checkBool, checkEach, checkInt, checkOptions, shapeStr, show } from '../util/check.js';
import { windowOutput } from '../ops/conv2d.js';
import { ResNet } from '../models/resnet.js';
import { BasicBlock, Bottleneck, PadShortcut, PreActBlock, PreActBottleneck } from '../nn/blocks.js';
import { AvgPool2d, BatchNorm2d, Conv2d, Flatten, GlobalAvgPool, Linear, MaxPool2d, ReLU, Sequential } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import type { Tensor } from '../tensor/tensor.js';
import { writeFileAtomic } from './atomic.js';
import { checkPath } from './file-error.js';
import { type AttributeValue, DataType, type OnnxInitializer, type OnnxNode, encodeModel } from './onnx-proto.js';

/** Options of `exportOnnx`. */
export interface ExportOnnxOptions {
  /** The input's shape [N, C, H, W]. With `dynamicBatch`, N is only the size the shapes are checked with. */
  inputShape: [number, number, number, number];
  /** The ONNX operator set, 13 to 22 (default 17). */
  opset?: number;
  /** Declare the batch dimension symbolic (`batch`), so that any batch size runs (default true). */
  dynamicBatch?: boolean;
}

const MIN_OPSET = 13;
const MAX_OPSET = 22;
/** The IR version of the ONNX release that introduced each operator set (onnx/docs/Versioning.md). */
const IR_VERSION: Readonly<Record<number, number>> = { 13: 7, 14: 7, 15: 8, 16: 8, 17: 8, 18: 8, 19: 9, 20: 9, 21: 10, 22: 10 };
/** Protocol buffers cannot hold a message of 2 GiB or more; larger models need ONNX's external data. */
const MAX_PROTO_BYTES = 2 ** 31 - 1;

/** A value of the graph: its name and shape (N is the checked batch size). */
interface Value {
  name: string;
  shape: number[];
}

/** The graph being built. */
class Graph {
  readonly nodes: OnnxNode[] = [];
  readonly initializers: { name: string; dims: number[]; source: Tensor | BigInt64Array | Float32Array }[] = [];
  /** Node outputs and initializers share one namespace with the graph's input and output. */
  readonly #names = new Set<string>(['input', 'output']);
  readonly #weights = new Map<Tensor, string>();

  constructor(readonly op: string) {}

  #unique(base: string): string {
    let name = base;
    for (let i = 1; this.#names.has(name); i++) name = `${base}_${i}`;
    this.#names.add(name);
    return name;
  }

  /** Adds a node named after `base`; its one output has the node's name and `shape`. */
  node(opType: string, base: string, inputs: string[], shape: number[], attributes?: Record<string, AttributeValue>): Value {
    const name = this.#unique(base);
    this.nodes.push({ opType, name, inputs, outputs: [name], ...(attributes ? { attributes } : {}) });
    return { name, shape };
  }

  /**
   * A module's tensor, under its state-dict name. A module used twice (its tensors reached
   * again under another path) reuses the first initializer, as the state dict lists it once.
   */
  weight(name: string, t: Tensor): string {
    const known = this.#weights.get(t);
    if (known !== undefined) return known;
    const unique = this.#unique(name);
    this.#weights.set(t, unique);
    this.initializers.push({ name: unique, dims: [...t.shape], source: t });
    return unique;
  }

  /** A constant of the export itself (Slice bounds, Pad sizes, a scale factor). */
  constant(name: string, values: BigInt64Array | Float32Array, dims: number[]): string {
    const unique = this.#unique(name);
    this.initializers.push({ name: unique, dims, source: values });
    return unique;
  }

  fail(path: string, m: Module, reason: string): never {
    throw new RangeError(`${this.op}: ${path || '(the model)'} (${m.constructor.name}): ${reason}`);
  }
}

type Export<M extends Module = Module> = (g: Graph, m: M, path: string, x: Value) => Value;

const join = (path: string, name: string) => (path ? `${path}.${name}` : name);

function exportModule(g: Graph, m: Module, path: string, x: Value): Value {
  const entry = EXPORTS.get(m.constructor as new (...args: never[]) => Module);
  if (entry === undefined) {
    throw new TypeError(`${g.op}: no ONNX export for ${path ? `'${path}'` : 'the model'} (${m.constructor.name}); ` +
      `modules that export: ${[...EXPORTS.keys()].map((k) => k.name).join(', ')}`);
  }
  return (entry as Export)(g, m, path, x);
}

function children(m: Module): Map<string, Module> {
  return new Map(m.namedChildren());
}

function child(g: Graph, m: Module, path: string, name: string): Module {
  const c = children(m).get(name);
  if (c === undefined) g.fail(path, m, `has no child '${name}'`);
  return c;
}

function expectChannels(g: Graph, m: Module, path: string, x: Value, channels: number): void {
  if (x.shape.length !== 4 || x.shape[1] !== channels) g.fail(path, m, `expects input [N, ${channels}, H, W], the graph has ${shapeStr(x.shape)} there`);
}

function windowed(g: Graph, m: Module, path: string, x: Value, kernel: [number, number], stride: [number, number], padding: [number, number], dilation: [number, number] = [1, 1]): [number, number] {
  const out = [0, 1].map((i) => windowOutput(x.shape[2 + i]!, kernel[i]!, stride[i]!, padding[i]!, dilation[i]!)) as [number, number];
  if (out[0] < 1 || out[1] < 1) g.fail(path, m, `its ${kernel.join('x')} window does not fit the input ${shapeStr(x.shape)}`);
  return out;
}

const conv: Export<Conv2d> = (g, m, path, x) => {
  expectChannels(g, m, path, x, m.inChannels);
  const [h, w] = windowed(g, m, path, x, m.kernel, m.stride, m.padding, m.dilation);
  const inputs = [x.name, g.weight(join(path, 'weight'), m.weight)];
  if (m.bias) inputs.push(g.weight(join(path, 'bias'), m.bias));
  return g.node('Conv', path, inputs, [x.shape[0]!, m.outChannels, h, w], {
    kernel_shape: [...m.kernel], strides: [...m.stride], pads: [m.padding[0], m.padding[1], m.padding[0], m.padding[1]], dilations: [...m.dilation], group: m.groups,
  });
};

const batchNorm: Export<BatchNorm2d> = (g, m, path, x) => {
  expectChannels(g, m, path, x, m.numFeatures);
  const inputs = [x.name, ...([['weight', m.weight], ['bias', m.bias], ['running_mean', m.runningMean], ['running_var', m.runningVar]] as const).map(([n, t]) => g.weight(join(path, n), t))];
  return g.node('BatchNormalization', path, inputs, x.shape, { epsilon: { float: m.eps } });
};

const relu = (g: Graph, path: string, x: Value): Value => g.node('Relu', path, [x.name], x.shape);

const pool = (opType: 'MaxPool' | 'AveragePool'): Export<MaxPool2d | AvgPool2d> => (g, m, path, x) => {
  expectChannels(g, m, path, x, x.shape[1]!);
  const [h, w] = windowed(g, m, path, x, m.kernel, m.stride, m.padding);
  return g.node(opType, path, [x.name], [x.shape[0]!, x.shape[1]!, h, w], {
    kernel_shape: [...m.kernel], strides: [...m.stride], pads: [m.padding[0], m.padding[1], m.padding[0], m.padding[1]],
    // The library's average pooling counts padded zeros, PyTorch's default.
    ...(opType === 'AveragePool' ? { count_include_pad: 1 } : {}),
  });
};

const flatten = (g: Graph, path: string, x: Value): Value => g.node('Flatten', path, [x.name], [x.shape[0]!, x.shape.slice(1).reduce((a, b) => a * b, 1)], { axis: 1 });

const gemm: Export<Linear> = (g, m, path, x) => {
  if (x.shape.length !== 2 || x.shape[1] !== m.inFeatures) g.fail(path, m, `expects input [N, ${m.inFeatures}], the graph has ${shapeStr(x.shape)} there (a Flatten before it?)`);
  const inputs = [x.name, g.weight(join(path, 'weight'), m.weight)];
  if (m.bias) inputs.push(g.weight(join(path, 'bias'), m.bias));
  return g.node('Gemm', path, inputs, [x.shape[0]!, m.outFeatures], { transB: 1 });
};

const sequential: Export = (g, m, path, x) => m.namedChildren().reduce((h, [name, c]) => exportModule(g, c, join(path, name), h), x);

/** x[:, :, ::s, ::s] followed by zero channels: what the library's fixed 1x1 embedding computes. */
const padShortcut: Export<PadShortcut> = (g, m, path, x) => {
  expectChannels(g, m, path, x, m.inChannels);
  let h = x;
  const s = m.stride;
  if (s > 1) {
    const [H, W] = [x.shape[2]!, x.shape[3]!];
    const i64 = (name: string, v: number[]) => g.constant(join(path, name), BigInt64Array.from(v.map(BigInt)), [v.length]);
    h = g.node('Slice', join(path, 'subsample'), [x.name, i64('starts', [0, 0]), i64('ends', [H, W]), i64('axes', [2, 3]), i64('steps', [s, s])],
      [x.shape[0]!, x.shape[1]!, Math.ceil(H / s), Math.ceil(W / s)]);
  }
  const extra = m.outChannels - m.inChannels;
  if (extra === 0) return h;
  const pads = g.constant(join(path, 'pads'), BigInt64Array.from([0, 0, 0, 0, 0, extra, 0, 0].map(BigInt)), [8]);
  return g.node('Pad', join(path, 'pad'), [h.name, pads], [h.shape[0]!, m.outChannels, h.shape[2]!, h.shape[3]!]);
};

/** A step of a residual branch: a child by name, or a ReLU between children. */
type Step = string | typeof RELU;
const RELU = Symbol('relu');

function branch(g: Graph, m: Module, path: string, x: Value, steps: readonly Step[]): Value {
  return steps.reduce((h, s) => (s === RELU ? relu(g, join(path, 'relu'), h) : exportModule(g, child(g, m, path, s), join(path, s), h)), x);
}

type Block = BasicBlock | Bottleneck | PreActBlock | PreActBottleneck;

/** In evaluation, a stochastic-depth branch enters the sum scaled by its survival probability (as the blocks' forward does). */
function scaled(g: Graph, m: Block, path: string, b: Value): Value {
  if (m.survival >= 1) return b;
  return g.node('Mul', join(path, 'scale'), [b.name, g.constant(join(path, 'survival'), Float32Array.of(m.survival), [])], b.shape);
}

function add(g: Graph, path: string, a: Value, b: Value): Value {
  if (shapeStr(a.shape) !== shapeStr(b.shape)) throw new RangeError(`${g.op}: ${path}: the branch ${shapeStr(a.shape)} and the shortcut ${shapeStr(b.shape)} do not match`);
  return g.node('Add', join(path, 'add'), [a.name, b.name], a.shape);
}

/** A post-activation block (BasicBlock, Bottleneck): relu(scaled(branch(x)) + shortcut(x)). */
const postActivated = (steps: readonly Step[]): Export<Block> => (g, m, path, x) => {
  // The branch first, then the shortcut: the initializers come out in state-dict order.
  const b = branch(g, m, path, x, steps);
  if (m.plain) return relu(g, join(path, 'relu'), b);
  const ds = children(m).get('downsample');
  const identity = ds ? exportModule(g, ds, join(path, 'downsample'), x) : x;
  return relu(g, join(path, 'relu'), add(g, path, scaled(g, m, path, b), identity));
};

/**
 * A pre-activation block (PreActBlock, PreActBottleneck): scaled(rest(relu(bn1(x)))) + shortcut,
 * where a projection shortcut reads relu(bn1(x)) and an identity or option-A shortcut reads x.
 */
const preActivated = (rest: readonly Step[]): Export<Block> => (g, m, path, x) => {
  const pre = branch(g, m, path, x, ['bn1', RELU]);
  const b = branch(g, m, path, pre, rest);
  if (m.plain) return b;
  const ds = children(m).get('downsample');
  const identity = ds === undefined ? x : exportModule(g, ds, join(path, 'downsample'), ds instanceof PadShortcut ? x : pre);
  return add(g, path, scaled(g, m, path, b), identity);
};

/** ResNet.forward: its children in registration order, with a flatten before the classifier, the last. */
const resnet: Export<ResNet> = (g, m, path, x) => {
  const kids = m.namedChildren();
  const features = kids.slice(0, -1).reduce((h, [name, c]) => exportModule(g, c, join(path, name), h), x);
  const [fcName, fc] = kids[kids.length - 1]!;
  return exportModule(g, fc, join(path, fcName), flatten(g, join(path, 'flatten'), features));
};

/**
 * One entry per module type: how its evaluation-mode forward becomes nodes. A new layer or
 * block is one entry here.
 */
const EXPORTS = new Map<new (...args: never[]) => Module, Export<never>>([
  [Conv2d, conv],
  [BatchNorm2d, batchNorm],
  [ReLU, (g, _m, path, x) => relu(g, path, x)],
  [MaxPool2d, pool('MaxPool')],
  [AvgPool2d, pool('AveragePool')],
  [GlobalAvgPool, (g, _m, path, x) => g.node('GlobalAveragePool', path, [x.name], [x.shape[0]!, x.shape[1]!, 1, 1])],
  [Flatten, (g, _m, path, x) => flatten(g, path, x)],
  [Linear, gemm],
  [Sequential, sequential],
  [PadShortcut, padShortcut],
  [BasicBlock, postActivated(['conv1', 'bn1', RELU, 'conv2', 'bn2'])],
  [Bottleneck, postActivated(['conv1', 'bn1', RELU, 'conv2', 'bn2', RELU, 'conv3', 'bn3'])],
  [PreActBlock, preActivated(['conv1', 'bn2', RELU, 'conv2'])],
  [PreActBottleneck, preActivated(['conv1', 'bn2', RELU, 'conv2', 'bn3', RELU, 'conv3'])],
  [ResNet, resnet],
] as [new (...args: never[]) => Module, Export<never>][]);

function producerVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

function bytesOf(a: Float32Array | BigInt64Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/**
 * Writes the evaluation-mode graph of `model` with its weights to `path` as an ONNX model
 * (input `input` [N, C, H, W] float32, output `output`), atomically. `model` is any
 * `models.*` network or a module built from the library's layers and blocks (`Conv2d`,
 * `BatchNorm2d`, `ReLU`, `MaxPool2d`, `AvgPool2d`, `GlobalAvgPool`, `Flatten`, `Linear`,
 * `Sequential`, the residual blocks with every shortcut option, stochastic depth); the graph
 * computes what `model.eval().forward` computes, whatever mode the model is in. The nodes are
 * ONNX's Conv, BatchNormalization, Relu, Add, MaxPool, AveragePool, GlobalAveragePool,
 * Flatten, Gemm, and for option-A shortcuts and stochastic depth Slice, Pad and Mul.
 *
 * Throws at the call, before anything is written: a TypeError for bad arguments or a module
 * the exporter does not know (naming it), a RangeError where `inputShape` does not fit the
 * network. The returned promise resolves when the file is written.
 */
export function exportOnnx(model: Module, path: string, options: ExportOnnxOptions): Promise<void> {
  const op = 'exportOnnx';
  if (!(model instanceof Module)) throw new TypeError(`${op}: expected model to be an nn.Module, got ${show(model)}`);
  const file = checkPath(op, path);
  if (options === undefined) throw new TypeError(`${op}: expected options with an inputShape [N, C, H, W]`);
  const opts = checkOptions(op, options, ['inputShape', 'opset', 'dynamicBatch']);
  if (!Array.isArray(opts.inputShape) || opts.inputShape.length !== 4) throw new TypeError(`${op}: expected inputShape to be [N, C, H, W], got ${show(opts.inputShape)}`);
  const inputShape = checkEach(opts.inputShape, (v, i) => checkInt(op, `inputShape[${i}]`, v, 1, 2 ** 31 - 1));
  const opset = opts.opset === undefined ? 17 : checkInt(op, 'opset', opts.opset, MIN_OPSET, MAX_OPSET);
  const dynamicBatch = opts.dynamicBatch === undefined ? true : checkBool(op, 'dynamicBatch', opts.dynamicBatch);

  const g = new Graph(op);
  const out = exportModule(g, model, '', { name: 'input', shape: inputShape });
  // Each exporter returns the value its last node made: that node's output becomes the graph's.
  const last = g.nodes.find((n) => n.outputs[0] === out.name);
  if (last === undefined) throw new RangeError(`${op}: the model (${model.constructor.name}) computes nothing: its output is its input`);
  last.outputs = ['output'];
  const batch = (shape: number[]) => (dynamicBatch ? ['batch', ...shape.slice(1)] : shape);
  const sources = g.initializers.map((i) => i.source);
  return Promise.all(sources.map((s) => (s instanceof Float32Array || s instanceof BigInt64Array ? s : s.data() as Promise<Float32Array>))).then((data) => {
    const initializers: OnnxInitializer[] = g.initializers.map((init, i) => ({
      name: init.name, dims: init.dims, dataType: data[i] instanceof BigInt64Array ? DataType.INT64 : DataType.FLOAT, raw: bytesOf(data[i]!),
    }));
    const encoded = encodeModel({
      irVersion: IR_VERSION[opset]!, opset, producerName: 'cudnn-resnet', producerVersion: producerVersion(),
      graphName: model.constructor.name, docString: `${model.constructor.name} in evaluation mode, exported by cudnn-resnet`,
      nodes: g.nodes, initializers, inputs: [{ name: 'input', shape: batch(inputShape) }], outputs: [{ name: 'output', shape: batch(out.shape) }],
    });
    if (encoded.length > MAX_PROTO_BYTES) {
      throw new RangeError(`${op}: the model needs ${encoded.length} bytes, past protocol buffers' 2 GiB limit (ONNX's external data format is not written)`);
    }
    return writeFileAtomic(file, encoded.parts);
  });
}
