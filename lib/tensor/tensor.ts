/**
 * The typed, device-resident `Tensor`.
 * @module
 */
import type { Binding, NativeBuffer } from '../backend/binding.js';
import { type BackendName, bindingOf } from '../backend/load.js';
import { type GradNode, needsGrad, record } from '../autograd/node.js';
import { runBackward } from '../autograd/backward.js';
import { checkBool, sameShape, shapeStr, show } from '../util/check.js';
import { refuseInCapture } from './capture-phase.js';
import { isTensor, markTensor } from './is-tensor.js';
import { track, untrack } from './scope.js';

/**
 * Element types. Parameters are float32; activations and their gradients float32, or under
 * mixed precision (`amp.autocast`) bfloat16 or float16 (2 bytes each); labels are int32.
 */
export type DType = 'float32' | 'int32' | 'bfloat16' | 'float16';

/** The floating element types: everything but int32. */
export type FloatDType = Exclude<DType, 'int32'>;

/** The floating element types, widest first. */
export const FLOAT_DTYPES: readonly FloatDType[] = Object.freeze(['float32', 'bfloat16', 'float16']);

/** Whether `value` names a floating element type. */
export function isFloatDType(value: unknown): value is FloatDType {
  return FLOAT_DTYPES.includes(value as FloatDType);
}

/**
 * The typed array `data()` returns for a dtype: Int32Array for int32, Float32Array for every
 * floating type (half-precision values converted, exactly).
 */
export type DataOf<D extends DType> = D extends 'int32' ? Int32Array : Float32Array;

interface Held {
  binding: Binding;
  buf: NativeBuffer;
  shape: readonly number[];
  backend: BackendName;
  /** Whether the tensor counts in `memory().tensors` (user-visible, not saved by autograd). */
  counted: boolean;
}

let leaked = 0;
// A backstop only: tensors are meant to be freed by dispose() or tidy(). One warning per
// process keeps a leaking loop from flooding stderr.
const registry = new FinalizationRegistry<Held>((held) => {
  if (held.counted) liveTensors.set(held.backend, liveTensorCount(held.backend) - 1);
  try {
    held.binding.release(held.buf);
  } catch {
    // Not a live handle of this addon (a tensor wrapped around something else by internal
    // misuse): nothing to free, and a finalizer must not throw.
    return;
  }
  if (leaked++ === 0) {
    process.emitWarning(
      `a tensor of shape [${held.shape.join(', ')}] was garbage-collected without dispose(); its memory was ` +
        'freed now, but memory held until GC can run out first. Use tidy() or dispose().',
      { code: 'CUDNN_RESNET_LEAK' },
    );
  }
});

const liveTensors = new Map<BackendName, number>();

/** Live (not disposed) user-visible tensors per backend. @internal */
export function liveTensorCount(backend: BackendName): number {
  return liveTensors.get(backend) ?? 0;
}

/**
 * An n-dimensional array on a backend (`cpu` or `cuda`), in logical NCHW order.
 *
 * Ops on tensors return at once (the work is queued on the backend); read values with
 * `await t.data()`. Free tensors with `dispose()` or create them inside `tidy()`.
 */
export class Tensor<D extends DType = FloatDType> {
  /** Logical shape, outermost first (`[N, C, H, W]` for images). */
  readonly shape: readonly number[];
  readonly dtype: D;
  readonly backend: BackendName;
  /** @internal */
  _buf: NativeBuffer | null;
  /** The op that produced this tensor, for autograd; null for leaves. @internal */
  _node: GradNode | null = null;
  #requiresGrad = false;
  #grad: Tensor | null = null;
  readonly #internal: boolean;

  private constructor(buf: NativeBuffer, shape: readonly number[], dtype: D, backend: BackendName, internal: boolean) {
    markTensor(this);
    this._buf = buf;
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype;
    this.backend = backend;
    this.#internal = internal;
    this.#register(bindingOf(backend), buf);
    if (!internal) {
      liveTensors.set(backend, liveTensorCount(backend) + 1);
      track(this);
    }
  }

  /** Wraps a native buffer the caller owns. @internal */
  static _wrap<D extends DType = FloatDType>(buf: NativeBuffer, shape: readonly number[], backend: BackendName, dtype?: D): Tensor<D> {
    return new Tensor<D>(buf, shape, (dtype ?? 'float32') as D, backend, false);
  }

  /**
   * Wraps a native buffer the caller owns as an internal tensor: outside every `tidy` scope and
   * not counted by `memory()`, for what the library holds on the user's behalf (autograd's saved
   * tensors, an optimizer's momentum buffers). @internal
   */
  static _wrapUntracked<D extends DType = FloatDType>(buf: NativeBuffer, shape: readonly number[], backend: BackendName, dtype?: D): Tensor<D> {
    return new Tensor<D>(buf, shape, (dtype ?? 'float32') as D, backend, true);
  }

  /**
   * Wraps a native buffer the caller owns as a tensor of this one's shape, dtype and backend.
   * Autograd makes its gradients this way: it works on the tensors it is given and does not
   * import this class, which imports it. @internal
   */
  _wrapLike(buf: NativeBuffer): Tensor<D> {
    return new Tensor<D>(buf, this.shape, this.dtype, this.backend, false);
  }

  /** Number of elements. */
  get size(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  get rank(): number {
    return this.shape.length;
  }

  get isDisposed(): boolean {
    return this._buf === null;
  }

  /**
   * Whether gradients flow to this tensor. Settable on leaves (tensors no op produced), which
   * makes them parameters whose `grad` `backward()` fills.
   */
  get requiresGrad(): boolean {
    return this.#requiresGrad;
  }

  set requiresGrad(value: boolean) {
    checkBool('requiresGrad', 'the value', value);
    if (this._node && !value) {
      throw new Error('requiresGrad: cannot be turned off on a tensor computed by an op; use detach()');
    }
    if (value && this.dtype === 'int32') throw new TypeError('requiresGrad: only floating tensors have gradients, this is int32');
    this.#requiresGrad = value;
  }

  /** @internal */
  _setComputed(node: GradNode): void {
    this._node = node;
    this.#requiresGrad = true;
  }

  /**
   * The gradient accumulated by `backward()`, or null; of this tensor's shape and dtype.
   * Assignable, as in PyTorch: the tensor takes ownership of the assigned gradient (it outlives
   * `tidy` scopes and is disposed with this tensor), and the previous gradient is disposed.
   */
  get grad(): Tensor<D> | null {
    return this.#grad as Tensor<D> | null;
  }

  set grad(g: Tensor<D> | null) {
    if (g !== null) {
      if (!isTensor(g)) throw new TypeError(`grad: expected a Tensor or null, got ${show(g)}`);
      if (g.isDisposed) throw new Error('grad: the assigned tensor is disposed');
      if (g.backend !== this.backend || g.dtype !== this.dtype || !sameShape(g.shape, this.shape)) {
        throw new RangeError(
          `grad: expected a ${this.dtype} tensor of shape ${shapeStr(this.shape)} on ${this.backend}, ` +
            `got ${g.dtype} ${shapeStr(g.shape)} on ${g.backend}`,
        );
      }
      untrack(g);
    }
    if (this.#grad && this.#grad !== g) this.#grad.dispose();
    this.#grad = g as Tensor | null;
  }

  /** The name of the op that produced this tensor, or null for a leaf. */
  get gradFn(): string | null {
    return this._node?.name ?? null;
  }

  /** The live native buffer; throws if disposed. @internal */
  _live(op: string, what: string): NativeBuffer {
    if (this._buf === null) {
      throw new Error(`${op}: ${what} (shape ${shapeStr(this.shape)}) is disposed`);
    }
    return this._buf;
  }

  /** @internal */
  _binding(): Binding {
    return bindingOf(this.backend);
  }

  /**
   * A second reference to this tensor's memory for autograd to save: it is not part of any
   * scope, so disposing the original leaves the saved values intact. @internal
   */
  _share(op: string): Tensor<D> {
    const buf = this._binding().share(this._live(op, 'a saved tensor'));
    return new Tensor<D>(buf, this.shape, this.dtype, this.backend, true);
  }

  /**
   * Overwrites this tensor's values with `src`'s (same shape and dtype), keeping this object:
   * modules load weights into the tensors an optimizer already holds. The binding has no
   * in-place copy, so the tensor takes a new buffer (a queued copy on the same backend, a
   * readback and upload across backends) and releases the old one; queued ops that read the
   * old buffer still see the old values, which is the order the calls were made in. Autograd
   * state (grad, requiresGrad) is untouched. @internal
   */
  _assign(src: Tensor<D> | DataOf<D>): void {
    const op = '_assign';
    const target = this._live(op, 'the target');
    const binding = this._binding();
    let buf: NativeBuffer;
    if (!isTensor(src) || src.backend !== this.backend) refuseInCapture(op, 'an upload from JavaScript memory');
    if (isTensor(src)) {
      const from = src._live(op, 'the source');
      buf = src.backend === this.backend ? binding.reshape(from, [...this.shape]) : binding.upload(src.dataSync(), [...this.shape], this.dtype);
    } else {
      buf = binding.upload(src, [...this.shape], this.dtype);
    }
    // The finalization backstop must free the buffer the tensor holds now, not the old one.
    registry.unregister(this);
    binding.release(target);
    this._buf = buf;
    this.#register(binding, buf);
  }

  /** Hands `buf` to the finalization backstop, in case this tensor is collected undisposed. */
  #register(binding: Binding, buf: NativeBuffer): void {
    registry.register(this, { binding, buf, shape: this.shape, backend: this.backend, counted: !this.#internal }, this);
  }

  /** The values in row-major (NCHW) order, once every op producing them has run. */
  async data(): Promise<DataOf<D>> {
    const buf = this._live('data', 'the tensor');
    refuseInCapture('data', 'a readback (a sync point)');
    return (await this._binding().download(buf)) as DataOf<D>;
  }

  /** Like `data()`, but blocks the thread until the values are ready. For scripts and tests. */
  dataSync(): DataOf<D> {
    refuseInCapture('dataSync', 'a readback (a sync point)');
    return this._binding().downloadSync(this._live('dataSync', 'the tensor')) as DataOf<D>;
  }

  /** The single value of a one-element tensor. */
  async item(): Promise<number> {
    if (this.size !== 1) throw new RangeError(`item: expected a tensor with one element, got shape ${shapeStr(this.shape)}`);
    return (await this.data())[0] as number;
  }

  /**
   * Computes gradients of this tensor with respect to every leaf that requires them and
   * accumulates them into their `grad`. A non-scalar tensor needs `grad`, the gradient of the
   * final objective with respect to it. The graph is freed as it is walked: a second
   * `backward()` through it is an error.
   */
  backward(grad?: Tensor): void {
    runBackward(this as Tensor, grad);
  }

  /**
   * The values in another floating dtype (`'float32'`, `'bfloat16'` or `'float16'`), rounded to
   * nearest even, in a new tensor; differentiable (the gradient is cast back to this dtype).
   * Returns this tensor itself when it has that dtype already, as PyTorch's `to` does.
   */
  cast<T extends FloatDType>(dtype: T): Tensor<T> {
    const op = 'cast';
    if (!isFloatDType(dtype)) throw new TypeError(`${op}: expected dtype to be 'float32', 'bfloat16' or 'float16', got ${show(dtype)}`);
    const buf = this._live(op, 'the tensor');
    if (this.dtype === 'int32') throw new TypeError(`${op}: int32 tensors (labels) cannot be cast to a floating type`);
    if ((this.dtype as DType) === dtype) return this as unknown as Tensor<T>;
    const y = new Tensor<T>(this._binding().cast(buf, dtype), this.shape, dtype, this.backend, false);
    if (needsGrad(this as Tensor)) {
      const from = this.dtype as FloatDType;
      record(op, y, [this as Tensor], [], (gy) => [gy.cast(from)]);
    }
    return y;
  }

  /** A tensor with the same values that is not part of the autograd graph. */
  detach(): Tensor<D> {
    const buf = this._binding().share(this._live('detach', 'the tensor'));
    return new Tensor<D>(buf, this.shape, this.dtype, this.backend, false);
  }

  /**
   * Frees this tensor's memory (once no queued op needs it) and its gradient. Idempotent.
   * Using a disposed tensor throws.
   */
  dispose(): void {
    if (this._buf === null) return;
    registry.unregister(this);
    this._binding().release(this._buf);
    this._buf = null;
    if (!this.#internal) {
      liveTensors.set(this.backend, liveTensorCount(this.backend) - 1);
      untrack(this);
    }
    if (this.#grad) {
      this.#grad.dispose();
      this.#grad = null;
    }
    if (this._node) {
      this._node.release();
      this._node = null;
    }
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  toString(): string {
    const state = this.isDisposed ? ', disposed' : '';
    return `Tensor(${this.dtype} [${this.shape.join(', ')}] on ${this.backend}${this.#requiresGrad ? ', requiresGrad' : ''}${state})`;
  }
}
