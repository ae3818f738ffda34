/**
 * The ONNX model file: a protocol-buffer encoder of the few messages an exported model needs
 * (`ModelProto`, `GraphProto`, `NodeProto`, `AttributeProto`, `TensorProto`, `ValueInfoProto`
 * and their parts), with the field numbers of `onnx/onnx.proto` (ONNX 1.17).
 *
 * Written here rather than with protobufjs: the writer is a hundred lines, needs no schema file
 * at run time and no dependency for every user of the library, and it never parses anything, so
 * it adds no attack surface. It is checked by readers nobody here wrote: onnxruntime-node runs
 * every exported model in the tests, and Python's `onnx.checker` validates them where installed.
 *
 * Messages are built as lists of chunks with their lengths known, so that a tensor's bytes are
 * written to the file as they are, never copied into one buffer with the rest.
 * @internal
 * @module
 */

/** A message being built: its encoded parts and their total length. @internal */
export class Message {
  readonly parts: Uint8Array[] = [];
  length = 0;

  #push(b: Uint8Array): this {
    this.parts.push(b);
    this.length += b.length;
    return this;
  }

  #key(field: number, wire: number): this {
    return this.#push(varint(BigInt(field * 8 + wire)));
  }

  /** An int64/int32/enum field (negative values as ten-byte two's complement, as protobuf does). */
  int(field: number, value: number): this {
    return this.#key(field, 0).#push(varint(BigInt.asUintN(64, BigInt(value))));
  }

  /** A float field (fixed 32 bits). */
  float(field: number, value: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    return this.#key(field, 5).#push(b);
  }

  /** A string field (UTF-8). */
  string(field: number, value: string): this {
    return this.bytes(field, new TextEncoder().encode(value));
  }

  /** A bytes field; `value` is kept, not copied. */
  bytes(field: number, value: Uint8Array): this {
    return this.#key(field, 2).#push(varint(BigInt(value.length))).#push(value);
  }

  /** An embedded message field. */
  message(field: number, m: Message): this {
    this.#key(field, 2).#push(varint(BigInt(m.length)));
    for (const p of m.parts) this.#push(p);
    return this;
  }
}

function varint(v: bigint): Uint8Array {
  const out: number[] = [];
  let x = v;
  do {
    const b = Number(x & 0x7fn);
    x >>= 7n;
    out.push(x > 0n ? b | 0x80 : b);
  } while (x > 0n);
  return Uint8Array.from(out);
}

/** `TensorProto.DataType` values used here. @internal */
export const DataType = { FLOAT: 1, INT64: 7 } as const;

const AttributeType = { FLOAT: 1, INT: 2, INTS: 7 } as const;

/** An attribute value: a float, an integer, or a list of integers. @internal */
export type AttributeValue = { float: number } | number | number[];

/** `AttributeProto`. */
function attribute(name: string, value: AttributeValue): Message {
  const m = new Message().string(1, name);
  if (Array.isArray(value)) {
    m.int(20, AttributeType.INTS);
    for (const v of value) m.int(8, v);
  } else if (typeof value === 'number') {
    m.int(20, AttributeType.INT).int(3, value);
  } else {
    m.int(20, AttributeType.FLOAT).float(2, value.float);
  }
  return m;
}

/** A node of the graph. @internal */
export interface OnnxNode {
  opType: string;
  name: string;
  inputs: string[];
  outputs: string[];
  attributes?: Record<string, AttributeValue>;
}

/** A constant of the graph (a weight): its little-endian bytes. @internal */
export interface OnnxInitializer {
  name: string;
  dataType: number;
  dims: number[];
  raw: Uint8Array;
}

/** A graph input or output: float32, with each dimension a size or a symbolic name. @internal */
export interface OnnxValueInfo {
  name: string;
  shape: (number | string)[];
}

/** Everything a model file holds. @internal */
export interface OnnxModel {
  irVersion: number;
  opset: number;
  producerName: string;
  producerVersion: string;
  graphName: string;
  docString: string;
  nodes: OnnxNode[];
  initializers: OnnxInitializer[];
  inputs: OnnxValueInfo[];
  outputs: OnnxValueInfo[];
}

function nodeProto(n: OnnxNode): Message {
  const m = new Message();
  for (const i of n.inputs) m.string(1, i);
  for (const o of n.outputs) m.string(2, o);
  m.string(3, n.name).string(4, n.opType);
  for (const [k, v] of Object.entries(n.attributes ?? {})) m.message(5, attribute(k, v));
  return m;
}

function tensorProto(t: OnnxInitializer): Message {
  const m = new Message();
  for (const d of t.dims) m.int(1, d);
  return m.int(2, t.dataType).string(8, t.name).bytes(9, t.raw);
}

function valueInfoProto(v: OnnxValueInfo): Message {
  const shape = new Message();
  for (const d of v.shape) shape.message(1, typeof d === 'number' ? new Message().int(1, d) : new Message().string(2, d));
  const tensorType = new Message().int(1, DataType.FLOAT).message(2, shape);
  return new Message().string(1, v.name).message(2, new Message().message(1, tensorType));
}

/** The encoded `ModelProto`, as chunks to write in order. @internal */
export function encodeModel(model: OnnxModel): Message {
  const graph = new Message();
  for (const n of model.nodes) graph.message(1, nodeProto(n));
  graph.string(2, model.graphName);
  for (const t of model.initializers) graph.message(5, tensorProto(t));
  graph.string(10, model.docString);
  for (const v of model.inputs) graph.message(11, valueInfoProto(v));
  for (const v of model.outputs) graph.message(12, valueInfoProto(v));
  return new Message()
    .int(1, model.irVersion)
    .string(2, model.producerName)
    .string(3, model.producerVersion)
    .message(7, graph)
    .message(8, new Message().string(1, '').int(2, model.opset));
}
