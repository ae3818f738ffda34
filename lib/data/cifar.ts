/**
 * The binary version of CIFAR-10 and CIFAR-100 (Krizhevsky, 2009), as distributed in
 * `cifar-10-binary.tar.gz` and `cifar-100-binary.tar.gz`.
 *
 * Each file is a sequence of fixed-size records: the label byte(s), then a 32×32 RGB image as
 * 3072 bytes, the red plane, then green, then blue, rows top to bottom (already CHW).
 * CIFAR-10 records have one label byte; CIFAR-100 records have the coarse (20 superclasses)
 * then the fine (100 classes) label.
 * @module
 */
import { open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { checkOptions, show } from '../util/check.js';
import { checkPath, fileFormatError } from '../io/file-error.js';
import { type Dataset, dataRoot } from './dataset.js';

/** Options of `loadCifar`. */
export interface LoadCifarOptions {
  /** 10 or 100. Default 10. */
  variant?: 10 | 100;
  /** `'train'` (50,000 images) or `'test'` (10,000). Default `'train'`. */
  split?: 'train' | 'test';
  /**
   * The folder with the `.bin` files: `data_batch_1.bin` … `data_batch_5.bin` and
   * `test_batch.bin` (CIFAR-10), `train.bin` and `test.bin` (CIFAR-100). Default: the folder
   * the archive unpacks to, `cifar-10-batches-bin` or `cifar-100-binary`, under `dataRoot()`.
   */
  dir?: string;
  /** CIFAR-100 only: the 100 `'fine'` classes (default) or the 20 `'coarse'` superclasses. */
  labels?: 'fine' | 'coarse';
}

const IMAGE_BYTES = 3 * 32 * 32;

/**
 * Loads a split of CIFAR-10 or CIFAR-100 from the binary files, as a `Dataset` of 3×32×32 images.
 * Each file's size must be a whole number of records and every label in range; an error names
 * the file and the byte offset.
 */
export function loadCifar(options?: LoadCifarOptions): Promise<Dataset> {
  const op = 'loadCifar';
  const opts = checkOptions(op, options, ['variant', 'split', 'dir', 'labels']);
  const variant = opts.variant ?? 10;
  if (variant !== 10 && variant !== 100) throw new TypeError(`${op}: expected variant to be 10 or 100, got ${show(variant)}`);
  const split = opts.split ?? 'train';
  if (split !== 'train' && split !== 'test') throw new TypeError(`${op}: expected split to be 'train' or 'test', got ${show(split)}`);
  const which = opts.labels ?? 'fine';
  if (which !== 'fine' && which !== 'coarse') throw new TypeError(`${op}: expected labels to be 'fine' or 'coarse', got ${show(which)}`);
  if (which === 'coarse' && variant !== 100) throw new TypeError(`${op}: labels: 'coarse' exists only for variant 100`);
  const dir = opts.dir === undefined ? join(dataRoot(), variant === 10 ? 'cifar-10-batches-bin' : 'cifar-100-binary') : checkPath(op, opts.dir, 'dir');
  const names =
    variant === 10
      ? split === 'train' ? [1, 2, 3, 4, 5].map((i) => `data_batch_${i}.bin`) : ['test_batch.bin']
      : [`${split}.bin`];
  // Class counts of each label byte of a record; CIFAR-100's record is coarse then fine.
  const labelClasses = variant === 10 ? [10] : [20, 100];
  const labelAt = variant === 100 && which === 'fine' ? 1 : 0;
  return readCifar(op, names.map((n) => join(dir, n)), labelClasses, labelAt);
}

async function readCifar(op: string, files: string[], labelClasses: number[], labelAt: number): Promise<Dataset> {
  const labelBytes = labelClasses.length;
  const record = labelBytes + IMAGE_BYTES;
  const sizes: number[] = [];
  for (const f of files) {
    let size: number;
    try {
      size = (await stat(f)).size;
    } catch (err) {
      if ((err as { code?: unknown }).code !== 'ENOENT') throw err;
      const e = new Error(`${op}: ${f} not found. Download the binary version (cifar-10-binary.tar.gz or cifar-100-binary.tar.gz) and unpack it, then pass { dir } naming the folder with the .bin files, or set CUDNN_RESNET_DATA to the folder holding it.`);
      (e as Error & { code: string }).code = 'ENOENT';
      throw e;
    }
    if (size === 0 || size % record !== 0) {
      throw fileFormatError(op, f, size - (size % record), `size ${size} is not a positive multiple of the ${record}-byte record (${labelBytes} label byte${labelBytes > 1 ? 's' : ''} + ${IMAGE_BYTES} pixels); truncated?`);
    }
    sizes.push(size);
  }
  const n = sizes.reduce((a, s) => a + s / record, 0);
  const images = new Uint8Array(n * IMAGE_BYTES);
  const labels = new Int32Array(n);
  let index = 0;
  for (let k = 0; k < files.length; k++) {
    const f = files[k]!;
    const bytes = new Uint8Array(sizes[k]!);
    const fh = await open(f, 'r');
    try {
      let done = 0;
      while (done < bytes.byteLength) {
        const { bytesRead } = await fh.read(bytes, done, bytes.byteLength - done, done);
        if (bytesRead === 0) throw fileFormatError(op, f, done, 'file ended early (it changed while being read?)');
        done += bytesRead;
      }
    } finally {
      await fh.close();
    }
    for (let off = 0; off < bytes.byteLength; off += record, index++) {
      // Every label byte is checked, the unused one too: a bad one means a corrupt file.
      for (let b = 0; b < labelBytes; b++) {
        const l = bytes[off + b]!;
        if (l >= labelClasses[b]!) throw fileFormatError(op, f, off + b, `label ${l} of record ${off / record} is outside [0, ${labelClasses[b]})`);
      }
      labels[index] = bytes[off + labelAt]!;
      images.set(bytes.subarray(off + labelBytes, off + record), index * IMAGE_BYTES);
    }
  }
  return { images, labels, n, channels: 3, height: 32, width: 32, classes: labelClasses[labelAt]! };
}
