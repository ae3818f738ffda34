/**
 * A small seeded PRNG for tests: the same seed gives the same numbers on every machine and
 * Node version, so a failing case can be replayed exactly (Math.random cannot be seeded).
 * @module
 */

/** mulberry32: 32-bit state, full period 2^32, good enough for test data and fast. */
export class Rng {
  private state: number;
  /** The second Box-Muller value, kept so that two normals cost one pair of uniforms. */
  private spareNormal: number | null = null;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform in [0, 1), 32 bits of resolution. */
  uniform(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Standard normal by Box-Muller. */
  normal(): number {
    if (this.spareNormal !== null) {
      const spare = this.spareNormal;
      this.spareNormal = null;
      return spare;
    }
    // 1 - u lies in (0, 1], so the logarithm is finite.
    const radius = Math.sqrt(-2 * Math.log(1 - this.uniform()));
    const angle = 2 * Math.PI * this.uniform();
    this.spareNormal = radius * Math.sin(angle);
    return radius * Math.cos(angle);
  }

  /** Uniform integer in [lo, hi] (both included). */
  randInt(lo: number, hi: number): number {
    if (!Number.isInteger(lo) || !Number.isInteger(hi) || hi < lo) {
      throw new RangeError(`randInt: need integers lo <= hi, got ${lo}, ${hi}`);
    }
    return lo + Math.floor(this.uniform() * (hi - lo + 1));
  }
}

/**
 * `n` values of N(0, 1) * scale. Values with |z| < 1e-3 are redrawn: an exact or near zero
 * sits on the kink of ReLU and max pooling, where finite differences are meaningless, and a
 * zero gradient hides wrong indexing in a test.
 */
export function randomArray(n: number, rng: Rng, scale = 1): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let z = rng.normal();
    while (Math.abs(z) < 1e-3) z = rng.normal();
    out[i] = z * scale;
  }
  return out;
}
