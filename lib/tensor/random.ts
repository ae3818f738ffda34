/**
 * Seeded random numbers for initialisation and tests: xoshiro128** seeded through splitmix32,
 * normals by Box-Muller. Deterministic across platforms and backends, since values are drawn in
 * JS and uploaded.
 * @module
 */
import { checkInt, show } from '../util/check.js';

/**
 * A seeded pseudo-random generator (xoshiro128**): the same seed gives the same sequence on
 * every platform. Data augmentation draws from one so that batches are reproducible.
 */
export class Rng {
  #s = new Uint32Array(4);
  #spare: number | null = null;

  /** A generator whose sequence is determined by `seed`, a safe integer (taken modulo 2^32). */
  constructor(seed: number) {
    let x = checkInt('Rng', 'seed', seed, Number.MIN_SAFE_INTEGER) >>> 0;
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      this.#s[i] = (z ^ (z >>> 16)) >>> 0;
    }
  }

  /** A uniform 32-bit unsigned integer. */
  nextUint32(): number {
    const s = this.#s;
    const result = Math.imul(rotl(Math.imul(s[1]!, 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1]! << 9) >>> 0;
    s[2]! ^= s[0]!;
    s[3]! ^= s[1]!;
    s[1]! ^= s[2]!;
    s[0]! ^= s[3]!;
    s[2]! ^= t;
    s[3] = rotl(s[3]!, 11);
    return result;
  }

  /** Uniform in [0, 1). */
  uniform(): number {
    return this.nextUint32() / 4294967296;
  }

  /** Standard normal. */
  normal(): number {
    if (this.#spare !== null) {
      const v = this.#spare;
      this.#spare = null;
      return v;
    }
    let u = 0;
    while (u === 0) u = this.uniform();
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.#spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /** The generator's full state, to checkpoint and restore. */
  get state(): number[] {
    // Four words of generator state, then the normal held back by Box-Muller if there is one:
    // plain finite numbers, so the state survives JSON.
    return this.#spare === null ? [...this.#s] : [...this.#s, this.#spare];
  }

  set state(st: number[]) {
    if (!Array.isArray(st) || (st.length !== 4 && st.length !== 5) || !st.every((v) => typeof v === 'number' && Number.isFinite(v))) {
      throw new TypeError(`Rng.state: expected the 4 or 5 numbers the state getter returned, got ${show(st)}`);
    }
    for (let i = 0; i < 4; i++) this.#s[i] = st[i]! >>> 0;
    this.#spare = st.length === 5 ? st[4]! : null;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

let globalRng = new Rng((Date.now() ^ (process.pid << 16)) >>> 0);

/** Reseeds the generator used when no `seed` is given; `value` is a safe integer, as for `Rng`. */
export function seed(value: number): void {
  globalRng = new Rng(checkInt('seed', 'value', value, Number.MIN_SAFE_INTEGER));
}

/** @internal */
export function rngFor(seedValue: number | undefined): Rng {
  return seedValue === undefined ? globalRng : new Rng(seedValue);
}
