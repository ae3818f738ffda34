/**
 * The training loop: every step scoped so nothing leaks, every tensor on the device.
 * @module
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { noGrad } from '../autograd/grad-mode.js';
import { softmaxCrossEntropy } from '../ops/loss.js';
import { checkInt, checkNumber, checkOptions, show } from '../ops/validate.js';
import type { SGD } from '../optim/sgd.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { writeChart } from './plot.js';
import { Progress } from './progress.js';
import type { Schedule } from './schedule.js';

/** What `fit` needs of a model (every `nn.Module` has it). */
export interface Trainable {
  forward(x: Tensor): Tensor;
  train(): unknown;
  eval(): unknown;
}

/** A batch: images [B, C, H, W], int32 labels [B]. The loop disposes both. */
export interface Batch {
  x: Tensor;
  y: Tensor<'int32'>;
}

/** Batches of one epoch, and how many there are. */
export interface BatchSource {
  readonly batchesPerEpoch: number;
  batches(epoch: number): AsyncIterable<Batch>;
}

/** Metrics of one epoch, as appended to the metrics file. */
export interface EpochMetrics {
  epoch: number;
  step: number;
  lr: number;
  trainLoss: number;
  /** Top-1 error on the training batches, measured during the epoch (model in training mode). */
  trainError: number;
  testLoss?: number;
  testError?: number;
  seconds: number;
  imagesPerSecond: number;
}

export interface FitOptions {
  trainData: BatchSource;
  evalData?: BatchSource;
  epochs: number;
  optimizer: SGD;
  /** Learning rate per step; default: the optimizer's rate throughout. */
  schedule?: Schedule;
  /** Label smoothing of the cross-entropy (default 0). */
  labelSmoothing?: number;
  /** First epoch to run (when resuming; default 0). */
  startEpoch?: number;
  /** Appends one JSON line of `EpochMetrics` per epoch. */
  metricsFile?: string;
  /** Redraws training curves (train and test error per epoch) into this SVG after each epoch. */
  curvesFile?: string;
  /** Progress bar (TTY) or lines; default true. */
  progress?: boolean;
  /**
   * Called once each step's loss is known (one step behind the queue), e.g. to report progress
   * from a worker thread.
   */
  onStep?: (info: StepInfo) => void;
  /** Called after each epoch (e.g. to save a checkpoint); awaited. */
  onEpoch?: (metrics: EpochMetrics) => void | Promise<void>;
  /** Earlier epochs' metrics, so the curves of a resumed run start at epoch 1. */
  history?: EpochMetrics[];
}

/** What `onStep` receives. */
export interface StepInfo {
  epoch: number;
  /** Global step index (0-based, across epochs). */
  step: number;
  loss: number;
  lr: number;
  /** Training images per second so far in this epoch. */
  imagesPerSecond: number;
}

/** Thrown when the loss stops being finite. */
export class NonFiniteLossError extends Error {
  readonly step: number;
  constructor(step: number, epoch: number, loss: number) {
    super(`fit: the loss became ${loss} at step ${step} (epoch ${epoch + 1}); lower the learning rate or check the data`);
    this.name = 'NonFiniteLossError';
    this.step = step;
  }
}

function countErrors(logits: Float32Array, labels: Int32Array, classes: number): number {
  let wrong = 0;
  for (let i = 0; i < labels.length; i++) {
    let best = 0;
    for (let k = 1; k < classes; k++) if (logits[i * classes + k]! > logits[i * classes + best]!) best = k;
    if (best !== labels[i]) wrong++;
  }
  return wrong;
}

/** Top-1 error and mean loss of `model` over `data` in evaluation mode. */
export async function evaluate(model: Trainable, data: BatchSource, epoch = 0): Promise<{ loss: number; error: number; images: number }> {
  model.eval();
  let lossSum = 0;
  let wrong = 0;
  let n = 0;
  for await (const { x, y } of data.batches(epoch)) {
    const owned: { dispose(): void }[] = [x, y];
    try {
      const [logits, loss] = noGrad(() => tidy(() => {
        const out = model.forward(x);
        return [out, softmaxCrossEntropy(out, y)] as const;
      }));
      owned.push(logits, loss);
      const [lv, yv, l] = await Promise.all([logits.data(), y.data(), loss.item()]);
      lossSum += l * yv.length;
      wrong += countErrors(lv, yv, logits.shape[1]!);
      n += yv.length;
    } finally {
      for (const t of owned) t.dispose();
    }
  }
  return { loss: n ? lossSum / n : Number.NaN, error: n ? wrong / n : Number.NaN, images: n };
}

interface Pending {
  loss: Tensor;
  logits: Tensor;
  labels: Tensor<'int32'>;
  step: number;
}

/**
 * Trains `model` with softmax cross-entropy: for each batch, forward, backward and an
 * optimizer step inside one `tidy` scope. The loss of step k is read while step k + 1 is
 * queued, so the backend never waits for JavaScript. A non-finite loss stops training with a
 * `NonFiniteLossError` naming the step. Returns every epoch's metrics.
 */
export async function fit(model: Trainable, options: FitOptions): Promise<EpochMetrics[]> {
  const op = 'fit';
  const opts = checkOptions(op, options, ['trainData', 'evalData', 'epochs', 'optimizer', 'schedule', 'labelSmoothing', 'startEpoch',
    'metricsFile', 'curvesFile', 'progress', 'onStep', 'onEpoch', 'history']);
  if (!opts.trainData || typeof (opts.trainData as BatchSource).batches !== 'function') {
    throw new TypeError(`${op}: expected trainData to be a data loader (with batches(epoch)), got ${show(opts.trainData)}`);
  }
  const trainData = opts.trainData as BatchSource;
  const evalData = opts.evalData as BatchSource | undefined;
  const epochs = checkInt(op, 'epochs', opts.epochs, 1);
  const startEpoch = opts.startEpoch === undefined ? 0 : checkInt(op, 'startEpoch', opts.startEpoch, 0, epochs);
  const optimizer = opts.optimizer as SGD;
  if (!optimizer || typeof optimizer.step !== 'function') throw new TypeError(`${op}: expected an optimizer, got ${show(optimizer)}`);
  const schedule = opts.schedule as Schedule | undefined;
  if (schedule !== undefined && typeof schedule !== 'function') throw new TypeError(`${op}: expected schedule to be a function`);
  const labelSmoothing = opts.labelSmoothing === undefined ? 0 : checkNumber(op, 'labelSmoothing', opts.labelSmoothing, 0, 1, { exclusiveMax: true });
  const progress = opts.progress === false ? null : new Progress();
  const onStep = opts.onStep as FitOptions['onStep'];
  if (onStep !== undefined && typeof onStep !== 'function') throw new TypeError(`${op}: expected onStep to be a function`);
  const history: EpochMetrics[] = [...((opts.history as EpochMetrics[] | undefined) ?? [])];
  const perEpoch = trainData.batchesPerEpoch;
  const totalSteps = epochs * perEpoch;
  const baseLr = optimizer.lr;
  if (opts.metricsFile) mkdirSync(dirname(opts.metricsFile as string), { recursive: true });

  for (let epoch = startEpoch; epoch < epochs; epoch++) {
    model.train();
    const started = performance.now();
    let step = epoch * perEpoch;
    let lossSum = 0;
    let wrong = 0;
    let images = 0;
    let pending: Pending | null = null;
    const settle = async (p: Pending) => {
      let l: number, lv: Float32Array, yv: Int32Array;
      try {
        [l, lv, yv] = await Promise.all([p.loss.item(), p.logits.data(), p.labels.data()]);
      } finally {
        for (const t of [p.loss, p.logits, p.labels]) t.dispose();
      }
      if (!Number.isFinite(l)) throw new NonFiniteLossError(p.step, epoch, l);
      lossSum += l * yv.length;
      wrong += countErrors(lv, yv, lv.length / yv.length);
      images += yv.length;
      const seconds = (performance.now() - started) / 1000;
      onStep?.({ epoch, step: p.step, loss: l, lr: optimizer.lr, imagesPerSecond: images / seconds });
      progress?.update({ epoch, epochs, step: p.step - epoch * perEpoch + 1, steps: perEpoch, images, seconds: (performance.now() - started) / 1000, loss: l, lr: optimizer.lr },
        ((performance.now() - started) / 1000 / Math.max(1, p.step - epoch * perEpoch + 1)) * (totalSteps - p.step - 1));
    };
    try {
      for await (const { x, y } of trainData.batches(epoch)) {
        // Whatever throws inside a step (a memory limit, a user module, a schedule) must leave
        // no tensor of that step behind.
        const owned: { dispose(): void }[] = [x, y];
        let current: Pending;
        try {
          optimizer.lr = schedule ? schedule(step, totalSteps) : baseLr;
          const [loss, logits] = tidy(() => {
            const out = model.forward(x);
            const l = softmaxCrossEntropy(out, y, { labelSmoothing });
            l.backward();
            return [l, out.detach()] as const;
          });
          owned.push(loss, logits);
          optimizer.step();
          optimizer.zeroGrad();
          current = { loss, logits, labels: y, step };
        } catch (err) {
          for (const t of owned) t.dispose();
          // A backward that stopped half-way left gradients in some parameters only.
          optimizer.zeroGrad();
          throw err;
        }
        x.dispose();
        const previous = pending;
        pending = current;
        if (previous) await settle(previous);
        step++;
      }
      const last = pending;
      pending = null;
      if (last) await settle(last);
    } finally {
      if (pending) for (const t of [pending.loss, pending.logits, pending.labels]) t.dispose();
    }
    const seconds = (performance.now() - started) / 1000;
    const metrics: EpochMetrics = {
      epoch: epoch + 1, step, lr: optimizer.lr, trainLoss: lossSum / Math.max(1, images), trainError: wrong / Math.max(1, images),
      seconds, imagesPerSecond: images / seconds,
    };
    if (evalData) {
      const ev = await evaluate(model, evalData, epoch);
      metrics.testLoss = ev.loss;
      metrics.testError = ev.error;
    }
    history.push(metrics);
    progress?.line(`epoch ${metrics.epoch}/${epochs}: train loss ${metrics.trainLoss.toFixed(4)}, train error ${(100 * metrics.trainError).toFixed(2)}%` +
      (metrics.testError !== undefined ? `, test error ${(100 * metrics.testError).toFixed(2)}%` : '') +
      `, ${metrics.imagesPerSecond.toFixed(0)} img/s, ${seconds.toFixed(1)} s`);
    if (opts.metricsFile) appendFileSync(opts.metricsFile as string, `${JSON.stringify(metrics)}\n`);
    if (opts.curvesFile) {
      writeChart(opts.curvesFile as string, [
        { name: 'train error', points: history.map((m) => [m.epoch, 100 * m.trainError]), dashed: true },
        ...(evalData ? [{ name: 'test error', points: history.map((m) => [m.epoch, 100 * (m.testError ?? Number.NaN)] as [number, number]) }] : []),
      ], { title: 'Top-1 error', xLabel: 'epoch', yLabel: 'error (%)' });
    }
    if (opts.onEpoch) await (opts.onEpoch as FitOptions['onEpoch'])!(metrics);
  }
  return history;
}
