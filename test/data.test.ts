/**
 * Data: the IDX and CIFAR readers on small files written here in the real formats, their
 * refusal of malformed files (with the file and the offset), the transforms against a naive
 * reference, and DataLoader's batches, reproducibility, resumption and overlap.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, test } from 'vitest';
import { data, memory } from '../lib/index.js';
import { defaultCase } from './helpers.js';

const { DataLoader, Rng, loadCifar, loadFashionMnist, normalize, randomFlip, randomPadCrop, readIdx } = data;
type Dataset = data.Dataset;

const dir = mkdtempSync(join(tmpdir(), 'cr-data-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** An IDX file of unsigned bytes. */
function idxBytes(dims: number[], values: Uint8Array, { type = 0x08 } = {}): Buffer {
  const header = Buffer.alloc(4 + 4 * dims.length);
  header[2] = type;
  header[3] = dims.length;
  dims.forEach((d, i) => header.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([header, values]);
}

function write(name: string, bytes: Uint8Array): string {
  const path = join(dir, name);
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, bytes);
  return path;
}

const pixels = (n: number, f: (i: number) => number) => Uint8Array.from({ length: n }, (_, i) => f(i) & 255);

describe('readIdx', () => {
  const values = pixels(3 * 4 * 5, (i) => i * 7);

  test('raw and gzipped files read the same; the gzip magic, not the name, decides', async () => {
    const raw = write('a-idx3-ubyte', idxBytes([3, 4, 5], values));
    const gz = write('a-idx3-ubyte.gz', gzipSync(idxBytes([3, 4, 5], values)));
    const gzNoSuffix = write('b-idx3-ubyte', gzipSync(idxBytes([3, 4, 5], values)));
    for (const p of [raw, gz, gzNoSuffix]) {
      const r = await readIdx(p, { magic: data.IDX_IMAGES_MAGIC });
      expect(r.dims).toEqual([3, 4, 5]);
      expect(Array.from(r.data)).toEqual(Array.from(values));
    }
    const labels = await readIdx(write('l-idx1-ubyte', idxBytes([4], Uint8Array.from([9, 0, 3, 1]))));
    expect(labels.dims).toEqual([4]);
    expect(Array.from(labels.data)).toEqual([9, 0, 3, 1]);
  });

  test('a large gzipped file arriving in many chunks', async () => {
    const big = pixels(300 * 28 * 28, (i) => (i * 31) ^ (i >> 8));
    const r = await readIdx(write('big.gz', gzipSync(idxBytes([300, 28, 28], big))));
    expect(r.data.length).toBe(big.length);
    expect(Buffer.from(r.data).equals(Buffer.from(big))).toBe(true);
  });

  // Offsets in a gzipped file are offsets of its decompressed data.
  const gzAt = (n: number) => `\\(at offset of the decompressed data ${n}\\)`;
  const bad: [string, () => Uint8Array, RegExp, RegExp][] = [
    ['bad magic (labels where images are expected)', () => idxBytes([60], pixels(60, (i) => i)), /magic number is 0x00000801, expected 0x00000803 \(at byte offset 0\)/, new RegExp(`magic number is 0x00000801, expected 0x00000803 ${gzAt(0)}`)],
    ['not an IDX file', () => Buffer.from('P5\n28 28\n255\n'.padEnd(40, 'x')), /magic number 0x50350a32 is not an IDX magic .* \(at byte offset 0\)/, new RegExp(`is not an IDX magic .* ${gzAt(0)}`)],
    ['unsupported element type', () => idxBytes([1, 2, 2], pixels(4, (i) => i), { type: 0x0d }), /element type 0x0d is not supported .* \(at byte offset 2\)/, new RegExp(`element type 0x0d is not supported .* ${gzAt(2)}`)],
    ['truncated data', () => idxBytes([2, 4, 5], pixels(39, (i) => i)), /truncated: dimensions \[2, 4, 5\] need 40 bytes after the 16-byte header, the file has 39 \(at byte offset 55\)/, new RegExp(`truncated: dimensions \\[2, 4, 5\\] need 40 bytes after the header, the data has 39 ${gzAt(55)}`)],
    ['trailing bytes (size mismatch)', () => idxBytes([2, 4, 5], pixels(43, (i) => i)), /3 bytes after the 40 that dimensions \[2, 4, 5\] need \(at byte offset 56\)/, new RegExp(`data continues past the 40 bytes that dimensions \\[2, 4, 5\\] need ${gzAt(56)}`)],
    ['truncated header', () => idxBytes([2, 4, 5], new Uint8Array()).subarray(0, 10), /truncated: the file ends inside the 16-byte header \(at byte offset 10\)/, new RegExp(`the file ends inside the 16-byte header ${gzAt(10)}`)],
    ['a zero dimension', () => idxBytes([2, 0, 5], new Uint8Array()), /dimension 1 is 0 \(at byte offset 8\)/, new RegExp(`dimension 1 is 0 ${gzAt(8)}`)],
  ];
  test.each(bad)('%s: refused, raw and gzipped, naming the file and the offset', async (_name, make, rawMessage, gzMessage) => {
    const raw = write('bad-idx3-ubyte', make());
    await expect(readIdx(raw, { magic: data.IDX_IMAGES_MAGIC })).rejects.toThrow(`readIdx: ${raw}: `);
    await expect(readIdx(raw, { magic: data.IDX_IMAGES_MAGIC })).rejects.toThrow(rawMessage);
    const gz = write('bad-idx3-ubyte.gz', gzipSync(make()));
    await expect(readIdx(gz, { magic: data.IDX_IMAGES_MAGIC })).rejects.toThrow(`readIdx: ${gz}: `);
    await expect(readIdx(gz, { magic: data.IDX_IMAGES_MAGIC })).rejects.toThrow(gzMessage);
  });

  test('a cut or damaged gzip stream is refused with the decompressed offset', async () => {
    const whole = gzipSync(idxBytes([50, 28, 28], pixels(50 * 28 * 28, (i) => i * 13)));
    const cut = write('cut.gz', whole.subarray(0, whole.length - 100));
    await expect(readIdx(cut)).rejects.toThrow(new RegExp(`readIdx: ${cut}: (gzip data is corrupt or truncated|truncated).*\\(at offset of the decompressed data \\d+\\)`));
    const damaged = Buffer.from(whole);
    damaged[damaged.length - 6]! ^= 0xff; // inside the CRC32 trailer
    await expect(readIdx(write('damaged.gz', damaged))).rejects.toThrow(/gzip data is corrupt or truncated \(.*\) \(at offset of the decompressed data \d+\)/);
    // A header claiming more than a gzip file of this size can inflate to.
    const claim = write('claim.gz', gzipSync(idxBytes([100000, 1000, 1000], new Uint8Array(16))));
    await expect(readIdx(claim)).rejects.toThrow(/need 100000000000 bytes, more than a \d+-byte gzip file can hold/);
  });

  test('argument checks', () => {
    expect(() => readIdx(5 as never)).toThrow(new TypeError('readIdx: expected path to be a non-empty string, got 5 of type number'));
    expect(() => readIdx('x', { magic: -1 })).toThrow(RangeError);
    expect(() => readIdx('x', { magik: 1 } as never)).toThrow(/unknown option 'magik'/);
  });
});

describe('loadFashionMnist', () => {
  test('a split from a folder of IDX files, gzipped or not', async () => {
    const d = join(dir, 'fmnist');
    const imgs = pixels(6 * 28 * 28, (i) => i);
    write('fmnist/t10k-images-idx3-ubyte.gz', gzipSync(idxBytes([6, 28, 28], imgs)));
    write('fmnist/t10k-labels-idx1-ubyte', idxBytes([6], Uint8Array.from([0, 9, 2, 2, 5, 1])));
    const ds = await loadFashionMnist({ dir: d, split: 'test' });
    expect([ds.n, ds.channels, ds.height, ds.width, ds.classes]).toEqual([6, 1, 28, 28, 10]);
    expect(Array.from(ds.labels)).toEqual([0, 9, 2, 2, 5, 1]);
    expect(ds.labels).toBeInstanceOf(Int32Array);
    expect(Buffer.from(ds.images).equals(Buffer.from(imgs))).toBe(true);
  });

  test('labels out of range, counts that disagree, files swapped, files missing', async () => {
    const d = join(dir, 'fmnist-bad');
    write('fmnist-bad/train-images-idx3-ubyte', idxBytes([3, 2, 2], pixels(12, (i) => i)));
    const labels = write('fmnist-bad/train-labels-idx1-ubyte', idxBytes([3], Uint8Array.from([1, 10, 2])));
    await expect(loadFashionMnist({ dir: d })).rejects.toThrow(`loadFashionMnist: ${labels}: label 10 of image 1 is outside [0, 10) (at byte offset 9)`);
    write('fmnist-bad/train-labels-idx1-ubyte', idxBytes([4], Uint8Array.from([1, 1, 2, 3])));
    await expect(loadFashionMnist({ dir: d })).rejects.toThrow(/holds 4 labels, but .*train-images-idx3-ubyte holds 3 images \(at byte offset 4\)/);
    write('fmnist-bad/train-labels-idx1-ubyte', idxBytes([3, 2, 2], pixels(12, (i) => i)));
    await expect(loadFashionMnist({ dir: d })).rejects.toThrow(/train-labels-idx1-ubyte: magic number is 0x00000803, expected 0x00000801 \(at byte offset 0\)/);
    expect(() => loadFashionMnist({ dir: join(dir, 'nothing-here') })).toThrow(/train-images-idx3-ubyte.gz not found .*sudo apt-get install dataset-fashion-mnist.*pass \{ dir \}/);
    expect(() => loadFashionMnist({ split: 'val' } as never)).toThrow(new TypeError("loadFashionMnist: expected split to be 'train' or 'test', got 'val'"));
  });
});

describe('loadCifar', () => {
  const record = (labels: number[], seed: number) => Buffer.concat([Buffer.from(labels), Buffer.from(pixels(3072, (i) => i * seed + labels[0]!))]);

  test('CIFAR-10: five training batches and the test batch, labels and CHW pixels', async () => {
    const d = join(dir, 'c10');
    for (let b = 1; b <= 5; b++) write(`c10/data_batch_${b}.bin`, Buffer.concat([record([b], b), record([9 - b], b + 10)]));
    write('c10/test_batch.bin', record([7], 3));
    const train = await loadCifar({ dir: d, split: 'train' });
    expect([train.n, train.channels, train.height, train.width, train.classes]).toEqual([10, 3, 32, 32, 10]);
    expect(Array.from(train.labels)).toEqual([1, 8, 2, 7, 3, 6, 4, 5, 5, 4]);
    // Image 3 is the second record of batch 2: pixel i is i * 12 + 7, red plane first.
    expect(Array.from(train.images.subarray(3 * 3072, 3 * 3072 + 4))).toEqual([7, 19, 31, 43]);
    expect(train.images[3 * 3072 + 1024 + 1]).toBe((1025 * 12 + 7) & 255);
    const test_ = await loadCifar({ dir: d, split: 'test', variant: 10 });
    expect(test_.n).toBe(1);
    expect(Array.from(test_.labels)).toEqual([7]);
  });

  test('CIFAR-100: coarse and fine labels', async () => {
    const d = join(dir, 'c100');
    write('c100/train.bin', Buffer.concat([record([3, 77], 1), record([19, 99], 2), record([0, 0], 3)]));
    const fine = await loadCifar({ dir: d, variant: 100 });
    expect(fine.classes).toBe(100);
    expect(Array.from(fine.labels)).toEqual([77, 99, 0]);
    expect(fine.images[0]).toBe(3);
    const coarse = await loadCifar({ dir: d, variant: 100, labels: 'coarse' });
    expect(coarse.classes).toBe(20);
    expect(Array.from(coarse.labels)).toEqual([3, 19, 0]);
  });

  test('sizes that are not whole records, labels out of range, missing files', async () => {
    const d = join(dir, 'c100-bad');
    const p = write('c100-bad/test.bin', Buffer.concat([record([1, 2], 1), record([1, 2], 1).subarray(0, 100)]));
    await expect(loadCifar({ dir: d, variant: 100, split: 'test' })).rejects.toThrow(`loadCifar: ${p}: size 3174 is not a positive multiple of the 3074-byte record (2 label bytes + 3072 pixels); truncated? (at byte offset 3074)`);
    write('c100-bad/test.bin', Buffer.concat([record([1, 2], 1), record([20, 2], 1)]));
    await expect(loadCifar({ dir: d, variant: 100, split: 'test', labels: 'fine' })).rejects.toThrow(`loadCifar: ${p}: label 20 of record 1 is outside [0, 20) (at byte offset 3074)`);
    await expect(loadCifar({ dir: join(dir, 'none') })).rejects.toThrow(/data_batch_1.bin not found\. Download the binary version/);
    expect(() => loadCifar({ variant: 20 } as never)).toThrow(new TypeError('loadCifar: expected variant to be 10 or 100, got 20 of type number'));
    expect(() => loadCifar({ labels: 'coarse' })).toThrow(/'coarse' exists only for variant 100/);
  });
});

describe('transforms', () => {
  // One 2-channel 3×3 image: channel 0 holds 1..9, channel 1 holds 11..19.
  const image = () => Float32Array.from({ length: 18 }, (_, i) => (i < 9 ? i + 1 : i + 2));
  const shape = [1, 2, 3, 3];

  /** Pad with zeros and crop at (top, left) of the padded image, the obvious way. */
  function padCropRef(x: Float32Array, [n, c, h, w]: number[], p: number, offsets: [number, number][]): number[] {
    const out: number[] = [];
    for (let i = 0; i < n!; i++) {
      const [top, left] = offsets[i]!;
      for (let ch = 0; ch < c!; ch++) {
        for (let y = 0; y < h!; y++) {
          for (let xx = 0; xx < w!; xx++) {
            const sy = y + top - p;
            const sx = xx + left - p;
            out.push(sy >= 0 && sy < h! && sx >= 0 && sx < w! ? x[((i * c! + ch) * h! + sy) * w! + sx]! : 0);
          }
        }
      }
    }
    return out;
  }

  test('pad-and-crop matches the reference for the offsets the generator draws', () => {
    for (let seed = 0; seed < 40; seed++) {
      const x = Float32Array.from({ length: 3 * 2 * 3 * 3 }, (_, i) => i + 1);
      const draw = new Rng(seed);
      const offsets: [number, number][] = [0, 1, 2].map(() => [Math.floor(draw.uniform() * 5), Math.floor(draw.uniform() * 5)]);
      const got = randomPadCrop(x, [3, 2, 3, 3], 2, new Rng(seed));
      expect(Array.from(got)).toEqual(padCropRef(x, [3, 2, 3, 3], 2, offsets));
    }
  });

  test('pad-and-crop by hand: shifted one pixel down and right, and fully off the image', () => {
    // Find a seed whose first offsets are (top 0, left 0) with padding 1: content moves down-right.
    let seed = 0;
    for (; ; seed++) {
      const r = new Rng(seed);
      if (Math.floor(r.uniform() * 3) === 0 && Math.floor(r.uniform() * 3) === 0) break;
    }
    expect(Array.from(randomPadCrop(image(), shape, 1, new Rng(seed)))).toEqual([0, 0, 0, 0, 1, 2, 0, 4, 5, 0, 0, 0, 0, 11, 12, 0, 14, 15]);
    expect(Array.from(randomPadCrop(image(), shape, 0, new Rng(1)))).toEqual(Array.from(image()));
  });

  test('flip mirrors each row; p = 0 and p = 1 are certain', () => {
    expect(Array.from(randomFlip(image(), shape, new Rng(3), 1))).toEqual([3, 2, 1, 6, 5, 4, 9, 8, 7, 13, 12, 11, 16, 15, 14, 19, 18, 17]);
    expect(Array.from(randomFlip(image(), shape, new Rng(3), 0))).toEqual(Array.from(image()));
    // p = 0.5 over many images flips about half, and each flipped image is mirrored whole.
    const n = 400;
    const x = Float32Array.from({ length: n * 2 * 3 * 3 }, (_, i) => i % 18);
    randomFlip(x, [n, 2, 3, 3], new Rng(5));
    let flipped = 0;
    for (let i = 0; i < n; i++) {
      const first = x[i * 18]!;
      expect([0, 2]).toContain(first);
      if (first === 2) flipped++;
    }
    expect(flipped).toBeGreaterThan(150);
    expect(flipped).toBeLessThan(250);
  });

  test('normalize per channel', () => {
    const out = normalize(image(), shape, [1, 11], [2, 0.5]);
    expect(Array.from(out)).toEqual([0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 0, 2, 4, 6, 8, 10, 12, 14, 16]);
  });

  test('argument checks', () => {
    expect(() => randomPadCrop([1, 2] as never, [1, 1, 1, 2], 1, new Rng(1))).toThrow(/randomPadCrop: expected images to be a Float32Array, got \[1, 2\]/);
    expect(() => randomPadCrop(image(), [2, 3, 3], 1, new Rng(1))).toThrow(new RangeError('randomPadCrop: expected shape [N, C, H, W], got [2, 3, 3]'));
    expect(() => randomPadCrop(image(), [1, 1, 3, 3], 1, new Rng(1))).toThrow(/images has 18 values, shape \[1, 1, 3, 3\] needs 9/);
    expect(() => randomPadCrop(image(), shape, -1, new Rng(1))).toThrow(RangeError);
    expect(() => randomFlip(image(), shape, Math.random as never)).toThrow(/expected rng to be an Rng/);
    expect(() => randomFlip(image(), shape, new Rng(1), 2)).toThrow(RangeError);
    expect(() => normalize(image(), shape, [0], [1])).toThrow(/expected mean to be an array of 2 numbers \(one per channel\), got \[0\]/);
    expect(() => normalize(image(), shape, [0, 0], [1, 0])).toThrow(/expected std\[1\] to be a finite number in \(0, inf\), got 0/);
  });
});

/** A small dataset whose image i has every pixel equal to i and label i % classes. */
function synthetic(n: number, c = 1, h = 4, w = 4, classes = 7): Dataset {
  const chw = c * h * w;
  return { images: pixels(n * chw, (k) => Math.floor(k / chw)), labels: Int32Array.from({ length: n }, (_, i) => i % classes), n, channels: c, height: h, width: w, classes };
}

async function epochOf(loader: InstanceType<typeof DataLoader>): Promise<{ x: number[][]; y: number[][]; sizes: number[]; shapes: number[][] }> {
  const out = { x: [] as number[][], y: [] as number[][], sizes: [] as number[], shapes: [] as number[][] };
  for await (const b of loader) {
    out.x.push(Array.from(await b.x.data()));
    out.y.push(Array.from(await b.y.data()));
    out.sizes.push(b.size);
    out.shapes.push([...b.x.shape, ...b.y.shape]);
    b.x.dispose();
    b.y.dispose();
  }
  return out;
}

describe.skipIf(!defaultCase.available)('DataLoader', () => {
  test('batch shapes, the last partial batch, dropLast, and every image once per epoch', async () => {
    const before = memory().numTensors;
    const ds = synthetic(10, 2, 3, 3);
    const loader = new DataLoader(ds, { batchSize: 4, seed: 1, backend: defaultCase.name });
    expect(loader.batchesPerEpoch).toBe(3);
    const e = await epochOf(loader);
    expect(e.sizes).toEqual([4, 4, 2]);
    expect(e.shapes).toEqual([[4, 2, 3, 3, 4], [4, 2, 3, 3, 4], [2, 2, 3, 3, 2]]);
    // Pixels are scaled to [0, 1]; image i is all i / 255 and its label is i % 7.
    const seen: number[] = [];
    e.x.forEach((xs, b) => {
      for (let j = 0; j < e.sizes[b]!; j++) {
        const i = Math.round(xs[j * 18]! * 255);
        expect(xs.slice(j * 18, (j + 1) * 18).every((v) => v === Math.fround(i / 255))).toBe(true);
        expect(e.y[b]![j]).toBe(i % 7);
        seen.push(i);
      }
    });
    expect([...seen].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(seen).not.toEqual(Array.from({ length: 10 }, (_, i) => i)); // shuffled (the seed makes it so)
    const dropped = await epochOf(new DataLoader(ds, { batchSize: 4, dropLast: true, shuffle: false }));
    expect(dropped.sizes).toEqual([4, 4]);
    expect(dropped.y.flat()).toEqual([0, 1, 2, 3, 4, 5, 6, 0]);
    expect(memory().numTensors).toBe(before);
  });

  test('seeded: the same seed gives the same batches, epochs differ, seek resumes exactly', async () => {
    const ds = synthetic(37, 3, 8, 8);
    const opts = { batchSize: 8, seed: 42, augment: { padCrop: 2, flip: true }, normalize: { mean: [0.1, 0.2, 0.3], std: [0.5, 0.5, 0.25] } };
    const a = new DataLoader(ds, opts);
    const b = new DataLoader(ds, opts);
    const a0 = await epochOf(a);
    expect(a.position).toEqual({ epoch: 1, batch: 0 });
    const a1 = await epochOf(a);
    expect(await epochOf(b)).toEqual(a0);
    expect(a1.y).not.toEqual(a0.y);
    expect(await epochOf(new DataLoader(ds, { ...opts, seed: 43 }))).not.toEqual(a0);
    // Resume in the middle of epoch 1: the rest of the epoch is what an uninterrupted run saw.
    const c = new DataLoader(ds, opts);
    c.seek({ epoch: 1, batch: 2 });
    const rest = await epochOf(c);
    expect(rest.x).toEqual(a1.x.slice(2));
    expect(rest.y).toEqual(a1.y.slice(2));
    expect(c.position).toEqual({ epoch: 2, batch: 0 });
    // prepare() gives the values the iterator uploads.
    const p = a.prepare(1, 3);
    expect(Array.from(p.x)).toEqual(a1.x[3]);
    expect(Array.from(p.y)).toEqual(a1.y[3]);
  });

  test('leaving the loop early keeps the position at the first batch not handed out', async () => {
    const loader = new DataLoader(synthetic(20), { batchSize: 5, seed: 3 });
    for await (const { x, y } of loader) {
      x.dispose();
      y.dispose();
      break;
    }
    expect(loader.position).toEqual({ epoch: 0, batch: 1 });
    const rest = await epochOf(loader);
    expect(rest.sizes).toEqual([5, 5, 5]);
    expect(loader.position).toEqual({ epoch: 1, batch: 0 });
  });

  test('augmentation: pad-and-crop and flip of the loader are the transforms with the batch seed', async () => {
    // With the identity order and no normalization, batch 0 is the first images, augmented.
    const ds = synthetic(4, 1, 5, 5);
    ds.images.forEach((_, k) => (ds.images[k] = (k * 37) & 255));
    const loader = new DataLoader(ds, { batchSize: 4, shuffle: false, seed: 9, augment: { padCrop: 2, flip: true } });
    const got = loader.prepare(0, 0);
    const plain = new DataLoader(ds, { batchSize: 4, shuffle: false, seed: 9 }).prepare(0, 0);
    expect(Array.from(got.x)).not.toEqual(Array.from(plain.x));
    const zeroPadded = got.x.filter((v) => v === 0).length;
    expect(zeroPadded).toBeGreaterThan(0);
    for (const v of got.x) expect(plain.x.includes(v) || v === 0).toBe(true);
  });

  test('the next batch is prepared while the consumer awaits (overlap)', async () => {
    const ds = synthetic(2048, 3, 32, 32, 10);
    const opts = { batchSize: 256, seed: 1, augment: { padCrop: 4, flip: true }, normalize: { mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] } };
    const run = async (prefetch: boolean) => {
      const loader = new DataLoader(ds, { ...opts, prefetch });
      for await (const { x, y } of loader) {
        // Stands in for a training step: ops are enqueued, then the step awaits its loss.
        await new Promise((r) => setTimeout(r, 15));
        x.dispose();
        y.dispose();
      }
      return loader.stats;
    };
    const on = await run(true);
    const off = await run(false);
    expect(on.batches).toBe(8);
    // Without prefetching the consumer waits for all of the preparation; with it, essentially
    // only for the first batch (of eight).
    expect(off.waitMs).toBeGreaterThan(0.9 * off.prepareMs);
    expect(on.waitMs).toBeLessThan(0.4 * on.prepareMs);
  });

  test('one epoch at a time; argument checks', async () => {
    const ds = synthetic(6);
    const loader = new DataLoader(ds, { batchSize: 2 });
    const it = loader[Symbol.asyncIterator]();
    const first = await it.next();
    await expect(loader[Symbol.asyncIterator]().next()).rejects.toThrow(/an epoch is already being iterated/);
    expect(() => loader.seek({ epoch: 0 })).toThrow(/cannot seek while an epoch is being iterated/);
    if (!first.done) {
      first.value.x.dispose();
      first.value.y.dispose();
    }
    await it.return();
    expect(() => new DataLoader(ds, { batchSize: 0 })).toThrow(new RangeError('DataLoader: expected batchSize to be an integer >= 1, got 0'));
    expect(() => new DataLoader(ds, { batchSize: 7, dropLast: true })).toThrow(/an epoch would have no batch/);
    expect(() => new DataLoader(ds, { batchSize: 2, augment: { crop: 4 } } as never)).toThrow(/unknown option 'crop'/);
    expect(() => new DataLoader(ds, { batchSize: 2, normalize: { mean: [0.5, 0.5], std: [1, 1] } })).toThrow(/expected mean to be an array of 1 number/);
    expect(() => new DataLoader({ ...ds, labels: Int32Array.from([0, 1, 2, 3, 4, 7]) }, { batchSize: 2 })).toThrow(new RangeError('DataLoader: dataset.labels[5] is 7, outside [0, 7)'));
    expect(() => new DataLoader({ ...ds, n: 5 }, { batchSize: 2 })).toThrow(/dataset.images has 96 pixels, expected n·C·H·W = 5·1·4·4 = 80/);
    expect(() => loader.seek({ epoch: 0, batch: 4 })).toThrow(RangeError);
    expect(() => loader.prepare(0, 3)).toThrow(/expected batch to be an integer in \[0, 2\], got 3/);
  });
});

const FASHION = '/usr/share/datasets/fashion-mnist';
const fashionReason = existsSync(join(FASHION, 't10k-images-idx3-ubyte.gz')) ? '' : `${FASHION} is absent (sudo apt-get install dataset-fashion-mnist)`;
if (fashionReason) console.log(`[skip] real Fashion-MNIST: ${fashionReason}`);

describe.skipIf(fashionReason !== '' || !defaultCase.available)('real Fashion-MNIST', () => {
  test('an epoch over the test split: 10,000 images, 1,000 of each label, pixels in range', async () => {
    const ds = await loadFashionMnist({ dir: FASHION, split: 'test' });
    expect([ds.n, ds.channels, ds.height, ds.width]).toEqual([10000, 1, 28, 28]);
    const loader = new DataLoader(ds, { batchSize: 1000, seed: 0, normalize: { mean: [0.286], std: [0.353] } });
    const counts = new Array<number>(10).fill(0);
    let images = 0;
    let lo = Infinity;
    let hi = -Infinity;
    for await (const { x, y, size } of loader) {
      expect(x.shape).toEqual([size, 1, 28, 28]);
      for (const l of await y.data()) counts[l]!++;
      for (const v of await x.data()) {
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
      }
      images += size;
      x.dispose();
      y.dispose();
    }
    expect(images).toBe(10000);
    expect(counts).toEqual(new Array(10).fill(1000));
    expect(lo).toBeCloseTo(-0.286 / 0.353, 5);
    expect(hi).toBeCloseTo((1 - 0.286) / 0.353, 5);
    // The files themselves: the first test label of Fashion-MNIST is 9 (ankle boot).
    expect(ds.labels[0]).toBe(9);
    expect(readFileSync(join(FASHION, 't10k-labels-idx1-ubyte.gz'))[0]).toBe(0x1f);
  });
});
