/**
 * What the `train`, `eval` and `experiment` commands share: building a model and data loaders
 * from command-line options, and one training run with checkpoints, metrics and curves.
 * @module
 */
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { BackendName } from '../backend/backends.js';
import { loadCifar } from '../data/cifar.js';
import { DATASET_STATS, type Dataset, subset } from '../data/dataset.js';
import { downloadCifar } from '../data/download.js';
import { loadFashionMnist } from '../data/idx.js';
import { DataLoader } from '../data/loader.js';
import { saveSafetensors } from '../io/safetensors.js';
import { type ResNet, cifarResNet, preActResNet, resnet18, resnet34, resnet50, wideResNet } from '../models/resnet.js';
import { SGD } from '../optim/sgd.js';
import { backend, destroy, device, init, isInitialized, rank, worldSize } from '../distributed/process-group.js';
import { DistributedDataParallel } from '../nn/ddp.js';
import { loadCheckpoint, saveCheckpoint } from '../train/checkpoint.js';
import { GradScaler, type GradScalerState } from '../amp/grad-scaler.js';
import { type EpochMetrics, type Precision, fit } from '../train/fit.js';
import { heRecipe } from '../train/recipe.js';
import { cosineSchedule, stepSchedule } from '../train/schedule.js';

/** The options of one training run, as the CLI parses them (stored in checkpoints). */
export interface RunOptions {
  model: 'resnet' | 'plain' | 'preact' | 'wrn' | 'resnet18' | 'resnet34' | 'resnet50';
  depth: number;
  widen: number;
  shortcut: 'A' | 'B';
  dropPath: number;
  dataset: 'fashion-mnist' | 'cifar10' | 'cifar100';
  data?: string;
  epochs: number;
  batch: number;
  lr: number;
  weightDecay: number;
  momentum: number;
  schedule: 'step' | 'cosine';
  warmupEpochs: number;
  labelSmoothing: number;
  augment: boolean;
  limit?: number;
  /** CIFAR only: fetch the official archive (MD5 checked) when its files are missing. */
  download?: boolean;
  seed: number;
  /** Training arithmetic (absent in checkpoints of earlier versions: fp32). */
  precision: Precision;
  backend?: BackendName;
  out: string;
}

export const DEFAULTS: Omit<RunOptions, 'out'> = {
  model: 'resnet', depth: 20, widen: 4, shortcut: 'A', dropPath: 0, dataset: 'fashion-mnist', epochs: 6,
  batch: heRecipe.batchSize, lr: heRecipe.lr, weightDecay: heRecipe.weightDecay, momentum: heRecipe.momentum,
  schedule: 'step', warmupEpochs: 0, labelSmoothing: 0, augment: true, seed: 1, precision: 'fp32',
};

/** Loads a split of the run's dataset, cut to `limit` images when given. */
export async function loadDataset(o: Pick<RunOptions, 'dataset' | 'data' | 'limit' | 'download'>, split: 'train' | 'test'): Promise<Dataset> {
  const dir = o.data;
  if (o.download && o.dataset !== 'fashion-mnist') await downloadCifar({ variant: o.dataset === 'cifar10' ? 10 : 100, ...(dir === undefined ? {} : { dir }) });
  const full = o.dataset === 'fashion-mnist'
    ? await loadFashionMnist(dir === undefined ? { split } : { dir, split })
    : await loadCifar({ variant: o.dataset === 'cifar10' ? 10 : 100, split, ...(dir === undefined ? {} : { dir }) });
  return o.limit === undefined || o.limit >= full.n ? full : subset(full, o.limit);
}

/** The network a run trains. */
export function buildModel(o: RunOptions, channels: number, classes: number): ResNet {
  const common = { numClasses: classes, inChannels: channels, seed: o.seed, ...(o.backend ? { backend: o.backend } : {}) };
  switch (o.model) {
    case 'resnet':
    case 'plain':
      return cifarResNet({ depth: o.depth, shortcut: o.shortcut, plain: o.model === 'plain', dropPath: o.dropPath, ...common });
    case 'preact':
      return preActResNet({ depth: o.depth, dropPath: o.dropPath, ...common });
    case 'wrn':
      return wideResNet({ depth: o.depth, widen: o.widen, dropPath: o.dropPath, ...common });
    case 'resnet18':
      return resnet18(common);
    case 'resnet34':
      return resnet34(common);
    case 'resnet50':
      return resnet50(common);
  }
}

export function loaders(o: RunOptions, train: Dataset, test: Dataset): { train: DataLoader; test: DataLoader } {
  const backend = o.backend ? { backend: o.backend } : {};
  return {
    train: new DataLoader(train, {
      batchSize: o.batch, seed: o.seed, normalize: { ...DATASET_STATS[o.dataset] }, ...backend,
      ...(o.augment ? { augment: { padCrop: o.dataset === 'fashion-mnist' ? 2 : heRecipe.padCrop, flip: heRecipe.flip } } : {}),
    }),
    // In a process group each rank evaluates its own images, each image once (no padding).
    test: new DataLoader(test, {
      batchSize: 500, shuffle: false, normalize: { ...DATASET_STATS[o.dataset] }, ...backend,
      ...(isInitialized() ? { shard: { rank: rank(), worldSize: worldSize(), pad: false } } : {}),
    }),
  };
}

/** The files a run writes into its output folder. */
export function runFiles(out: string): { checkpoint: string; weights: string; curves: string; metrics: string } {
  return {
    checkpoint: join(out, 'checkpoint.safetensors'), weights: join(out, 'model.safetensors'),
    curves: join(out, 'curves.svg'), metrics: join(out, 'metrics.jsonl'),
  };
}

export interface RunResult {
  history: EpochMetrics[];
  checkpoint: string;
  weights: string;
  curves: string;
  metrics: string;
}

/**
 * Trains one network as `o` says, writing into `o.out`: checkpoint.safetensors after every
 * epoch (atomically), metrics.jsonl, curves.svg, and model.safetensors (the final weights, a
 * plain state dict PyTorch can load). With `resume`, continues from the checkpoint there.
 *
 * Started by `launch` (WORLD_SIZE set), it is one rank of a data-parallel run: it joins the
 * process group, trains its shard of every epoch with the model in DistributedDataParallel, and
 * only rank 0 writes files and logs; the other ranks resolve to null.
 */
export async function runTraining(o: RunOptions, options: { resume: boolean; progress: boolean; log: (line: string) => void }): Promise<RunResult | null> {
  if (process.env.WORLD_SIZE === undefined) return train(o, options);
  // Gloo for --backend cpu, NCCL for cuda; each NCCL rank trains on its GPU, cuda:LOCAL_RANK.
  await init(o.backend === undefined ? {} : { backend: o.backend === 'cpu' ? 'gloo' : 'nccl' });
  try {
    const leader = rank() === 0;
    const own = backend() === 'nccl' ? { ...o, backend: device()! } : o;
    const result = await train(own, leader ? options : { ...options, log: () => {} });
    return leader ? result : null;
  } finally {
    await destroy();
  }
}

async function train(o: RunOptions, options: { resume: boolean; progress: boolean; log: (line: string) => void }): Promise<RunResult> {
  const leader = rank() === 0;
  if (leader) mkdirSync(o.out, { recursive: true });
  const files = runFiles(o.out);
  const [trainSet, testSet] = await Promise.all([loadDataset(o, 'train'), loadDataset(o, 'test')]);
  const model = buildModel(o, trainSet.channels, trainSet.classes);
  const { train, test } = loaders(o, trainSet, testSet);
  const optimizer = new SGD(model.parameters(), { lr: o.lr, momentum: o.momentum, weightDecay: o.weightDecay });
  const precision = o.precision ?? 'fp32';
  const gradScaler = precision === 'fp16' ? new GradScaler() : undefined;
  let ddp: DistributedDataParallel | null = null;
  try {
    let startEpoch = 0;
    let history: EpochMetrics[] = [];
    if (options.resume && existsSync(files.checkpoint)) {
      const state = await loadCheckpoint(files.checkpoint, { model, optimizer, ...(o.backend ? { backend: o.backend } : {}) });
      const savedWorld = typeof state.worldSize === 'number' ? state.worldSize : 1;
      if (savedWorld !== worldSize()) {
        throw new Error(`--resume: ${files.checkpoint} was written by a run of ${savedWorld} process(es); resume it with the same number (--nproc), not ${worldSize()}`);
      }
      startEpoch = state.epoch;
      history = state.history as EpochMetrics[];
      model.rngState = state.rng as number[];
      if (gradScaler && state.gradScaler !== undefined) gradScaler.loadStateDict(state.gradScaler as GradScalerState);
      options.log(`resuming from ${files.checkpoint} after epoch ${startEpoch}`);
    } else if (leader) {
      rmSync(files.metrics, { force: true });
    }
    // After the checkpoint is loaded: DDP starts every rank from rank 0's weights.
    if (isInitialized()) ddp = new DistributedDataParallel(model);
    const warmupSteps = o.warmupEpochs * train.batchesPerEpoch;
    const schedule = o.schedule === 'cosine'
      ? cosineSchedule({ lr: o.lr, warmupSteps })
      : stepSchedule({ lr: o.lr, milestones: [...heRecipe.milestones], warmupSteps });
    const params = model.parameters().reduce((n, p) => n + p.size, 0);
    options.log(`${o.model}${o.model.startsWith('resnet') && o.model !== 'resnet' ? '' : `-${o.depth}`} on ${o.dataset} ` +
      `(${trainSet.n} train / ${testSet.n} test images), ${params.toLocaleString('en-US')} parameters, ${o.epochs} epochs of ${train.batchesPerEpoch} steps` +
      (precision === 'fp32' ? '' : `, ${precision} mixed precision`) + (ddp ? ` in each of ${worldSize()} processes` : ''));
    const result = await fit(ddp ?? model, {
      trainData: train, evalData: test, epochs: o.epochs, optimizer, schedule, labelSmoothing: o.labelSmoothing, startEpoch,
      history, metricsFile: files.metrics, curvesFile: files.curves, progress: options.progress, precision, ...(gradScaler ? { gradScaler } : {}),
      onEpoch: async (m) => {
        history.push(m);
        if (!leader) return;
        const state = {
          epoch: m.epoch, history, rng: model.rngState, options: o, worldSize: worldSize(),
          ...(gradScaler ? { gradScaler: gradScaler.stateDict() } : {}),
        };
        await saveCheckpoint(files.checkpoint, { model, optimizer, state });
      },
    });
    if (leader) await saveSafetensors(files.weights, model.stateDict(), { metadata: { format: 'pt' } });
    return { history: result, ...files };
  } finally {
    ddp?.dispose();
    optimizer.dispose();
    model.dispose();
  }
}
