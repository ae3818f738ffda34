/**
 * Augmentation and normalization of a batch of images held as a Float32Array in NCHW order,
 * the standard CIFAR recipe of He et al. (2015): pad by 4 and crop back at random, flip
 * horizontally at random, normalize per channel. The random choices come from a seeded `Rng`,
 * so a batch is reproducible from its seed.
 * @module
 */
import { checkInt, checkNumber, checkShape, show, shapeStr } from '../util/check.js';
import { Rng } from '../tensor/random.js';

function checkBatch(op: string, x: unknown, shape: unknown): [number, number, number, number] {
  if (!(x instanceof Float32Array)) throw new TypeError(`${op}: expected images to be a Float32Array, got ${show(x)}`);
  const dims = checkShape(op, shape);
  if (dims.length !== 4) throw new RangeError(`${op}: expected shape [N, C, H, W], got ${shapeStr(dims)}`);
  const n = dims.reduce((a, b) => a * b, 1);
  if (x.length !== n) throw new RangeError(`${op}: images has ${x.length} values, shape ${shapeStr(dims)} needs ${n}`);
  return dims as [number, number, number, number];
}

function checkRng(op: string, rng: unknown): Rng {
  if (!(rng instanceof Rng)) throw new TypeError(`${op}: expected rng to be an Rng, got ${show(rng)}`);
  return rng;
}

/**
 * Pads each image by `padding` pixels of value 0 on every side and crops an H×W window at a
 * random offset (per image, each of the 2·padding + 1 offsets per axis equally likely). Returns
 * a new array; `images` is unchanged. Draws two numbers per image from `rng`, row offset first.
 */
export function randomPadCrop(images: Float32Array, shape: readonly number[], padding: number, rng: Rng): Float32Array {
  const op = 'randomPadCrop';
  const [n, c, h, w] = checkBatch(op, images, shape);
  const p = checkInt(op, 'padding', padding, 0);
  checkRng(op, rng);
  const out = new Float32Array(images.length);
  const span = 2 * p + 1;
  for (let i = 0; i < n; i++) {
    // Offsets of the source relative to the output: output (y, x) reads source (y + dy, x + dx).
    const dy = Math.floor(rng.uniform() * span) - p;
    const dx = Math.floor(rng.uniform() * span) - p;
    const y0 = Math.max(0, -dy);
    const y1 = Math.min(h, h - dy);
    const x0 = Math.max(0, -dx);
    const x1 = Math.min(w, w - dx);
    if (x0 >= x1) continue;
    for (let ch = 0; ch < c; ch++) {
      const plane = (i * c + ch) * h * w;
      for (let y = y0; y < y1; y++) {
        const dst = plane + y * w;
        const src = plane + (y + dy) * w + dx;
        out.set(images.subarray(src + x0, src + x1), dst + x0);
      }
    }
  }
  return out;
}

/**
 * Mirrors each image left to right with probability `p` (default 0.5), in place. Draws one
 * number per image from `rng`. Returns `images`.
 */
export function randomFlip(images: Float32Array, shape: readonly number[], rng: Rng, p = 0.5): Float32Array {
  const op = 'randomFlip';
  const [n, c, h, w] = checkBatch(op, images, shape);
  checkRng(op, rng);
  checkNumber(op, 'p', p, 0, 1);
  for (let i = 0; i < n; i++) {
    if (rng.uniform() >= p) continue;
    for (let row = i * c * h; row < (i + 1) * c * h; row++) images.subarray(row * w, (row + 1) * w).reverse();
  }
  return images;
}

/**
 * Per-channel normalization, in place: `x = (x - mean[c]) / std[c]`. Returns `images`.
 * For images scaled to [0, 1], the usual CIFAR-10 values are mean [0.4914, 0.4822, 0.4465],
 * std [0.2470, 0.2435, 0.2616].
 */
export function normalize(images: Float32Array, shape: readonly number[], mean: readonly number[], std: readonly number[]): Float32Array {
  const op = 'normalize';
  const [n, c, h, w] = checkBatch(op, images, shape);
  const [m, s] = checkMeanStd(op, mean, std, c);
  const plane = h * w;
  for (let i = 0; i < n; i++) {
    for (let ch = 0; ch < c; ch++) {
      const mu = m[ch]!;
      const inv = 1 / s[ch]!;
      const base = (i * c + ch) * plane;
      for (let k = base; k < base + plane; k++) images[k] = (images[k]! - mu) * inv;
    }
  }
  return images;
}

/** `mean` and `std` as one finite number per channel, std positive. @internal */
export function checkMeanStd(op: string, mean: unknown, std: unknown, channels: number): [number[], number[]] {
  const list = (name: string, v: unknown, positive: boolean): number[] => {
    if (!Array.isArray(v) || v.length !== channels) {
      throw new TypeError(`${op}: expected ${name} to be an array of ${channels} number${channels > 1 ? 's' : ''} (one per channel), got ${show(v)}`);
    }
    return v.map((x, i) => checkNumber(op, `${name}[${i}]`, x, positive ? 0 : -Infinity, Infinity, { exclusiveMin: positive }));
  };
  return [list('mean', mean, false), list('std', std, true)];
}
