/**
 * Dynamic loss scaling for float16 training (PyTorch's `torch.amp.GradScaler`). float16 has 5
 * exponent bits: gradients below 2^-24 flush to zero, which small activation gradients do. The
 * scaler multiplies the loss by a large factor before `backward()`, so the gradients are computed
 * scaled up; `step` divides them back before the optimizer sees them, and skips the step when any
 * came out infinite or NaN (the factor was too large), after which `update` halves the factor. A
 * run of finite steps doubles it again. bfloat16 has float32's exponent range and needs none of
 * this.
 * @module
 */
import { scale as scaleOp } from '../ops/elementwise.js';
import type { SGD } from '../optim/sgd.js';
import { isTensor } from '../tensor/is-tensor.js';
import { Tensor } from '../tensor/tensor.js';
import { checkBool, checkInt, checkNumber, checkOptions, show } from '../util/check.js';

/** Options of `GradScaler`, PyTorch's defaults. */
export interface GradScalerOptions {
  /** The first scale factor (default 2^16). */
  initScale?: number;
  /** The factor's growth after `growthInterval` steps without inf/NaN gradients (default 2). */
  growthFactor?: number;
  /** The factor's change after a step with inf/NaN gradients (default 0.5). */
  backoffFactor?: number;
  /** Steps without inf/NaN gradients before the factor grows (default 2000). */
  growthInterval?: number;
  /** False makes every method a pass-through (default true), so one loop serves every precision. */
  enabled?: boolean;
}

/** What a checkpoint keeps of a scaler. */
export interface GradScalerState {
  scale: number;
  /** Steps without inf/NaN gradients since the factor last changed. */
  growthTracker: number;
}

/** The largest finite float32: a factor beyond it would make every scaled loss infinite. */
const MAX_SCALE = 3.4028234663852886e38;

export class GradScaler {
  readonly growthFactor: number;
  readonly backoffFactor: number;
  readonly growthInterval: number;
  readonly enabled: boolean;
  #scale: number;
  #growthTracker = 0;
  // Whether the last step found inf/NaN gradients; null until a step ran since the last update.
  #foundInf: boolean | null = null;

  constructor(options?: GradScalerOptions) {
    const op = 'GradScaler';
    const opts = checkOptions(op, options, ['initScale', 'growthFactor', 'backoffFactor', 'growthInterval', 'enabled']);
    this.#scale = opts.initScale === undefined ? 2 ** 16 : checkNumber(op, 'initScale', opts.initScale, 0, MAX_SCALE, { exclusiveMin: true });
    this.growthFactor = opts.growthFactor === undefined ? 2 : checkNumber(op, 'growthFactor', opts.growthFactor, 1, MAX_SCALE, { exclusiveMin: true });
    this.backoffFactor = opts.backoffFactor === undefined ? 0.5 : checkNumber(op, 'backoffFactor', opts.backoffFactor, 0, 1, { exclusiveMin: true, exclusiveMax: true });
    this.growthInterval = opts.growthInterval === undefined ? 2000 : checkInt(op, 'growthInterval', opts.growthInterval, 1);
    this.enabled = opts.enabled === undefined ? true : checkBool(op, 'enabled', opts.enabled);
  }

  /** The current scale factor (1 when disabled). */
  getScale(): number {
    return this.enabled ? this.#scale : 1;
  }

  /** loss · scale factor, to call `backward()` on; the loss itself when disabled. */
  scale(loss: Tensor): Tensor {
    if (!isTensor(loss)) throw new TypeError(`GradScaler.scale: expected the loss to be a Tensor, got ${show(loss)}`);
    return this.enabled ? scaleOp(loss, this.#scale) : loss;
  }

  /**
   * Divides every gradient of `optimizer`'s parameters by the scale factor, checks them all for
   * inf and NaN (one native reduction, whose result this awaits), and steps the optimizer only
   * when they are finite. Resolves to whether it stepped. Call `update()` after it.
   */
  async step(optimizer: SGD): Promise<boolean> {
    const op = 'GradScaler.step';
    if (optimizer === null || typeof optimizer !== 'object' || typeof optimizer.step !== 'function' || !Array.isArray(optimizer.params)) {
      throw new TypeError(`${op}: expected an optimizer (optim.SGD), got ${show(optimizer)}`);
    }
    if (!this.enabled) {
      optimizer.step();
      return true;
    }
    const params = optimizer.params.filter((p) => p.grad !== null);
    for (const p of params) p.grad = scaleOp(p.grad!, 1 / this.#scale);
    let nonFinite = 0;
    for (const group of byBackend(params)) {
      const count = Tensor._wrap(group[0]!._binding().countNonFinite(group.map((p, i) => p.grad!._live(op, `the gradient of params[${i}]`))),
        [], group[0]!.backend, 'float32');
      try {
        nonFinite += await count.item();
      } finally {
        count.dispose();
      }
    }
    this.#foundInf = nonFinite > 0;
    if (!this.#foundInf) optimizer.step();
    return !this.#foundInf;
  }

  /**
   * Adjusts the scale factor after `step`: × backoffFactor when it found inf/NaN gradients, else
   * × growthFactor once growthInterval steps in a row found none.
   */
  update(): void {
    if (!this.enabled) return;
    if (this.#foundInf === null) throw new Error('GradScaler.update: no step() since the last update()');
    if (this.#foundInf) {
      this.#scale *= this.backoffFactor;
      this.#growthTracker = 0;
    } else if (++this.#growthTracker === this.growthInterval) {
      this.#scale = Math.min(this.#scale * this.growthFactor, MAX_SCALE);
      this.#growthTracker = 0;
    }
    this.#foundInf = null;
  }

  /** The scale factor and growth count, for a checkpoint (plain JSON). */
  stateDict(): GradScalerState {
    return { scale: this.#scale, growthTracker: this.#growthTracker };
  }

  /** Restores what `stateDict()` returned. */
  loadStateDict(state: GradScalerState): void {
    const op = 'GradScaler.loadStateDict';
    const s = checkOptions(op, state, ['scale', 'growthTracker']);
    const scale = checkNumber(op, 'scale', s.scale, 0, MAX_SCALE, { exclusiveMin: true });
    const tracker = checkInt(op, 'growthTracker', s.growthTracker, 0, this.growthInterval - 1);
    this.#scale = scale;
    this.#growthTracker = tracker;
    this.#foundInf = null;
  }
}

function byBackend(params: readonly Tensor[]): Tensor[][] {
  const groups = new Map<string, Tensor[]>();
  for (const p of params) {
    const g = groups.get(p.backend);
    if (g) g.push(p);
    else groups.set(p.backend, [p]);
  }
  return [...groups.values()];
}
