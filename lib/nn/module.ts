/**
 * `Module`: a tree of layers that owns its parameters and buffers, with PyTorch's naming,
 * train/eval switching, backend moves and state dicts.
 * @module
 */
import { type BackendName, parseBackend } from '../backend/backends.js';
import { bindingOf } from '../backend/load.js';
import { tensor } from '../tensor/create.js';
import { keep } from '../tensor/scope.js';
import { type DType, Tensor } from '../tensor/tensor.js';
import { isTensor } from '../tensor/is-tensor.js';
import { checkBool, checkOptions, sameShape, setOwn, shapeStr, show } from '../util/check.js';

/** Options of `Module.loadStateDict`. */
export interface LoadStateDictOptions {
  /**
   * Require the keys of the dict to match the module's exactly (default true). A missing
   * `num_batches_tracked` is accepted either way, as PyTorch does.
   */
  strict?: boolean;
}

/** What `Module.loadStateDict` did not match, as PyTorch's `load_state_dict` reports it. */
export interface LoadStateDictResult {
  /** Keys of the module that the dict lacks (their tensors kept their values). */
  missingKeys: string[];
  /** Keys of the dict that the module does not have (ignored). */
  unexpectedKeys: string[];
}

interface BufferEntry {
  tensor: Tensor<DType>;
  persistent: boolean;
}

/** The one buffer name a strict load may miss: checkpoints from before PyTorch 0.4.1 lack it. */
const OPTIONAL_KEY = 'num_batches_tracked';

/**
 * The base of every layer, block and model. A module owns parameters (leaf tensors with
 * `requiresGrad`), buffers (state that is not trained, such as batch-norm running statistics)
 * and child modules, each under a name; names join with dots into PyTorch's
 * (`layer1.0.conv1.weight`), so state dicts move between this library and PyTorch unchanged.
 *
 * Subclasses register their children and tensors in the constructor with `addModule`,
 * `addParameter` and `addBuffer`, and implement `forward`. The module keeps what it registers
 * alive past any `tidy` scope it is constructed in; `dispose()` frees it.
 *
 * Evaluation mode (`eval()`) uses batch-norm running statistics; gradients through
 * evaluation-mode batch norm are not supported by `ops.batchNorm2d` yet, so run evaluation
 * inside `noGrad()` (as one would use `torch.no_grad()`).
 */
export abstract class Module {
  #training = true;
  readonly #params = new Map<string, Tensor>();
  readonly #buffers = new Map<string, BufferEntry>();
  readonly #children = new Map<string, Module>();

  /** Computes the module's output for `x`. */
  abstract forward(x: Tensor): Tensor;

  /** True in training mode (the default), false after `eval()`. */
  get training(): boolean {
    return this.#training;
  }

  /** Registers a child module under `name` and returns it. */
  protected addModule<M extends Module>(name: string, module: M): M {
    this.#checkName('addModule', name);
    if (!(module instanceof Module)) throw new TypeError(`${this.#label}.addModule: expected '${name}' to be a Module, got ${show(module)}`);
    this.#children.set(name, module);
    return module;
  }

  /** Registers a parameter under `name`: it is made to require gradients and outlives `tidy` scopes. */
  protected addParameter(name: string, t: Tensor): Tensor {
    this.#checkName('addParameter', name);
    this.#checkTensor('addParameter', name, t);
    if (t.gradFn !== null || t.dtype !== 'float32') {
      throw new TypeError(`${this.#label}.addParameter: '${name}' must be a float32 leaf tensor, got ${t.toString()} computed by ${t.gradFn}`);
    }
    t.requiresGrad = true;
    this.#params.set(name, keep(t));
    return t;
  }

  /**
   * Registers a buffer under `name`. A non-persistent buffer (a fixed constant of the module)
   * moves with `to()` and is freed by `dispose()` but is not part of `stateDict()`.
   */
  protected addBuffer<D extends DType>(name: string, t: Tensor<D>, persistent = true): Tensor<D> {
    this.#checkName('addBuffer', name);
    this.#checkTensor('addBuffer', name, t);
    if (t.requiresGrad) throw new TypeError(`${this.#label}.addBuffer: '${name}' must not require grad`);
    this.#buffers.set(name, { tensor: keep(t), persistent });
    return t;
  }

  /** The parameter registered under `name` (after `to()`, the moved one), or null. */
  protected parameter(name: string): Tensor | null {
    return this.#params.get(name) ?? null;
  }

  /** The buffer registered under `name` (after `to()`, the moved one). */
  protected buffer(name: string): Tensor<DType> {
    const entry = this.#buffers.get(name);
    if (!entry) throw new Error(`${this.#label}: no buffer '${name}'`);
    return entry.tensor;
  }

  /**
   * For a constructor that fails after it registered some children (a layer refused as too
   * large, say): frees what they hold, and returns `err` for the constructor to rethrow.
   */
  protected abandon(err: unknown): unknown {
    this.dispose();
    return err;
  }

  /**
   * Called on every module after `loadStateDict` has copied values in, for state that lives
   * in JS as well as in a buffer.
   */
  protected afterLoad(): void {}

  /**
   * Called on every module before its buffers are handed out (`stateDict`, `namedBuffers`), for
   * state kept in JS on the hot path and written into its buffer only when someone looks.
   */
  protected beforeExport(): void {}

  get #label(): string {
    return this.constructor.name;
  }

  #checkName(method: string, name: unknown): void {
    const where = `${this.#label}.${method}`;
    if (typeof name !== 'string' || name === '' || name.includes('.')) {
      throw new TypeError(`${where}: expected a non-empty name without dots, got ${show(name)}`);
    }
    if (this.#params.has(name) || this.#buffers.has(name) || this.#children.has(name)) {
      throw new Error(`${where}: the name '${name}' is already taken`);
    }
  }

  #checkTensor(method: string, name: string, t: unknown): void {
    if (!isTensor(t)) throw new TypeError(`${this.#label}.${method}: expected '${name}' to be a Tensor, got ${show(t)}`);
    if (t.isDisposed) throw new Error(`${this.#label}.${method}: '${name}' (shape ${shapeStr(t.shape)}) is disposed`);
  }

  /** The direct children with their names, in registration order. */
  namedChildren(): [string, Module][] {
    return [...this.#children];
  }

  /** This module (named '') and every descendant, with dotted names, depth first. */
  namedModules(): [string, Module][] {
    const out: [string, Module][] = [];
    const seen = new Set<Module>();
    const walk = (prefix: string, m: Module): void => {
      if (seen.has(m)) return;
      seen.add(m);
      out.push([prefix, m]);
      for (const [name, child] of m.#children) walk(prefix ? `${prefix}.${name}` : name, child);
    };
    walk('', this);
    return out;
  }

  /** Every parameter with its dotted name (`layer1.0.conv1.weight`), each tensor once. */
  namedParameters(): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    const seen = new Set<Tensor>();
    for (const [prefix, m] of this.namedModules()) {
      for (const [name, t] of m.#params) {
        if (seen.has(t)) continue;
        seen.add(t);
        out.push([join(prefix, name), t]);
      }
    }
    return out;
  }

  /** Every parameter, each once, in `namedParameters()` order: what an optimizer takes. */
  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  /** Every buffer, persistent or not, with its dotted name (`bn1.running_mean`). */
  namedBuffers(): [string, Tensor<DType>][] {
    const out: [string, Tensor<DType>][] = [];
    for (const [prefix, m] of this.namedModules()) {
      m.beforeExport();
      for (const [name, entry] of m.#buffers) out.push([join(prefix, name), entry.tensor]);
    }
    return out;
  }

  /** Sets training mode (`mode` true, the default) or evaluation mode on this module and every descendant. */
  train(mode = true): this {
    checkBool(`${this.#label}.train`, 'mode', mode);
    for (const [, m] of this.namedModules()) m.#training = mode;
    return this;
  }

  /** Evaluation mode: batch norm uses running statistics, stochastic depth scales branches. */
  eval(): this {
    return this.train(false);
  }

  /**
   * The parameters and persistent buffers by dotted name, as PyTorch's `state_dict()`:
   * `conv1.weight`, `bn1.running_mean`, `bn1.num_batches_tracked`, `fc.bias`. The values are
   * the module's own tensors, not copies (as in PyTorch): read them, do not dispose them, and
   * copy values in with `loadStateDict`.
   */
  stateDict(): Record<string, Tensor<DType>> {
    const out: Record<string, Tensor<DType>> = {};
    for (const [prefix, m] of this.namedModules()) {
      m.beforeExport();
      for (const [name, t] of m.#params) setOwn(out, join(prefix, name), t);
      for (const [name, entry] of m.#buffers) if (entry.persistent) setOwn(out, join(prefix, name), entry.tensor);
    }
    return out;
  }

  /**
   * Copies the values of `dict` (dotted name → tensor, e.g. a `stateDict()` or tensors made
   * from a PyTorch checkpoint) into this module's parameters and buffers. The module keeps its
   * tensor objects, so an optimizer built on `parameters()` keeps working. Source tensors may
   * live on another backend; they are not consumed.
   *
   * Every key is checked before anything is copied. Throws one Error listing each problem:
   * tensors of the wrong shape or dtype (always), and with `strict` (the default) keys the dict
   * lacks or the module does not have. A missing `num_batches_tracked` is accepted, as PyTorch
   * does, and leaves the count as it was.
   */
  loadStateDict(dict: Record<string, Tensor<DType>>, options?: LoadStateDictOptions): LoadStateDictResult {
    const op = `${this.#label}.loadStateDict`;
    if (dict === null || typeof dict !== 'object' || Array.isArray(dict) || isTensor(dict)) {
      throw new TypeError(`${op}: expected an object of tensors by name, got ${show(dict)}`);
    }
    const opts = checkOptions(op, options, ['strict']);
    const strict = opts.strict === undefined ? true : checkBool(op, 'strict', opts.strict);
    const own = this.stateDict();
    const isOptional = (key: string) => key === OPTIONAL_KEY || key.endsWith(`.${OPTIONAL_KEY}`);
    const missingKeys = Object.keys(own).filter((k) => !Object.hasOwn(dict, k) && !isOptional(k));
    const unexpectedKeys = Object.keys(dict).filter((k) => !Object.hasOwn(own, k));
    const problems: string[] = [];
    if (strict && missingKeys.length > 0) problems.push(`missing key(s): ${missingKeys.join(', ')}`);
    if (strict && unexpectedKeys.length > 0) problems.push(`unexpected key(s): ${unexpectedKeys.join(', ')}`);
    const copies: [Tensor<DType>, Tensor<DType>][] = [];
    for (const [key, target] of Object.entries(own)) {
      if (!Object.hasOwn(dict, key)) continue;
      const src: unknown = dict[key];
      if (!isTensor(src)) {
        problems.push(`${key}: expected a Tensor, got ${show(src)}`);
      } else if (src.isDisposed) {
        problems.push(`${key}: the tensor (shape ${shapeStr(src.shape)}) is disposed`);
      } else if (!sameShape(src.shape, target.shape)) {
        problems.push(`size mismatch for ${key}: got shape ${shapeStr(src.shape)}, the module's is ${shapeStr(target.shape)}`);
      } else if (src.dtype !== target.dtype) {
        problems.push(`dtype mismatch for ${key}: got ${src.dtype}, the module's is ${target.dtype}`);
      } else {
        copies.push([target, src]);
      }
    }
    if (problems.length > 0) {
      const err = new Error(`${op}: error(s) in loading the state dict (nothing was copied):\n  ${problems.join('\n  ')}`);
      (err as Error & { code: string }).code = 'ERR_STATE_DICT';
      throw err;
    }
    for (const [target, src] of copies) target._assign(src as never);
    for (const [, m] of this.namedModules()) m.afterLoad();
    return { missingKeys, unexpectedKeys };
  }

  /**
   * Moves every parameter and buffer to `backend` (read back, uploaded, the old tensor
   * disposed), keeping `requiresGrad`; gradients are dropped. The moved parameters are new
   * Tensor objects (a tensor's backend is fixed), so build the optimizer after `to()`. Throws
   * the reason when the backend is unavailable, before moving anything.
   */
  to(backend: BackendName): this {
    const op = `${this.#label}.to`;
    const target = parseBackend(op, backend);
    bindingOf(target);
    const moved = new Map<Tensor<DType>, Tensor<DType>>();
    const move = <D extends DType>(t: Tensor<D>): Tensor<D> => {
      if (t.backend === target) return t;
      let m = moved.get(t) as Tensor<D> | undefined;
      if (!m) {
        m = keep(tensor(t.dataSync(), t.shape.length === 0 ? [] : t.shape, { backend: target, dtype: t.dtype, requiresGrad: t.requiresGrad }) as Tensor<D>);
        moved.set(t, m);
      }
      return m;
    };
    for (const [, m] of this.namedModules()) {
      for (const [name, t] of m.#params) m.#params.set(name, move(t));
      for (const entry of m.#buffers.values()) entry.tensor = move(entry.tensor);
    }
    for (const old of moved.keys()) old.dispose();
    return this;
  }

  /** Frees every parameter and buffer of this module and its descendants. Idempotent. */
  dispose(): void {
    for (const [, m] of this.namedModules()) {
      for (const t of m.#params.values()) t.dispose();
      for (const entry of m.#buffers.values()) entry.tensor.dispose();
    }
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

function join(prefix: string, name: string): string {
  return prefix ? `${prefix}.${name}` : name;
}
