/**
 * The in-memory form of an image classification data set, shared by the readers and the loader.
 * @module
 */
import { checkInt, show } from '../util/check.js';

/**
 * Images and labels held in memory as they are stored on disk: 8-bit pixels, NCHW.
 * Image `i`'s pixels are `images.subarray(i * C * H * W, (i + 1) * C * H * W)`, channel planes
 * one after another, rows top to bottom.
 */
export interface Dataset {
  /** `n * channels * height * width` pixels, 0..255. */
  images: Uint8Array;
  /** `n` class indices in `[0, classes)`. */
  labels: Int32Array;
  n: number;
  channels: number;
  height: number;
  width: number;
  classes: number;
}

/**
 * Where the readers look by default: `$CUDNN_RESNET_DATA` if set, else `/usr/share/datasets`
 * (where Debian's `dataset-*` packages install). Each data set is a folder under it.
 */
export function dataRoot(): string {
  const env = process.env.CUDNN_RESNET_DATA;
  return env !== undefined && env !== '' ? env : '/usr/share/datasets';
}

/** Checks that a data set's fields agree (sizes, label range), so batches never read past it. @internal */
export function checkDataset(op: string, value: unknown): Dataset {
  if (value === null || typeof value !== 'object') throw new TypeError(`${op}: expected dataset to be a Dataset object, got ${show(value)}`);
  const d = value as Partial<Dataset>;
  if (!(d.images instanceof Uint8Array)) throw new TypeError(`${op}: expected dataset.images to be a Uint8Array, got ${show(d.images)}`);
  if (!(d.labels instanceof Int32Array)) throw new TypeError(`${op}: expected dataset.labels to be an Int32Array, got ${show(d.labels)}`);
  const n = checkInt(op, 'dataset.n', d.n, 1);
  const c = checkInt(op, 'dataset.channels', d.channels, 1);
  const h = checkInt(op, 'dataset.height', d.height, 1);
  const w = checkInt(op, 'dataset.width', d.width, 1);
  const classes = checkInt(op, 'dataset.classes', d.classes, 1);
  if (d.images.length !== n * c * h * w) {
    throw new RangeError(`${op}: dataset.images has ${d.images.length} pixels, expected n·C·H·W = ${n}·${c}·${h}·${w} = ${n * c * h * w}`);
  }
  if (d.labels.length !== n) throw new RangeError(`${op}: dataset.labels has ${d.labels.length} entries, expected n = ${n}`);
  for (let i = 0; i < n; i++) {
    const l = d.labels[i]!;
    if (l < 0 || l >= classes) throw new RangeError(`${op}: dataset.labels[${i}] is ${l}, outside [0, ${classes})`);
  }
  return d as Dataset;
}

/** The first `count` images of a data set (a view: no pixels are copied). */
export function subset(dataset: Dataset, count: number): Dataset {
  const op = 'subset';
  const d = checkDataset(op, dataset);
  const n = checkInt(op, 'count', count, 1, d.n);
  const chw = d.channels * d.height * d.width;
  return { ...d, n, images: d.images.subarray(0, n * chw), labels: d.labels.subarray(0, n) };
}

/** Per-channel mean and standard deviation of a data set's training images (pixels in [0, 1]). */
export interface ChannelStats {
  mean: number[];
  std: number[];
}

/**
 * The usual normalization statistics of the built-in data sets' training splits, for
 * `DataLoader`'s `normalize` option.
 */
export const DATASET_STATS: Readonly<Record<'fashion-mnist' | 'cifar10' | 'cifar100', Readonly<ChannelStats>>> = Object.freeze({
  'fashion-mnist': { mean: [0.286], std: [0.353] },
  cifar10: { mean: [0.4914, 0.4822, 0.4465], std: [0.247, 0.2435, 0.2616] },
  cifar100: { mean: [0.5071, 0.4865, 0.4409], std: [0.2673, 0.2564, 0.2762] },
});
