/**
 * Batches of a `Dataset` as tensors: seeded shuffling per epoch, augmentation, normalization,
 * and the next batch prepared while the current one trains.
 *
 * Reproducibility: epoch `e`'s order depends only on (seed, e), and batch `b`'s augmentation
 * only on (seed, e, b). The whole state of a loader is therefore its seed and its position
 * (epoch, batch), which a checkpoint saves and `seek()` restores.
 *
 * Overlap: a batch's JS work (gather, augment, normalize into a Float32Array) is scheduled with
 * `setImmediate` before the previous batch is handed out. The training step enqueues its ops and
 * awaits a result; while the backend's worker runs them, the event loop is free and the next
 * batch is prepared. Only the upload (a copy) happens when the batch is asked for.
 * @module
 */
import { type BackendName, parseBackend } from '../backend/backends.js';
import { checkBool, checkInt, checkOptions } from '../util/check.js';
import { tensor } from '../tensor/create.js';
import { Rng, rngFor } from '../tensor/random.js';
import type { Tensor } from '../tensor/tensor.js';
import { rank as distributedRank, worldSize as distributedWorldSize } from '../distributed/process-group.js';
import { type Dataset, checkDataset } from './dataset.js';
import { checkMeanStd, normalize, randomFlip, randomPadCrop } from './transforms.js';

/** Random augmentation applied to each training image. */
export interface AugmentOptions {
  /** Pad by this many zero pixels on each side, then crop back to H×W at a random offset. */
  padCrop?: number;
  /** Mirror left to right with probability 1/2. */
  flip?: boolean;
}

/** Options of `DataLoader`. */
export interface DataLoaderOptions {
  /** Images per batch. */
  batchSize: number;
  /** Visit the images in a new seeded random order each epoch (default true). */
  shuffle?: boolean;
  /** Seed of the order and the augmentation; default: drawn from the generator `seed()` sets. */
  seed?: number;
  /** Random augmentation (default none). */
  augment?: AugmentOptions;
  /**
   * Per-channel mean and std applied after pixels are scaled to [0, 1]; without it, batches hold
   * the scaled pixels.
   */
  normalize?: { mean: number[]; std: number[] };
  /** Drop the last batch of an epoch when it is smaller than `batchSize` (default false). */
  dropLast?: boolean;
  /** Where the batch tensors live; defaults to `defaultBackend()`. */
  backend?: BackendName;
  /** Prepare the next batch while the current one is used (default true). */
  prefetch?: boolean;
  /**
   * Data-parallel sharding (PyTorch's DistributedSampler): each epoch every rank draws the same
   * seeded permutation and takes every `worldSize`-th image of it from position `rank`, so the
   * ranks' shards are disjoint and cover the data set. With `pad` (default true) the permutation
   * is padded with its first images to a multiple of `worldSize`, so every rank runs the same
   * number of steps (which DDP needs); without, each image is seen exactly once (evaluation).
   * Default: from `distributed` when a process group is initialised, else none. `false`: none.
   */
  shard?: { rank: number; worldSize: number; pad?: boolean } | false;
}

/** One batch. The caller owns `x` and `y` and disposes them. */
export interface Batch {
  /** Images, float32 `[size, C, H, W]`. */
  x: Tensor;
  /** Class indices, int32 `[size]`. */
  y: Tensor<'int32'>;
  /** Images in this batch: `batchSize`, or fewer for the last batch of an epoch. */
  size: number;
}

/** The values of one batch before upload. */
export interface BatchArrays {
  /** `size * C * H * W` values, NCHW. */
  x: Float32Array;
  y: Int32Array;
  size: number;
}

/** Where a loader is: the next batch it yields is batch `batch` of epoch `epoch`. */
export interface LoaderPosition {
  epoch: number;
  batch: number;
}

/** Time spent on batches, to see whether data preparation keeps up with training. */
export interface LoaderStats {
  /** Batches handed out. */
  batches: number;
  /** Milliseconds spent preparing batches (gather, augment, normalize). */
  prepareMs: number;
  /**
   * Milliseconds the consumer waited for a batch to be ready. With prefetching this is the part
   * of `prepareMs` that did not overlap with the consumer's own awaits.
   */
  waitMs: number;
  /** Milliseconds spent uploading batches into tensors. */
  uploadMs: number;
}

/** A 32-bit hash of a few integers (murmur3's finalizer), to derive independent seeds. */
function mixSeed(...parts: number[]): number {
  let h = 0x9e3779b9;
  for (const p of parts) {
    h = Math.imul(h ^ (p >>> 0), 0xcc9e2d51);
    h = Math.imul((h << 15) | (h >>> 17), 0x1b873593);
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
  }
  return h >>> 0;
}

/**
 * Iterates a `Dataset` in batches: `for await (const { x, y, size } of loader)` runs one epoch
 * from the current position, then moves to the next epoch. The order is shuffled per epoch and
 * the augmentation drawn per batch from the seed, so a run is reproducible, and resumable from
 * `position` through `seek()`.
 *
 * ```ts
 * const train = new data.DataLoader(await data.loadCifar({ split: 'train' }), {
 *   batchSize: 128, seed: 1, augment: { padCrop: 4, flip: true },
 *   normalize: { mean: [0.4914, 0.4822, 0.4465], std: [0.247, 0.2435, 0.2616] },
 * });
 * for await (const { x, y } of train) { ...; x.dispose(); y.dispose(); }
 * ```
 */
export class DataLoader implements AsyncIterable<Batch> {
  readonly dataset: Dataset;
  readonly batchSize: number;
  readonly seed: number;
  /** Batches in one epoch. */
  readonly batchesPerEpoch: number;
  readonly #shuffle: boolean;
  readonly #padCrop: number;
  readonly #flip: boolean;
  readonly #norm: [number[], number[]] | null;
  readonly #backend: BackendName;
  readonly #prefetch: boolean;
  readonly #shard: { rank: number; worldSize: number };
  /** Images this loader visits per epoch (its shard's). */
  readonly #count: number;
  #epoch = 0;
  #batch = 0;
  #iterating = false;
  #order: { epoch: number; perm: Uint32Array } | null = null;
  #stats: LoaderStats = { batches: 0, prepareMs: 0, waitMs: 0, uploadMs: 0 };

  /** A loader over `dataset`; see `DataLoaderOptions`. */
  constructor(dataset: Dataset, options: DataLoaderOptions) {
    const op = 'DataLoader';
    this.dataset = checkDataset(op, dataset);
    const opts = checkOptions(op, options, ['batchSize', 'shuffle', 'seed', 'augment', 'normalize', 'dropLast', 'backend', 'prefetch', 'shard']);
    this.batchSize = checkInt(op, 'batchSize', opts.batchSize, 1);
    this.#shuffle = opts.shuffle === undefined ? true : checkBool(op, 'shuffle', opts.shuffle);
    this.seed = opts.seed === undefined ? rngFor(undefined).nextUint32() : checkInt(op, 'seed', opts.seed, -(2 ** 31), 2 ** 32 - 1) >>> 0;
    const augment = checkOptions(`${op}: augment`, opts.augment, ['padCrop', 'flip']);
    this.#padCrop = augment.padCrop === undefined ? 0 : checkInt(op, 'augment.padCrop', augment.padCrop, 0);
    this.#flip = augment.flip === undefined ? false : checkBool(op, 'augment.flip', augment.flip);
    if (opts.normalize === undefined) {
      this.#norm = null;
    } else {
      const norm = checkOptions(`${op}: normalize`, opts.normalize, ['mean', 'std']);
      this.#norm = checkMeanStd(op, norm.mean, norm.std, this.dataset.channels);
    }
    const dropLast = opts.dropLast === undefined ? false : checkBool(op, 'dropLast', opts.dropLast);
    this.#backend = parseBackend(op, opts.backend);
    this.#prefetch = opts.prefetch === undefined ? true : checkBool(op, 'prefetch', opts.prefetch);
    let pad = true;
    if (opts.shard === false) {
      this.#shard = { rank: 0, worldSize: 1 };
    } else if (opts.shard === undefined) {
      this.#shard = { rank: distributedRank(), worldSize: distributedWorldSize() };
    } else {
      const shard = checkOptions(`${op}: shard`, opts.shard, ['rank', 'worldSize', 'pad']);
      const worldSize = checkInt(op, 'shard.worldSize', shard.worldSize, 1, this.dataset.n);
      this.#shard = { rank: checkInt(op, 'shard.rank', shard.rank, 0, worldSize - 1), worldSize };
      if (shard.pad !== undefined) pad = checkBool(op, 'shard.pad', shard.pad);
    }
    const { rank, worldSize } = this.#shard;
    if (worldSize > this.dataset.n) throw new RangeError(`${op}: ${worldSize} ranks cannot share ${this.dataset.n} images`);
    this.#count = pad ? Math.ceil(this.dataset.n / worldSize) : Math.floor((this.dataset.n - rank + worldSize - 1) / worldSize);
    const n = this.#count;
    this.batchesPerEpoch = dropLast ? Math.floor(n / this.batchSize) : Math.ceil(n / this.batchSize);
    if (this.batchesPerEpoch === 0) {
      throw new RangeError(`${op}: batchSize ${this.batchSize} exceeds the ${n} images of the dataset and dropLast is set: an epoch would have no batch`);
    }
  }

  /** The batch the next iteration starts with; save it in a checkpoint with `seed`. */
  get position(): LoaderPosition {
    return { epoch: this.#epoch, batch: this.#batch };
  }

  /** Time spent preparing, waiting for and uploading batches since the loader was made. */
  get stats(): LoaderStats {
    return { ...this.#stats };
  }

  /**
   * Moves to batch `batch` (default 0) of epoch `epoch`: the next iteration yields exactly what
   * a loader with the same seed and options yields there, to resume from a checkpoint.
   */
  seek(position: { epoch: number; batch?: number }): void {
    const op = 'DataLoader.seek';
    const pos = checkOptions(op, position, ['epoch', 'batch']);
    if (this.#iterating) throw new Error(`${op}: cannot seek while an epoch is being iterated`);
    const epoch = checkInt(op, 'epoch', pos.epoch, 0, 2 ** 32 - 1);
    const batch = pos.batch === undefined ? 0 : checkInt(op, 'batch', pos.batch, 0, this.batchesPerEpoch);
    [this.#epoch, this.#batch] = batch === this.batchesPerEpoch ? [epoch + 1, 0] : [epoch, batch];
  }

  /** Image indices of an epoch in visiting order; cached for the current epoch. */
  #permutation(epoch: number): Uint32Array | null {
    if (!this.#shuffle) return null;
    if (this.#order?.epoch === epoch) return this.#order.perm;
    const n = this.dataset.n;
    const perm = new Uint32Array(n);
    for (let i = 0; i < n; i++) perm[i] = i;
    const rng = new Rng(mixSeed(this.seed, epoch));
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(rng.uniform() * (i + 1));
      const t = perm[i]!;
      perm[i] = perm[j]!;
      perm[j] = t;
    }
    this.#order = { epoch, perm };
    return perm;
  }

  /**
   * The values of batch `batch` of epoch `epoch`, as the iterator would upload them: pixels
   * scaled to [0, 1], padded and cropped, flipped, normalized. Depends only on the seed, the
   * options, `epoch` and `batch`.
   */
  prepare(epoch: number, batch: number): BatchArrays {
    const op = 'DataLoader.prepare';
    checkInt(op, 'epoch', epoch, 0, 2 ** 32 - 1);
    checkInt(op, 'batch', batch, 0, this.batchesPerEpoch - 1);
    const t0 = performance.now();
    const { images, labels, channels, height, width } = this.dataset;
    const perm = this.#permutation(epoch);
    const start = batch * this.batchSize;
    const size = Math.min(this.batchSize, this.#count - start);
    const { rank, worldSize } = this.#shard;
    const n = this.dataset.n;
    const chw = channels * height * width;
    let x: Float32Array = new Float32Array(size * chw);
    const y = new Int32Array(size);
    for (let j = 0; j < size; j++) {
      // Position in the (padded) permutation; padding repeats it from its start.
      const at = (rank + (start + j) * worldSize) % n;
      const idx = perm ? perm[at]! : at;
      y[j] = labels[idx]!;
      const src = idx * chw;
      const dst = j * chw;
      for (let k = 0; k < chw; k++) x[dst + k] = images[src + k]! / 255;
    }
    const shape = [size, channels, height, width];
    const rng = new Rng(mixSeed(this.seed, epoch, batch));
    if (this.#padCrop > 0) x = randomPadCrop(x, shape, this.#padCrop, rng);
    if (this.#flip) randomFlip(x, shape, rng);
    if (this.#norm) normalize(x, shape, this.#norm[0], this.#norm[1]);
    this.#stats.prepareMs += performance.now() - t0;
    return { x, y, size };
  }

  /** Prepares a batch once the event loop is next idle, that is while the consumer awaits. */
  #later(epoch: number, batch: number): Promise<BatchArrays> {
    const p = new Promise<BatchArrays>((resolve, reject) => {
      setImmediate(() => {
        try {
          resolve(this.prepare(epoch, batch));
        } catch (err) {
          reject(err);
        }
      });
    });
    // A consumer that leaves the loop never awaits this one; its failure must not go unhandled.
    p.catch(() => undefined);
    return p;
  }

  #upload(a: BatchArrays): Batch {
    const t0 = performance.now();
    const { channels, height, width } = this.dataset;
    const x = tensor(a.x, [a.size, channels, height, width], { backend: this.#backend });
    let y: Tensor<'int32'>;
    try {
      y = tensor(a.y, [a.size], { backend: this.#backend });
    } catch (err) {
      x.dispose();
      throw err;
    }
    this.#stats.uploadMs += performance.now() - t0;
    return { x, y, size: a.size };
  }

  /**
   * The batches of epoch `epoch`: from the current position when the loader is already in that
   * epoch (a run resumed mid-epoch), else from its first batch. This is the form `train.fit`
   * takes (`BatchSource`).
   */
  batches(epoch: number): AsyncIterable<Batch> {
    checkInt('DataLoader.batches', 'epoch', epoch, 0, 2 ** 32 - 1);
    if (this.#epoch !== epoch) this.seek({ epoch });
    return this;
  }

  /**
   * One epoch from the current position. Breaking out early leaves the position at the first
   * batch not handed out. One iteration at a time.
   */
  async *[Symbol.asyncIterator](): AsyncGenerator<Batch, void, undefined> {
    if (this.#iterating) throw new Error('DataLoader: an epoch is already being iterated; finish or leave that loop first');
    this.#iterating = true;
    try {
      const epoch = this.#epoch;
      const last = this.batchesPerEpoch;
      let pending: Promise<BatchArrays> | null = null;
      for (let b = this.#batch; b < last; b++) {
        const t0 = performance.now();
        const arrays = pending ? await pending : this.prepare(epoch, b);
        this.#stats.waitMs += performance.now() - t0;
        // Scheduled before this batch is handed out, so that it is prepared while this one is used.
        pending = this.#prefetch && b + 1 < last ? this.#later(epoch, b + 1) : null;
        const batch = this.#upload(arrays);
        this.#batch = b + 1;
        this.#stats.batches++;
        yield batch;
      }
      this.#epoch = epoch + 1;
      this.#batch = 0;
    } finally {
      this.#iterating = false;
    }
  }
}
