/**
 * Learning-rate schedules: functions of training progress, evaluated before every step.
 * @module
 */
import { checkEach, checkInt, checkNumber, checkOptions, show } from '../util/check.js';

/** The learning rate for optimizer step `step` (0-based) of `totalSteps`. */
export type Schedule = (step: number, totalSteps: number) => number;

/** Options shared by the schedules. */
export interface WarmupOptions {
  /** Steps over which the rate ramps linearly from base/10 up to base (default 0). */
  warmupSteps?: number;
}

/** `inner` after a linear warm-up, its arguments checked. */
function warmup(op: string, base: number, warmupSteps: number, inner: Schedule): Schedule {
  return (step, total) => {
    checkInt(op, 'totalSteps', total, 1);
    checkInt(op, 'step', step, 0);
    return step < warmupSteps ? base * (0.1 + (0.9 * step) / warmupSteps) : inner(step, total);
  };
}

/** A constant rate. */
export function constantSchedule(lr: number): Schedule {
  const base = checkNumber('constantSchedule', 'lr', lr, 0);
  return () => base;
}

export interface StepScheduleOptions extends WarmupOptions {
  /** Initial rate. */
  lr: number;
  /** Fractions of training (0–1, increasing) at which the rate is multiplied by `gamma`. */
  milestones?: number[];
  /** Factor applied at each milestone (default 0.1). */
  gamma?: number;
}

/**
 * Piecewise-constant decay: He et al. (2015) divide the rate by 10 at 50% and 75% of training
 * (the defaults), optionally after a linear warm-up (they warm up ResNet-110 at 0.01).
 */
export function stepSchedule(options: StepScheduleOptions): Schedule {
  const op = 'stepSchedule';
  const opts = checkOptions(op, options, ['lr', 'milestones', 'gamma', 'warmupSteps']);
  const base = checkNumber(op, 'lr', opts.lr, 0);
  const milestones = (opts.milestones ?? [0.5, 0.75]) as unknown;
  if (!Array.isArray(milestones)) throw new TypeError(`${op}: expected milestones to be an array of fractions, got ${show(milestones)}`);
  const marks = checkEach(milestones, (m, i) => {
    checkNumber(op, `milestones[${i}]`, m, 0, 1);
    if (i > 0 && (m as number) <= (milestones[i - 1] as number)) throw new RangeError(`${op}: milestones must increase, got ${show(milestones)}`);
    return m as number;
  });
  const gamma = opts.gamma === undefined ? 0.1 : checkNumber(op, 'gamma', opts.gamma, 0);
  const warmupSteps = opts.warmupSteps === undefined ? 0 : checkInt(op, 'warmupSteps', opts.warmupSteps, 0);
  return warmup(op, base, warmupSteps, (step, total) => {
    const progress = step / total;
    const passed = marks.filter((m) => progress >= m).length;
    return base * gamma ** passed;
  });
}

export interface CosineScheduleOptions extends WarmupOptions {
  lr: number;
  /** Final rate (default 0). */
  minLr?: number;
}

/** Cosine annealing from `lr` to `minLr` over the whole run (Loshchilov & Hutter). */
export function cosineSchedule(options: CosineScheduleOptions): Schedule {
  const op = 'cosineSchedule';
  const opts = checkOptions(op, options, ['lr', 'minLr', 'warmupSteps']);
  const base = checkNumber(op, 'lr', opts.lr, 0);
  const minLr = opts.minLr === undefined ? 0 : checkNumber(op, 'minLr', opts.minLr, 0, base);
  const warmupSteps = opts.warmupSteps === undefined ? 0 : checkInt(op, 'warmupSteps', opts.warmupSteps, 0);
  return warmup(op, base, warmupSteps, (step, total) => {
    const span = Math.max(1, total - warmupSteps);
    const t = Math.min(1, (step - warmupSteps) / span);
    return minLr + 0.5 * (base - minLr) * (1 + Math.cos(Math.PI * t));
  });
}
