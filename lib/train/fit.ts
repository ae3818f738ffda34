/**
 * The training loop: every step scoped so nothing leaks, every tensor on the device.
 * @module
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { autocast } from '../amp/autocast.js';
import { GradScaler } from '../amp/grad-scaler.js';
import { noGrad } from '../autograd/grad-mode.js';
import { softmaxCrossEntropy } from '../ops/softmax-cross-entropy.js';
import { checkBool, checkEach, checkInt, checkNumber, checkOptions, show } from '../util/check.js';
import { checkPath } from '../io/file-error.js';
import type { SGD } from '../optim/sgd.js';
import { tidy } from '../tensor/scope.js';
import { type DType, type Tensor } from '../tensor/tensor.js';
import { isTensor } from '../tensor/is-tensor.js';
import { allReduce } from '../distributed/collectives.js';
import { currentGroup, isInitialized, rank as distributedRank, worldSize as distributedWorldSize } from '../distributed/process-group.js';
import { sync, tensor } from '../tensor/create.js';
import { capturePhase } from '../tensor/capture-phase.js';
import type { BackendName } from '../backend/load.js';
import { captureStep } from './capture.js';
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

/**
 * The arithmetic of a training run: `'fp32'` everything in float32; `'bf16'` and `'fp16'`
 * convolutions and linear layers in bfloat16 or float16 under `amp.autocast` (float32 master
 * weights, batch-norm statistics and loss); `'fp16'` with dynamic loss scaling (`GradScaler`).
 */
export type Precision = 'fp32' | 'bf16' | 'fp16';

const PRECISIONS: readonly Precision[] = ['fp32', 'bf16', 'fp16'];

/** The precision option, checked. @internal */
export function checkPrecision(op: string, value: unknown): Precision {
  if (value === undefined) return 'fp32';
  if (!PRECISIONS.includes(value as Precision)) throw new TypeError(`${op}: expected precision to be 'fp32', 'bf16' or 'fp16', got ${show(value)}`);
  return value as Precision;
}

/** Runs `fn` in `precision`'s autocast region (none for fp32). */
function inPrecision<T>(precision: Precision, fn: () => T): T {
  if (precision === 'fp32') return fn();
  return autocast({ dtype: precision === 'bf16' ? 'bfloat16' : 'float16' }, fn);
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
  /** Training and evaluation arithmetic (default `'fp32'`; see `Precision`). */
  precision?: Precision;
  /**
   * The loss scaler of an fp16 run (default: a new `amp.GradScaler()`; pass one to keep its
   * state in checkpoints). Its `step` reads back whether the gradients overflowed, so an fp16
   * step waits for the previous one instead of being queued behind it.
   */
  gradScaler?: GradScaler;
  /**
   * Replay each training step from a CUDA graph once its shapes are known (`captureStep`;
   * default true). It applies on a cuda backend, in fp32 and bf16, to the batches of the
   * epoch's first shape (a last, smaller batch runs eagerly), and is recaptured each epoch, so
   * that `onEpoch` may load a checkpoint. fp16 runs eagerly (the loss scaler reads back whether
   * each step overflowed), and so do a model with stochastic depth (a random draw on the host
   * each step) and a process group's training (its collectives cannot be captured yet). A step
   * that cannot be captured (a refusal, or a status the capture met on the device) is run again
   * eagerly, and so is every later one, after one warning (code `CUDNN_RESNET_CAPTURE_FAILED`).
   * false: every step eagerly.
   */
  captureSteps?: boolean;
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

function checkTrainable(op: string, model: unknown): Trainable {
  const m = model as Partial<Trainable> | null;
  if (m === null || typeof m !== 'object' || typeof m.forward !== 'function' || typeof m.train !== 'function' || typeof m.eval !== 'function') {
    throw new TypeError(`${op}: expected model to be an nn.Module (with forward, train and eval), got ${show(model)}`);
  }
  return m as Trainable;
}

function checkSource(op: string, name: string, data: unknown): BatchSource {
  if (data === null || typeof data !== 'object' || typeof (data as Partial<BatchSource>).batches !== 'function') {
    throw new TypeError(`${op}: expected ${name} to be a data loader (with batches(epoch)), got ${show(data)}`);
  }
  return data as BatchSource;
}

/** Whether a module of `model` drops its residual branch at random (a block's `survival` below 1). */
function hasStochasticDepth(model: Trainable): boolean {
  const modules = (model as { namedModules?: () => [string, unknown][] }).namedModules?.() ?? [];
  return modules.some(([, m]) => typeof (m as { survival?: unknown }).survival === 'number' && (m as { survival: number }).survival < 1);
}

/** Disposes what a batch or a step left, whatever came out of a data source. */
function release(...ts: unknown[]): void {
  for (const t of ts) if (isTensor(t)) t.dispose();
}

/** Options of `evaluate`. */
export interface EvaluateOptions {
  /** The arithmetic of the forward passes (default `'fp32'`). */
  precision?: Precision;
}

/** Sums of every rank's `values` in a process group of more than one rank; `values` otherwise. */
async function sumOverRanks(values: number[]): Promise<number[]> {
  if (!isInitialized() || distributedWorldSize() === 1) return values;
  const local = tensor(Float32Array.from(values), [values.length], { backend: currentGroup('fit').device });
  const total = allReduce(local, { op: 'sum' });
  try {
    return Array.from(await total.data());
  } finally {
    local.dispose();
    total.dispose();
  }
}

/**
 * Top-1 error and mean loss of `model` over `data` in evaluation mode. In a process group, the
 * totals are summed over the ranks (each evaluating its shard), so every rank returns the
 * metrics of the whole data set.
 */
export async function evaluate(model: Trainable, data: BatchSource, epoch = 0, options?: EvaluateOptions): Promise<{ loss: number; error: number; images: number }> {
  const op = 'evaluate';
  checkTrainable(op, model);
  checkSource(op, 'data', data);
  checkInt(op, 'epoch', epoch, 0);
  const precision = checkPrecision(op, checkOptions(op, options, ['precision']).precision);
  model.eval();
  let lossSum = 0;
  let wrong = 0;
  let n = 0;
  for await (const { x, y } of data.batches(epoch)) {
    let out: readonly Tensor<DType>[] = [];
    try {
      const [logits, loss] = noGrad(() => tidy(() => inPrecision(precision, () => {
        const o = model.forward(x);
        return [o, softmaxCrossEntropy(o, y)] as const;
      })));
      out = [logits, loss];
      const [lv, yv, l] = await Promise.all([logits.data(), y.data(), loss.item()]);
      lossSum += l * yv.length;
      wrong += countErrors(lv, yv, logits.shape[1]!);
      n += yv.length;
    } finally {
      release(x, y, ...out);
    }
  }
  [lossSum, wrong, n] = await sumOverRanks([lossSum, wrong, n]) as [number, number, number];
  return { loss: n ? lossSum / n : Number.NaN, error: n ? wrong / n : Number.NaN, images: n };
}

interface Pending {
  loss: Tensor;
  logits: Tensor;
  labels: Tensor<'int32'>;
  step: number;
  // Read back as soon as the step is queued, before the next one: on a GPU the copy then waits for
  // this step only, and JavaScript settles it while the next step runs.
  values: Promise<[number, Float32Array, Int32Array]>;
}

/**
 * Trains `model` with softmax cross-entropy: for each batch, forward, backward and an
 * optimizer step inside one `tidy` scope. The loss of step k is read back as soon as the step
 * is queued and awaited once step k + 1 is queued, so the backend never waits for JavaScript. A non-finite loss stops training with a
 * `NonFiniteLossError` naming the step. Returns every epoch's metrics.
 *
 * In a process group (`distributed.init()`, a model wrapped in `nn.DistributedDataParallel`,
 * loaders sharded by rank), the epoch's metrics are summed over the ranks, and only rank 0
 * shows progress and writes the metrics and curves files.
 */
export async function fit(model: Trainable, options: FitOptions): Promise<EpochMetrics[]> {
  const op = 'fit';
  const opts = checkOptions(op, options, ['trainData', 'evalData', 'epochs', 'optimizer', 'schedule', 'labelSmoothing', 'startEpoch',
    'metricsFile', 'curvesFile', 'progress', 'onStep', 'onEpoch', 'history', 'precision', 'gradScaler', 'captureSteps']);
  checkTrainable(op, model);
  const trainData = checkSource(op, 'trainData', opts.trainData);
  const evalData = opts.evalData === undefined ? undefined : checkSource(op, 'evalData', opts.evalData);
  const epochs = checkInt(op, 'epochs', opts.epochs, 1);
  const startEpoch = opts.startEpoch === undefined ? 0 : checkInt(op, 'startEpoch', opts.startEpoch, 0, epochs);
  const optimizer = opts.optimizer as SGD;
  if (!optimizer || typeof optimizer.step !== 'function') throw new TypeError(`${op}: expected an optimizer, got ${show(optimizer)}`);
  const schedule = opts.schedule as Schedule | undefined;
  if (schedule !== undefined && typeof schedule !== 'function') throw new TypeError(`${op}: expected schedule to be a function`);
  const labelSmoothing = opts.labelSmoothing === undefined ? 0 : checkNumber(op, 'labelSmoothing', opts.labelSmoothing, 0, 1, { exclusiveMax: true });
  const leader = distributedRank() === 0;
  const progress = (opts.progress === undefined || checkBool(op, 'progress', opts.progress)) && leader ? new Progress() : null;
  const onStep = opts.onStep as FitOptions['onStep'];
  if (onStep !== undefined && typeof onStep !== 'function') throw new TypeError(`${op}: expected onStep to be a function`);
  const onEpoch = opts.onEpoch as FitOptions['onEpoch'];
  if (onEpoch !== undefined && typeof onEpoch !== 'function') throw new TypeError(`${op}: expected onEpoch to be a function`);
  const metricsFile = opts.metricsFile === undefined ? undefined : checkPath(op, opts.metricsFile, 'metricsFile');
  const curvesFile = opts.curvesFile === undefined ? undefined : checkPath(op, opts.curvesFile, 'curvesFile');
  const earlier = opts.history ?? [];
  if (!Array.isArray(earlier)) throw new TypeError(`${op}: expected history to be an array of epoch metrics, got ${show(earlier)}`);
  const history = checkEach(earlier, (m, i) => {
    if (m === null || typeof m !== 'object' || typeof (m as EpochMetrics).epoch !== 'number') {
      throw new TypeError(`${op}: expected history[${i}] to be the metrics of an epoch (with epoch), got ${show(m)}`);
    }
    return m as EpochMetrics;
  });
  const precision = checkPrecision(op, opts.precision);
  if (opts.gradScaler !== undefined && !(opts.gradScaler instanceof GradScaler)) {
    throw new TypeError(`${op}: expected gradScaler to be an amp.GradScaler, got ${show(opts.gradScaler)}`);
  }
  const scaler = precision === 'fp16' ? (opts.gradScaler as GradScaler | undefined) ?? new GradScaler() : null;
  const capture = (opts.captureSteps === undefined || checkBool(op, 'captureSteps', opts.captureSteps)) && !scaler &&
    optimizer.params.every((p) => p.backend.startsWith('cuda')) && !hasStochasticDepth(model) && !isInitialized();
  // Whether the step function's last call was recorded into a graph ('checked' on a backend
  // without graphs): its work has not run, and may never.
  let recorded = false;
  // Forward, backward and the optimizer's step; the loss and the logits come out.
  const trainStep = (x: Tensor, y: Tensor<'int32'>): [Tensor, Tensor] => {
    recorded = capturePhase() === 'capture' || capturePhase() === 'checked';
    const out = tidy(() => inPrecision(precision, () => {
      const logits = model.forward(x);
      const l = softmaxCrossEntropy(logits, y, { labelSmoothing });
      (scaler ? scaler.scale(l) : l).backward();
      return [l, logits.detach()] as const;
    }));
    if (!scaler) {
      optimizer.step();
      optimizer.zeroGrad();
    }
    return [...out];
  };
  // A capture that failed (on a GPU's first run, say) must not end the run: one warning, and
  // every step eagerly from then on; the failed call's work never ran, so its batch runs again.
  let captureFailed = false;
  const fallBack = async (err: unknown, backend: BackendName): Promise<void> => {
    captureFailed = true;
    const why = (err instanceof Error ? err.message : String(err)).split('\n')[0];
    process.emitWarning(`fit: the training step could not be captured into a CUDA graph; it runs eagerly from now on ` +
      `(captureSteps: false skips the attempt): ${why}`, { code: 'CUDNN_RESNET_CAPTURE_FAILED' });
    // What the worker met during the capture is reported at the next sync point: taken here, so
    // that no eager step's readback fails with it.
    await sync(backend).catch(() => undefined);
    // The failed call's gradients were never computed.
    optimizer.zeroGrad();
  };
  const perEpoch = trainData.batchesPerEpoch;
  const totalSteps = epochs * perEpoch;
  const baseLr = optimizer.lr;
  if (metricsFile && leader) mkdirSync(dirname(metricsFile), { recursive: true });

  for (let epoch = startEpoch; epoch < epochs; epoch++) {
    model.train();
    const started = performance.now();
    let stepIndex = epoch * perEpoch;
    let lossSum = 0;
    let wrong = 0;
    let images = 0;
    let pending: Pending | null = null;
    // One graph, for the epoch's first batch shape.
    const step = captureStep(trainStep, { enabled: capture && !captureFailed, maxGraphs: 1 });
    const settle = async (p: Pending) => {
      let values: [number, Float32Array, Int32Array];
      try {
        values = await p.values;
      } finally {
        for (const t of [p.loss, p.logits, p.labels]) t.dispose();
      }
      const [l, lv, yv] = values;
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
        let current: Pending | null = null;
        try {
          optimizer.lr = schedule ? schedule(stepIndex, totalSteps) : baseLr;
          recorded = false;
          let out: [Tensor, Tensor];
          try {
            out = (captureFailed ? trainStep : step)(x, y);
          } catch (err) {
            if (!recorded) throw err;
            await fallBack(err, x.backend);
            out = trainStep(x, y);
          }
          if (recorded) {
            // A failure on the device shows at the capture's first sync point: waited for here,
            // once an epoch, while the batch can still run again.
            try {
              await sync(x.backend);
            } catch (err) {
              release(...out);
              await fallBack(err, x.backend);
              out = trainStep(x, y);
            }
          }
          const [loss, logits] = out;
          const values = Promise.all([loss.item(), logits.data(), y.data()]);
          // Awaited in settle(); a failure before that is not an unhandled rejection.
          values.catch(() => undefined);
          current = { loss, logits, labels: y, step: stepIndex, values };
          if (scaler) {
            await scaler.step(optimizer);
            scaler.update();
            optimizer.zeroGrad();
          }
        } catch (err) {
          release(y, current?.loss, current?.logits);
          // A backward that stopped half-way left gradients in some parameters only.
          optimizer.zeroGrad();
          throw err;
        } finally {
          release(x);
        }
        // The step just queued becomes pending before the previous one is read, so that the
        // finally below frees it if reading the previous one fails.
        const previous = pending;
        pending = current;
        stepIndex++;
        if (previous) await settle(previous);
      }
      const last = pending;
      pending = null;
      if (last) await settle(last);
    } finally {
      if (pending) for (const t of [pending.loss, pending.logits, pending.labels]) t.dispose();
      step.dispose();
    }
    [lossSum, wrong, images] = await sumOverRanks([lossSum, wrong, images]) as [number, number, number];
    const seconds = (performance.now() - started) / 1000;
    const metrics: EpochMetrics = {
      epoch: epoch + 1, step: stepIndex, lr: optimizer.lr, trainLoss: lossSum / Math.max(1, images), trainError: wrong / Math.max(1, images),
      seconds, imagesPerSecond: images / seconds,
    };
    if (evalData) {
      const ev = await evaluate(model, evalData, epoch, { precision });
      metrics.testLoss = ev.loss;
      metrics.testError = ev.error;
    }
    history.push(metrics);
    progress?.line(`epoch ${metrics.epoch}/${epochs}: train loss ${metrics.trainLoss.toFixed(4)}, train error ${(100 * metrics.trainError).toFixed(2)}%` +
      (metrics.testError !== undefined ? `, test error ${(100 * metrics.testError).toFixed(2)}%` : '') +
      `, ${metrics.imagesPerSecond.toFixed(0)} img/s, ${seconds.toFixed(1)} s`);
    if (metricsFile && leader) appendFileSync(metricsFile, `${JSON.stringify(metrics)}\n`);
    if (curvesFile && leader) {
      writeChart(curvesFile, [
        { name: 'train error', points: history.map((m) => [m.epoch, 100 * m.trainError]), dashed: true },
        ...(evalData ? [{ name: 'test error', points: history.map((m) => [m.epoch, 100 * (m.testError ?? Number.NaN)] as [number, number]) }] : []),
      ], { title: 'Top-1 error', xLabel: 'epoch', yLabel: 'error (%)' });
    }
    if (onEpoch) await onEpoch(metrics);
  }
  return history;
}
