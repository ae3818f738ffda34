/**
 * The IDX format of MNIST and Fashion-MNIST, gzipped or not.
 *
 * A file is a 4-byte magic `00 00 TT RR` (TT the element type, 08 for unsigned bytes; RR the
 * rank), RR big-endian u32 dimensions, then the elements, row-major.
 * @module
 */
import { existsSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { createGunzip } from 'node:zlib';
import { checkInt, checkOptions, show } from '../util/check.js';
import { checkPath, fileFormatError } from '../io/file-error.js';
import { type Dataset, dataRoot } from './dataset.js';

/** An IDX file's contents. */
export interface IdxArray {
  /** Dimensions, outermost first (`[60000, 28, 28]` for MNIST training images). */
  dims: number[];
  /** The elements, row-major. */
  data: Uint8Array;
}

/** Options of `readIdx`. */
export interface ReadIdxOptions {
  /** The magic number the file must have: `0x00000803` for image files, `0x00000801` for label files. */
  magic?: number;
}

/** Magic number of an IDX file of unsigned-byte images (rank 3). */
export const IDX_IMAGES_MAGIC = 0x00000803;
/** Magic number of an IDX file of unsigned-byte labels (rank 1). */
export const IDX_LABELS_MAGIC = 0x00000801;

/** Deflate cannot compress by more than about 1032:1, which bounds what a gzipped file can claim. */
const MAX_DEFLATE_RATIO = 1032;

function hex(v: number): string {
  return `0x${v.toString(16).padStart(8, '0')}`;
}

/** Where an offset points: into the file, or into a gzipped file's decompressed data. */
function offsetWhere(gz: boolean): string {
  return gz ? 'offset of the decompressed data' : 'byte offset';
}

async function readIdxFile(op: string, file: string, magic: number | undefined): Promise<IdxArray & { gz: boolean }> {
  const fh = await open(file, 'r');
  let gz: boolean;
  let fileSize: number;
  try {
    fileSize = (await fh.stat()).size;
    const head = new Uint8Array(2);
    const { bytesRead } = await fh.read(head, 0, 2, 0);
    gz = bytesRead === 2 && head[0] === 0x1f && head[1] === 0x8b;
  } catch (err) {
    await fh.close();
    throw err;
  }
  const raw = fh.createReadStream({ start: 0 });
  let stream: AsyncIterable<Buffer> = raw;
  if (gz) {
    const gunzip = createGunzip();
    // pipe() does not forward read errors; without this the loop below would wait forever.
    raw.on('error', (err) => gunzip.destroy(err));
    stream = raw.pipe(gunzip);
  }
  const fail = (offset: number | null, reason: string) => fileFormatError(op, file, offset, reason, offsetWhere(gz));
  let header: Buffer = Buffer.alloc(0);
  let headerLen = 0;
  let dims: number[] = [];
  let data: Uint8Array | null = null;
  let filled = 0;
  let consumed = 0;
  try {
    try {
      for await (const chunk of stream) {
        let c = chunk;
        consumed += c.byteLength;
        if (data === null) {
          header = Buffer.concat([header, c]);
          if (header.byteLength < 4) continue;
          const m = header.readUInt32BE(0);
          if (header[0] !== 0 || header[1] !== 0) throw fail(0, `magic number ${hex(m)} is not an IDX magic (00 00 type rank)`);
          if (header[2] !== 0x08) throw fail(2, `element type 0x${header[2]!.toString(16).padStart(2, '0')} is not supported (only 0x08, unsigned byte)`);
          if (magic !== undefined && m !== magic) throw fail(0, `magic number is ${hex(m)}, expected ${hex(magic)}`);
          const rank = header[3]!;
          if (rank === 0) throw fail(3, 'rank is 0');
          headerLen = 4 + 4 * rank;
          if (header.byteLength < headerLen) continue;
          dims = [];
          for (let i = 0; i < rank; i++) {
            const d = header.readUInt32BE(4 + 4 * i);
            if (d === 0) throw fail(4 + 4 * i, `dimension ${i} is 0`);
            dims.push(d);
          }
          const expected = dims.reduce((a, b) => a * b, 1);
          // Validated against the file's size before allocating what the header claims.
          if (gz && expected > fileSize * MAX_DEFLATE_RATIO) {
            throw fail(4, `dimensions [${dims.join(', ')}] need ${expected} bytes, more than a ${fileSize}-byte gzip file can hold`);
          }
          if (!gz && expected !== fileSize - headerLen) {
            const has = fileSize - headerLen;
            throw has < expected
              ? fail(fileSize, `truncated: dimensions [${dims.join(', ')}] need ${expected} bytes after the ${headerLen}-byte header, the file has ${has}`)
              : fail(headerLen + expected, `${has - expected} bytes after the ${expected} that dimensions [${dims.join(', ')}] need`);
          }
          data = new Uint8Array(expected);
          c = header.subarray(headerLen);
        }
        if (filled + c.byteLength > data.byteLength) {
          throw fail(headerLen + data.byteLength, `data continues past the ${data.byteLength} bytes that dimensions [${dims.join(', ')}] need`);
        }
        data.set(c, filled);
        filled += c.byteLength;
      }
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (typeof code === 'string' && code.startsWith('Z_')) throw fail(consumed, `gzip data is corrupt or truncated (${(err as Error).message})`);
      throw err;
    }
  } finally {
    raw.destroy();
  }
  if (data === null) {
    const need = header.byteLength < 4 ? 4 : headerLen;
    throw fail(header.byteLength, `truncated: the file ends inside the ${need}-byte header`);
  }
  if (filled < data.byteLength) {
    throw fail(headerLen + filled, `truncated: dimensions [${dims.join(', ')}] need ${data.byteLength} bytes after the header, the data has ${filled}`);
  }
  return { dims, data, gz };
}

/**
 * Reads an IDX file of unsigned bytes (the format of MNIST and Fashion-MNIST), gzipped or not
 * (recognized by the gzip magic `1f 8b`, whatever the file's name). The magic number, dimensions
 * and size are checked; an error names the file and the offset (into the decompressed data for
 * a gzipped file). Other IDX element types (signed bytes, shorts, floats) are refused.
 */
export function readIdx(path: string, options?: ReadIdxOptions): Promise<IdxArray> {
  const op = 'readIdx';
  const file = checkPath(op, path);
  const opts = checkOptions(op, options, ['magic']);
  const magic = opts.magic === undefined ? undefined : checkInt(op, 'magic', opts.magic, 0, 0xffffffff);
  return readIdxFile(op, file, magic).then(({ dims, data }) => ({ dims, data }));
}

/** Options of `loadFashionMnist`. */
export interface LoadFashionMnistOptions {
  /**
   * The folder with `train-images-idx3-ubyte.gz`, `train-labels-idx1-ubyte.gz`,
   * `t10k-images-idx3-ubyte.gz` and `t10k-labels-idx1-ubyte.gz` (or the same without `.gz`).
   * Default: `fashion-mnist` under `dataRoot()`, that is `/usr/share/datasets/fashion-mnist`
   * (Debian's `dataset-fashion-mnist` package) unless `CUDNN_RESNET_DATA` is set.
   */
  dir?: string;
  /** `'train'` (60,000 images) or `'test'` (10,000). Default `'train'`. */
  split?: 'train' | 'test';
}

function findFile(op: string, dir: string, name: string): string {
  for (const candidate of [`${name}.gz`, name]) {
    const p = join(dir, candidate);
    if (existsSync(p)) return p;
  }
  const err = new Error(
    `${op}: ${join(dir, `${name}.gz`)} not found (nor without .gz). Install the data set with ` +
      '`sudo apt-get install dataset-fashion-mnist` (it installs into /usr/share/datasets/fashion-mnist), ' +
      'or pass { dir } naming a folder with the four IDX files, or set CUDNN_RESNET_DATA to a folder holding fashion-mnist/.',
  );
  (err as Error & { code: string }).code = 'ENOENT';
  throw err;
}

/**
 * Loads a split of Fashion-MNIST (Xiao et al., 2017): 28×28 grayscale images of 10 clothing
 * classes, as a `Dataset` with one channel.
 */
export function loadFashionMnist(options?: LoadFashionMnistOptions): Promise<Dataset> {
  const op = 'loadFashionMnist';
  const opts = checkOptions(op, options, ['dir', 'split']);
  const dir = opts.dir === undefined ? join(dataRoot(), 'fashion-mnist') : checkPath(op, opts.dir, 'dir');
  const split = opts.split ?? 'train';
  if (split !== 'train' && split !== 'test') throw new TypeError(`${op}: expected split to be 'train' or 'test', got ${show(split)}`);
  const prefix = split === 'train' ? 'train' : 't10k';
  const imagesPath = findFile(op, dir, `${prefix}-images-idx3-ubyte`);
  const labelsPath = findFile(op, dir, `${prefix}-labels-idx1-ubyte`);
  return readFashionMnist(op, imagesPath, labelsPath);
}

async function readFashionMnist(op: string, imagesPath: string, labelsPath: string): Promise<Dataset> {
  const [images, labels] = await Promise.all([readIdxFile(op, imagesPath, IDX_IMAGES_MAGIC), readIdxFile(op, labelsPath, IDX_LABELS_MAGIC)]);
  const [n, height, width] = images.dims as [number, number, number];
  if (labels.dims[0] !== n) {
    throw fileFormatError(op, labelsPath, 4, `holds ${labels.dims[0]} labels, but ${imagesPath} holds ${n} images`, offsetWhere(labels.gz));
  }
  const classes = 10;
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const l = labels.data[i]!;
    if (l >= classes) throw fileFormatError(op, labelsPath, 8 + i, `label ${l} of image ${i} is outside [0, ${classes})`, offsetWhere(labels.gz));
    out[i] = l;
  }
  return { images: images.data, labels: out, n, channels: 1, height, width, classes };
}
